#!/usr/bin/env bash
# A/B of the verifying pass alone: one snapshot of `scale:N`, then `coldstart snapshots
# verify` of it by each binary in turn, round by round (alternating, so drift in the machine
# falls on every binary alike). The same pass runs before a restore's first write and in
# `stop`'s check of its final snapshot. Prints one line a run (wall, user and system CPU
# seconds, peak RSS by GNU time) and, per binary, the medians and their ratio to the first.
# Usage: tests/bench/verify-ab.sh N ROUNDS NAME=BINARY...
#   e.g. tests/bench/verify-ab.sh 300000 3 new=target/release/coldstart old=/tmp/coldstart-old
# (COLDSTART_BIN names the binary that seeds and snapshots; the first binary by default.)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:?usage: verify-ab.sh N ROUNDS NAME=BINARY...}
ROUNDS=${2:?usage: verify-ab.sh N ROUNDS NAME=BINARY...}
shift 2
(($# > 0)) || { echo "name at least one binary, e.g. new=target/release/coldstart" >&2; exit 2; }
COLDSTART_BIN=${COLDSTART_BIN:-${1#*=}}
source tests/bench/scale-cluster.sh

id=$("$COLDSTART_BIN" snapshot --json | python3 -c "import json,sys;print(json.load(sys.stdin)['id'])")
echo "== snapshot $id of scale:$N"
for round in $(seq "$ROUNDS"); do
  for variant in "$@"; do
    name=${variant%%=*}
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "${variant#*=}" snapshots verify "$id" > /dev/null
    read -r wall user sys rss < "$work/time"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$wall" "$user" "$sys" $((rss / 1024)) >> "$work/runs.tsv"
    echo "   $name round $round: ${wall} s wall, user ${user} s, sys ${sys} s, peak RSS $((rss / 1024)) MiB"
  done
done
python3 - "$work/runs.tsv" <<'PY'
import statistics, sys
runs = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
names = list(dict.fromkeys(r[0] for r in runs))
med = {n: [statistics.median(float(r[i]) for r in runs if r[0] == n) for i in (2, 3, 4, 5)] for n in names}
base = med[names[0]]
for n in names:
    m = med[n]
    print(f"== {n}: median {m[0]:.2f} s wall ({m[0] / base[0]:.2f}x), CPU {m[1] + m[2]:.1f} s "
          f"({(m[1] + m[2]) / (base[1] + base[2]):.2f}x), peak RSS {m[3]:.0f} MiB ({m[3] / base[3]:.2f}x)")
PY
