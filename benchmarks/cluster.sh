#!/usr/bin/env bash
# livehub in cluster mode (PostgreSQL + Redis, one or two nodes) against embedded mode (one node,
# SQLite) and the seed's Node server, on the shared wsbench load generator. Loopback only; every
# wsbench run is bounded by --timeout. (issue 9, "Measured"; benchmarks/run.sh stays the
# single-node comparison.)
#
#   benchmarks/cluster.sh                          # fanout pairs joinstorm, every target once
#   REPEAT=3 benchmarks/cluster.sh                 # medians over 3 (the report shows min-max)
#   TARGETS="embedded cluster2" benchmarks/cluster.sh pairs
#   FANOUT_ARGS="-n 50 -k 100" PAIRS_ARGS="-p 20" JOINSTORM_ARGS="-n 50" benchmarks/cluster.sh
#   QUIET_WAIT=120 benchmarks/cluster.sh           # wait (at most 120 s) for a quiet host first
#
# Targets, each started fresh for each scenario and repetition, one after the other:
#   seed      the seed's express + ws server (one Node process)
#   embedded  one livehub node, SQLite (a fresh file per run): what `make run` starts
#   cluster1  one livehub node in cluster mode: LIVEHUB_DATABASE_URL + LIVEHUB_REDIS_URL
#   cluster2  two livehub nodes in cluster mode on the same PostgreSQL and Redis; the clients
#             alternate between them (client i connects to node i mod 2), REST goes to node 1
# PostgreSQL and Redis are throwaway servers on private ports of 127.0.0.1
# (benchmarks/cluster_engines.py, from tests/engines.py), started once; each cluster run gets a
# new empty database and an emptied Redis.
#
# wsbench takes one --ws URL, so the script runs a patched copy (benchmarks/wsbench-multi.patch,
# applied to the scratch copy as wsbench-multi.js; the original stays untouched): `--ws` takes
# several URLs (client i uses URL i mod count), fanout reports latency on the sender's node and
# on the other node apart, and `--aux-pid NAME=PID,...` reports other processes' CPU (Redis,
# PostgreSQL with its backends, each node) in the same measured window as the server's.
# `pairs --to` addresses every measured offer and answer to the other peer (`"to"`, the id the
# probe exchange's `from` gave it). Everything else (scenarios, pacing, metrics) is wsbench's
# own. `--pid` sums the nodes.
# In pairs, peer A is client 2p and B is 2p+1, so with two nodes every pair spans both.
#
# Output: benchmarks/results/cluster-<UTC timestamp>/ (or OUT): TARGET/NAME.{txt,json},
# TARGET/server-NAME.log, report.md (wsbench's report.js), summary.md
# (benchmarks/cluster_compare.py) and machine.txt.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED:-$(cd "$ROOT/../shared" && pwd)}"
SCRATCH="${SCRATCH:-/tmp/livehub-clbench}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$HERE/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)}"
SCENARIOS="${*:-fanout pairs joinstorm}"
TARGETS="${TARGETS:-seed embedded cluster1 cluster2}"
REPEAT="${REPEAT:-1}"
QUIET_WAIT="${QUIET_WAIT:-0}"
QUIET_MAX="${QUIET_MAX:-0.3}"
SEED_PORT="${SEED_PORT:-18188}"
LIVEHUB_PORT="${LIVEHUB_PORT:-18189}"   # node 2 listens on LIVEHUB_PORT + 1
TIMEOUT="${TIMEOUT:-300}"   # wsbench --timeout per run, seconds
# as benchmarks/run.sh: the general rate limit off (the fanout sender sends ~1,000 messages/s
# from one connection); room creation unlimited too (pairs creates 500 rooms from one address);
# no per-address connection limit (every client is 127.0.0.1); fanout's viewer may relay without
# `to` to its 1,000 members, with no relayed-byte budget
LIVEHUB_BENCH_ENV="${LIVEHUB_BENCH_ENV-LIVEHUB_RATE_PER_S=0 LIVEHUB_CREATE_RATE_PER_MIN=0 LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS=0 LIVEHUB_BROADCAST_RELAY_MAX_MEMBERS=100000 LIVEHUB_RELAY_BYTES_PER_S=0}"

