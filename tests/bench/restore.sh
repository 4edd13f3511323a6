#!/usr/bin/env bash
# Benchmark: restore N objects into the simulated cluster (cold start: snapshot, teardown,
# restore), side by side with what a user would otherwise script: `kubectl apply` of the
# same objects exported with `kubectl get -o json` (measured on a 5,000-object sample and
# reported per object, since applying 100k objects one by one takes far too long).
# Usage: tests/bench/restore.sh [N]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
SAMPLE=5000
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $sim 2>/dev/null || true; rm -rf "$work"' EXIT

./target/release/coldstart sim serve --seed "scale:$N" --kubeconfig-out "$work/k.yaml" --json > "$work/sim.json" 2> "$work/sim.log" &
sim=$!
until [ -s "$work/sim.json" ]; do sleep 0.2; done
export KUBECONFIG="$work/k.yaml"
export COLDSTART_STORE="file://$work/store"
export COLDSTART_ENCRYPTION_KEY=$(head -c32 /dev/urandom | base64)

./target/release/coldstart snapshot --json > "$work/snap.json"
objects=$(python3 -c "import json;print(json.load(open('$work/snap.json'))['objects'])")
echo "== snapshot: $objects objects"

# The baseline: kubectl apply of exported objects, on a sample, after a teardown.
kubectl get configmaps -A -l app.kubernetes.io/part-of=scale-seed -o json --chunk-size=500 > "$work/cms.json"
python3 - "$work/cms.json" "$SAMPLE" > "$work/sample.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2])
items = []
for o in d["items"][:n]:
    m = o["metadata"]
    for k in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"]:
        m.pop(k, None)
    items.append(o)
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
./target/release/coldstart sim teardown > /dev/null
kubectl get ns -o name > /dev/null
python3 -c "
import json; d=json.load(open('$work/sample.json'))
nss = sorted({o['metadata']['namespace'] for o in d['items']})
print(json.dumps({'apiVersion':'v1','kind':'List','items':[{'apiVersion':'v1','kind':'Namespace','metadata':{'name':n}} for n in nss]}))" > "$work/ns.json"
kubectl create --validate=false -f "$work/ns.json" > /dev/null
/usr/bin/time -f "%e" -o "$work/kubectl.time" kubectl create --validate=false -f "$work/sample.json" > /dev/null
k_secs=$(cat "$work/kubectl.time")
python3 -c "print(f'== kubectl create -f (exported JSON, {$SAMPLE} objects): {$k_secs} s, {$SAMPLE/$k_secs:,.0f} objects/s')"

# coldstart restore of the whole snapshot into a freshly deleted cluster.
./target/release/coldstart sim teardown > /dev/null
/usr/bin/time -f "%e %M" -o "$work/restore.time" ./target/release/coldstart restore --json --verify-timeout 60 > "$work/restore.json" || true
read -r secs rss < "$work/restore.time"
python3 - "$work/restore.json" "$secs" "$rss" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); secs = float(sys.argv[2]); rss = int(sys.argv[3])
print(f"== coldstart restore: {r['objects']} objects in {r['rto_ms']/1000:.2f} s RTO "
      f"({r['objects']/(r['rto_ms']/1000):,.0f} objects/s), process wall {secs:.2f} s, peak RSS {rss//1024} MiB, "
      f"verified={r['succeeded']}, failures={len(r['failures'])}")
for name, ms in r["phase_ms"].items():
    print(f"     {name}: {ms/1000:.2f} s")
PY
