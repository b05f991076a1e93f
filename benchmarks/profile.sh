#!/usr/bin/env bash
# Profile livehub under one wsbench scenario with py-spy (sampling, no code changes).
#
#   benchmarks/profile.sh fanout [WSBENCH OPTIONS...]
#   RATE=250 benchmarks/profile.sh joinstorm -n 1000
#
# Needs py-spy in the venv (`.venv/bin/pip install py-spy`, or `pip install -e .[bench]`).
# Writes benchmarks/results/profile-<scenario>-<timestamp>/: profile.txt (collapsed stacks, for
# flamegraph.pl or speedscope), top.txt (functions by own and by inclusive samples) and the
# wsbench output. Loopback only; the server is stopped at the end.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SCRATCH="${SCRATCH:-/tmp/livehub-bench}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
PYSPY="${PYSPY:-$ROOT/.venv/bin/py-spy}"
PORT="${LIVEHUB_PORT:-18089}"
RATE="${RATE:-200}"
LIVEHUB_BENCH_ENV="${LIVEHUB_BENCH_ENV-LIVEHUB_RATE_PER_S=0 LIVEHUB_CREATE_RATE_PER_MIN=0 LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS=0 LIVEHUB_BROADCAST_RELAY_MAX_MEMBERS=100000 LIVEHUB_RELAY_BYTES_PER_S=0}"  # as run.sh
scn="${1:?usage: profile.sh SCENARIO [wsbench options]}"; shift
OUT="${OUT:-$HERE/results/profile-$scn-$(date -u +%Y%m%dT%H%M%SZ)}"
[ -x "$PYSPY" ] || { echo "py-spy not found at $PYSPY (pip install py-spy)" >&2; exit 2; }
[ -f "$SCRATCH/bench/wsbench.js" ] || { echo "run benchmarks/run.sh once first (prepares $SCRATCH)" >&2; exit 2; }
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# shellcheck disable=SC2086
(cd "$ROOT" && export LIVEHUB_HOOK_SECRET=some-long-secret-value LIVEHUB_LOG_LEVEL=WARNING $LIVEHUB_BENCH_ENV &&
  exec "$PYTHON" -m livehub --host 127.0.0.1 --port "$PORT" --db :memory:) >"$OUT/server.log" 2>&1 &
SPID=$!
cleanup() { kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }
trap cleanup EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/api/rooms" >/dev/null 2>&1 && break; sleep 0.1; done

"$PYSPY" record --pid "$SPID" --rate "$RATE" --format raw --output "$OUT/profile.txt" >"$OUT/py-spy.log" 2>&1 &
SPY=$!
sleep 1
node "$SCRATCH/bench/wsbench.js" --http "http://127.0.0.1:$PORT" --ws "ws://127.0.0.1:$PORT/ws" \
  "$scn" --pid "$SPID" --timeout 600 "$@" | tee "$OUT/wsbench.txt"
kill -INT "$SPY" 2>/dev/null; wait "$SPY" 2>/dev/null

"$PYTHON" - "$OUT/profile.txt" >"$OUT/top.txt" <<'EOF'
import collections, sys
own, incl, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    if not stack:
        continue
    frames, count = stack.split(";"), int(n)
    total += count
    own[frames[-1]] += count
    for frame in set(frames):
        incl[frame] += count
print(f"{total} samples")
for title, counter in (("own", own), ("inclusive", incl)):
    print(f"\n== by {title} samples")
    for frame, count in counter.most_common(45):
        print(f"{100 * count / total:6.2f}%  {frame}")
EOF
head -n 60 "$OUT/top.txt"
echo "profile in $OUT"