FANOUT_ARGS="${FANOUT_ARGS:-}"        # wsbench defaults: 1 room x 1000 receivers x 2000 messages
# pairs: 500 rooms x 2 peers x 20 rounds, each offer and answer addressed to the other peer with
# `to` (issue 17's cross-node round trip); PAIRS_ARGS="" relays to the room instead (no `to`)
PAIRS_ARGS="${PAIRS_ARGS---to}"
JOINSTORM_ARGS="${JOINSTORM_ARGS:-}"  # 2000 clients

# shellcheck source=benchmarks/lib.sh
. "$HERE/lib.sh"
raise_fd_limit cluster.sh

# -- scratch copies (benchmarks/lib.sh), and the patched wsbench --------------------------------
prepare() {
  prepare_peers
  patch -s -o "$SCRATCH/bench/wsbench-multi.js" "$SCRATCH/bench/wsbench.js" <"$HERE/wsbench-multi.patch" ||
    { echo "wsbench-multi.patch does not apply to $SHARED/bench/wsbench.js" >&2; exit 2; }
}


# -- PostgreSQL + Redis, once for the whole script -----------------------------------------------
ENGINES_PID=""
PG_URL="" PG_PID="" REDIS_URL="" REDIS_PID="" PG_VERSION=""
start_engines() {
  local env="$OUT/engines.env"
  rm -f "$env"
  "$PYTHON" "$HERE/cluster_engines.py" serve "$env" 2>"$OUT/engines.log" &
  ENGINES_PID=$!
  for _ in $(seq 600); do
    [ -s "$env" ] && break
    kill -0 "$ENGINES_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$env" ] || { echo "PostgreSQL/Redis did not start: $(tail -5 "$OUT/engines.log")" >&2; exit 2; }
  # shellcheck disable=SC1090
  . "$env"
  echo "engines: PostgreSQL $PG_VERSION pid $PG_PID, Redis pid $REDIS_PID (private ports)" >&2
}

stop_engines() {
  [ -n "$ENGINES_PID" ] || return 0
  kill -TERM "$ENGINES_PID" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$ENGINES_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$ENGINES_PID" 2>/dev/null && kill -9 "$ENGINES_PID" 2>/dev/null
  wait "$ENGINES_PID" 2>/dev/null
  ENGINES_PID=""
}

# -- servers: each `exec`ed so that its pid is the server process itself, for wsbench --pid ------
SPIDS=()       # server processes of the current target
HTTP_URL="" WS_URLS="" AUX=""
DBFILE=""

wait_http() { # PORT PID LOG
  for _ in $(seq 300); do
    if curl -sf "http://127.0.0.1:$1/api/rooms" >/dev/null 2>&1; then return 0; fi
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "server pid $2 did not answer on port $1 (log: $3)" >&2
  return 1
}

RUN_VIEWER_SECRET="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')"
RUN_CLUSTER_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')"

start_livehub() { # PORT LOG [VAR=VALUE ...]: one livehub process
  local port="$1" log="$2"; shift 2
  # shellcheck disable=SC2086
  (cd "$ROOT" && export LIVEHUB_HOOK_SECRET=some-long-secret-value LIVEHUB_LOG_LEVEL=WARNING \
      LIVEHUB_RECONCILE_INTERVAL=0 $LIVEHUB_BENCH_ENV "$@" &&
    exec "$PYTHON" -m livehub --host 127.0.0.1 --port "$port") >>"$log" 2>&1 &
  SPIDS+=($!)
  wait_http "$port" "$!" "$log"
}

