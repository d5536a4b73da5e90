"""The fleet curve: N live sim sessions on real workers, for N in ``--sizes``.

For each N and each runner, a fresh stack on loopback (redis-server, one microsocks per 4
sessions, simwa, ``wafleet serve`` with the real intervals: PING every 15 s, watchdog every
60 s, command-channel polls of 25 s) and:

- a burst of N provisions → all linked (each QR scanned at simwa's control API): total time
  and sessions per minute;
- ``serve``'s RSS and CPU (% of one core) while the fleet idles (``--idle`` seconds), and
  what the idle fleet asks of it: command-channel requests and Redis looks a second (its
  ``/metrics`` counters);
- Redis memory per session (``INFO memory`` used_memory after − before, / N);
- a watchdog pass (``SessionService.check_pings`` on the same Redis; nothing is stale);
- ``serve`` restarted, this time with the Telegram bot on (against the fake Bot API of
  ``tests/fake_telegram.py``): time until its reconcile is over (``/healthz``
  ``reconciling`` false) and how many workers it adopted, then RSS and CPU idle again, so
  the table has both (aiogram's import alone is ~130 MB);
- latencies of ``GET /api/v1/dashboard/sessions`` and ``/metrics`` (medians of ``--runs``).

``--runner process,docker`` runs both columns in one invocation (for each N, one after the
other, never at the same time). ``process`` runs ``wafleet worker`` processes; ``docker``
runs containers (needs the engine and the worker image of ``scripts/build-images.sh``;
``WORKER_IMAGE`` and ``WORKER_NETWORK=host`` are passed on). ``--repeat R`` runs every
(N, runner) R times and prints the medians. 500 real workers need 11-15 GB of RAM and both
cores for minutes: check ``free -g`` first.

Usage: python bench/fleet_bench.py [--runner process,docker] [--sizes 50,200,500]
       [--repeat 1] [--idle 30] [--runs 5]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import sample, timed  # noqa: E402

from core.clock import SystemClock  # noqa: E402
from core.docker_engine import INSTANCE_LABEL  # noqa: E402
from core.metrics import Metrics  # noqa: E402
from core.notifier import LogNotifier  # noqa: E402
from core.process_runner import ProcessRunner, find_workers  # noqa: E402
from core.proxies import ProxyPool  # noqa: E402
from core.sessions import SessionService  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import Store  # noqa: E402
from tests.fake_telegram import CHAT, FakeTelegram  # noqa: E402
from tests.fleet import API_KEY, WEBHOOK_SECRET  # noqa: E402
from wafleet import devstack  # noqa: E402
from wafleet.serve import instance_id  # noqa: E402


async def channel_counters(http: aiohttp.ClientSession, api: str) -> dict[str, float]:
    """serve's command-channel counters (core/commands.py) from its ``/metrics``."""
    async with http.get(api + "/metrics") as r:
        text = await r.text()
    found = re.findall(r"^wafleet_command_(\w+)_total (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


async def idle(
    http: aiohttp.ClientSession, api: str, pid: int, seconds: float
) -> tuple[float, float, float, float]:
    """(RSS MB, CPU %, channel requests/s, Redis looks/s) of serve while the fleet idles."""
    before = await channel_counters(http, api)
    t = time.monotonic()
    rss, cpu = await sample(pid, seconds)
    after = await channel_counters(http, api)
    took = time.monotonic() - t
    polls = (after.get("polls", 0) - before.get("polls", 0)) / took
    looks = (after.get("looks", 0) - before.get("looks", 0)) / took
    return rss, cpu, polls, looks


# What one live sim worker costs the host, with room to spare (measured: ~23 MB a process,
# ~30 MB a container with its containerd shim).
WORKER_MB = {"process": 30, "docker": 40}
MIN_FREE_MB = 1500  # below this during a run, the size is abandoned (the others run tests too)


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def guard_memory() -> None:
    """Abandon the size (teardown still runs) if the machine runs short while workers start."""
    while True:
        if available_mb() < MIN_FREE_MB:
            raise MemoryError(f"under {MIN_FREE_MB} MB available: size abandoned")
        await asyncio.sleep(1)


def remove_containers(instance: str) -> None:
    import docker  # only the docker column needs the SDK

    engine = docker.from_env()
    found = engine.containers.list(all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: c.remove(force=True), found))
    engine.close()


