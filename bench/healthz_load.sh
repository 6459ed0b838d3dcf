#!/usr/bin/env bash
# /healthz under data-plane load: how fast a node answers its health endpoint while it relays
# traffic. One Tandem node (1 worker thread, release build) in front of an nginx backend on
# loopback; wrk asks /healthz on 4 connections, each pausing 1 ms between requests (about
# 3,000 requests/s: far above any target group, far below flooding the node), first alone,
# then while a second wrk drives 64 keep-alive connections through the data plane as fast as
# it can. Prints wrk's summaries. Loopback only.
#
#   bench/healthz_load.sh            # SECS=10 by default
set -euo pipefail
cd "$(dirname "$0")/.."
TANDEM=${TANDEM:-target/release/tandem}
SECS=${SECS:-10}
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# wrk's per-request pause (ms), so the health checker does not compete for the CPU.
echo 'function delay() return 1 end' > "$dir/pace.lua"

cat > "$dir/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
  uwsgi_temp_path $dir; scgi_temp_path $dir;
  server { listen 127.0.0.1:18090; location / { return 200 "ok\n"; } }
}
NGINX
nginx -c "$dir/nginx.conf" -p "$dir" &
pids+=($!)

cat > "$dir/tandem.toml" <<TOML
[node]
name = "healthz-bench"
threads = 1
admin = "127.0.0.1:19090"

[[service]]
name = "web"
listen = "127.0.0.1:18080"
pool = "web"

[[pool]]
name = "web"
backends = [{ addr = "127.0.0.1:18090" }]
health = { kind = "http", interval = "1s", timeout = "500ms" }
TOML
"$TANDEM" run -c "$dir/tandem.toml" 2> "$dir/tandem.log" &
pids+=($!)
for _ in $(seq 50); do
  curl -fsS http://127.0.0.1:19090/livez >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== the data plane alone"
wrk -t1 -c64 -d"${SECS}s" http://127.0.0.1:18080/
echo "== /healthz alone"
wrk -t1 -c4 -d"${SECS}s" --latency -s "$dir/pace.lua" http://127.0.0.1:19090/healthz
echo "== /healthz while the data plane relays 64 keep-alive connections"
wrk -t1 -c64 -d"$((SECS + 2))s" http://127.0.0.1:18080/ > "$dir/load.txt" &
load=$!
sleep 1
wrk -t1 -c4 -d"${SECS}s" --latency -s "$dir/pace.lua" http://127.0.0.1:19090/healthz
wait "$load"
echo "== the data-plane load during that run"
cat "$dir/load.txt"
