#!/usr/bin/env bash
# livehub's own work counted in instructions (valgrind's cachegrind): unlike CPU time, the count
# does not depend on the neighbours of a shared host, so two versions compare run after run.
#
#   benchmarks/instructions.sh relay    # per round trip: relay_cost.py's livehub loop, 500 pairs
#   benchmarks/instructions.sh floor    # the same relays done by floor_server.relay
#   benchmarks/instructions.sh join     # per connection + join + leave: join_cost.py (K clients)
#   ROOT=/path/to/other/checkout benchmarks/instructions.sh relay   # another version's code
#
# Each runs the program twice, with the work (K) and without it (0); the difference divided by
# the work is the figure (start-up and set-up cancel out). Needs valgrind (apt-get install
# valgrind); takes about a minute. Loopback only.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="${ROOT:-$(cd "$HERE/.." && pwd)}"
PYTHON="${PYTHON:-$HERE/../.venv/bin/python}"
what="${1:?usage: instructions.sh relay|floor|join}"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 2; }
export PYTHONPATH="$ROOT"
cd "$ROOT"

count() { # the program's instructions
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$PYTHON" "$@" 2>&1 |
    awk '/I[ ]+refs/ { gsub(",", "", $NF); print $NF }'
}

case "$what" in
  relay | floor)
    rounds=8 pairs=500
    code="import asyncio, logging, sys; sys.path.insert(0, 'benchmarks'); import relay_cost
k = int(sys.argv[1])
async def main():
    logging.basicConfig(level=logging.ERROR)
    if '$what' == 'floor':
        run, runner = relay_cost.floor_rounds(1), None
    else:
        run, runner = await relay_cost.livehub_rounds(1)
    for _ in range(k + 1):
        run()
    if runner is not None:
        await runner.cleanup()
asyncio.run(main())"
    with=$(count -c "$code" "$rounds")  # (apart: a failed run stops the script)
    without=$(count -c "$code" 0)
    echo "$what: $(( (with - without) / (rounds * pairs) )) instructions per round trip ($ROOT)"
    ;;
  join)
    clients="${K:-300}"
    with=$(count "$HERE/join_cost.py" "$clients")
    without=$(count "$HERE/join_cost.py" 0)
    echo "join: $(( (with - without) / clients )) instructions per connection, join and leave, client included ($ROOT)"
    ;;
  *) echo "usage: instructions.sh relay|floor|join" >&2; exit 2 ;;
esac
