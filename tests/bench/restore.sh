#!/usr/bin/env bash
# Benchmark: restore N objects into the simulated cluster (cold start: snapshot, teardown,
# restore), side by side with its baselines, in one run:
#   1. a plain parallel-create client (tests/bench/plaincreate, Go: 64 keep-alive workers,
#      one POST per object, namespaces first; no gate, no tiers, no verification) creating
#      every seeded object but the custom resources, after a teardown: the fastest way to
#      write these objects without coldstart
#   2. `kubectl create -f` of exported JSON, on a 5,000-object sample (one by one, 100k
#      takes far too long), reported per object
#   3. `coldstart restore` of the whole snapshot after a teardown: objects/s, peak RSS
#      (GNU time), verified or not
# and prints coldstart's rate against each baseline's. Needs Go for the plain client.
# Usage: tests/bench/restore.sh [N]   (default 100000; COLDSTART_BIN overrides the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
SAMPLE=5000
source tests/bench/scale-cluster.sh
go build -o "$work/plaincreate" tests/bench/plaincreate/main.go

"$COLDSTART_BIN" snapshot --json > "$work/snap.json"
objects=$(python3 -c "import json;print(json.load(open('$work/snap.json'))['objects'])")
echo "== snapshot: $objects objects"

# Export what the plain client creates: every seeded object of a built-in kind (paged raw
# LISTs), sanitized as a user would (no uid, resourceVersion, status, allocated clusterIP).
python3 - "$url" "$work/plain.ndjson" <<'PY'
import json, sys, urllib.request
url, out = sys.argv[1], open(sys.argv[2], "w")
kinds = [("/api/v1", "namespaces"), ("/api/v1", "configmaps"), ("/api/v1", "secrets"),
         ("/api/v1", "services"), ("/api/v1", "serviceaccounts"), ("/apis/apps/v1", "deployments"),
         ("/apis/rbac.authorization.k8s.io/v1", "roles"), ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
         ("/apis/networking.k8s.io/v1", "networkpolicies")]
n = 0
for prefix, plural in kinds:
    cont = ""
    while True:
        page = json.load(urllib.request.urlopen(f"{url}{prefix}/{plural}?limit=500&continue={cont}"))
        for o in page["items"]:
            m = o["metadata"]
            if plural == "namespaces" and not m["name"].startswith("tenant-"):
                continue
            if plural != "namespaces" and m.get("labels", {}).get("app.kubernetes.io/part-of") != "scale-seed":
                continue
            for k in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"]:
                m.pop(k, None)
            o.pop("status", None)
            if plural == "services":
                o["spec"].pop("clusterIP", None); o["spec"].pop("clusterIPs", None)
            path = f"{prefix}/{plural}" if plural == "namespaces" else f"{prefix}/namespaces/{m['namespace']}/{plural}"
            out.write(json.dumps({"path": path, "body": o}, separators=(",", ":")) + "\n"); n += 1
        cont = page["metadata"].get("continue") or ""
        if not cont:
            break
print(f"== exported {n} objects for the plain client", file=sys.stderr)
PY

# Baseline 1: the plain parallel-create client, into a freshly deleted cluster.
"$COLDSTART_BIN" sim teardown > /dev/null
"$work/plaincreate" -server "$url" -workers 64 < "$work/plain.ndjson" > "$work/plain.json"
rm -f "$work/plain.ndjson"

# Baseline 2: kubectl create -f of exported objects, on a sample, after a teardown.
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
rm -f "$work/cms.json"
"$COLDSTART_BIN" sim teardown > /dev/null
python3 -c "
import json; d=json.load(open('$work/sample.json'))
nss = sorted({o['metadata']['namespace'] for o in d['items']})
print(json.dumps({'apiVersion':'v1','kind':'List','items':[{'apiVersion':'v1','kind':'Namespace','metadata':{'name':n}} for n in nss]}))" > "$work/ns.json"
kubectl create --validate=false -f "$work/ns.json" > /dev/null
/usr/bin/time -f "%e" -o "$work/kubectl.time" kubectl create --validate=false -f "$work/sample.json" > /dev/null

# coldstart restore of the whole snapshot into a freshly deleted cluster.
"$COLDSTART_BIN" sim teardown > /dev/null
/usr/bin/time -f "%e %M" -o "$work/restore.time" "$COLDSTART_BIN" restore --json --verify-timeout 120 > "$work/restore.json" || true
python3 - "$work" "$SAMPLE" <<'PY'
import json, sys
work, sample = sys.argv[1], int(sys.argv[2])
plain = json.load(open(f"{work}/plain.json"))
k_secs = float(open(f"{work}/kubectl.time").read().split()[0])
secs, rss = open(f"{work}/restore.time").read().split()
r = json.load(open(f"{work}/restore.json"))
rate = r["objects"] / (r["rto_ms"] / 1000)
# The process's wall time also covers reading and verifying the snapshot before the RTO
# clock starts: the fair figure against a client that reads nothing.
wall_rate = r["objects"] / float(secs)
plain_rate = plain["objects"] / plain["seconds"]
k_rate = sample / k_secs
print(f"== plain parallel create (Go, 64 workers, keep-alive): {plain['objects']} objects in {plain['seconds']:.2f} s, "
      f"{plain_rate:,.0f} objects/s, failures={plain['failures']}")
print(f"== kubectl create -f (exported JSON, {sample} objects): {k_secs:.2f} s, {k_rate:,.0f} objects/s")
print(f"== coldstart restore: {r['objects']} objects in {r['rto_ms']/1000:.2f} s RTO ({rate:,.0f} objects/s), "
      f"process wall {float(secs):.2f} s, peak RSS {int(rss)//1024} MiB, verified={r['succeeded']}, "
      f"failures={len(r['failures'])}, concurrency {r.get('concurrency')}")
for name, ms in r["phase_ms"].items():
    print(f"     {name}: {ms/1000:.2f} s")
print(f"== ratio (process wall, {wall_rate:,.0f} objects/s): plain client is {plain_rate/wall_rate:.2f}x coldstart "
      f"(RTO rate: {plain_rate/rate:.2f}x); coldstart is {wall_rate/k_rate:.1f}x kubectl create -f")
PY
