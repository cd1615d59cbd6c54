"""Benchmark of the Alertmanager webhook receiver on loopback: throughput and latency (p50/p99).

Starts a real Temporal dev server (free ports, temp state), a pitstop worker and the webhook
(`python -m pitstop.workers.webhook`) as separate processes, then:
1. burst: N notifications over K distinct alerts, C at a time -> throughput (req/s);
2. open loop: R req/s for D seconds (arrivals do not wait for answers) -> p50/p99/max latency.
The webhook answers once a new alert is in its intake journal; the background delivery to Temporal is
reported separately (journal -> Temporal). With `--compare-sqlite-defaults` it first runs the same phases
against a dev server with SQLite's default settings (the baseline), then against pitstop's (WAL,
synchronous=NORMAL; see workers/devserver.py), which mostly changes that background delivery.
Every notification is a signal-with-start of an Incident workflow; the alerts match no remediation rule,
so the incidents only record their notifications. With `--mttr` it also runs the sandbox end-to-end test
(tests/sandbox/test_incident_remediation.py) and prints its MTTR figures.

    .venv/bin/python -m bench.webhook_load [--rate 200] [--seconds 10] [--burst 1000] [--alerts 20] [--mttr] [--compare-sqlite-defaults]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from bench.http_load import LoadClient, encode_post

from pitstop.workers.devserver import DEFAULT_SQLITE_PRAGMAS, DevServer, DevServerPorts, free_port

ROOT = Path(__file__).resolve().parents[1]


def payload(fingerprint: str, index: int) -> dict[str, Any]:
    return {
        "version": "4", "groupKey": "{}:{alertname=\"BenchAlert\"}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "pitstop", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "BenchAlert", "severity": "warning", "service": f"svc-{index}", "region": "eu-central"},
            "annotations": {"summary": "benchmark"},
            "startsAt": "2026-11-25T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": fingerprint,
        }],
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


async def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"webhook not ready at {url}")


def encoded_payloads(host: str, port: int, headers: dict[str, str], *, alerts: int, run: str, tag: str) -> list[bytes]:
    """One pre-encoded POST per distinct alert (the client must not be the bottleneck)."""
    return [encode_post(host, port, "/alerts", json.dumps(payload(f"{run}{tag}{i:08x}", i)).encode(), headers)
            for i in range(alerts)]


async def burst(client: LoadClient, requests: list[bytes], *, total: int, concurrency: int
                ) -> tuple[float, list[float], dict[int, int]]:
    """`total` notifications round-robin over the alerts, `concurrency` in flight (closed loop)."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            code, latency = await client.send(requests[i % len(requests)])
        latencies.append(latency)
        codes[code] = codes.get(code, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    return time.perf_counter() - began, latencies, codes


async def open_loop(client: LoadClient, requests: list[bytes], *, rate: float, seconds: float
                    ) -> tuple[list[float], dict[int, int], float]:
    """Arrivals at a fixed rate whatever the answers; latency counts from each scheduled arrival."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, scheduled: float) -> None:
        code, latency = await client.send(requests[i % len(requests)], scheduled)
        latencies.append(latency)
        codes[code] = codes.get(code, 0) + 1

    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return latencies, codes, time.perf_counter() - start


def report(title: str, lat: list[float], codes: dict[int, int], took: float, *, args: argparse.Namespace) -> None:
    ok = codes.get(200, 0)
    p99 = pct(lat, .99)
    print(f"{title}: {args.rate:.0f} req/s for {args.seconds:.0f}s ({len(lat)} requests, {ok} ok, "
          f"{ok / took:.0f} req/s served): p50 {pct(lat, .5) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {max(lat) * 1000:.1f} ms; status {codes}; target p99 < 50 ms: {'met' if p99 < 0.050 else 'NOT met'}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_stack(args: argparse.Namespace, *, label: str, sqlite_pragmas: tuple[str, ...]) -> None:
    """One Temporal dev server (with these SQLite pragmas) + worker + webhook, and the three load phases."""
    state = Path(tempfile.mkdtemp(prefix="pitstop-webhook-bench-"))
    server = DevServer(state_dir=state / "temporal", ports=DevServerPorts.free(), sqlite_pragmas=sqlite_pragmas)
    server.start()
    token = secrets.token_urlsafe(24)
    port = free_port()
    queue = f"bench-{secrets.token_hex(4)}"
    env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": server.address, "PITSTOP_TEMPORAL__TASK_QUEUE": queue,
           "PITSTOP_WEBHOOK__TOKEN": token, "PITSTOP_WEBHOOK__LISTEN": f"127.0.0.1:{port}",
           # one client sends the whole load: the per-client rate limit is raised out of the measurement's way
           "PITSTOP_WEBHOOK__RATE_LIMIT__PER_SECOND": "1000000", "PITSTOP_WEBHOOK__RATE_LIMIT__BURST": "1000000",
           "PITSTOP_STATE_DIR": str(state), "PITSTOP_WORKER__METRICS_PORT": "0", "PITSTOP_CONFIG": "/nonexistent",
           "PITSTOP_KUBERNETES__REGIONS": "{}"}
    logs = state / "logs"
    logs.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-m", "pitstop.workers.cli", "worker"], env=env, cwd=ROOT,
                         stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "pitstop.workers.webhook"], env=env, cwd=ROOT,
                         stdout=(logs / "webhook.log").open("wb"), stderr=subprocess.STDOUT),
    ]
    webhook_pid = procs[1].pid
    print(f"--- {label}: Temporal dev server with SQLite pragmas {list(sqlite_pragmas) or 'none (SQLite defaults)'}",
          flush=True)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base + "/healthz")
        headers = {"Authorization": f"Bearer {token}"}
        run = secrets.token_hex(3)
        async with LoadClient("127.0.0.1", port, connections=args.concurrency) as client:
            for raw in encoded_payloads("127.0.0.1", port, headers, alerts=20, run=run, tag="0e"):  # warm-up
                await client.send(raw)
            burst_requests = encoded_payloads("127.0.0.1", port, headers, alerts=args.alerts, run=run, tag="0b")
            elapsed, lat, codes = await burst(client, burst_requests, total=args.burst, concurrency=args.concurrency)
            print(f"burst: {args.burst} notifications over {args.alerts} new alerts, {args.concurrency} concurrent: "
                  f"{elapsed:.2f}s = {args.burst / elapsed:.0f} req/s; p50 {pct(lat, .5) * 1000:.1f} ms, "
                  f"p99 {pct(lat, .99) * 1000:.1f} ms; status {codes}")
            # Alertmanager's steady state: the alerts are known (their incidents exist), notifications repeat
            cpu_before = cpu_seconds(webhook_pid)
            lat, codes, took = await open_loop(client, burst_requests, rate=args.rate, seconds=args.seconds)
            cpu_ms = (cpu_seconds(webhook_pid) - cpu_before) * 1000 / max(1, len(lat))
            report("open loop, known alerts (repeats)", lat, codes, took, args=args)
            print(f"  webhook CPU: {cpu_ms:.2f} ms per request")
            # the same rate while brand-new alerts arrive in the window (each first delivery is durable)
            loop_requests = encoded_payloads("127.0.0.1", port, headers, alerts=args.alerts, run=run, tag="0f")
            report(f"open loop, {args.alerts} new alerts in the window",
                   *await open_loop(client, loop_requests, rate=args.rate, seconds=args.seconds), args=args)
        async with httpx.AsyncClient() as http:
            health = (await http.get(base + "/healthz")).json()
        print(f"  journal -> Temporal (signal-with-start in the background, latest {health['forwarded']} "
              f"deliveries): p50 {health['forward_ms_p50']} ms, max {health['forward_ms_max']} ms; "
              f"backlog {health['backlog']}, retries {health['forward_retries']}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> None:
    if args.compare_sqlite_defaults:
        await run_stack(args, label="baseline", sqlite_pragmas=())
    await run_stack(args, label="pitstop default", sqlite_pragmas=DEFAULT_SQLITE_PRAGMAS)
    print(f"(load average now {os.getloadavg()[0]:.1f})")
    if args.mttr:
        print("running the sandbox end-to-end test for MTTR (tests/sandbox/test_incident_remediation.py) ...", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
             "tests/sandbox/test_incident_remediation.py"],
            cwd=ROOT, capture_output=True, text=True,
        )
        for line in result.stdout.splitlines():
            if line.startswith("MTTR") or "->" in line and ("alert" in line or "fault" in line):
                print(line)
        if result.returncode:
            print(result.stdout[-3000:], result.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--mttr", action="store_true", help="also run the sandbox end-to-end test and print MTTR")
    parser.add_argument("--compare-sqlite-defaults", action="store_true",
                        help="first run the same phases on a dev server with SQLite's default settings (baseline)")
    args = parser.parse_args()
    print(f"pitstop webhook bench ({datetime.now(timezone.utc):%Y-%m-%d %H:%M}Z, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f})", flush=True)
    asyncio.run(main_async(args))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
