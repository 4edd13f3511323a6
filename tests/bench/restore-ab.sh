#!/usr/bin/env bash
# A/B of `coldstart restore` alone: one snapshot of `scale:N`, then the same restore after a
# teardown, variants alternating round by round so that drift in the machine falls on every
# variant alike. A variant is a name and what differs, separated by `=`:
#   base=                               the build under test as it is
#   old=bin:/tmp/coldstart-old          another binary
#   w1=env:TOKIO_WORKER_THREADS=1       an environment variable (several: env:A=1,B=2)
#   c64="args:--concurrency 64"         arguments added to `restore`
# Prints one line a run (RTO, user and system CPU seconds, peak RSS by GNU time, verified)
# and, per variant, the median of each and its ratio to the first variant's.
# Usage: tests/bench/restore-ab.sh N ROUNDS VARIANT...
#   e.g. tests/bench/restore-ab.sh 300000 3 base= p10=env:MIMALLOC_PURGE_DELAY=10
# (COLDSTART_BIN names the binary that seeds, snapshots and tears down, and `base`'s.)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:?usage: restore-ab.sh N ROUNDS VARIANT...}
ROUNDS=${2:?usage: restore-ab.sh N ROUNDS VARIANT...}
shift 2
(($# > 0)) || { echo "name at least one variant, e.g. base=" >&2; exit 2; }
source tests/bench/scale-cluster.sh

id=$("$COLDSTART_BIN" snapshot --json | python3 -c "import json,sys;print(json.load(sys.stdin)['id'])")
echo "== snapshot $id of scale:$N"
for round in $(seq "$ROUNDS"); do
  for variant in "$@"; do
    name=${variant%%=*}
    what=${variant#*=}
    bin=$COLDSTART_BIN
    envs=()
    extra=()
    case $what in
      bin:*) bin=${what#bin:} ;;
      env:*) IFS=, read -r -a envs <<< "${what#env:}" ;;
      args:*) read -r -a extra <<< "${what#args:}" ;;
      "") ;;
      *) echo "variant $variant: say bin:PATH, env:VAR=VALUE or args:ARGS after the =" >&2; exit 2 ;;
    esac
    "$COLDSTART_BIN" sim teardown > /dev/null
    env "${envs[@]}" /usr/bin/time -f "%U %S %e %M" -o "$work/time" \
      "$bin" restore --snapshot "$id" --json --verify-timeout 600 "${extra[@]}" > "$work/restore.json" || true
    python3 - "$work" "$name" "$round" >> "$work/runs.tsv" <<'PY'
import json, sys
work, name, round_ = sys.argv[1:]
r = json.load(open(f"{work}/restore.json"))
user, sys_, wall, rss = open(f"{work}/time").read().split()
print(f"{name}\t{round_}\t{r['rto_ms'] / 1000:.2f}\t{user}\t{sys_}\t{int(rss) // 1024}\t{r['succeeded']}")
PY
    tail -1 "$work/runs.tsv" | awk -F'\t' '{printf "   %s round %s: RTO %s s, user %s s, sys %s s, peak RSS %s MiB, verified=%s\n", $1, $2, $3, $4, $5, $6, $7}'
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
    print(f"== {n}: median RTO {m[0]:.2f} s ({m[0] / base[0]:.2f}x), user {m[1]:.1f} s, sys {m[2]:.1f} s "
          f"({m[2] / base[2]:.2f}x), peak RSS {m[3]:.0f} MiB ({m[3] / base[3]:.2f}x)")
PY
