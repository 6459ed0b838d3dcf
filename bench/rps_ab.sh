#!/usr/bin/env bash
# Interleaved A/B of Tandem builds (or configs) on l4bench's small-request workloads against
# HAProxy: wrk, 64 connections, GET /ok from one nginx backend, with keep-alive and with a new
# connection per request, everything pinned to the last CPU as in l4bench's PIN=shared.
# Quicker than a full l4bench run when only the request path changed. Needs nginx, haproxy,
# wrk and the builds to compare.
#
#   bench/rps_ab.sh NAME=BINARY[:IO]...   # e.g. plain=target/release/tandem:io_uring_plain
#                                         #      epoll=target/release/tandem:epoll
#
# IO, when given, is the node's `[node] io`. Environment: TESTS ("ka close"), REPS (5), SECS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS=${TESTS:-ka close}
REPS=${REPS:-5}
SECS=${SECS:-5}
CPU=$(($(nproc) - 1))
BE=28481 HA=28482 PORT0=28490
[ $# -gt 0 ] || { sed -n '2,11p' "$0"; exit 2; }
source bench/lib.sh

nginx_conf "server { listen 127.0.0.1:$BE backlog=4096; location = /ok { return 200 \"ok\\n\"; } }"
haproxy_conf "127.0.0.1:$HA" "127.0.0.1:$BE"
taskset -c "$CPU" nginx -c "$dir/nginx.conf" -p "$dir" & pids+=($!)
taskset -c "$CPU" haproxy -f "$dir/haproxy.cfg" & pids+=($!)
targets=("haproxy:$HA")
port=$PORT0
for arg in "$@"; do
  name=${arg%%=*} spec=${arg#*=}
  bin=${spec%%:*} io=""
  [ "$spec" != "$bin" ] && io=${spec#*:}
  tandem_conf "127.0.0.1:$port" "127.0.0.1:$BE" ""
  [ -n "$io" ] && sed -i "s/^threads = 1$/threads = 1\nio = \"$io\"/" "$dir/tandem.toml"
  mv "$dir/tandem.toml" "$dir/$name.toml"
  taskset -c "$CPU" "$bin" run -c "$dir/$name.toml" >"$dir/$name.log" 2>&1 & pids+=($!)
  targets+=("$name:$port")
  port=$((port + 1))
done
for target in "${targets[@]}"; do
  p=${target#*:}
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$p/ok" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$p/ok" || { echo "port $p not answering"; cat "$dir"/*.log; exit 1; }
done
grep -h "data thread" "$dir"/*.log || true

for test in $TESTS; do
  wrk_rounds "$test" "${targets[@]}"
done
