# Sourced by the benchmarks that run against the simulated cluster (snapshot.sh, restore.sh,
# start.sh): with N set, it builds the release binary unless COLDSTART_BIN names one, starts
# `coldstart sim serve --seed scale:N` in its own process, and exports what coldstart reads
# (KUBECONFIG, a file store in a temporary directory, a fresh encryption key). Sets `work`
# (the directory, removed on exit with the cluster stopped), `sim` (its pid), `url`.
if [[ -z ${COLDSTART_BIN:-} ]]; then
  cargo build --release --quiet
  COLDSTART_BIN=./target/release/coldstart
fi
work=$(mktemp -d)
trap 'kill $sim 2>/dev/null || true; rm -rf "$work"' EXIT

"$COLDSTART_BIN" sim serve --seed "scale:$N" --kubeconfig-out "$work/k.yaml" --json > "$work/sim.json" 2> "$work/sim.log" &
sim=$!
until [ -s "$work/sim.json" ]; do sleep 0.2; done
url=$(python3 -c "import json;print(json.load(open('$work/sim.json'))['url'])")
export KUBECONFIG="$work/k.yaml"
export COLDSTART_STORE="file://$work/store"
COLDSTART_ENCRYPTION_KEY=$(head -c32 /dev/urandom | base64)
export COLDSTART_ENCRYPTION_KEY
