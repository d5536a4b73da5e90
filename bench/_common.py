"""What the benchmarks share: process samplers, a fleet on loopback, and the table they print.

Each benchmark is a script (``python bench/x.py``), so this is imported as ``_common`` from the
script's own folder. A figure two benchmarks report (a process's RSS, a percentile) must be
measured the same way in both, or their tables cannot be read side by side.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import fleet_env  # noqa: E402
from tests.fleet import Fleet  # noqa: E402
from wafleet import devstack  # noqa: E402

POLL_S = 0.05  # how often a benchmark looks at the state it waits for


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (``VmRSS``), NaN once it is gone."""
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


async def timed(samples: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    """Seconds each of ``samples`` sequential calls took."""
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


def percentile(samples: list[float], p: float) -> float:
    """The nearest-rank percentile ``p`` (0-100) of ``samples``, in any order."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def poll(
    check: Callable[[], Awaitable[Any]], limit_s: float, what: str, every: float = POLL_S
) -> Any:
    """``check()``'s first truthy answer, asked every ``every`` s; a RuntimeError naming
    ``what`` after ``limit_s``. A timing is only as fine as ``every``."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(every)
    raise RuntimeError(f"timed out after {limit_s} s waiting for {what}")


def table_header(width: int) -> str:
    """The header of a table of :func:`row` lines, its first column ``width`` wide."""
    return (
        f"| {'measure':<{width}} | {'median':>8} | {'min':>7} | {'max':>7} | unit | target  |\n"
        f"|{'-' * (width + 2)}|{'-' * 10}|{'-' * 9}|{'-' * 9}|------|---------|"
    )


def row(name: str, values: list[float], unit: str, target: str, width: int) -> str:
    """One measure: the median of its runs, then the smallest and the largest."""
    med = statistics.median(values)
    return (
        f"| {name:<{width}} | {med:>8.2f} | {min(values):>7.2f} | {max(values):>7.2f} "
        f"| {unit:<4} | {target:<7} |"
    )


def remove_engine_workers(fleet: Fleet) -> None:
    """Every Swarm service and container ``fleet``'s ``serve`` made (RUNNER=docker|swarm)."""
    import docker  # only the Docker benchmarks need the SDK

    from core.docker_engine import INSTANCE_LABEL
    from core.settings import Settings
    from wafleet.serve import instance_id

    label = f"{INSTANCE_LABEL}={instance_id(Settings.from_env(fleet.env))}"
    engine = docker.from_env()
    try:
        if fleet.env.get("RUNNER") == "swarm":
            for service in engine.services.list(filters={"label": label}):
                service.remove()
        for container in engine.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
    finally:
        engine.close()


@asynccontextmanager
async def bench_fleet(
    prefix: str,
    proxies: int,
    env: dict[str, str] | None = None,
    *,
    keep: bool = False,
    cleanup: Callable[[Fleet], None] | None = None,
) -> AsyncIterator[Fleet]:
    """A running ``serve`` (settings ``env`` over the tests') with its own redis-server,
    ``proxies`` microsocks and simwa.

    The same harness the tests use (``tests.fleet.Fleet``), so a benchmark measures the product
    as the tests run it. Everything it started is stopped afterwards, the workers included
    (they outlive ``serve`` by design); ``cleanup`` removes what a runner made elsewhere
    (containers, services) before the servers go; ``keep`` keeps the folder and its logs.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"wafleet-{prefix}-bench-"))
    (workdir / "sessions").mkdir()  # RUNNER=swarm refuses a SESSIONS_DIR that is not there
    redis_proc, redis_url = devstack.start_redis(workdir / "redis")
    started = [devstack.start_proxy(workdir, n) for n in range(1, proxies + 1)]
    simwa, simwa_port = devstack.start_simwa(workdir)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    fleet: Fleet | None = None
    try:
        async with aiohttp.ClientSession() as http:
            settings = fleet_env(workdir, redis_url, started, simwa_port, **(env or {}))
            fleet = Fleet(workdir, redis_url, started, simwa_port, settings, http, client)
            fleet.start()
            yield fleet
    finally:
        if fleet is not None:
            fleet.stop()
            if cleanup is not None:
                cleanup(fleet)
            else:
                fleet.kill_workers()
        await client.aclose()
        for proxy in started:
            proxy.proc.kill()
        simwa.stop()
        redis_proc.stop()
        if keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
