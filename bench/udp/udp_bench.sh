#!/usr/bin/env bash
# UDP side by side: no proxy (direct), nginx's stream module and Tandem, in one run, on
# loopback, everything pinned to the last CPU (as l4bench's PIN=shared: the proxy, the load and
# the backend share one CPU, so a proxy that spends more CPU per datagram shows it as a lower
# rate). Take it under the shared lock:
#
#   cargo build --release
#   flock /tmp/tandem-cargo.lock bench/udp/udp_bench.sh [TANDEM_BINARY]
#
# Tests: `rr` (DNS-like: CLIENTS sockets, one 64-byte query in flight each, a flow per query:
# Tandem `responses = 1`, nginx `proxy_responses 1`), `flood64` and `flood1400` (one way, one
# sender as fast as it can, datagrams/s the backend took), `paced64` and `paced1400` (one way,
# RATE datagrams/s, which every target carries whole: the CPU each proxy spends on the same
# work), `flows` (memory per idle flow: RSS growth for FLOWS flows). Each rate test runs REPS
# rounds of SECS seconds per target, interleaved; the medians are printed with the proxy's CPU
# time per datagram moved (rr: per request answered; one way: per datagram that reached the
# backend's socket, taken or dropped there for want of room, and per datagram it took). Each
# round also says where datagrams were lost: the kernel's UdpRcvbufErrors (a full socket: the
# proxy's or the backend's) and softnet drops (the per-CPU backlog) over the round.
# Environment: REPS (3), SECS (5), CLIENTS (200), FLOWS (5000), RATE (20000).
set -euo pipefail
cd "$(dirname "$0")/../.."
TANDEM=${1:-target/release/tandem}
REPS=${REPS:-3}
SECS=${SECS:-5}
CLIENTS=${CLIENTS:-200}
FLOWS=${FLOWS:-5000}
RATE=${RATE:-20000}
CPU=$(($(nproc) - 1))
BE=127.0.0.1:29400 SINK=127.0.0.1:29401
NG_RR=127.0.0.1:29410 NG_FLOOD=127.0.0.1:29411
TA_RR=127.0.0.1:29420 TA_FLOOD=127.0.0.1:29421 TA_ADMIN=127.0.0.1:29429
source bench/lib.sh
ulimit -n "$(ulimit -Hn)"

rustc -O --edition 2021 -o "$dir/udpload" bench/udp/udpload.rs
load="$dir/udpload"

cat > "$dir/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 20000; }
stream {
  server { listen $NG_RR udp; proxy_pass $BE; proxy_responses 1; proxy_timeout 30s; }
  server { listen $NG_FLOOD udp; proxy_pass $SINK; proxy_timeout 30s; }
}
NGINX
cat > "$dir/tandem.toml" <<TOML
[node]
name = "bench"
threads = 1
admin = "$TA_ADMIN"
[[service]]
name = "rr"
protocol = "udp"
listen = "$TA_RR"
pool = "echo"
responses = 1
[[service]]
name = "flood"
protocol = "udp"
listen = "$TA_FLOOD"
pool = "sink"
[[pool]]
name = "echo"
backends = [{ addr = "$BE" }]
[[pool]]
name = "sink"
backends = [{ addr = "$SINK" }]
TOML

taskset -c "$CPU" "$load" echo "$BE" & pids+=($!)
taskset -c "$CPU" nginx -c "$dir/nginx.conf" -p "$dir" & pids+=($!)
taskset -c "$CPU" "$TANDEM" run -c "$dir/tandem.toml" >"$dir/tandem.log" 2>&1 & tandem_pid=$!
pids+=($tandem_pid)
sleep 1
nginx_worker=$(pgrep -P "$(cat "$dir/nginx.pid")" | head -1)

# cpu_ticks PID: user + system clock ticks so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# forwarded: datagrams Tandem's services have passed to backends so far (from /status), to
# tell what the proxy forwarded from what the backend took (a backend sharing the CPU drops
# some at its own socket).
forwarded() {
  curl -s "http://$TA_ADMIN/status" |
    python3 -c 'import json,sys; print(sum(s["datagrams_in"] for s in json.load(sys.stdin)["services"]))'
}

