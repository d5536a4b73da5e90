"""Benchmarks of the session life cycle on the process runner, against their targets.

Starts a real stack on loopback (redis-server, microsocks, simwa, ``wafleet serve``) and
prints one table of medians over several runs:

- provision → first QR at the API (target < 1 s)
- failover: proxy killed → connected on the new proxy (target < 5 s)
- crash → restarted: worker SIGKILLed → new worker running, and → connected (target < 3 s)
- webhook ingest: signed PINGs per second into ``serve`` pinned to one core (target ≥ 5,000/s),
  load from ``wrk`` on the other core with pre-signed requests
- RSS of one sim worker, and of ``serve`` with N sessions (default 200; target worker < 40 MB)

Usage: python bench/core_bench.py [--runs 5] [--sessions 200] [--skip-fleet]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import rss_mb  # noqa: E402

from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, session_secret, sign  # noqa: E402
from tests.fleet import WEBHOOK_SECRET, Fleet  # noqa: E402
from wafleet import devstack  # noqa: E402


class Stack:
    """One bench fleet: the same harness the tests use."""

    def __init__(self, workdir: Path, proxies: int, **env: str) -> None:
        self.workdir = workdir
        self.redis, self.redis_url = devstack.start_redis(workdir / "redis")
        self.proxies = [devstack.start_proxy(workdir, n) for n in range(1, proxies + 1)]
        self.simwa, self.simwa_port = devstack.start_simwa(workdir)
        from tests.conftest import fleet_env

        self.env = fleet_env(
            workdir, self.redis_url, self.proxies, self.simwa_port, LOG_LEVEL="WARNING", **env
        )

    async def fleet(self, http: aiohttp.ClientSession) -> Fleet:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
        fleet = Fleet(
            self.workdir, self.redis_url, self.proxies, self.simwa_port, self.env, http, client
        )
        fleet.start()
        return fleet

    def close(self, fleet: Fleet | None) -> None:
        if fleet is not None:
            fleet.stop()
            fleet.kill_workers()
        for proxy in self.proxies:
            proxy.proc.kill()
        self.simwa.stop()
        self.redis.stop()


async def time_provision_to_qr(fleet: Fleet, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        sid = (await fleet.provision(None))["id"]
        while (await fleet.call("GET", f"/api/sessions/{sid}/qr"))[0] != 200:
            await asyncio.sleep(0.005)
        samples.append(time.perf_counter() - start)
        await fleet.call("DELETE", f"/api/sessions/{sid}")
    return samples


async def time_failover(fleet: Fleet, runs: int) -> list[float]:
    samples = []
    for n in range(runs):
        phone = f"97250{n:07d}"
        sid = (await fleet.link(phone))["id"]
        old = await fleet.text(f"session:{sid}:proxy")
        proxy = next(p for p in fleet.proxies if p.url == old)
        start = time.perf_counter()
        proxy.proc.kill()
        while True:
            body = await fleet.status(sid)
            if (
                body["status"] == "connected"
                and await fleet.redis.get(f"session:{sid}:proxy") != old
            ):
                break
            await asyncio.sleep(0.01)
        samples.append(time.perf_counter() - start)
        proxy.restart()
        while await fleet.redis.get(f"proxy:{old}:status") != "active":
            await asyncio.sleep(0.05)
        await fleet.call("DELETE", f"/api/sessions/{sid}")
    return samples


async def time_crash_restart(fleet: Fleet, runs: int) -> tuple[list[float], list[float]]:
    running, connected = [], []
    sid = (await fleet.link("972599999999"))["id"]
    for _ in range(runs):
        pid = fleet.workers()[sid]
        start = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while fleet.workers().get(sid) in (None, pid):
            await asyncio.sleep(0.005)
        running.append(time.perf_counter() - start)
        while (await fleet.status(sid))["status"] != "connected":
            await asyncio.sleep(0.01)
        connected.append(time.perf_counter() - start)
        await asyncio.sleep(0.5)
    return running, connected


async def worker_rss(fleet: Fleet) -> float:
    sid = (await fleet.link("972588888888"))["id"]
    await asyncio.sleep(5)  # a few keep-alive rounds
    return rss_mb(fleet.workers()[sid])


def ingest(fleet: Fleet, sids: list[str], seconds: int, runs: int) -> list[float]:
    """Signed PINGs per second, serve pinned to core 0 and wrk to core 1."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("ingest needs wrk (apt-get install wrk)")
    assert fleet.serve is not None
    os.sched_setaffinity(fleet.serve.popen.pid, {0})
    now = time.time_ns() // 1_000_000
    requests = []
    for i in range(2000):
        sid = sids[i % len(sids)]
        body = json.dumps(
            {"sessionId": sid, "type": "PING", "data": {"timestamp": now}, "timestamp": now},
            separators=(",", ":"),
        )
        sig = sign(session_secret(WEBHOOK_SECRET, sid), now, body.encode())
        requests.append((body, sig))
    lua = fleet.workdir / "pings.lua"
    # Requests are built in init(), once wrk has set the Host header for the thread.
    lines = ["local reqs = {}", "init = function(args)"]
    for n, (body, sig) in enumerate(requests, 1):
        lines.append(
            f'  reqs[{n}] = wrk.format("POST", "/webhook", {{["Content-Type"]="application/json",'
            f' ["{TIMESTAMP_HEADER}"]="{now}", ["{SIGNATURE_HEADER}"]="{sig}"}}, '
            f"{json.dumps(body)})"
        )
    lines += ["end", "local i = 0", "request = function() i = i % #reqs + 1 return reqs[i] end"]
    lua.write_text("\n".join(lines))
    rates = []
    for _ in range(runs):
        out = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                wrk,
                "-t1",
                "-c32",
                f"-d{seconds}s",
                "-s",
                str(lua),
                fleet.api + "/webhook",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rate = float(
            next(ln.split()[1] for ln in out.splitlines() if ln.startswith("Requests/sec"))
        )
        # wrk prints this line only when some answer was not a success: the run is void
        assert "Non-2xx" not in out and "Socket errors" not in out, out
        rates.append(rate)
    return rates


