#!/usr/bin/env bash
# livehub vs the seed's Node server (express + ws), side by side, on the shared wsbench load
# generator. Loopback only; every wsbench run is bounded by --timeout.
#
#   benchmarks/run.sh                              # fanout pairs joinstorm idle, once each
#   benchmarks/run.sh fanout pairs                 # a subset
#   REPEAT=3 benchmarks/run.sh                     # repeat each scenario (medians in the report)
#   QUIET_WAIT=300 benchmarks/run.sh               # before each run wait (at most 300 s) until
#                                                  # the host is quiet: busy < QUIET_MAX cores
#                                                  # (default 0.3) over a 2 s sample
#   TARGETS=livehub benchmarks/run.sh fanout       # one server only (no ratios)
#   TARGETS="seed floor livehub" benchmarks/run.sh pairs   # with the floor: the same relay on
#                                                  # aiohttp's public API and nothing more
#                                                  # (benchmarks/floor_server.py)
#   TARGETS="seed floor floor0 livehub livehub0" benchmarks/run.sh pairs
#                                                  # floor0, livehub0: both without aiohttp's
#                                                  # heartbeat (FLOOR_HEARTBEAT=0,
#                                                  # LIVEHUB_HEARTBEAT=0), as the seed pings nobody
#   FANOUT_ARGS="-n 500" benchmarks/run.sh fanout  # replace a scenario's wsbench options
#
# For each scenario and repetition, each target is started fresh, measured and stopped, one after
# the other (never two servers at once); seed and livehub alternate so both see similar host
# load. /work/shared is read-only, so wsbench and the seed are copied to a scratch directory
# (SCRATCH, default /tmp/livehub-bench) and `npm ci` runs there.
#
# Output: benchmarks/results/<UTC timestamp>/ (or OUT): TARGET/NAME.{txt,json},
# TARGET/server-NAME.log, report.md (wsbench's report.js), summary.md (livehub/seed ratios
# against the targets of issue 3) and machine.txt.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED:-$(cd "$ROOT/../shared" && pwd)}"
SCRATCH="${SCRATCH:-/tmp/livehub-bench}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}"
SCENARIOS="${*:-fanout pairs joinstorm idle}"
TARGETS="${TARGETS:-seed livehub}"
REPEAT="${REPEAT:-1}"
QUIET_WAIT="${QUIET_WAIT:-0}"
QUIET_MAX="${QUIET_MAX:-0.3}"
SEED_PORT="${SEED_PORT:-18088}"
LIVEHUB_PORT="${LIVEHUB_PORT:-18089}"
FLOOR_PORT="${FLOOR_PORT:-18087}"
TIMEOUT="${TIMEOUT:-420}"   # wsbench --timeout per run, seconds
# environment for livehub (replaces the default, e.g. LIVEHUB_BENCH_ENV="" for livehub's own
# defaults). By default the benchmarks run with the general rate limit off
# (LIVEHUB_RATE_PER_S=0): the fanout sender sends ~1,000 messages/s from one connection, far
# above the 50/s a real client needs, and a limit meant to stop floods would drop most of them.
# Chat keeps its limit (the scenarios send no chat). Anonymous room creation is not limited
# either (LIVEHUB_CREATE_RATE_PER_MIN=0): pairs creates 500 rooms from one address in a second,
# idle 50, far above the default 30 a minute. Every wsbench client connects from 127.0.0.1, so
# the per-address connection limit is off (LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS=0: idle holds
# 10,000 sockets, the default allows 100 per address), and fanout's sender is a viewer relaying
# without `to` to 1,000 members, which livehub refuses by default above 10 members: the
# benchmarks measure the relay path with that rule and the relayed-byte budget off
# (LIVEHUB_BROADCAST_RELAY_MAX_MEMBERS=100000, LIVEHUB_RELAY_BYTES_PER_S=0).
LIVEHUB_BENCH_ENV="${LIVEHUB_BENCH_ENV-LIVEHUB_RATE_PER_S=0 LIVEHUB_CREATE_RATE_PER_MIN=0 LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS=0 LIVEHUB_BROADCAST_RELAY_MAX_MEMBERS=100000 LIVEHUB_RELAY_BYTES_PER_S=0}"

FANOUT_ARGS="${FANOUT_ARGS:-}"            # wsbench defaults: 1 room x 1000 receivers x 2000 messages
PAIRS_ARGS="${PAIRS_ARGS:-}"              # 500 rooms x 2 peers x 20 rounds
JOINSTORM_ARGS="${JOINSTORM_ARGS:-}"      # 2000 clients
IDLE_ARGS="${IDLE_ARGS:--n 10000 -t 40}"  # 10,000 connections over 50 rooms, held 40 s (> livehub's 30 s heartbeat)

# shellcheck source=benchmarks/lib.sh
. "$HERE/lib.sh"
raise_fd_limit run.sh


