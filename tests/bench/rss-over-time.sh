#!/usr/bin/env bash
# The resident set through one `coldstart start` of `scale:N`: stop the seeded cluster, tear
# it down, then start it with /proc sampled every 100 ms. Prints the start's phases, when
# the highest sample came, and per 2 s the highest resident and anonymous MiB, so a peak can
# be told from a trend (a climb through the apply against spikes around one level).
# Usage: tests/bench/rss-over-time.sh [N]   (default 100000; COLDSTART_BIN overrides the
# release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
source tests/bench/scale-cluster.sh
"$COLDSTART_BIN" stop --timeout 600 --json > /dev/null
"$COLDSTART_BIN" sim teardown > /dev/null
python3 - "$COLDSTART_BIN" "$work" <<'PY'
import json, subprocess, sys, time
bin_, work = sys.argv[1], sys.argv[2]
p = subprocess.Popen([bin_, "start", "--timeout", "600", "--json"], stdout=open(f"{work}/start.json", "w"))
t0, rows = time.time(), []
while p.poll() is None:
    try:
        st = {l.split(":")[0]: int(l.split()[1]) >> 10 for l in open(f"/proc/{p.pid}/status")
              if l.startswith(("VmRSS", "VmHWM", "RssAnon"))}
        rows.append((time.time() - t0, st["VmRSS"], st["RssAnon"], st["VmHWM"]))
    except (FileNotFoundError, KeyError, ProcessLookupError):
        pass
    time.sleep(0.1)
if p.returncode != 0 or not rows:
    sys.exit(f"start failed ({p.returncode})")
r = json.load(open(f"{work}/start.json"))
print(f"== start: RTO {r['rto_ms'] / 1000:.1f} s, verified={r['restore']['succeeded']}, phases (ms) {r['phase_ms']}")
peak = max(rows, key=lambda x: x[1])
print(f"== highest sample {peak[1]} MiB (anonymous {peak[2]}) at {peak[0]:.1f} s of {rows[-1][0]:.1f}; "
      f"kernel's high-water mark {rows[-1][3]} MiB")
for t in range(0, int(rows[-1][0]) + 1, 2):
    seg = [x for x in rows if t <= x[0] < t + 2]
    if seg:
        print(f"   {t:4} s  RSS {max(x[1] for x in seg):4} MiB  anonymous {max(x[2] for x in seg):4} MiB")
PY