start_target() { # TARGET LOG
  local target="$1" log="$2" db
  SPIDS=() AUX=""
  : >"$log"
  case "$target" in
    seed)
      (cd "$SCRATCH/peers/seed-node" && PORT="$SEED_PORT" NODE_ENV=production exec node dist/signaling/index.js) >"$log" 2>&1 &
      SPIDS+=($!)
      HTTP_URL="http://127.0.0.1:$SEED_PORT" WS_URLS="ws://127.0.0.1:$SEED_PORT/"
      wait_http "$SEED_PORT" "${SPIDS[0]}" "$log" || return 1
      ;;
    embedded)
      DBFILE="$SCRATCH/embedded-$$.db"
      rm -f "$DBFILE" "$DBFILE-wal" "$DBFILE-shm"
      HTTP_URL="http://127.0.0.1:$LIVEHUB_PORT" WS_URLS="ws://127.0.0.1:$LIVEHUB_PORT/ws"
      start_livehub "$LIVEHUB_PORT" "$log" LIVEHUB_DB="$DBFILE" || return 1
      ;;
    cluster1 | cluster2)
      db="$("$PYTHON" "$HERE/cluster_engines.py" fresh "$PG_URL" "$REDIS_URL")" || return 1
      # cluster mode needs the nodes' shared secrets: made for this run, as a deployment would
      local env=(LIVEHUB_DATABASE_URL="$db" LIVEHUB_REDIS_URL="$REDIS_URL"
        LIVEHUB_VIEWER_TOKEN_SECRET="$RUN_VIEWER_SECRET" LIVEHUB_CLUSTER_KEY="$RUN_CLUSTER_KEY")
      HTTP_URL="http://127.0.0.1:$LIVEHUB_PORT" WS_URLS="ws://127.0.0.1:$LIVEHUB_PORT/ws"
      start_livehub "$LIVEHUB_PORT" "$log" "${env[@]}" || return 1
      AUX="node1=${SPIDS[0]}"
      if [ "$target" = cluster2 ]; then
        start_livehub "$((LIVEHUB_PORT + 1))" "$log" "${env[@]}" || return 1
        WS_URLS="$WS_URLS,ws://127.0.0.1:$((LIVEHUB_PORT + 1))/ws"
        AUX="$AUX,node2=${SPIDS[1]}"
      fi
      AUX="$AUX,redis=$REDIS_PID,postgres=$PG_PID"
      ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  echo "$target: server pid(s) ${SPIDS[*]}" >&2
}

stop_target() {
  local pid
  for pid in "${SPIDS[@]}"; do kill -0 "$pid" 2>/dev/null && kill "$pid"; done
  for pid in "${SPIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  SPIDS=()
  if [ -n "$DBFILE" ]; then rm -f "$DBFILE" "$DBFILE-wal" "$DBFILE-shm"; DBFILE=""; fi
}
trap 'stop_target; stop_engines' EXIT
trap 'exit 130' INT TERM

machine() {
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -sr)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "python: $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
  echo "node: $(node --version)"
  echo "postgresql: $PG_VERSION; redis: $(redis-server --version 2>/dev/null | sed 's/.*v=\([^ ]*\).*/\1/')"
  echo "livehub commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet -- livehub 2>/dev/null || echo ' (livehub/ modified)')"
  echo "packages: $("$PYTHON" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("aiohttp", "uvloop", "orjson", "asyncpg", "redis")))')"
  echo "fd limit: $(ulimit -n)"
  echo "livehub env: LIVEHUB_LOG_LEVEL=WARNING LIVEHUB_RECONCILE_INTERVAL=0 $LIVEHUB_BENCH_ENV"
  echo "TARGETS=$TARGETS SCENARIOS=$SCENARIOS REPEAT=$REPEAT QUIET_WAIT=$QUIET_WAIT QUIET_MAX=$QUIET_MAX TIMEOUT=$TIMEOUT"
  echo "FANOUT_ARGS=$FANOUT_ARGS | PAIRS_ARGS=$PAIRS_ARGS | JOINSTORM_ARGS=$JOINSTORM_ARGS"
}

prepare
mkdir -p "$OUT"
for target in $TARGETS; do mkdir -p "$OUT/$target"; done
case " $TARGETS " in *" cluster"*) start_engines ;; esac
machine | tee "$OUT/machine.txt"
BENCH="$SCRATCH/bench/wsbench-multi.js"
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
      if ! start_target "$target" "$dir/server-$name.log"; then stop_target; overall=1; continue; fi
      pids="$(IFS=,; echo "${SPIDS[*]}")"
      cmd=(node "$BENCH" --http "$HTTP_URL" --ws "$WS_URLS" "$scn" --pid "$pids" --json --timeout "$TIMEOUT")
      [ -n "$AUX" ] && cmd+=(--aux-pid "$AUX")
      cmd+=("${extra[@]}")
      run_recorded "$dir" "$target" "$name" "server pid(s) $pids" "${cmd[@]}" || overall=1
      stop_target
    done
  done
done

labels=()
for target in $TARGETS; do labels+=(--label "$target=$OUT/$target"); done
node "$SCRATCH/bench/report.js" "${labels[@]}" >"$OUT/report.md"
"$PYTHON" "$HERE/cluster_compare.py" "$OUT" >"$OUT/summary.md" || overall=1
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
cat "$OUT/summary.md"
echo "results in $OUT"
exit "$overall"
