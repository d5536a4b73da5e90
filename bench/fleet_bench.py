"""The fleet curve (issue 11): N live sim sessions on real workers, for N in ``--sizes``.

For each N, a fresh stack on loopback (redis-server, one microsocks per 4 sessions, simwa,
``wafleet serve`` with the real intervals: PING every 15 s, watchdog every 60 s) and:

- a burst of N provisions → all linked (each QR scanned at simwa's control API): total time
  and sessions per minute;
- ``serve``'s RSS and CPU (% of one core) while the fleet idles (``--idle`` seconds);
- Redis memory per session (``INFO memory`` used_memory after − before, / N);
- a watchdog pass (``SessionService.check_pings`` on the same Redis; nothing is stale);
- ``serve`` restarted: time until its reconcile is over (``/healthz`` ``reconciling``
  false) and how many workers it adopted;
- latencies of ``GET /api/v1/dashboard/sessions`` and ``/metrics`` (medians of ``--runs``).

``--runner process`` (the default) runs ``wafleet worker`` processes; ``--runner docker``
runs containers (needs the engine and the worker image of ``scripts/build-images.sh``;
``WORKER_IMAGE`` and ``WORKER_NETWORK=host`` are passed on). 500 real workers need about
13 GB of RAM and both cores for minutes: run the largest size alone.

Usage: python bench/fleet_bench.py [--runner process|docker] [--sizes 50,200,500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.clock import SystemClock  # noqa: E402
from core.metrics import Metrics  # noqa: E402
from core.notifier import LogNotifier  # noqa: E402
from core.process_runner import ProcessRunner, find_workers  # noqa: E402
from core.proxies import ProxyPool  # noqa: E402
from core.sessions import SessionService  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import Store  # noqa: E402
from tests.fleet import API_KEY, WEBHOOK_SECRET  # noqa: E402
from wafleet import devstack  # noqa: E402
from wafleet.serve import instance_id  # noqa: E402


# The same samplers as bench/load_gen.py (bench scripts are files, not a package).
def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``: what it has spent on the CPU so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample(pid: int, seconds: float) -> tuple[float, float]:
    """(median RSS in MB, CPU as % of one core) of ``pid`` over ``seconds``."""
    rss = []
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        rss.append(rss_mb(pid))
        await asyncio.sleep(1)
    return statistics.median(rss), 100 * (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)


async def timed(samples: int, call: Any) -> list[float]:
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


async def link_all(http: aiohttp.ClientSession, api: str, simwa: str, n: int) -> list[str]:
    """Provision ``n`` sessions at once, then scan each one's QR as its phone would."""

    async def provision(i: int) -> tuple[str, str]:
        phone = f"97250{i:07d}"
        async with http.post(api + "/api/sessions/provision", json={"phone": phone}) as r:
            body = await r.json()
            assert r.status == 201, body
            return body["id"], phone

    made = await asyncio.gather(*(provision(i) for i in range(n)))

    async def link(sid: str, phone: str) -> None:
        while True:
            async with http.get(f"{api}/api/sessions/{sid}/qr") as r:
                if r.status == 200:
                    qr = (await r.json())["qr"]
                    async with http.post(
                        simwa + "/control/scan", json={"qr": qr, "phone": phone}
                    ) as s:
                        if s.status == 200:
                            break
            await asyncio.sleep(0.2)
        while True:
            async with http.get(f"{api}/api/sessions/{sid}/status") as r:
                if (await r.json())["status"] == "connected":
                    return
            await asyncio.sleep(0.5)

    await asyncio.gather(*(link(sid, phone) for sid, phone in made))
    return [sid for sid, _ in made]


