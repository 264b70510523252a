#!/usr/bin/env python3
"""Peak-load benchmark of the gateway against a bare tonic server, in one run.

Scenarios (all by default, or pick with --only):
  cache-hit  GetProcedure answered from the cache vs a bare tonic server
             returning the same bytes; h2load, interleaved (the order
             alternating each rep), --reps times: req/s and server CPU per
             request as ratios, peak RSS.
  instructions  the same path counted by valgrind's callgrind: instructions
             per request of each server, which the host's noise cannot move.
  latency    both driven by h2load at a fixed rate of 40% of the bare
             server's saturation (measured just before): p50/p99.
  herd       1,000 concurrent identical GetAgency misses against a portal
             answering after 500 ms: how many requests reach the portal.
  overload   GetAgency, uncached, against a portal answering after 10 ms,
             with max_concurrent_requests = 16 (capacity 16 / 10 ms =
             1,600 req/s), offered 5x that open-loop: admitted p99, shed
             count, time to answer a shed call, and the gateway still up;
             then again with 8 in flight x 20 ms (400 req/s, offered 2,000),
             where the driver and the fake upstream take less of the cores.
             The gateway runs pinned to core 0, the driver and the fake
             upstream to core 1 (taskset).
  identity   5,000 citizen calls per second (GetMyProfile, 1,000 citizens'
             RS256 tokens, keys warm) through the vneid adapter against a
             fake provider, with VNeID's upstream budget at 200/s burst 400:
             calls refused for the budget, and requests reaching the
             provider during the run (both should be 0).
  memory     1M cached answers and 1M per-citizen limiter keys: RSS.
  replicas   three replicas sharing the Redis on 127.0.0.1:6379 ([cluster]):
             an app limit of 1,000/s offered 3,000/s over 10 s (admitted /
             allowed, and Redis commands per admitted call from Redis's own
             commandstats); cache hits with [cluster] vs without
             (interleaved); 1,000 concurrent identical misses spread over
             the three, with and without cluster.shared_cache (upstream
             calls); and a 1 KB change published on one replica's shared
             state and received on two others (examples/fanout: p50/p99).
  tracing    the cache-hit run with traces off and with every request traced
             (100% sampling, spans exported over OTLP/gRPC to a counting
             collector, examples/otlp_sink), interleaved: the throughput
             ratio, CPU per request, and spans received vs expected (three
             per hit: server, rate limit, cache lookup).

    apt-get install nghttp2-client          # h2load
    cargo build --release -p lienthong --bin lienthong --examples
    python3 bench/peak_load.py [--only cache-hit,latency] [--requests 100000] [--reps 3]

The machine is shared and noisy and h2load shares its two cores: trust the
ratios measured in one run, not the absolute numbers.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
TICK = os.sysconf("SC_CLK_TCK")
PROCEDURE = "/lienthong.v1.PublicServicesService/GetProcedure"
AGENCY = "/lienthong.v1.PublicServicesService/GetAgency"
TMP = tempfile.mkdtemp(prefix="lienthong-bench-")


def frame(text):
    """A gRPC frame of a request whose field 1 is the string `text`."""
    msg = b"\x0a" + bytes([len(text)]) + text.encode()
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def body_file(name, text):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(frame(text))
    return path


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_port(port, proc, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"the process for port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def h2load(port, path, body, n, clients, streams, rps=None, log=None, headers=()):
    cmd = ["h2load", "-n", str(n), "-c", str(clients), "-m", str(streams), "-d", body,
           "-H", "content-type: application/grpc", "-H", "te: trailers"]
    for h in headers:
        cmd += ["-H", h]
    if rps:
        cmd += ["--rps", str(rps)]
    if log:
        cmd += ["--log-file", log]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    rps_done = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    ok = int(re.search(r"(\d+) succeeded", out).group(1))
    data = re.search(r"\((\d+)\) data", out)
    return rps_done, ok, int(data.group(1)) if data else 0


def percentiles(log):
    with open(log) as f:
        us = sorted(int(line.split("\t")[2]) for line in f if line.strip())
    pick = lambda p: us[min(len(us) - 1, int(len(us) * p))] / 1000
    return pick(0.50), pick(0.99), len(us)


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def start(args, env=None, stdin=None, stdout=subprocess.DEVNULL, cpu=None):
    """Starts a process, pinned to core `cpu` when given (taskset)."""
    if cpu is not None:
        args = ["taskset", "-c", str(cpu)] + args
    return subprocess.Popen(args, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, text=True)


def gateway_env(port, config=None):
    env = dict(os.environ, LIENTHONG_SERVER__LISTEN=f"127.0.0.1:{port}", RUST_LOG="error",
               LIENTHONG_SERVER__MAX_CONCURRENT_REQUESTS="100000",
               LIENTHONG_LIMITS__PER_APP__PER_SECOND="100000000", LIENTHONG_LIMITS__PER_APP__BURST="100000000",
               LIENTHONG_TELEMETRY__OPS_LISTEN="127.0.0.1:0")
    if config:
        env["LIENTHONG_CONFIG"] = config
    return env


def sandbox_pair(a):
    """The gateway (sandbox, cache warm) and the bare server, both serving."""
    gateway = start([os.path.join(RELEASE, "lienthong")], env=gateway_env(50080))
    bare = start([os.path.join(RELEASE, "examples", "bare"), "127.0.0.1:50081"])
    wait_port(50080, gateway)
    wait_port(50081, bare)
    body = body_file("procedure.bin", "1.000894")
    deadline = time.time() + 30
    while True:  # the gateway loads the sandbox after binding: wait for answers
        _, ok, data = h2load(50080, PROCEDURE, body, 100, 1, 1)
        if ok == 100 and data > 100 * 1000:
            break
        if time.time() > deadline:
            sys.exit("the gateway does not answer GetProcedure")
        time.sleep(0.2)
    targets = {"bare tonic": (bare, 50081), "gateway": (gateway, 50080)}
    if a.compare:
        # Another build of the gateway (an older commit, say). Builds older
        # than issue 6 know no [telemetry] and refuse its settings.
        env = {k: v for k, v in gateway_env(50083).items() if not k.startswith("LIENTHONG_TELEMETRY__")}
        other = start([a.compare], env=env)
        wait_port(50083, other)
        while h2load(50083, PROCEDURE, body, 100, 1, 1)[1] != 100:
            if time.time() > deadline + 30:
                sys.exit(f"{a.compare} does not answer GetProcedure")
            time.sleep(0.2)
        targets["compared"] = (other, 50083)
    for _, port in targets.values():  # warm up
        h2load(port, PROCEDURE, body, 2000, 4, 4)
    return targets, body


def interleaved(a, targets, body):
    """Each target driven with h2load, --reps times, the order alternating each
    rep: per target, a list of (req/s, server CPU us per request, answers)."""
    results = {name: [] for name in targets}
    for rep in range(a.reps):
        order = list(targets.items())
        for name, (proc, port) in (order if rep % 2 == 0 else order[::-1]):
            before = cpu_seconds(proc.pid)
            rps, ok, data = h2load(port, PROCEDURE, body, a.requests, a.clients, a.streams)
            cpu_us = (cpu_seconds(proc.pid) - before) / max(ok, 1) * 1e6
            results[name].append((rps, cpu_us, ok))
            print(f"rep {rep + 1} {name:11} {rps:9.0f} req/s {cpu_us:6.1f} us CPU/req "
                  f"{ok} ok {data / max(ok, 1):.0f} B/answer", flush=True)
    return results


def cache_hit(a, targets, body):
    print(f"\n## cache-hit: {a.requests} requests x {a.reps} reps, -c {a.clients} -m {a.streams}")
    results = interleaved(a, targets, body)
    b_rps, g_rps = med([r[0] for r in results["bare tonic"]]), med([r[0] for r in results["gateway"]])
    b_cpu, g_cpu = med([r[1] for r in results["bare tonic"]]), med([r[1] for r in results["gateway"]])
    print(f"median bare {b_rps:.0f} req/s {b_cpu:.1f} us/req; gateway {g_rps:.0f} req/s {g_cpu:.1f} us/req")
    print(f"RATIO throughput {g_rps / b_rps:.2f}  CPU per request {g_cpu / b_cpu:.2f}")
    if "compared" in results:
        c_rps, c_cpu = med([r[0] for r in results["compared"]]), med([r[1] for r in results["compared"]])
        print(f"median compared ({a.compare}) {c_rps:.0f} req/s {c_cpu:.1f} us/req")
        print(f"RATIO compared/bare: throughput {c_rps / b_rps:.2f}  CPU per request {c_cpu / b_cpu:.2f}; "
              f"gateway/compared: throughput {g_rps / c_rps:.2f}  CPU per request {g_cpu / c_cpu:.2f}")
    for name, (proc, _) in targets.items():
        print(f"peak RSS {name}: {peak_rss_mib(proc.pid):.0f} MiB")
    return b_rps


def otlp_sink():
    proc = start([os.path.join(RELEASE, "examples", "otlp_sink")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    addr = proc.stdout.readline().strip().removeprefix("listening on ")
    return proc, addr


def spans_received(sink):
    sink.stdin.write("count\n")
    sink.stdin.flush()
    return int(sink.stdout.readline())


def tracing(a):
    """Cache hits with traces off, and with every request traced and exported."""
    sink, addr = otlp_sink()
    env = dict(gateway_env(50082), LIENTHONG_TELEMETRY__OTLP_ENDPOINT=f"http://{addr}",
               LIENTHONG_TELEMETRY__SAMPLING_RATIO="1.0", LIENTHONG_TELEMETRY__METRICS="false",
               LIENTHONG_TELEMETRY__OPS_LISTEN="127.0.0.1:59464")
    traced = start([os.path.join(RELEASE, "lienthong")], env=env)
    plain = start([os.path.join(RELEASE, "lienthong")], env=gateway_env(50080))
    body = body_file("procedure.bin", "1.000894")
    try:
        for port, proc in ((50082, traced), (50080, plain)):
            wait_port(port, proc)
            deadline = time.time() + 30
            while h2load(port, PROCEDURE, body, 100, 1, 1)[1] != 100:
                if time.time() > deadline:
                    sys.exit("the gateway does not answer GetProcedure")
                time.sleep(0.2)
            h2load(port, PROCEDURE, body, 2000, 4, 4)
        time.sleep(2)
        base = spans_received(sink)
        targets = {"traces off": (plain, 50080), "traced 100%": (traced, 50082)}
        print(f"\n## tracing: cache hits, {a.requests} requests x {a.reps} reps, -c {a.clients} -m {a.streams}")
        results = interleaved(a, targets, body)
        traced_ok = sum(r[2] for r in results["traced 100%"])
        off = med([r[0] for r in results["traces off"]]), med([r[1] for r in results["traces off"]])
        on = med([r[0] for r in results["traced 100%"]]), med([r[1] for r in results["traced 100%"]])
        print(f"median traces off {off[0]:.0f} req/s {off[1]:.1f} us/req; traced {on[0]:.0f} req/s {on[1]:.1f} us/req")
        print(f"RATIO throughput {on[0] / off[0]:.2f} (tracing costs {100 * (1 - on[0] / off[0]):.1f}%)  "
              f"CPU per request {on[1] / off[1]:.2f}")
        expected = 3 * traced_ok
        deadline, got = time.time() + 30, 0
        while time.time() < deadline:
            got = spans_received(sink) - base
            if got >= expected:
                break
            time.sleep(0.5)
        print(f"spans exported {got} of {expected} expected ({100 * got / max(expected, 1):.1f}%)")
        scrape = urllib.request.urlopen("http://127.0.0.1:59464/metrics", timeout=10).read().decode()
        dropped = next((line.split()[-1] for line in scrape.splitlines()
                        if line.startswith("lienthong_telemetry_spans_dropped_total")), "?")
        print(f"spans the gateway counted as dropped: {dropped}")
    finally:
        for proc in (traced, plain, sink):
            proc.terminate()
            proc.wait()


def latency(a, targets, body, saturation):
    rate = int(saturation * 0.4)
    clients = 8
    n = rate * a.latency_seconds
    print(f"\n## latency at a fixed {rate} req/s (40% of bare saturation {saturation:.0f}), {a.latency_seconds} s x {a.reps} reps")
    results = {name: [] for name in targets}
    for rep in range(a.reps):
        for name, (_, port) in targets.items():
            log = os.path.join(TMP, f"lat-{name.replace(' ', '-')}-{rep}.tsv")
            done, ok, _ = h2load(port, PROCEDURE, body, n, clients, 32, rps=max(1, rate // clients), log=log)
            p50, p99, count = percentiles(log)
            results[name].append((p50, p99))
            print(f"rep {rep + 1} {name:11} {done:8.0f} req/s achieved, {ok} ok: p50 {p50:.2f} ms  p99 {p99:.2f} ms", flush=True)
    for name in targets:
        print(f"median {name}: p50 {med([r[0] for r in results[name]]):.2f} ms  p99 {med([r[1] for r in results[name]]):.2f} ms")


def instructions(a):
    """Instructions per cache-hit request, gateway and bare, by callgrind."""
    print("\n## instructions per request (callgrind), 5,000 GetProcedure after 1,000 to warm up")
    body = body_file("procedure.bin", "1.000894")
    counts = {}
    sink, addr = otlp_sink()
    traced = dict(gateway_env(50092), LIENTHONG_TELEMETRY__OTLP_ENDPOINT=f"http://{addr}",
                  LIENTHONG_TELEMETRY__METRICS="false")
    servers = {"bare tonic": ([os.path.join(RELEASE, "examples", "bare"), "127.0.0.1:50091"], 50091, None),
               "gateway": ([os.path.join(RELEASE, "lienthong")], 50090, gateway_env(50090)),
               "traced": ([os.path.join(RELEASE, "lienthong")], 50092, traced)}
    if a.only_traced:
        servers = {k: v for k, v in servers.items() if k == "traced"}
    for name, (cmd, port, env) in servers.items():
        out = os.path.join(TMP, f"callgrind.{port}")
        proc = start(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd, env=env)
        try:
            wait_port(port, proc, deadline=120)
            deadline = time.time() + 120
            while h2load(port, PROCEDURE, body, 10, 1, 1)[1] < 10:  # the sandbox loads after binding
                if time.time() > deadline:
                    sys.exit(f"{name} does not answer under valgrind")
                time.sleep(0.5)
            h2load(port, PROCEDURE, body, 1000, 4, 8)
            time.sleep(3)  # spans of the warm-up exported (traced)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
            _, ok, _ = h2load(port, PROCEDURE, body, 5000, 4, 8)
            time.sleep(3)  # and those of the measured requests, counted
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
        finally:
            proc.terminate()
            proc.wait()
        if a.keep:
            print(f"callgrind file: {out}.1")
        with open(f"{out}.1") as f:
            total = next(int(line.split()[1]) for line in f if line.startswith("summary:") or line.startswith("totals:"))
        counts[name] = total / ok
        print(f"{name:11} {counts[name]:9.0f} instructions per request ({ok} requests)", flush=True)
    sink.terminate()
    if "gateway" in counts:
        print(f"RATIO instructions per request {counts['gateway'] / counts['bare tonic']:.2f}")
        print(f"RATIO traced (100%, exported) / untraced {counts['traced'] / counts['gateway']:.2f}")


def portal_gateway(port, upstream_url, extra, server="", cpu=None):
    """The gateway in front of the portal at `upstream_url`."""
    config = os.path.join(TMP, f"gateway-{port}.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{port}"
{server}
[anonymous]
enabled = true
provinces = ["79"]
[provinces."79"]
public_services = "portal"
[adapters.portal]
kind = "registry-http"
base_url = "{upstream_url}"
allow_insecure_http = true
timeout = "30s"
[adapters.portal.updates]
mode = "poll"
{extra}
""")
    env = gateway_env(port, config)
    del env["LIENTHONG_SERVER__MAX_CONCURRENT_REQUESTS"]
    return start([os.path.join(RELEASE, "lienthong"), "serve"], env=env, cpu=cpu)


