# Shared by benchmarks/run.sh and benchmarks/cluster.sh (sourced; expects SHARED, SCRATCH,
# QUIET_WAIT and QUIET_MAX to be set).

# one fd per WebSocket: the server and the load generator each hold 10,000+ in `idle`
raise_fd_limit() {
  local hard want=65536
  hard="$(ulimit -Hn)"
  if [ "$hard" != "unlimited" ] && [ "$hard" -lt "$want" ]; then want="$hard"; fi
  ulimit -n "$want" 2>/dev/null || echo "$1: could not raise the fd limit (now $(ulimit -n))" >&2
}

# -- scratch copies of the read-only load generator and seed peer ------------------------------
prepare_peers() {
  mkdir -p "$SCRATCH/peers"
  local src dst
  for pair in "bench:bench" "peers/seed-node:peers/seed-node"; do
    src="$SHARED/${pair%%:*}"; dst="$SCRATCH/${pair##*:}"
    # refresh the sources when /work/shared changed, keep node_modules and dist
    mkdir -p "$dst"
    chmod -R u+w "$dst" 2>/dev/null || true
    (cd "$src" && find . -path ./node_modules -prune -o -type f -print) | while read -r f; do
      if ! cmp -s "$src/$f" "$dst/$f"; then mkdir -p "$(dirname "$dst/$f")"; cp "$src/$f" "$dst/$f"; fi
    done
    chmod -R u+w "$dst"
    if [ ! -d "$dst/node_modules" ]; then
      (cd "$dst" && npm ci --no-audit --no-fund --silent) >&2 || { echo "npm ci failed in $dst" >&2; exit 2; }
    fi
  done
  local seed="$SCRATCH/peers/seed-node"
  if [ ! -f "$seed/dist/signaling/index.js" ] || [ -n "$(find "$seed/src" -name '*.ts' -newer "$seed/dist/signaling/index.js")" ]; then
    (cd "$seed" && ./node_modules/.bin/tsc -p .) >&2 || { echo "tsc failed for the seed" >&2; exit 2; }
  fi
}

busy_cores() { # busy cores over a 2 s sample (user+nice+system+irq+softirq), as bench-seed.sh
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat); sleep 2
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz/2}'
}

wait_quiet() {
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  local end=$((SECONDS + QUIET_WAIT)) c
  while :; do
    c=$(busy_cores)
    if awk -v c="$c" -v m="$QUIET_MAX" 'BEGIN{exit !(c < m)}'; then echo "host quiet ($c busy cores)" >&2; return 0; fi
    if [ "$SECONDS" -ge "$end" ]; then echo "host still busy ($c cores) after ${QUIET_WAIT}s; running anyway" >&2; return 0; fi
  done
}

# -- one scenario run, recorded -------------------------------------------------------------------
# run_recorded DIR TARGET NAME SERVER CMD...: run the load generator's command CMD; DIR/NAME.txt
# keeps the command, a host line naming SERVER (its pid(s)), the output, stderr and the exit
# status; DIR/NAME.json the JSON summary (the output's last line). Prints the text; returns the
# command's exit status.
run_recorded() {
  local dir="$1" target="$2" name="$3" server="$4" rc=0
  shift 4
  {
    echo "\$ $*"
    echo "# $(date -u +%FT%TZ) host: $(nproc) cpus, loadavg $(cut -d' ' -f1-3 /proc/loadavg), $target $server"
  } >"$dir/$name.txt"
  "$@" >"$dir/$name.stdout" 2>"$dir/$name.stderr" || rc=$?
  sed '$d' "$dir/$name.stdout" >>"$dir/$name.txt"
  tail -n 1 "$dir/$name.stdout" >"$dir/$name.json"
  if [ -s "$dir/$name.stderr" ]; then sed 's/^/stderr: /' "$dir/$name.stderr" >>"$dir/$name.txt"; fi
  echo "rc=$rc" >>"$dir/$name.txt"
  rm -f "$dir/$name.stdout" "$dir/$name.stderr"
  echo "== $target $name (rc=$rc)"; grep -v '^\$\|^#' "$dir/$name.txt" | head -n 40; echo
  return "$rc"
}
