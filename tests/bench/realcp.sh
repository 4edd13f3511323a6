#!/usr/bin/env bash
# Benchmark on Kubernetes' own control plane (kube-apiserver + etcd from tests/kube/build.sh),
# N ConfigMaps of ~1 KiB in 20 namespaces, every figure side by side with its baseline in
# one run:
#   1. the plain parallel-create client (tests/bench/plaincreate, Go, 64 keep-alive TLS
#      workers, one POST per object) loads the N objects: the fastest way to write them
#      without coldstart
#   2. `kubectl get -A -o json` of them (what a user would script to export them), then
#      `coldstart snapshot`
#   3. after a `sim teardown` (a new empty etcd): `kubectl create -f` of a 2,000-object sample
#      (one POST at a time; N of them take far too long), reported per object
#   4. after another teardown: `coldstart restore` of the whole snapshot, verified
# and prints coldstart's restore rate against the plain client's and kubectl's, and its
# snapshot against kubectl get. Needs Go for the plain client.
# Usage: tests/bench/realcp.sh [N]   (default 10000; COLDSTART_BIN overrides the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
SAMPLE=2000
if [[ -z ${COLDSTART_BIN:-} ]]; then
  cargo build --release --quiet
  COLDSTART_BIN=./target/release/coldstart
fi
export COLDSTART_KUBE_BIN=${COLDSTART_KUBE_BIN:-$(tests/kube/build.sh)}
work=$(mktemp -d)
trap 'kill $cp 2>/dev/null || true; wait $cp 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/plaincreate" tests/bench/plaincreate/main.go

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

# The objects, as the plain client reads them, and the credentials it needs.
python3 - "$work" "$N" <<'PY'
import base64, json, sys, yaml
work, n = sys.argv[1], int(sys.argv[2])
kc = yaml.safe_load(open(f"{work}/k.yaml"))
cluster, user = kc["clusters"][0]["cluster"], kc["users"][0]["user"]
for name, key in [("ca.crt", cluster["certificate-authority-data"]),
                  ("admin.crt", user["client-certificate-data"]), ("admin.key", user["client-key-data"])]:
    open(f"{work}/{name}", "wb").write(base64.b64decode(key))
open(f"{work}/server", "w").write(cluster["server"])
namespaces, payload = 20, "x" * 1024
with open(f"{work}/objects.ndjson", "w") as out:
    for i in range(namespaces):
        out.write(json.dumps({"path": "/api/v1/namespaces", "body": {"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": f"bench-{i}"}}}) + "\n")
    for i in range(n):
        ns = f"bench-{i % namespaces}"
        out.write(json.dumps({"path": f"/api/v1/namespaces/{ns}/configmaps", "body": {"apiVersion": "v1",
                  "kind": "ConfigMap", "metadata": {"name": f"cm-{i}", "labels": {"bench": "realcp"}},
                  "data": {"payload": payload, "i": str(i)}}}) + "\n")
PY
plain() {
  "$work/plaincreate" -server "$(cat "$work/server")" -ca "$work/ca.crt" -cert "$work/admin.crt" \
    -key "$work/admin.key" -workers 64 < "$work/objects.ndjson"
}
plain > "$work/plain.json"
python3 -c "
import json; p=json.load(open('$work/plain.json'))
print(f\"== plain parallel create (Go, 64 keep-alive TLS workers): {p['objects']} objects in {p['seconds']:.1f} s, \"
      f\"{p['objects']/p['seconds']:,.0f} objects/s, failures={p['failures']}\")"

/usr/bin/time -f "%e %M" -o "$work/kubectl.time" kubectl get configmaps -A -l bench=realcp -o json > "$work/all.json"
read -r k_secs k_rss < "$work/kubectl.time"
k_items=$(python3 -c "import json;print(len(json.load(open('$work/all.json'))['items']))")
echo "== kubectl get -A -o json: $k_items objects in ${k_secs} s, peak RSS $((k_rss/1024)) MiB"
rm -f "$work/all.json"

/usr/bin/time -f "%e %M" -o "$work/snap.time" "$COLDSTART_BIN" snapshot --json > "$work/snap.json"
read -r s_secs s_rss < "$work/snap.time"
s_objects=$(python3 -c "import json;print(json.load(open('$work/snap.json'))['objects'])")
echo "== coldstart snapshot: $s_objects objects in ${s_secs} s, peak RSS $((s_rss/1024)) MiB"

# kubectl create -f of a sample, into a new empty cluster.
"$COLDSTART_BIN" sim teardown > /dev/null
python3 - "$work" "$SAMPLE" <<'PY'
import json, sys
work, sample = sys.argv[1], int(sys.argv[2])
bodies = [json.loads(l)["body"] for l in open(f"{work}/objects.ndjson")]
ns = [b for b in bodies if b["kind"] == "Namespace"]
cms = [b for b in bodies if b["kind"] == "ConfigMap"][:sample]
json.dump({"apiVersion": "v1", "kind": "List", "items": ns}, open(f"{work}/ns.json", "w"))
json.dump({"apiVersion": "v1", "kind": "List", "items": cms}, open(f"{work}/sample.json", "w"))
PY
kubectl create --validate=false -f "$work/ns.json" > /dev/null
/usr/bin/time -f "%e" -o "$work/kubectl-create.time" kubectl create --validate=false -f "$work/sample.json" > /dev/null

"$COLDSTART_BIN" sim teardown > /dev/null
/usr/bin/time -f "%e %M" -o "$work/restore.time" "$COLDSTART_BIN" restore --json --verify-timeout 120 > "$work/restore.json" || true
restored=$(kubectl get configmaps -A -l bench=realcp -o name | wc -l)
python3 - "$work" "$SAMPLE" "$restored" "$N" "$k_items" "$k_secs" "$s_secs" <<'PY'
import json, sys
work, sample, restored, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
k_items, k_secs, s_secs = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
p = json.load(open(f"{work}/plain.json"))
r = json.load(open(f"{work}/restore.json"))
secs, rss = open(f"{work}/restore.time").read().split()
kc_secs = float(open(f"{work}/kubectl-create.time").read().split()[0])
plain_rate, kc_rate = p["objects"] / p["seconds"], sample / kc_secs
rto_rate, wall_rate = r["objects"] / (r["rto_ms"] / 1000), r["objects"] / float(secs)
print(f"== kubectl create -f ({sample} ConfigMaps): {kc_secs:.1f} s, {kc_rate:,.0f} objects/s")
print(f"== coldstart restore: {r['objects']} objects, {r['rto_ms']/1000:.2f} s RTO ({rto_rate:,.0f} objects/s), "
      f"wall {float(secs):.2f} s ({wall_rate:,.0f} objects/s), peak RSS {int(rss)//1024} MiB, "
      f"verified={r['succeeded']}, failures={len(r['failures'])}, concurrency {r.get('concurrency')}")
for name, ms in r["phase_ms"].items():
    print(f"     {name}: {ms/1000:.2f} s")
print(f"== after restore: {restored} of {n} ConfigMaps present")
print(f"== ratio (process wall): plain client is {plain_rate/wall_rate:.2f}x coldstart restore "
      f"(RTO rate: {plain_rate/rto_rate:.2f}x); coldstart restore is {wall_rate/kc_rate:.1f}x kubectl create -f; "
      f"coldstart snapshot is {k_secs/s_secs:.1f}x faster than kubectl get -A -o json")
PY