async def one_size(n: int, runner: str, idle_s: int, runs: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"wafleet-fleet-{n}-"))
    redis_proc, redis_url = devstack.start_redis(workdir / "redis")
    proxies = [devstack.start_proxy(workdir, p) for p in range(1, (n + 3) // 4 + 1)]
    simwa, simwa_port = devstack.start_simwa(workdir, first_ttl_ms=120_000)
    env = devstack.serve_env(workdir, redis_url, proxies, simwa_port, API_KEY, WEBHOOK_SECRET)
    env |= {"LOG_LEVEL": "INFO", "RUNNER": runner}
    if runner == "docker":
        env |= {
            "WORKER_IMAGE": os.environ.get("WORKER_IMAGE", "wafleet-worker:latest"),
            "WORKER_NETWORK": "host",
        }
    settings = Settings.from_env(env)
    port = devstack.free_port()
    api = f"http://127.0.0.1:{port}"
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    out: dict[str, Any] = {"N": n, "runner": runner}
    serve = devstack.start_serve(workdir, env, port)
    try:
        async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:
            mem0 = int((await client.info("memory"))["used_memory"])
            t = time.monotonic()
            await link_all(http, api, f"http://127.0.0.1:{simwa_port}", n)
            took = time.monotonic() - t
            out["provision → all linked (s)"] = took
            out["sessions per minute"] = 60 * n / took
            await asyncio.sleep(20)  # the burst's work is over before idle is measured
            out["Redis bytes per session"] = (
                int((await client.info("memory"))["used_memory"]) - mem0
            ) / n
            rss, cpu = await sample(serve.popen.pid, idle_s)
            out["serve RSS idle (MB)"], out["serve CPU idle (% of a core)"] = rss, cpu

            store = Store(client)
            bench_runner = ProcessRunner("fleet-bench", stop_grace_s=1)
            pool = ProxyPool(store, LogNotifier(), settings.max_sessions_per_proxy)
            service = SessionService(
                settings, store, pool, bench_runner, LogNotifier(), SystemClock(), Metrics()
            )
            out["watchdog pass (s)"] = statistics.median(await timed(runs, service.check_pings))
            await bench_runner.close()

            async def get(path: str) -> None:
                async with http.get(api + path) as r:
                    assert r.status == 200, (path, r.status)
                    await r.read()

            out["GET dashboard/sessions (s)"] = statistics.median(
                await timed(runs, lambda: get("/api/v1/dashboard/sessions"))
            )
            out["GET /metrics (s)"] = statistics.median(await timed(runs, lambda: get("/metrics")))

            serve.stop()
            t = time.monotonic()
            serve = devstack.start_serve(workdir, env, port, reconciled=None)
            listening = time.monotonic()
            devstack.wait_reconciled(port, 600, serve.popen)
            done = time.monotonic()
            out["restart → reconciled (s)"] = done - t
            out["reconcile after listening (s)"] = done - listening
            log = (workdir / "serve.log").read_text(errors="replace")
            found = re.findall(r"reconciled: (\d+) adopted, (\d+) started", log)
            out["adopted / started"] = "/".join(found[-1]) if found else "?"
    finally:
        serve.stop()
        if runner == "process":  # workers outlive serve by design: this bench ends them
            for pid in find_workers(instance_id(settings)).values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await client.aclose()
        for proxy in proxies:
            proxy.proc.kill()
        simwa.stop()
        redis_proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", choices=["process", "docker"], default="process")
    parser.add_argument("--sizes", default="50,200,500")
    parser.add_argument("--idle", type=int, default=30, help="seconds of idle sampling")
    parser.add_argument("--runs", type=int, default=5, help="samples of each latency")
    args = parser.parse_args()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        results.append(await one_size(n, args.runner, args.idle, args.runs))
        print(results[-1], flush=True)
    names = [k for k in results[0] if k not in ("N", "runner")]
    rows = [
        "| measure | " + " | ".join(f"N={r['N']} ({r['runner']})" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for name in names:
        cells = [f"{r[name]:.3f}" if isinstance(r[name], float) else str(r[name]) for r in results]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(rows))
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
