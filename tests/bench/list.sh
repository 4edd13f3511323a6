#!/usr/bin/env bash
# Benchmark: LIST every object of a seeded simulated cluster, two ways.
#   1. kubectl get -A -o json <every listable type>  (what a user would script)
#   2. a raw paged LIST over HTTP (limit=500 + continue), the API server's own cost
# Usage: tests/bench/list.sh [N]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $sim 2>/dev/null || true; rm -rf "$work"' EXIT

start=$(date +%s.%N)
./target/release/coldstart sim serve --seed "scale:$N" --kubeconfig-out "$work/k.yaml" --json > "$work/sim.json" 2> "$work/sim.log" &
sim=$!
until [ -s "$work/sim.json" ]; do sleep 0.2; done
seeded=$(date +%s.%N)
url=$(python3 -c "import json,sys;print(json.load(open('$work/sim.json'))['url'])")
export KUBECONFIG="$work/k.yaml"
types=$(kubectl api-resources --verbs=list -o name | paste -sd, -)

echo "== seed scale:$N: $(python3 -c "print(round($seeded-$start,2))") s"

/usr/bin/time -f "%e %M" -o "$work/kubectl.time" kubectl get -A -o json "$types" > "$work/all.json"
read -r k_secs k_rss < "$work/kubectl.time"
k_items=$(python3 -c "import json;print(len(json.load(open('$work/all.json'))['items']))")
k_bytes=$(stat -c %s "$work/all.json")
echo "== kubectl get -A -o json: $k_items objects, $k_bytes bytes, ${k_secs} s, peak RSS $((k_rss/1024)) MiB"

python3 - "$url" "$types" <<'PY'
import json, sys, time, urllib.request, urllib.parse
url, types = sys.argv[1], sys.argv[2].split(",")
res = json.load(urllib.request.urlopen(url + "/api/v1"))
paths = {}
for r in res["resources"]:
    if "/" not in r["name"]:
        paths[r["name"]] = f"/api/v1/{r['name']}"
groups = json.load(urllib.request.urlopen(url + "/apis"))["groups"]
for g in groups:
    gv = g["preferredVersion"]["groupVersion"]
    for r in json.load(urllib.request.urlopen(f"{url}/apis/{gv}"))["resources"]:
        if "/" not in r["name"] and "list" in r["verbs"]:
            paths[f"{r['name']}.{g['name']}"] = f"/apis/{gv}/{r['name']}"
t0 = time.time(); n = 0; b = 0
for t in types:
    p = paths.get(t)
    if not p:
        continue
    cont = ""
    while True:
        body = urllib.request.urlopen(f"{url}{p}?limit=500&continue={urllib.parse.quote(cont)}").read()
        b += len(body)
        d = json.loads(body)
        n += len(d["items"])
        cont = d["metadata"].get("continue", "")
        if not cont:
            break
dt = time.time() - t0
print(f"== raw paged LIST (limit=500, incl. client JSON decode): {n} objects, {b} bytes, {dt:.2f} s, {n/dt:,.0f} objects/s")
PY