async def serve_rss_with_sessions(workdir: Path, n: int) -> tuple[float, float]:
    stack = Stack(
        workdir,
        proxies=(n + 3) // 4,
        WORKER_PRESENCE_INTERVAL_MS="15000",
        WORKER_SELF_MESSAGE_INTERVAL_MS="600000",
        PING_TIMEOUT_MS="180000",
    )
    fleet = None
    try:
        async with aiohttp.ClientSession() as http:
            fleet = await stack.fleet(http)
            for _ in range(n):
                await fleet.provision(None)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                _, body = await fleet.call("GET", "/api/v1/dashboard/stats")
                if body["sessions"]["byStatus"]["qr_ready"] == n:
                    break
                await asyncio.sleep(1)
            await asyncio.sleep(5)
            assert fleet.serve is not None
            workers = [rss_mb(pid) for pid in fleet.workers().values()]
            return rss_mb(fleet.serve.popen.pid), statistics.median(workers)
    finally:
        stack.close(fleet)


def row(name: str, samples: list[float], unit: str, target: str) -> str:
    med = statistics.median(samples)
    return (
        f"| {name} | {med:.3f} {unit} | {min(samples):.3f} | {max(samples):.3f} | "
        f"{len(samples)} | {target} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--ingest-seconds", type=int, default=5)
    parser.add_argument("--skip-fleet", action="store_true", help="skip the N-session RSS run")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="wafleet-bench-"))
    rows = ["| measure | median | min | max | runs | target |", "|---|---|---|---|---|---|"]
    stack = Stack(workdir / "main", proxies=3)
    fleet = None
    try:
        async with aiohttp.ClientSession() as http:
            fleet = await stack.fleet(http)
            rows.append(
                row(
                    "provision → first QR",
                    await time_provision_to_qr(fleet, args.runs),
                    "s",
                    "< 1 s",
                )
            )
            rows.append(
                row(
                    "failover (proxy killed → connected)",
                    await time_failover(fleet, args.runs),
                    "s",
                    "< 5 s",
                )
            )
            running, connected = await time_crash_restart(fleet, args.runs)
            rows.append(row("crash → new worker running", running, "s", "< 3 s"))
            rows.append(row("crash → connected again", connected, "s", "< 3 s"))
            rows.append(row("RSS of one sim worker", [await worker_rss(fleet)], "MB", "< 40 MB"))
            _, listing = await fleet.call("GET", "/api/v1/dashboard/sessions")
            sids = [entry["id"] for entry in listing["sessions"]]  # pings of live sessions
            rows.append(
                row(
                    "webhook ingest, serve on one core",
                    ingest(fleet, sids, args.ingest_seconds, args.runs),
                    "PING/s",
                    "≥ 5,000/s",
                )
            )
    finally:
        stack.close(fleet)
    if not args.skip_fleet:
        serve_rss, worker_median = await serve_rss_with_sessions(workdir / "fleet", args.sessions)
        rows.append(row(f"RSS of serve with {args.sessions} sessions", [serve_rss], "MB", "—"))
        rows.append(
            row(f"RSS of a worker among {args.sessions}", [worker_median], "MB", "< 40 MB")
        )
    shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(rows))
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    asyncio.run(main())
