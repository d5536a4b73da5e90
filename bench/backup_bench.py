"""Benchmark of backups and restore on the process runner.

Starts a real stack on loopback (redis-server, microsocks, simwa, ``wafleet serve``), links
N sessions (default 10) with an auth folder of a realistic size, and prints one table of
medians over several runs:

- rolling backup (the default): its duration, the longest time one worker was frozen, and
  the fewest sessions seen connected (in Redis and at the network) while it ran;
- stop-all backup (every worker stopped for the copy, ``BACKUP_MODE=stop-all``): the same,
  where "pause" is a
  worker's down time from its stop to its start, plus the time until all are connected again;
- restore of the newest archive: request → every session connected again.

Usage: python bench/backup_bench.py [--runs 5] [--sessions 10] [--auth-kib 1024] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import fleet_env  # noqa: E402
from tests.fleet import Fleet  # noqa: E402
from wafleet import devstack  # noqa: E402


async def connected_counts(fleet: Fleet) -> tuple[int, int]:
    _, body = await fleet.call("GET", "/api/v1/dashboard/sessions")
    in_redis = sum(s["status"] == "connected" for s in body["sessions"])
    async with fleet.http.get(fleet.simwa + "/control/devices") as r:
        at_network = sum(d["connected"] for d in await r.json() if not d["loggedOut"])
    return in_redis, at_network


async def all_connected(fleet: Fleet, n: int, limit_s: float = 60) -> float:
    start = time.perf_counter()
    while min(await connected_counts(fleet)) < n:
        if time.perf_counter() - start > limit_s:
            raise RuntimeError(f"not all {n} sessions connected after {limit_s} s")
        await asyncio.sleep(0.02)
    return time.perf_counter() - start


async def one_backup(fleet: Fleet, n: int) -> dict[str, float]:
    """Create one backup while sampling how many sessions stay connected."""
    lowest = n
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal lowest
        while not done.is_set():
            lowest = min(lowest, *await connected_counts(fleet))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    start = time.perf_counter()
    try:
        status, made = await fleet.call("POST", "/api/v1/backups/create")
    finally:
        done.set()
        await sampler
    took = time.perf_counter() - start
    assert status == 201, made
    back = await all_connected(fleet, n)
    return {
        "duration_s": made["durationMs"] / 1000,
        "request_s": took,
        "max_pause_s": made["maxPauseMs"] / 1000,
        "min_connected": float(lowest),
        "reconnected_s": took + back,
    }


async def one_restore(fleet: Fleet, n: int) -> dict[str, float]:
    _, listed = await fleet.call("GET", "/api/v1/backups")
    newest = listed["backups"][0]["id"]
    start = time.perf_counter()
    status, report = await fleet.call(
        "POST", f"/api/v1/backups/restore/{newest}", {"waitSeconds": 60}
    )
    took = time.perf_counter() - start
    assert status == 200 and len(report["connected"]) == n, report
    await all_connected(fleet, n)
    return {"restore_s": took}


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


async def run(args: argparse.Namespace) -> list[str]:
    workdir = Path(tempfile.mkdtemp(prefix="wafleet-backup-bench-"))
    redis_proc, redis_url = devstack.start_redis(workdir / "redis")
    proxies = [devstack.start_proxy(workdir, i) for i in range(1, (args.sessions + 3) // 4 + 2)]
    simwa, simwa_port = devstack.start_simwa(workdir)
    env = fleet_env(workdir, redis_url, proxies, simwa_port, LOG_LEVEL="INFO")
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    fleet: Fleet | None = None
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Fleet(workdir, redis_url, proxies, simwa_port, env, http, client)
            fleet.start()
            phones = [f"97250{n:07d}" for n in range(args.sessions)]
            linked = await asyncio.gather(*(fleet.link(p) for p in phones))
            for session in linked:
                blob = fleet.sessions_dir / session["id"] / "app-state-sync-key-bench.bin"
                blob.write_bytes(os.urandom(args.auth_kib * 1024))
            results: dict[str, list[dict[str, float]]] = {"rolling": [], "stop-all": []}
            for mode in ("rolling", "stop-all"):
                if mode != "rolling":  # restart serve in the other mode; workers are adopted
                    fleet.stop()
                    fleet.env["BACKUP_MODE"] = mode
                    fleet.start()
                    await all_connected(fleet, args.sessions)
                for _ in range(args.runs):
                    results[mode].append(await one_backup(fleet, args.sessions))
            restores = [await one_restore(fleet, args.sessions) for _ in range(args.runs)]
    finally:
        if fleet is not None:
            fleet.stop()
            fleet.kill_workers()
        await client.aclose()
        for proxy in proxies:
            proxy.proc.kill()
        simwa.stop()
        redis_proc.stop()
        if args.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    size_mib = args.sessions * args.auth_kib / 1024
    rows = [
        f"{args.sessions} sessions, {size_mib:.0f} MiB of auth files, medians of {args.runs} runs",
        "",
        f"{'mode':<10} {'backup':>9} {'max pause':>10} {'worst pause':>12} "
        f"{'min connected':>14} {'all connected again':>20}",
    ]
    for mode, runs in results.items():
        worst = max(r["max_pause_s"] for r in runs)
        rows.append(
            f"{mode:<10} {med(runs, 'duration_s'):>8.3f}s {med(runs, 'max_pause_s'):>9.4f}s "
            f"{worst:>11.4f}s {min(r['min_connected'] for r in runs):>11.0f}/{args.sessions:<2} "
            f"{med(runs, 'reconnected_s'):>19.3f}s"
        )
    rows.append("")
    rows.append(
        f"restore of {args.sessions} sessions, request → all connected: "
        f"{statistics.median(r['restore_s'] for r in restores):.3f}s"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--auth-kib", type=int, default=1024, help="extra auth data per session")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its logs")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