async def link_all(http: aiohttp.ClientSession, api: str, simwa: str, n: int) -> list[str]:
    """Provision ``n`` sessions at once, then scan each one's QR as its phone would."""

    async def provision(i: int) -> tuple[str, str]:
        phone = f"97250{i:07d}"
        async with http.post(api + "/api/sessions/provision", json={"phone": phone}) as r:
            body = await r.json()
            assert r.status == 201, body
            return body["id"], phone

    made = await asyncio.gather(*(provision(i) for i in range(n)))

    async def status(sid: str) -> str:
        async with http.get(f"{api}/api/sessions/{sid}/status") as r:
            return str((await r.json())["status"])

    async def link(sid: str, phone: str) -> None:
        """Scan its QR until it is connected; a QR round that ran out (a loaded machine can
        be slower than the network's QR lifetime) is started again, as an operator would."""
        while (now := await status(sid)) != "connected":
            if now == "failed":
                async with http.post(f"{api}/api/sessions/{sid}/qr") as r:
                    await r.read()
            async with http.get(f"{api}/api/sessions/{sid}/qr") as r:
                if r.status == 200:
                    qr = (await r.json())["qr"]
                    async with http.post(
                        simwa + "/control/scan", json={"qr": qr, "phone": phone}
                    ) as s:
                        await s.read()
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
    telegram = FakeTelegram()
    await telegram.start()
    bot_env = {
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_CHAT_ID": str(CHAT),
        "TELEGRAM_ADMIN_IDS": "1001",
    }
    serve = devstack.start_serve(workdir, env, port)
    try:
        async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:
            mem0 = int((await client.info("memory"))["used_memory"])
            host0 = available_mb()
            t = time.monotonic()
            guard = asyncio.create_task(guard_memory())
            linking = asyncio.create_task(link_all(http, api, f"http://127.0.0.1:{simwa_port}", n))
            done_first, _ = await asyncio.wait({guard, linking}, return_when="FIRST_COMPLETED")
            guard.cancel()
            if guard in done_first:
                linking.cancel()
                guard.result()  # raises the MemoryError
            await linking
            took = time.monotonic() - t
            out["provision → all linked (s)"] = took
            out["sessions per minute"] = 60 * n / took
            await asyncio.sleep(20)  # the burst's work is over before idle is measured
            out["Redis bytes per session"] = (
                int((await client.info("memory"))["used_memory"]) - mem0
            ) / n
            rss, cpu, polls, looks = await idle(http, api, serve.popen.pid, idle_s)
            out["load average (1 min) at idle"] = os.getloadavg()[0]
            # Others' work moves this too: a rough figure on a shared machine.
            out["host memory per worker (MB)"] = (host0 - available_mb()) / n
            out["serve RSS idle, no bot (MB)"] = rss
            out["serve CPU idle, no bot (% of a core)"] = cpu
            out["channel requests/s idle"], out["channel Redis looks/s idle"] = polls, looks

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
            # In threads: they wait with time.sleep, and the fake Bot API runs on this loop.
            serve = await asyncio.to_thread(
                devstack.start_serve, workdir, env | bot_env, port, None
            )
            listening = time.monotonic()
            await asyncio.to_thread(devstack.wait_reconciled, port, 600, serve.popen)
            done = time.monotonic()
            out["restart → reconciled (s)"] = done - t
            out["reconcile after listening (s)"] = done - listening
            log = (workdir / "serve.log").read_text(errors="replace")
            found = re.findall(r"reconciled: (\d+) adopted, (\d+) started", log)
            out["adopted / started"] = "/".join(found[-1]) if found else "?"
            await asyncio.sleep(20)  # the reconcile's aftermath (adopted workers' pings)
            rss, cpu, _, _ = await idle(http, api, serve.popen.pid, idle_s)
            out["serve RSS idle, bot on (MB)"] = rss
            out["serve CPU idle, bot on (% of a core)"] = cpu
    finally:
        serve.stop()
        if runner == "process":  # workers outlive serve by design: this bench ends them
            for pid in find_workers(instance_id(settings)).values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:  # and its containers, 8 at a time
            await asyncio.to_thread(remove_containers, instance_id(settings))
        await client.aclose()
        await telegram.stop()
        for proxy in proxies:
            proxy.proc.kill()
        simwa.stop()
        redis_proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def median_of(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per (N, runner): the median of each number over the repeats."""
    out = dict(repeats[0])
    for name, value in out.items():
        if isinstance(value, float):
            out[name] = statistics.median(r[name] for r in repeats)
    out["runs"] = len(repeats)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", default="process", help="process, docker or process,docker")
    parser.add_argument("--repeat", type=int, default=1, help="whole runs of each (N, runner)")
    parser.add_argument("--sizes", default="50,200,500")
    parser.add_argument("--idle", type=int, default=30, help="seconds of idle sampling")
    parser.add_argument("--runs", type=int, default=5, help="samples of each latency")
    args = parser.parse_args()
    runners = args.runner.split(",")
    if not set(runners) <= {"process", "docker"}:
        parser.error("--runner: process, docker or both, comma-separated")
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        for runner in runners:
            repeats = []
            for _ in range(args.repeat):
                need = n * WORKER_MB[runner] + MIN_FREE_MB
                if available_mb() < need:
                    print(
                        f"N={n} {runner}: skipped, {available_mb():.0f} MB available of "
                        f"the {need} MB it needs",
                        flush=True,
                    )
                    continue
                try:
                    repeats.append(await one_size(n, runner, args.idle, args.runs))
                except MemoryError as exc:
                    print(f"N={n} {runner}: {exc}", flush=True)
                    continue
                print(repeats[-1], flush=True)
            if repeats:
                results.append(median_of(repeats))
    if not results:
        return
    names = [k for k in results[0] if k not in ("N", "runner")]
    rows = [
        "| measure | " + " | ".join(f"N={r['N']} ({r['runner']})" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for name in names:
        cells = [f"{r[name]:.3f}" if isinstance(r[name], float) else str(r[name]) for r in results]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(rows))
    total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    python = sys.version.split()[0]
    print(f"\nmachine: {os.cpu_count()} cores, {total_gb:.0f} GiB, Python {python}")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
