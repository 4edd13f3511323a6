#!/usr/bin/env bash
# What the code holds against what the process holds: snapshot `scale:N`, tear the cluster
# down and restore it, then stop the restored cluster, tear it down and start it, each with
# the measuring build (`--features heap-stats`, the same mimalloc
# counted by a wrapper) tracing the bytes live on the heap every 50 ms, while /proc gives
# the resident set. Prints, per command: peak RSS (the kernel's high-water mark), the most
# bytes live at once, and the run in tenths (median live, most live) so a peak can be
# placed in a phase (a restore verifies the snapshot in its first tenth or two, then
# applies), and the largest single allocation (a peak made of one buffer shows there).
# The difference between RSS and live bytes is the binary's text (~22 MiB) and what the
# allocator keeps of freed memory. HEAP_TRACE_KEEP=DIR keeps the raw traces (per 50 ms:
# seconds, live MiB, the window's most live MiB, the window's largest allocation MiB).
# Usage: tests/bench/heap.sh [N]   (default 100000; the measuring build goes to
# target/heap-stats, a full release build the first time; HEAP_BIN names one already built)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
if [[ -z ${HEAP_BIN:-} ]]; then
  cargo build --release --quiet --features heap-stats --target-dir target/heap-stats
  HEAP_BIN=./target/heap-stats/release/coldstart
fi
COLDSTART_BIN=$HEAP_BIN
source tests/bench/scale-cluster.sh

# Runs a command with its heap traced to $work/$1.heap and its RSS sampled from /proc.
traced() {
  local name=$1
  shift
  COLDSTART_HEAP_TRACE="$work/$name.heap" python3 - "$work/$name.heap" "$name" "$@" <<'PY'
import subprocess, sys, time
trace, name, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
hwm = 0
while p.poll() is None:
    try:
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("VmHWM"):
                hwm = max(hwm, int(line.split()[1]) // 1024)
    except FileNotFoundError:
        pass
    time.sleep(0.02)
if p.returncode != 0:
    sys.exit(f"{name} failed ({p.returncode})")
rows = [tuple(map(float, l.split())) for l in open(trace) if l.strip()]
if not rows:
    sys.exit(f"{name}: no heap trace (is this the heap-stats build?)")
end = rows[-1][0]
print(f"== {name}: {end:.1f} s, peak RSS {hwm} MiB, most live on the heap {max(r[2] for r in rows):.0f} MiB, "
      f"largest single allocation {max(r[3] for r in rows):.1f} MiB")
tenths = []
for i in range(10):
    seg = [r for r in rows if i * end / 10 <= r[0] < (i + 1) * end / 10]
    if seg:
        med = sorted(r[1] for r in seg)[len(seg) // 2]
        tenths.append(f"{med:.0f}/{max(r[2] for r in seg):.0f}")
print(f"     live MiB per tenth of the run (median/most): {' '.join(tenths)}")
PY
}

traced snapshot "$COLDSTART_BIN" snapshot --json
"$COLDSTART_BIN" sim teardown > /dev/null
traced restore "$COLDSTART_BIN" restore --json --verify-timeout 600
# The restored cluster, stopped and started again (what tests/bench/start.sh measures).
traced stop "$COLDSTART_BIN" stop --json --timeout 600
"$COLDSTART_BIN" sim teardown > /dev/null
traced start "$COLDSTART_BIN" start --json --timeout 600
if [[ -n ${HEAP_TRACE_KEEP:-} ]]; then
  mkdir -p "$HEAP_TRACE_KEEP" && cp "$work"/*.heap "$HEAP_TRACE_KEEP"/
fi