def slow_upstream(latency, cpu=None):
    proc = start([os.path.join(RELEASE, "examples", "slow_upstream"), "--latency", latency],
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, cpu=cpu)
    url = proc.stdout.readline().strip().removeprefix("listening on ")
    return proc, url


def upstream_hits(proc, path):
    proc.stdin.write(f"hits {path}\n")
    proc.stdin.flush()
    return int(proc.stdout.readline())


def herd(a):
    print("\n## herd: 1,000 concurrent identical misses, upstream answers after 500 ms")
    upstream, url = slow_upstream("500ms")
    gw = portal_gateway(50082, url, "[bulkhead]\nmax_concurrent = 4\n")
    try:
        wait_port(50082, gw)
        for rep, code in enumerate(["000.00.06.H29", "000.00.07.H29", "000.00.08.H29"][: a.reps]):
            body = body_file(f"agency-{code}.bin", code)
            t = time.time()
            _, ok, data = h2load(50082, AGENCY, body, 1000, 10, 100)
            took = time.time() - t
            hits = upstream_hits(upstream, f"/agencies/{code}")
            print(f"rep {rep + 1}: {ok} answered ({data / max(ok, 1):.0f} B each) in {took:.2f} s; upstream calls: {hits}", flush=True)
    finally:
        for p in (gw, upstream):
            p.terminate()
            p.wait()