# losses: "softnet dropped (all CPUs), UdpRcvbufErrors" so far.
losses() {
  local dropped=0 column
  while read -r _ column _; do dropped=$((dropped + 16#$column)); done </proc/net/softnet_stat
  echo "$dropped $(nstat -asz UdpRcvbufErrors | awk '$1 == "UdpRcvbufErrors" {print $2}')"
}

# run NAME PROXY_PID TEST ARGS...: one round; prints "NAME TEST rate cpu_us_per_datagram
# cpu_us_per_datagram_taken".
run() {
  local name=$1 pid=$2 test=$3 out rate before after cpu cpu_taken f0=0 f1=0 l0 l1
  shift 3
  before=0; [ "$pid" != - ] && before=$(cpu_ticks "$pid")
  [ "$name" = tandem ] && f0=$(forwarded)
  l0=$(losses)
  out=$(taskset -c "$CPU" "$load" "$@")
  l1=$(losses)
  after=0; [ "$pid" != - ] && after=$(cpu_ticks "$pid")
  [ "$name" = tandem ] && f1=$(forwarded) && out="$out forwarded_per_s $(((f1 - f0) / SECS))"
  out="$out $(awk -v a="$l0" -v b="$l1" 'BEGIN { split(a, x); split(b, y);
    printf "softnet_dropped %d rcvbuf_errors %d", y[1] - x[1], y[2] - x[2] }')"
  # CPU per datagram: over the requests answered (rr), or over the datagrams that reached the
  # backend's socket, taken or dropped there for want of room (one way): what the proxy
  # moved; and over the datagrams the backend took.
  case $test in
    rr) rate=$(awk '{print $3}' <<<"$out"); moved=$rate ;;
    *) rate=$(awk '{print $5}' <<<"$out"); moved=$(awk '{print $9}' <<<"$out") ;;
  esac
  per() {
    awk -v t=$((after - before)) -v hz="$hz" -v r="$1" -v s="$SECS" \
      'BEGIN { if (r > 0 && t > 0) printf "%.2f", t / hz * 1e6 / (r * s); else print "-" }'
  }
  cpu=$(per "$moved")
  cpu_taken=$(per "$rate")
  echo "$name $test $rate $cpu $cpu_taken   ($out)"
}

results="$dir/results.txt"
for rep in $(seq "$REPS"); do
  for test in rr flood64 flood1400 paced64 paced1400; do
    for target in direct nginx tandem; do
      case $target in
        direct) pid=-; rr=$BE; fl=$SINK ;;
        nginx) pid=$nginx_worker; rr=$NG_RR; fl=$NG_FLOOD ;;
        tandem) pid=$tandem_pid; rr=$TA_RR; fl=$TA_FLOOD ;;
      esac
      case $test in
        rr) run "$target" "$pid" rr rr "$rr" "$CLIENTS" "$SECS" 64 ;;
        flood64) run "$target" "$pid" flood64 flood "$fl" "$SINK" "$SECS" 64 ;;
        flood1400) run "$target" "$pid" flood1400 flood "$fl" "$SINK" "$SECS" 1400 ;;
        paced64) run "$target" "$pid" paced64 flood "$fl" "$SINK" "$SECS" 64 "$RATE" ;;
        paced1400) run "$target" "$pid" paced1400 flood "$fl" "$SINK" "$SECS" 1400 "$RATE" ;;
      esac
    done
  done | tee -a "$results"
done
echo
echo "medians over $REPS rounds (rate/s the backend took; proxy CPU µs per datagram moved, per"
echo "datagram taken):"
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for test in rr flood64 flood1400 paced64 paced1400; do
  for target in direct nginx tandem; do
    pick() { awk -v t="$target" -v x="$test" -v c="$1" '$1 == t && $2 == x {print $c}' "$results" | median; }
    printf "%-10s %-7s %10.0f  %s  %s\n" "$test" "$target" "$(pick 3)" "$(pick 4)" "$(pick 5)"
  done
done

echo
echo "memory per idle flow ($FLOWS flows held, RSS growth of the proxy process):"
for target in nginx tandem; do
  case $target in
    nginx) pid=$nginx_worker; addr=$NG_FLOOD ;;
    tandem) pid=$tandem_pid; addr=$TA_FLOOD ;;
  esac
  before=$(rss_kib "$pid")
  taskset -c "$CPU" "$load" flows "$addr" "$FLOWS" 3 >/dev/null &
  holder=$!
  sleep 2.5
  after=$(rss_kib "$pid")
  wait "$holder" || true
  awk -v t="$target" -v b="$before" -v a="$after" -v n="$FLOWS" \
    'BEGIN { printf "%-7s %.0f bytes per flow (RSS %d -> %d KiB)\n", t, (a - b) * 1024 / n, b, a }'
done
curl -s "http://$TA_ADMIN/status" | grep -E '"(drops|flow_ends)"' -A9 | head -24 || true
