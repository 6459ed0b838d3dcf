#!/usr/bin/env bash
# Would an eBPF sockmap relay beat splice(2) for bulk streams? Runs one nginx backend, Tandem
# and the experimental kernel-side relay (relay.c) on loopback, everything pinned to the last
# CPU as in l4bench's PIN=shared, and pulls the 100 MiB and 1 MiB files through each in turn
# with the harness's own load helper. Prints Gbit/s per run and the medians' ratio to direct.
# Needs root (BPF), gcc, nginx, rustc, a release build, and ../shared/bench/l4load.rs.
#
#   sudo bench/sockmap/run.sh          # REPS=5 SECS=3 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
TANDEM=${TANDEM:-target/release/tandem}
REPS=${REPS:-5}
SECS=${SECS:-3}
CPU=$(($(nproc) - 1))
BE=28181 TD=28190 SM=28193
source bench/lib.sh

gcc -O2 -o "$dir/relay" bench/sockmap/relay.c -lpthread
rustc -O --edition 2021 -o "$dir/l4load" ../shared/bench/l4load.rs
mkdir -p "$dir/www"
head -c $((100 << 20)) /dev/urandom > "$dir/www/100m"
head -c $((1 << 20)) /dev/urandom > "$dir/www/1m"
nginx_conf "server { listen 127.0.0.1:$BE; root $dir/www; default_type application/octet-stream; }"
tandem_conf "127.0.0.1:$TD" "127.0.0.1:$BE" 127.0.0.1:28191
taskset -c "$CPU" nginx -c "$dir/nginx.conf" -p "$dir" & pids+=($!)
taskset -c "$CPU" "$TANDEM" run -c "$dir/tandem.toml" >"$dir/tandem.log" 2>&1 & pids+=($!)
taskset -c "$CPU" "$dir/relay" "$SM" "$BE" & pids+=($!)
for port in $BE $TD $SM; do
  "$dir/l4load" wait "127.0.0.1:$port" 5000 || { cat "$dir/tandem.log"; exit 1; }
done

for load in "/100m 1" "/1m 8"; do
  set -- $load
  : > "$dir/runs"
  for rep in $(seq "$REPS"); do
    for target in direct:$BE tandem:$TD sockmap:$SM; do
      g=$(taskset -c "$CPU" "$dir/l4load" bulk "127.0.0.1:${target#*:}" "$1" "$2" "$SECS" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["gbps"])')
      echo "${target%%:*} $g" >> "$dir/runs"
      echo "$1 x$2 rep $rep ${target%%:*}: $g Gbit/s"
    done
  done
  medians "$dir/runs" "$1 x$2" Gbit/s direct
done
