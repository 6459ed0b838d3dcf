# Shared pieces of the experiment scripts (bench/sockmap, bench/uring, the A/B scripts): a
# scratch directory whose processes stop on exit, an nginx backend, a one-backend Tandem or
# HAProxy config, and medians of "name value" lines. Source it from the project root after
# `set -euo pipefail`.

dir=$(mktemp -d)
chmod 755 "$dir" # nginx workers run unprivileged and must read it
mkdir -p "$dir/tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# nginx_conf SERVER_BLOCK: writes $dir/nginx.conf, one worker, no logging, keep-alive
# connections kept for good, files by sendfile.
nginx_conf() {
  cat > "$dir/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  keepalive_requests 10000000; keepalive_timeout 300s;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  $1
}
NGINX
}

# haproxy_conf LISTEN BACKEND: writes $dir/haproxy.cfg, one thread, mode tcp, one server.
haproxy_conf() {
  cat > "$dir/haproxy.cfg" <<HAP
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind $1
    default_backend be
backend be
    server s1 $2
HAP
}

# tandem_conf LISTEN BACKEND ADMIN: writes $dir/tandem.toml, one worker thread, one service.
tandem_conf() {
  cat > "$dir/tandem.toml" <<TOML
[node]
name = "bench"
threads = 1
admin = "$3"
[[service]]
name = "bench"
listen = "$1"
pool = "bench"
[[pool]]
name = "bench"
backends = [{ addr = "$2" }]
TOML
}

# wrk_rounds TEST NAME:PORT...: REPS rounds of wrk (2 threads, 64 connections, SECS seconds,
# GET /ok on 127.0.0.1:PORT, pinned to CPU) against each target in turn, keep-alive for TEST
# "ka" and a new connection per request for "close"; prints each run and the medians, with
# ratios to the target named haproxy.
wrk_rounds() {
  local test=$1 target rep r script=()
  shift
  if [ "$test" = close ]; then
    echo 'wrk.headers["Connection"] = "close"' > "$dir/close.lua"
    script=(-s "$dir/close.lua")
  fi
  : > "$dir/runs"
  for rep in $(seq "$REPS"); do
    for target in "$@"; do
      r=$(taskset -c "$CPU" wrk -t2 -c64 -d"${SECS}s" "${script[@]}" "http://127.0.0.1:${target#*:}/ok" |
        awk '/Requests\/sec/ {print $2} /Socket errors|Non-2xx/ {print "ERR " $0 > "/dev/stderr"}')
      echo "${target%%:*} $r" >> "$dir/runs"
      echo "$test rep $rep ${target%%:*}: $r req/s"
    done
  done
  medians "$dir/runs" "$test" req/s haproxy
}

# medians FILE LABEL UNIT REF: FILE holds "name value" lines; prints each name's median and
# its ratio to REF's.
medians() {
  python3 - "$@" <<'PY'
import statistics, sys
path, label, unit, ref = sys.argv[1:5]
runs = {}
for line in open(path):
    name, value = line.split()
    runs.setdefault(name, []).append(float(value))
med = {k: statistics.median(v) for k, v in runs.items()}
print(f"{label}: " + ", ".join(f"{k} {v:,.2f} {unit} ({v / med[ref]:.2f}x {ref})" for k, v in med.items()))
PY
}
