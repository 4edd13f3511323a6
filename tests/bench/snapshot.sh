#!/usr/bin/env bash
# Benchmark: snapshot a seeded simulated cluster, side by side with `kubectl get -A -o json`.
#   1. kubectl get -A -o json <every listable type>     (the baseline a user would script)
#   2. coldstart snapshot, first run                     (everything new)
#   3. coldstart snapshot, cluster unchanged             (should write <= 1% of run 2)
#   4. coldstart snapshot after changing 1% of objects   (should write <= 5% of run 2)
# Each line: wall time, peak RSS (GNU time), bytes; the last line puts the first snapshot
# side by side with kubectl (rate and peak RSS ratios). Usage: tests/bench/snapshot.sh [N]
# (BASELINE=0 skips kubectl, which needs ~45 KB of RAM per object: 13 GiB at 300k;
# COLDSTART_BIN overrides the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
source tests/bench/scale-cluster.sh
types=$(kubectl api-resources --verbs=list -o name | paste -sd, -)

if [[ ${BASELINE:-1} == 1 ]]; then
  /usr/bin/time -f "%e %M" -o "$work/kubectl.time" kubectl get -A -o json "$types" > "$work/all.json"
  read -r k_secs k_rss < "$work/kubectl.time"
  k_items=$(python3 -c "import json;print(len(json.load(open('$work/all.json'))['items']))")
  echo "== kubectl get -A -o json: $k_items objects, $(stat -c %s "$work/all.json") bytes, ${k_secs} s, peak RSS $((k_rss/1024)) MiB"
  rm -f "$work/all.json"
fi

snap() {
  /usr/bin/time -f "%e %M" -o "$work/snap.time" "$COLDSTART_BIN" snapshot --json > "$work/snap.json"
  read -r secs rss < "$work/snap.time"
  cp "$work/snap.time" "$work/snap-$2.time"
  python3 - "$1" "$secs" "$rss" "$work/snap.json" <<'PY'
import json, sys
label, secs, rss, path = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
print(f"== coldstart snapshot ({label}): {s['objects']} objects, {s['bytes_total']:,} bytes of JSON, "
      f"{s['bytes_written']:,} bytes written, {secs:.2f} s wall ({s['objects']/secs:,.0f} objects/s), "
      f"peak RSS {rss//1024} MiB")
PY
  python3 -c "import json;print(json.load(open('$work/snap.json'))['bytes_written'])"
}

first=$(snap "first" 1 | tee /dev/stderr | tail -1)
second=$(snap "unchanged" 2 | tee /dev/stderr | tail -1)

# Change 1% of the objects: a label on every 100th seeded ConfigMap / Secret / Widget ...
python3 - "$url" "$N" <<'PY'
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
namespaces = max(1, -(-n // 1000))
paths = {"configmaps": "/api/v1", "secrets": "/api/v1", "services": "/api/v1",
         "serviceaccounts": "/api/v1", "deployments": "/apis/apps/v1",
         "roles": "/apis/rbac.authorization.k8s.io/v1", "rolebindings": "/apis/rbac.authorization.k8s.io/v1",
         "networkpolicies": "/apis/networking.k8s.io/v1", "widgets": "/apis/example.com/v1"}
changed = 0
for i in range(0, n, 100):
    ns, name = f"tenant-{i % namespaces:04}", f"obj-{i:07}"
    body = json.dumps({"metadata": {"labels": {"coldstart.dev/bench": "changed"}}}).encode()
    for plural, prefix in paths.items():
        req = urllib.request.Request(f"{url}{prefix}/namespaces/{ns}/{plural}/{name}", data=body, method="PATCH",
                                     headers={"Content-Type": "application/merge-patch+json"})
        try:
            urllib.request.urlopen(req).read(); changed += 1; break
        except urllib.error.HTTPError:
            continue
print(f"== changed {changed} objects ({100*changed/n:.1f}%)")
PY
third=$(snap "1% changed" 3 | tee /dev/stderr | tail -1)
python3 -c "print(f'== second / first: {100*$second/$first:.3f}%   1%-changed / first: {100*$third/$first:.2f}%')"
read -r c_secs c_rss < "$work/snap-1.time"
if [[ ${BASELINE:-1} == 1 ]]; then python3 -c "
k_rate, c_rate = $k_items / $k_secs, $k_items / $c_secs
print(f'== first snapshot vs kubectl get -A -o json: {c_rate/k_rate:.1f}x the rate ({c_rate:,.0f} vs {k_rate:,.0f} objects/s), '
      f'peak RSS {$c_rss//1024} vs {$k_rss//1024} MiB ({$k_rss/$c_rss:.1f}x less)')"
fi