# -- servers: each started so that $! is the server process itself (exec), for wsbench --pid ----
SPID=""
start_server() { # TARGET LOG
  local target="$1" log="$2"
  case "$target" in
    seed)
      (cd "$SCRATCH/peers/seed-node" && PORT="$SEED_PORT" NODE_ENV=production exec node dist/signaling/index.js) >"$log" 2>&1 &
      ;;
    floor | floor0)
      local beat="${FLOOR_HEARTBEAT:-30}"; [ "$target" = floor0 ] && beat=0
      (cd "$ROOT" && FLOOR_HEARTBEAT="$beat" exec "$PYTHON" "$HERE/floor_server.py" "$FLOOR_PORT") >"$log" 2>&1 &
      ;;
    livehub | livehub0)
      local extra=""; [ "$target" = livehub0 ] && extra="LIVEHUB_HEARTBEAT=0"
      # shellcheck disable=SC2086
      (cd "$ROOT" && export LIVEHUB_HOOK_SECRET=some-long-secret-value LIVEHUB_LOG_LEVEL=WARNING $LIVEHUB_BENCH_ENV $extra &&
        exec "$PYTHON" -m livehub --host 127.0.0.1 --port "$LIVEHUB_PORT" --db :memory:) >"$log" 2>&1 &
      ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  SPID=$!
  local port; port="$(target_port "$target")"
  for _ in $(seq 300); do
    if curl -sf "http://127.0.0.1:$port/api/rooms" >/dev/null 2>&1; then
      echo "$target server pid $SPID ($(cat "/proc/$SPID/comm" 2>/dev/null)) on port $port" >&2
      return 0
    fi
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "$target server did not start on port $port (log: $log)" >&2
  stop_server
  return 1
}

stop_server() {
  [ -n "$SPID" ] || return 0
  if kill -0 "$SPID" 2>/dev/null; then kill "$SPID"; fi
  for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SPID" 2>/dev/null; then kill -9 "$SPID" 2>/dev/null; fi
  wait "$SPID" 2>/dev/null
  SPID=""
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

target_port() {
  case "$1" in seed) echo "$SEED_PORT" ;; floor*) echo "$FLOOR_PORT" ;; *) echo "$LIVEHUB_PORT" ;; esac
}
ws_path() { if [ "$1" = seed ]; then echo "/"; else echo "/ws"; fi; }

machine() {
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -sr)"
  echo "python: $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
  echo "node: $(node --version)"
  echo "livehub commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet -- livehub 2>/dev/null || echo ' (livehub/ modified)')"
  echo "packages: $("$PYTHON" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("aiohttp", "uvloop", "orjson")))')"
  echo "fd limit: $(ulimit -n)"
  echo "livehub env: LIVEHUB_LOG_LEVEL=WARNING $LIVEHUB_BENCH_ENV"
  case " $TARGETS " in *" floor"*) echo "floor: FLOOR_HEARTBEAT=${FLOOR_HEARTBEAT:-30} FLOOR_GC=${FLOOR_GC:-1}" ;; esac
  echo "REPEAT=$REPEAT QUIET_WAIT=$QUIET_WAIT QUIET_MAX=$QUIET_MAX TIMEOUT=$TIMEOUT"
  echo "FANOUT_ARGS=$FANOUT_ARGS | PAIRS_ARGS=$PAIRS_ARGS | JOINSTORM_ARGS=$JOINSTORM_ARGS | IDLE_ARGS=$IDLE_ARGS"
}

prepare_peers
mkdir -p "$OUT"
for target in $TARGETS; do mkdir -p "$OUT/$target"; done
machine | tee "$OUT/machine.txt"
BENCH="$SCRATCH/bench/wsbench.js"
overall=0

for scn in $SCENARIOS; do
  var="$(echo "$scn" | tr '[:lower:]' '[:upper:]')_ARGS"
  # shellcheck disable=SC2206
  extra=(${!var:-})
  for rep in $(seq "$REPEAT"); do
    name="$scn"; [ "$REPEAT" -gt 1 ] && name="$scn.$rep"
    for target in $TARGETS; do
      dir="$OUT/$target"
      wait_quiet
      start_server "$target" "$dir/server-$name.log" || { overall=1; continue; }
      port="$(target_port "$target")"
      cmd=(node "$BENCH" --http "http://127.0.0.1:$port" --ws "ws://127.0.0.1:$port$(ws_path "$target")"
        "$scn" --pid "$SPID" --json --timeout "$TIMEOUT" "${extra[@]}")
      run_recorded "$dir" "$target" "$name" "server pid $SPID" "${cmd[@]}" || overall=1
      stop_server
    done
  done
done

labels=()
for target in $TARGETS; do labels+=(--label "$target=$OUT/$target"); done
node "$SCRATCH/bench/report.js" "${labels[@]}" >"$OUT/report.md"
"$PYTHON" "$HERE/compare.py" "$OUT" >"$OUT/summary.md" || overall=1
cat "$OUT/report.md" "$OUT/summary.md"
echo "results in $OUT"
exit "$overall"
