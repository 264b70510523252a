#!/usr/bin/env python3
"""Cache-hit benchmark: the gateway answering GetProcedure from its cache,
against a bare tonic server answering the same bytes, driven by h2load in the
same run, interleaved, several repetitions. Reports req/s and server CPU per
request as ratios to bare tonic.

    cargo build --release -p lienthong --bin lienthong --example bare
    python3 bench/cache_hit.py [--requests 100000] [--reps 3]

Needs h2load (Debian package nghttp2-client). The machine is shared and
noisy: trust the ratios, not the absolute numbers.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
PATH = "/lienthong.v1.PublicServicesService/GetProcedure"
TICK = os.sysconf("SC_CLK_TCK")


def frame(code):
    msg = b"\x0a" + bytes([len(code)]) + code.encode()
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def wait_port(port, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def h2load(port, body, n, clients, streams):
    out = subprocess.run(
        ["h2load", "-n", str(n), "-c", str(clients), "-m", str(streams), "-d", body,
         "-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    ok = int(re.search(r"(\d+) succeeded", out).group(1))
    data_match = re.search(r"\((\d+)\) data", out)
    data = int(data_match.group(1)) if data_match else 0
    lat = re.search(r"time for request:\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", out)
    return rps, ok, data, lat.groups() if lat else ("?", "?", "?")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--streams", type=int, default=16)
    a = p.parse_args()
    body = os.path.join(tempfile.mkdtemp(), "req.bin")
    with open(body, "wb") as f:
        f.write(frame("1.000894"))
    env = dict(os.environ, LIENTHONG_SERVER__LISTEN="127.0.0.1:50080", LIENTHONG_SERVER__MAX_CONCURRENT_REQUESTS="100000",
               LIENTHONG_LIMITS__PER_APP__PER_SECOND="100000000", LIENTHONG_LIMITS__PER_APP__BURST="100000000",
               RUST_LOG="warn")
    gateway = subprocess.Popen([os.path.join(RELEASE, "lienthong")], env=env, stderr=subprocess.DEVNULL)
    bare = subprocess.Popen([os.path.join(RELEASE, "examples", "bare"), "127.0.0.1:50081"], stderr=subprocess.DEVNULL)
    try:
        wait_port(50080)
        wait_port(50081)
        time.sleep(1)  # the gateway loads the sandbox after binding
        targets = {"bare tonic": (bare.pid, 50081), "gateway (cache hit)": (gateway.pid, 50080)}
        for name, (_, port) in targets.items():  # warm up (fills the cache)
            h2load(port, body, 2000, 4, 4)
        results = {name: [] for name in targets}
        for rep in range(a.reps):
            for name, (pid, port) in targets.items():
                before = cpu_seconds(pid)
                rps, ok, data, lat = h2load(port, body, a.requests, a.clients, a.streams)
                cpu = cpu_seconds(pid) - before
                results[name].append((rps, cpu / max(ok, 1) * 1e6, ok, data, lat))
                print(f"rep {rep + 1} {name:22} {rps:10.0f} req/s  {cpu / max(ok, 1) * 1e6:6.1f} µs CPU/req  "
                      f"{ok} ok  {data / max(ok, 1):.0f} B/resp  latency min/max/mean {'/'.join(lat)}", flush=True)
        def med(xs):
            xs = sorted(xs)
            return xs[len(xs) // 2]
        b_rps, g_rps = med([r[0] for r in results["bare tonic"]]), med([r[0] for r in results["gateway (cache hit)"]])
        b_cpu, g_cpu = med([r[1] for r in results["bare tonic"]]), med([r[1] for r in results["gateway (cache hit)"]])
        print(f"\nmedian bare: {b_rps:.0f} req/s, {b_cpu:.1f} µs CPU/req; gateway: {g_rps:.0f} req/s, {g_cpu:.1f} µs CPU/req")
        print(f"throughput ratio gateway/bare: {g_rps / b_rps:.2f}   CPU per request ratio: {g_cpu / b_cpu:.2f}")
    finally:
        for proc in (gateway, bare):
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
