#!/usr/bin/env bash
# What would io_uring win for small requests? Runs one nginx backend, Tandem, HAProxy and the
# experimental io_uring relay (relay.c) on loopback, everything pinned to the last CPU as in
# l4bench's PIN=shared, and drives each in turn with wrk (64 connections, GET /ok), with
# keep-alive and with a new connection per request. Prints req/s per run and medians with
# their ratio to HAProxy. Needs gcc, liburing-dev, nginx, haproxy, wrk and a release build.
# Tandem runs with its defaults: since the relay moved onto io_uring (one worker thread, io =
# "auto"), "tandem" here is that relay; the recorded runs before it measured the epoll relay.
#
#   bench/uring/run.sh          # REPS=5 SECS=5 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
TANDEM=${TANDEM:-target/release/tandem}
REPS=${REPS:-5}
SECS=${SECS:-5}
CPU=$(($(nproc) - 1))
BE=28281 TD=28290 HA=28295 UR=28296
source bench/lib.sh

gcc -O2 -o "$dir/relay" bench/uring/relay.c -luring
nginx_conf "server { listen 127.0.0.1:$BE backlog=4096; location = /ok { return 200 \"ok\\n\"; } }"
tandem_conf "127.0.0.1:$TD" "127.0.0.1:$BE" 127.0.0.1:28291
haproxy_conf "127.0.0.1:$HA" "127.0.0.1:$BE"
taskset -c "$CPU" nginx -c "$dir/nginx.conf" -p "$dir" & pids+=($!)
taskset -c "$CPU" "$TANDEM" run -c "$dir/tandem.toml" >"$dir/tandem.log" 2>&1 & pids+=($!)
taskset -c "$CPU" haproxy -f "$dir/haproxy.cfg" & pids+=($!)
taskset -c "$CPU" "$dir/relay" "$UR" "$BE" & pids+=($!)
for port in $BE $TD $HA $UR; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/ok" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/ok" || { echo "port $port not answering"; cat "$dir/tandem.log"; exit 1; }
done

for test in ka close; do
  wrk_rounds "$test" tandem:$TD haproxy:$HA io_uring:$UR
done