def overload(a, in_flight, upstream_ms):
    capacity = in_flight / (upstream_ms / 1000)
    rate = int(capacity * 5)
    print(f"\n## overload: capacity {capacity:.0f} req/s ({in_flight} in flight x {upstream_ms} ms), "
          f"offered {rate} req/s for {a.overload_seconds} s")
    # The gateway gets core 0; the driver and the fake upstream share core 1.
    upstream, url = slow_upstream(f"{upstream_ms}ms", cpu=1)
    extra = "[cache]\nenabled = false\n[bulkhead]\nmax_concurrent = 1000\n"
    gw = portal_gateway(50083, url, extra, server=f"max_concurrent_requests = {in_flight}", cpu=0)
    try:
        wait_port(50083, gw)
        for rep in range(a.reps):
            out = subprocess.run(["taskset", "-c", "1", os.path.join(RELEASE, "examples", "load"), "--target", "http://127.0.0.1:50083",
                                  "--rate", str(rate), "--seconds", str(a.overload_seconds), "--connections", "16"],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out)
            ok, shed = r.get("Ok", {}), r.get("Unavailable", {})
            others = {k: v["count"] for k, v in r.items() if k not in ("Ok", "Unavailable", "offered_rps")}
            print(f"rep {rep + 1}: offered {r['offered_rps']:.0f} req/s; admitted {ok.get('count', 0)} "
                  f"(p50 {ok.get('p50_ms', 0):.1f} ms, p99 {ok.get('p99_ms', 0):.1f} ms); shed {shed.get('count', 0)} "
                  f"(response p50 {shed.get('p50_ms', 0):.2f} ms, p99 {shed.get('p99_ms', 0):.2f} ms, max {shed.get('max_ms', 0):.1f} ms; "
                  f"service p50 {shed.get('service_p50_ms', 0):.2f} ms, p99 {shed.get('service_p99_ms', 0):.2f} ms, max {shed.get('service_max_ms', 0):.1f} ms); "
                  f"other {others}; gateway {'up' if gw.poll() is None else 'DOWN'}, peak RSS {peak_rss_mib(gw.pid):.0f} MiB",
                  flush=True)
    finally:
        for p in (gw, upstream):
            p.terminate()
            p.wait()


