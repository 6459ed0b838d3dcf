#!/usr/bin/env python3
"""CPU cost of health checking: one Tandem node checking N loopback backends.

Starts N tiny backends on 127.0.0.1 (one asyncio process; for `http` they answer
`HTTP/1.1 200` and close, for `tcp` they accept and close), writes a Tandem config with one
pool of N backends checked every INTERVAL, runs `tandem run` for WARMUP + SECONDS, and reports
the CPU the Tandem process used during the last SECONDS (utime + stime from /proc/PID/stat),
as a percentage of one core, and per probe. Only loopback is touched.

    bench/health_cpu.py --tandem target/release/tandem --kind tcp --backends 1000
"""
import argparse
import asyncio
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
HTTP_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(ports, kind, ready):
    raise_nofile()

    async def handle(reader, writer):
        try:
            if kind == "http":
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
                writer.write(HTTP_REPLY)
                await writer.drain()
        except Exception:
            pass
        finally:
            writer.close()

    async def main():
        servers = []
        for port in ports:
            servers.append(await asyncio.start_server(handle, "127.0.0.1", port, backlog=64))
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", default="target/release/tandem")
    ap.add_argument("--kind", choices=["tcp", "http"], default="tcp")
    ap.add_argument("--backends", type=int, default=1000)
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    raise_nofile()

    ports = free_ports(args.backends + 1)
    listen, ports = ports[0], ports[1:]
    ready = multiprocessing.Event()
    backends = multiprocessing.Process(target=serve, args=(ports, args.kind, ready), daemon=True)
    backends.start()
    if not ready.wait(60):
        sys.exit("backends did not start")

    health = f'{{ kind = "{args.kind}", interval = "{args.interval}", timeout = "500ms", rise = 2, fall = 3 }}'
    if args.kind == "http":
        health = health.replace("}", ', path = "/health" }')
    config = "\n".join([
        "[node]", 'name = "health-bench"', "threads = 1", "",
        "[[service]]", 'name = "bench"', f'listen = "127.0.0.1:{listen}"', 'pool = "bench"', "",
        "[[pool]]", 'name = "bench"',
        "backends = [" + ", ".join(f'{{ addr = "127.0.0.1:{p}" }}' for p in ports) + "]",
        f"health = {health}", "",
    ])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tandem.toml")
        with open(path, "w") as f:
            f.write(config)
        log = open(os.path.join(tmp, "tandem.log"), "w+")
        node = subprocess.Popen([args.tandem, "run", "-c", path], stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(args.warmup)
            if node.poll() is not None:
                log.seek(0)
                sys.exit("tandem exited:\n" + log.read())
            before = cpu_ticks(node.pid)
            start = time.monotonic()
            time.sleep(args.seconds)
            used = (cpu_ticks(node.pid) - before) / CLK_TCK
            elapsed = time.monotonic() - start
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(10)
            backends.terminate()
        log.seek(0)
        downs = log.read().count("up -> down")
    interval_s = float(args.interval.rstrip("s")) if args.interval.endswith("s") and not args.interval.endswith("ms") else None
    probes = args.backends * elapsed / interval_s if interval_s else float("nan")
    print(f"{args.kind}: {args.backends} backends every {args.interval}: "
          f"{100 * used / elapsed:.1f}% of one core over {elapsed:.0f}s, "
          f"{1e6 * used / probes:.0f} us CPU per probe, {downs} backends marked down")


if __name__ == "__main__":
    main()
