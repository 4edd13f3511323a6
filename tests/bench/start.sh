#!/usr/bin/env bash
# Benchmark: a planned stop and a cold start of N objects in the simulated cluster, side by
# side with a plain `coldstart restore` of the same final snapshot, in one run:
#   1. coldstart stop     (audit, pins, quiesce every Deployment, final snapshot, verified)
#   2. sim teardown       (the cluster deleted the way a cloud deletes one)
#   3. coldstart start    (restore from the final snapshot, then every Deployment back up)
#   4. sim teardown, coldstart restore of the same snapshot: the baseline, what `start`
#      does beyond it is bringing the quiesced workloads back and waiting for them
# Each line: wall time, peak RSS (GNU time); the last line gives start against restore.
# The scale seed makes 1 Deployment in 10 objects: 10,000 at 100k, each waited on twice.
# Usage: tests/bench/start.sh [N]   (default 100000; COLDSTART_BIN overrides the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
source tests/bench/scale-cluster.sh

timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$COLDSTART_BIN" "$@" --json > "$work/$name.json"
}
timed stop stop --timeout 600
"$COLDSTART_BIN" sim teardown > /dev/null
timed start start --timeout 600
snapshot=$(python3 -c "import json;print(json.load(open('$work/stop.json'))['snapshot'])")
"$COLDSTART_BIN" sim teardown > /dev/null
timed restore restore --snapshot "$snapshot" --verify-timeout 600 || true
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def run(name):
    secs, rss = open(f"{work}/{name}.time").read().split()
    return json.load(open(f"{work}/{name}.json")), float(secs), int(rss) // 1024
stop, stop_s, stop_rss = run("stop")
start, start_s, start_rss = run("start")
restore, restore_s, restore_rss = run("restore")
quiesced = sum(len(s["workloads"]) for s in stop["steps"])
scaled = sum(1 for _ in start["scaled_up"])
print(f"== coldstart stop: {stop['snapshot_objects']} objects in the final snapshot, {quiesced} workloads quiesced, "
      f"{stop_s:.2f} s wall, peak RSS {stop_rss} MiB")
print("     " + ", ".join(f"{k} {v/1000:.2f} s" for k, v in stop["phase_ms"].items()))
r = start["restore"]
print(f"== coldstart start: {r['objects']} objects, verified={r['succeeded']}, {scaled} steps brought back, "
      f"RTO {start['rto_ms']/1000:.2f} s ({r['objects']/(start['rto_ms']/1000):,.0f} objects/s), "
      f"{start_s:.2f} s wall, peak RSS {start_rss} MiB")
print("     " + ", ".join(f"{k} {v/1000:.2f} s" for k, v in start["phase_ms"].items()))
print(f"== coldstart restore (same snapshot, baseline): {restore['objects']} objects, verified={restore['succeeded']}, "
      f"RTO {restore['rto_ms']/1000:.2f} s, {restore_s:.2f} s wall, peak RSS {restore_rss} MiB")
print(f"== start / restore: {start_s/restore_s:.2f}x the wall time, {start_rss/restore_rss:.2f}x the peak RSS")
PY
