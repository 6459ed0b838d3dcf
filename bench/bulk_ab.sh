#!/usr/bin/env bash
# Interleaved A/B of Tandem builds on the bulk workloads of l4bench (8 connections pulling
# 1 MiB, or one pulling 100 MiB, keep-alive), against no proxy, everything pinned to the last
# CPU as in l4bench's PIN=shared. Quicker than a full l4bench run when only bulk changed, and
# pairs each build with `direct` in the same pass. Needs nginx, rustc (for l4bench's load
# client) and the builds to compare.
#
#   bench/bulk_ab.sh NAME=BINARY...        # e.g. old=/tmp/tandem-old new=target/release/tandem
#
# Environment: TEST=mid|bulk (mid), REPS (5), SECS (3), and CC=cubic|bbr|... to run under that
# TCP congestion control (needs root; the machine's own setting is put back on exit).
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=${TEST:-mid}
REPS=${REPS:-5}
SECS=${SECS:-3}
CPU=$(($(nproc) - 1))
BE1=28381 BE2=28382 TD=28390
[ $# -gt 0 ] || { sed -n '2,12p' "$0"; exit 2; }
source bench/lib.sh

if [ -n "${CC:-}" ]; then
  was=$(sysctl -n net.ipv4.tcp_congestion_control)
  sysctl -q -w net.ipv4.tcp_congestion_control="$CC"
  trap 'sysctl -q -w net.ipv4.tcp_congestion_control="$was"; cleanup' EXIT
fi
echo "congestion control: $(sysctl -n net.ipv4.tcp_congestion_control)"

rustc -O --edition 2021 -o "$dir/l4load" ../shared/bench/l4load.rs
mkdir -p "$dir/www"
head -c $((1 << 20)) /dev/urandom > "$dir/www/1m"
head -c $((100 << 20)) /dev/urandom > "$dir/www/100m"
for port in $BE1 $BE2; do
  nginx_conf "server { listen 127.0.0.1:$port backlog=4096; root $dir/www; }"
  mv "$dir/nginx.conf" "$dir/nginx-$port.conf"
  sed -i "s|$dir/nginx.pid|$dir/nginx-$port.pid|" "$dir/nginx-$port.conf"
  taskset -c "$CPU" nginx -c "$dir/nginx-$port.conf" -p "$dir" & pids+=($!)
  "$dir/l4load" wait "127.0.0.1:$port" 5000
done
cat > "$dir/tandem.toml" <<TOML
[node]
name = "bench"
threads = 1
[[service]]
name = "bench"
listen = "127.0.0.1:$TD"
pool = "bench"
[[pool]]
name = "bench"
backends = [{ addr = "127.0.0.1:$BE1" }, { addr = "127.0.0.1:$BE2" }]
TOML

case $TEST in
  mid) path=/1m conns=8 ;;
  bulk) path=/100m conns=1 ;;
  *) echo "TEST must be mid or bulk"; exit 2 ;;
esac
: > "$dir/runs"
for rep in $(seq "$REPS"); do
  for variant in direct=- "$@"; do
    name=${variant%%=*} bin=${variant#*=} proxy=
    addr=127.0.0.1:$BE1,127.0.0.1:$BE2
    if [ "$name" != direct ]; then
      taskset -c "$CPU" "$bin" run -c "$dir/tandem.toml" > "$dir/$name.log" 2>&1 & proxy=$!
      "$dir/l4load" wait "127.0.0.1:$TD" 5000 || { cat "$dir/$name.log"; exit 1; }
      addr=127.0.0.1:$TD
    fi
    "$dir/l4load" bulk "$addr" "$path" "$conns" 1 > /dev/null # warm-up
    gbps=$(taskset -c "$CPU" "$dir/l4load" bulk "$addr" "$path" "$conns" "$SECS" |
      sed 's/.*"gbps":\([0-9.]*\).*/\1/')
    echo "$name $gbps" >> "$dir/runs"
    echo "$TEST rep $rep $name: $gbps Gbit/s"
    if [ -n "$proxy" ]; then kill "$proxy"; wait "$proxy" || true; fi
  done
done
medians "$dir/runs" "$TEST" Gbit/s direct
