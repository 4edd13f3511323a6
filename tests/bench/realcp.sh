#!/usr/bin/env bash
# Benchmark on Kubernetes' own control plane (kube-apiserver + etcd from tests/kube/build.sh):
#   1. a plain parallel-create client (Python, 32 threads each on one kept-alive TLS
#      connection, one POST per object) loads N
#      ConfigMaps: the fastest way to write N objects without coldstart
#   2. kubectl get -A -o json of those objects (what a user would script to export them)
#   3. coldstart snapshot, then sim teardown (a new empty etcd), then coldstart restore
# Usage: tests/bench/realcp.sh [N]   (default 10000; COLDSTART_BIN overrides the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
if [[ -z ${COLDSTART_BIN:-} ]]; then
  cargo build --release --quiet
  COLDSTART_BIN=./target/release/coldstart
fi
export COLDSTART_KUBE_BIN=${COLDSTART_KUBE_BIN:-$(tests/kube/build.sh)}
work=$(mktemp -d)
trap 'kill $cp 2>/dev/null || true; wait $cp 2>/dev/null || true; rm -rf "$work"' EXIT

"$COLDSTART_BIN" --json sim serve --control-plane kubernetes --kubeconfig-out "$work/k.yaml" > "$work/cp.json" 2> "$work/cp.log" &
cp=$!
until [ -s "$work/cp.json" ]; do kill -0 $cp 2>/dev/null || { cat "$work/cp.log" >&2; exit 1; }; sleep 0.2; done
python3 -c "
import json; d=json.load(open('$work/cp.json'))
print(f\"== control plane up in {d['startup_ms']/1000:.1f} s, {d['rss_bytes']>>20} MiB resident: \" +
      ', '.join(f\"{m['component']} {m['rss_bytes']>>20} MiB\" for m in d['memory']))"
export KUBECONFIG="$work/k.yaml"
export COLDSTART_STORE="file://$work/store"
export COLDSTART_ENCRYPTION_KEY=$(head -c32 /dev/urandom | base64)

python3 - "$work" "$N" <<'PY'
import base64, http.client, json, ssl, sys, threading, time, yaml
from concurrent.futures import ThreadPoolExecutor
work, n = sys.argv[1], int(sys.argv[2])
kc = yaml.safe_load(open(f"{work}/k.yaml"))
cluster, user = kc["clusters"][0]["cluster"], kc["users"][0]["user"]
for name, key in [("ca.crt", cluster["certificate-authority-data"]),
                  ("admin.crt", user["client-certificate-data"]), ("admin.key", user["client-key-data"])]:
    open(f"{work}/{name}", "wb").write(base64.b64decode(key))
ctx = ssl.create_default_context(cafile=f"{work}/ca.crt")
ctx.load_cert_chain(f"{work}/admin.crt", f"{work}/admin.key")
host = cluster["server"].removeprefix("https://")
# One kept-alive TLS connection per thread: the fastest plain client a few lines allow.
local = threading.local()
def post(path, obj):
    conn = getattr(local, "conn", None) or http.client.HTTPSConnection(host, context=ctx)
    local.conn = conn
    conn.request("POST", path, json.dumps(obj), {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    if r.status >= 300: raise SystemExit(f"POST {path}: {r.status}")
namespaces = 20
for i in range(namespaces):
    post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{i}"}})
payload = "x" * 1024
def create(i):
    ns = f"bench-{i % namespaces}"
    post(f"/api/v1/namespaces/{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"cm-{i}", "labels": {"bench": "realcp"}}, "data": {"payload": payload, "i": str(i)}})
start = time.time()
with ThreadPoolExecutor(32) as pool:
    list(pool.map(create, range(n)))
secs = time.time() - start
print(f"== plain parallel create (32 threads, keep-alive): {n} ConfigMaps in {secs:.1f} s, {n/secs:,.0f} objects/s")
PY

/usr/bin/time -f "%e %M" -o "$work/kubectl.time" kubectl get configmaps -A -l bench=realcp -o json > "$work/all.json"
read -r k_secs k_rss < "$work/kubectl.time"
k_items=$(python3 -c "import json;print(len(json.load(open('$work/all.json'))['items']))")
echo "== kubectl get -A -o json: $k_items objects in ${k_secs} s, peak RSS $((k_rss/1024)) MiB"

/usr/bin/time -f "%e %M" -o "$work/snap.time" "$COLDSTART_BIN" snapshot --json > "$work/snap.json"
read -r s_secs s_rss < "$work/snap.time"
s_objects=$(python3 -c "import json;print(json.load(open('$work/snap.json'))['objects'])")
echo "== coldstart snapshot: $s_objects objects in ${s_secs} s, peak RSS $((s_rss/1024)) MiB"

"$COLDSTART_BIN" sim teardown > /dev/null
/usr/bin/time -f "%e %M" -o "$work/restore.time" "$COLDSTART_BIN" restore --json --verify-timeout 60 > "$work/restore.json" || true
read -r r_secs r_rss < "$work/restore.time"
python3 - "$work/restore.json" "$r_secs" "$r_rss" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); secs = float(sys.argv[2]); rss = int(sys.argv[3])
print(f"== coldstart restore: {r['objects']} objects, {r['rto_ms']/1000:.2f} s RTO "
      f"({r['objects']/(r['rto_ms']/1000):,.0f} objects/s), wall {secs:.2f} s, peak RSS {rss//1024} MiB, "
      f"verified={r['succeeded']}, failures={len(r['failures'])}")
PY
restored=$(kubectl get configmaps -A -l bench=realcp -o name | wc -l)
echo "== after restore: $restored of $N ConfigMaps present"
