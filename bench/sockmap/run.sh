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
dir=$(mktemp -d)
chmod 755 "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

gcc -O2 -o "$dir/relay" bench/sockmap/relay.c -lpthread
rustc -O --edition 2021 -o "$dir/l4load" ../shared/bench/l4load.rs
mkdir -p "$dir/www" "$dir/tmp"
head -c $((100 << 20)) /dev/urandom > "$dir/www/100m"
head -c $((1 << 20)) /dev/urandom > "$dir/www/1m"
cat > "$dir/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  keepalive_requests 10000000; keepalive_timeout 300s;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  server { listen 127.0.0.1:$BE; root $dir/www; default_type application/octet-stream; }
}
NGINX
cat > "$dir/tandem.toml" <<TOML
[node]
name = "bench"
threads = 1
admin = "127.0.0.1:28191"
[[service]]
name = "bench"
listen = "127.0.0.1:$TD"
pool = "bench"
[[pool]]
name = "bench"
backends = [{ addr = "127.0.0.1:$BE" }]
TOML
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
  python3 - "$dir/runs" "$1 x$2" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, g = line.split()
    runs.setdefault(name, []).append(float(g))
med = {k: statistics.median(v) for k, v in runs.items()}
print(f"{sys.argv[2]}: " + ", ".join(f"{k} {v:.2f} Gbit/s ({v / med['direct']:.2f}x direct)" for k, v in med.items()))
PY
done