def identity(a):
    rate, seconds, budget = a.identity_rate, a.overload_seconds, 200
    print(f"\n## identity: {rate} citizen calls/s for {seconds} s, keys warm, VNeID budget {budget}/s burst {2 * budget}")
    tokens = os.path.join(TMP, "tokens.txt")
    idp = start([os.path.join(RELEASE, "examples", "fake_idp"), "--tokens", tokens, "--citizens", "1000"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    issuer = idp.stdout.readline().strip().removeprefix("issuer ")
    config = os.path.join(TMP, "gateway-identity.toml")
    with open(config, "w") as f:
        f.write(f"""
[anonymous]
enabled = true
provinces = ["79"]
[provinces."79"]
identity = "vneid"
[adapters.vneid]
kind = "vneid"
issuer = "{issuer}"
audience = "lienthong-test"
allow_insecure_http = true
[limits]
per_citizen = {{ per_second = 10, burst = 30 }}
per_upstream = {{ vneid = {{ per_second = {budget}, burst = {2 * budget} }} }}
""")
    gw = start([os.path.join(RELEASE, "lienthong"), "serve"], env=gateway_env(50084, config))

    def provider_requests():
        total = 0
        for path in ("/.well-known/openid-configuration", "/jwks", "/userinfo"):
            idp.stdin.write(f"hits {path}\n")
            idp.stdin.flush()
            total += int(idp.stdout.readline())
        return total

    def drive(rate, seconds):
        out = subprocess.run([os.path.join(RELEASE, "examples", "load"), "--target", "http://127.0.0.1:50084",
                              "--rate", str(rate), "--seconds", str(seconds), "--connections", "16",
                              "--tokens", tokens], capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    try:
        wait_port(50084, gw)
        warm = drive(500, 2)  # every citizen once: keys fetched, profiles cached
        print(f"warm-up: {({k: v['count'] for k, v in warm.items() if k != 'offered_rps'})}; "
              f"provider requests so far {provider_requests()}")
        for rep in range(a.reps):
            before = provider_requests()
            r = drive(rate, seconds)
            ok, refused = r.get("Ok", {}), r.get("ResourceExhausted", {})
            others = {k: v["count"] for k, v in r.items() if k not in ("Ok", "ResourceExhausted", "offered_rps")}
            print(f"rep {rep + 1}: offered {r['offered_rps']:.0f} calls/s; ok {ok.get('count', 0)} "
                  f"(p50 {ok.get('p50_ms', 0):.1f} ms, p99 {ok.get('p99_ms', 0):.1f} ms); "
                  f"refused for the budget {refused.get('count', 0)}; other {others}; "
                  f"provider requests during the run {provider_requests() - before}", flush=True)
    finally:
        for p in (gw, idp):
            p.terminate()
            p.wait()


def memory(a):
    print(f"\n## memory: {a.entries} cached answers and {a.entries} limiter keys")
    out = subprocess.run([os.path.join(RELEASE, "examples", "memory"), "--entries", str(a.entries),
                          "--citizens", str(a.entries)], capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    print(json.dumps(r, indent=1))


def compression(a):
    """What gzipping answers costs: the same cached answers, to a caller that
    accepts gzip and to one that does not, interleaved on one gateway."""
    print(f"\n## compression: {a.requests // 2} requests x {a.reps} reps, -c {a.clients} -m {a.streams}")
    gateway = start([os.path.join(RELEASE, "lienthong")],
                    env=dict(gateway_env(50084), LIENTHONG_SERVER__COMPRESS_ANSWERS="true"))
    wait_port(50084, gateway)
    facilities = "/lienthong.v1.HealthcareService/ListFacilities"
    cases = {
        # ListFacilities, page_size 100: about 17 KB, gzipped.
        "17 KB list": (facilities, os.path.join(TMP, "facilities.bin")),
        # GetProcedure: about 7 KB, gzipped.
        "7 KB get": (PROCEDURE, body_file("procedure.bin", "1.000894")),
    }
    with open(cases["17 KB list"][1], "wb") as f:
        msg = b"\x08\x64"  # page_size = 100
        f.write(b"\x00" + len(msg).to_bytes(4, "big") + msg)
    try:
        deadline = time.time() + 30
        while h2load(50084, PROCEDURE, cases["7 KB get"][1], 10, 1, 1)[1] != 10:
            if time.time() > deadline:
                sys.exit("the gateway does not answer")
            time.sleep(0.2)
        for name, (path, body) in cases.items():
            h2load(50084, path, body, 2000, 4, 4)  # warm: cached from here on
            results = {"plain": [], "gzip": []}
            for rep in range(a.reps):
                order = [("plain", ()), ("gzip", ("grpc-accept-encoding: gzip",))]
                for label, headers in (order if rep % 2 == 0 else order[::-1]):
                    before = cpu_seconds(gateway.pid)
                    rps, ok, data = h2load(50084, path, body, a.requests // 2, a.clients, a.streams, headers=headers)
                    cpu_us = (cpu_seconds(gateway.pid) - before) / max(ok, 1) * 1e6
                    results[label].append((rps, cpu_us, data / max(ok, 1)))
                    print(f"rep {rep + 1} {name} {label:5} {rps:9.0f} req/s {cpu_us:6.1f} us CPU/req "
                          f"{data / max(ok, 1):7.0f} B/answer", flush=True)
            p_rps, z_rps = med([r[0] for r in results["plain"]]), med([r[0] for r in results["gzip"]])
            p_cpu, z_cpu = med([r[1] for r in results["plain"]]), med([r[1] for r in results["gzip"]])
            p_b, z_b = med([r[2] for r in results["plain"]]), med([r[2] for r in results["gzip"]])
            print(f"RATIO {name}: gzip/plain throughput {z_rps / p_rps:.2f}  CPU per request {z_cpu / p_cpu:.2f} "
                  f"({z_cpu - p_cpu:+.1f} us)  bytes {z_b / p_b:.2f} ({p_b:.0f} -> {z_b:.0f})")
    finally:
        gateway.terminate()
        gateway.wait()


def redis_stats():
    """Round trips Redis has served so far, from its commandstats: the
    bucket scripts (EVALSHA; the commands a script runs inside are counted
    apart by Redis and are not round trips), and the replicas' background
    (PING once a second, XREAD blocking reads of the shared topics)."""
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "INFO", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    calls = {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", out)}
    return calls.get("ping", 0) + calls.get("xread", 0), calls.get("evalsha", 0) + calls.get("eval", 0)


def scrape(ops_port, metric, label=None):
    """The sum of `metric`'s series (with `label` in them, when given) on the
    ops port."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric) and (label is None or label in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cluster_env(port, ops_port, prefix, key):
    return dict(gateway_env(port), LIENTHONG_TELEMETRY__OPS_LISTEN=f"127.0.0.1:{ops_port}",
                LIENTHONG_SERVER__PAGE_TOKEN_KEY=key, LIENTHONG_CLUSTER__REDIS_URL="redis://127.0.0.1:6379",
                LIENTHONG_CLUSTER__KEY_PREFIX=prefix, LIENTHONG_CLUSTER__EXPECTED_REPLICAS="3")


def wait_answers(port, body, proc):
    deadline = time.time() + 30
    while h2load(port, PROCEDURE, body, 10, 1, 1)[1] != 10:
        if time.time() > deadline or proc.poll() is not None:
            sys.exit(f"the gateway on {port} does not answer GetProcedure")
        time.sleep(0.2)


def replicas(a):
    """Three replicas sharing one Redis ([cluster]): an app limit held
    together, what the shared state costs a cache hit, a herd over replicas
    with the shared cache, and how fast a change reaches the other replicas."""
    key = os.urandom(32).hex()
    body = body_file("procedure.bin", "1.000894")
    limit, seconds = 1000, a.replica_seconds
    print(f"\n## replicas: an app limit of {limit}/s (burst {limit}) over 3 replicas, offered "
          f"{3 * limit}/s ({limit}/s to each) for {seconds} s")
    prefix = f"lienthong-bench:{time.time_ns()}:"
    gateways = []
    for i in range(3):
        env = dict(cluster_env(50090 + i, 9490 + i, prefix, key),
                   LIENTHONG_LIMITS__PER_APP__PER_SECOND=str(limit), LIENTHONG_LIMITS__PER_APP__BURST=str(limit))
        gateways.append(start([os.path.join(RELEASE, "lienthong")], env=env))
    try:
        for i, g in enumerate(gateways):
            wait_port(50090 + i, g)
            wait_answers(50090 + i, body, g)
        time.sleep(2)  # the warm-up's cells refill
        ok_before = sum(scrape(9490 + i, "rpc_server_call_duration_seconds_count", 'rpc_response_status_code="OK"')
                        for i in range(3))
        background_before, scripts_before = redis_stats()
        t = time.time()
        drivers = [subprocess.Popen(["h2load", "-n", str(limit * seconds), "-c", "4", "-m", "1", "--rps", str(limit // 4),
                                     "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers",
                                     f"http://127.0.0.1:{50090 + i}{PROCEDURE}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(3)]
        for d in drivers:
            d.wait()
        took = time.time() - t
        background, scripts = redis_stats()
        admitted = sum(scrape(9490 + i, "rpc_server_call_duration_seconds_count", 'rpc_response_status_code="OK"')
                       for i in range(3)) - ok_before
        refused = sum(scrape(9490 + i, "rpc_server_call_duration_seconds_count",
                             'rpc_response_status_code="RESOURCE_EXHAUSTED"') for i in range(3))
        allowed = limit * took + limit
        print(f"{took:.1f} s: admitted {admitted:.0f}, refused {refused:.0f}; the limit allows {allowed:.0f} "
              f"({limit}/s x {took:.1f} s + the burst)")
        print(f"RATIO admitted / allowed {admitted / allowed:.3f}")
        print(f"RATIO Redis round trips per admitted call: {(scripts - scripts_before) / admitted:.3f} "
              f"(bucket leases; with the replicas' pings and topic reads "
              f"{(scripts - scripts_before + background - background_before) / admitted:.3f})")
    finally:
        for g in gateways:
            g.terminate()
            g.wait()

    print(f"\n## replicas: cache hits with [cluster] (limits asking Redis) vs without, "
          f"{a.requests} requests x {a.reps} reps")
    shared = start([os.path.join(RELEASE, "lienthong")], env=cluster_env(50093, 9493, prefix + "hits:", key))
    alone = start([os.path.join(RELEASE, "lienthong")], env=gateway_env(50094))
    try:
        for port, proc in ((50093, shared), (50094, alone)):
            wait_port(port, proc)
            wait_answers(port, body, proc)
            h2load(port, PROCEDURE, body, 2000, 4, 4)
        results = interleaved(a, {"cluster": (shared, 50093), "alone": (alone, 50094)}, body)
        c_rps, s_rps = med([r[0] for r in results["cluster"]]), med([r[0] for r in results["alone"]])
        c_cpu, s_cpu = med([r[1] for r in results["cluster"]]), med([r[1] for r in results["alone"]])
        print(f"RATIO cluster / alone: throughput {c_rps / s_rps:.2f}  CPU per request {c_cpu / s_cpu:.2f}")
    finally:
        for p in (shared, alone):
            p.terminate()
            p.wait()

    print("\n## replicas: 1,000 concurrent identical misses spread over 3 replicas, upstream answers after 500 ms")
    upstream, url = slow_upstream("500ms")
    for label, rpcs in (("without the shared cache", "[]"), ("with cluster.shared_cache", '["GetAgency"]')):
        herd_prefix = f"{prefix}herd:{time.time_ns()}:"
        cluster = (f'[cluster]\nredis_url = "redis://127.0.0.1:6379"\nkey_prefix = "{herd_prefix}"\n'
                   f'expected_replicas = 3\nshared_cache = {rpcs}\n')
        server = f'page_token_key = "{key}"'
        gws = [portal_gateway(50095 + i, url, cluster, server=server) for i in range(3)]
        try:
            for i, g in enumerate(gws):
                wait_port(50095 + i, g)
            code = "000.00.06.H29" if rpcs == "[]" else "000.00.07.H29"
            agency = body_file(f"agency-{code}.bin", code)
            drivers = [subprocess.Popen(["h2load", "-n", "333", "-c", "3", "-m", "111", "-d", agency,
                                         "-H", "content-type: application/grpc", "-H", "te: trailers",
                                         f"http://127.0.0.1:{50095 + i}{AGENCY}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(3)]
            for d in drivers:
                d.wait()
            print(f"{label}: upstream calls {upstream_hits(upstream, f'/agencies/{code}')}", flush=True)
        finally:
            for g in gws:
                g.terminate()
                g.wait()
    upstream.terminate()
    upstream.wait()

    print(f"\n## replicas: a change published on one replica, received on two others "
          f"({a.fanout_messages} messages of 1 KB at {a.fanout_rate}/s)")
    out = subprocess.run([os.path.join(RELEASE, "examples", "fanout"), "--messages", str(a.fanout_messages),
                          "--rate", str(a.fanout_rate)], capture_output=True, text=True, check=True).stdout
    print(out.strip())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--only",
                   default="cache-hit,latency,instructions,herd,overload,identity,memory,tracing,compression,replicas")
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--latency-seconds", type=int, default=5)
    p.add_argument("--overload-seconds", type=int, default=10)
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--replica-seconds", type=int, default=10)
    p.add_argument("--fanout-messages", type=int, default=5000)
    p.add_argument("--fanout-rate", type=int, default=500)
    p.add_argument("--identity-rate", type=int, default=5000)
    p.add_argument("--only-traced", action="store_true", help="instructions: the traced gateway only (profiling)")
    p.add_argument("--keep", action="store_true", help="keep callgrind files (printed)")
    p.add_argument("--compare", metavar="BINARY",
                   help="cache-hit: also drive this build of the gateway (for example an older commit's)")
    a = p.parse_args()
    only = set(a.only.split(","))
    if only & {"cache-hit", "latency"}:
        targets, body = sandbox_pair(a)
        try:
            saturation = cache_hit(a, targets, body) if "cache-hit" in only else h2load(50081, PROCEDURE, body, a.requests, a.clients, a.streams)[0]
            if "latency" in only:
                latency(a, targets, body, saturation)
        finally:
            for proc, _ in targets.values():
                proc.terminate()
                proc.wait()
    if "instructions" in only:
        instructions(a)
    if "herd" in only:
        herd(a)
    if "overload" in only:
        overload(a, 16, 10)
        overload(a, 8, 20)
    if "identity" in only:
        identity(a)
    if "memory" in only:
        memory(a)
    if "tracing" in only:
        tracing(a)
    if "compression" in only:
        compression(a)
    if "replicas" in only:
        replicas(a)


if __name__ == "__main__":
    main()
