"""What one sent message costs ``serve``: requests, time, and where the time goes.

A real stack on loopback (redis-server, microsocks, simwa, ``wafleet serve``, sim workers),
no limits, no pauses, no "typing...". Two runs, the median of ``--runs`` each:

- one at a time: one message in flight (the 202, then the next once the network has it);
- a burst: K messages per session across N sessions at once.

For each: messages per second at the network, accepted → sent p50/p99 (one at a time), and
the requests into ``serve`` per message by route, read from ``serve``'s own
``wafleet_http_requests_total`` (PINGs taken out: they are one request each whatever is
sent), and the Redis commands run per message (``INFO commandstats``: every client, the
test's own polling of simwa aside, which is not Redis). With ``--profile`` (needs
``py-spy``), ``serve`` is sampled during the bursts and its event loop's time is shown by
what it was doing, the innermost recognisable frame outside asyncio deciding.

Usage: python bench/message_cost_bench.py [--runs 3] [--sessions 20] [--per-session 20]
       [--one-at-a-time 100] [--profile PATH_TO_PY_SPY [--keep-profile DIR]]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import bench_fleet, percentile
from messages_bench import NO_LIMITS, network_log, post, throughput

from tests.fleet import Fleet

ROUTES = ("/api/sessions/{id}/messages", "/worker/commands", "/worker/commands/ack", "/webhook")
# What serve was doing: the innermost frame outside asyncio whose file matches decides (so a
# socket write or a timeout on Redis's connection counts as Redis); py-spy names files
# relative to their sys.path entry ("redis/asyncio/client.py").
WHERE = (
    ("Redis client (commands, replies, its socket I/O)", ("redis/",)),
    ("signatures (HMAC)", ("hmac.py", "core/signing.py")),
    ("JSON", ("json/",)),
    ("metrics", ("prometheus_client/",)),
    ("logging", ("logging/",)),
    ("wafleet code (api/, core/)", ("api/", "core/")),
    ("HTTP server (aiohttp, yarl, multidict)", ("aiohttp/", "yarl/", "multidict/")),
)
LOOP = ("asyncio/", "selectors.py", "socket.py")
THREADS = "other threads (the thread pool, mostly waiting)"
IDLE = "waiting for I/O (epoll)"
_FILE = re.compile(r"\(([^():]+):\d+\)$")


async def counters(fleet: Fleet) -> dict[str, float]:
    """serve's requests by route, its PINGs, and the Redis commands run (all clients)."""
    _, raw = await fleet.call("GET", "/metrics")
    found: dict[str, float] = collections.defaultdict(float)
    stats = await fleet.redis.info("commandstats")
    found["redis"] = sum(float(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    for line in raw.decode().splitlines():
        if line.startswith("wafleet_http_requests_total{"):
            route = line.split('route="', 1)[1].split('"', 1)[0]
            found[route] = float(line.rsplit(" ", 1)[1])
        elif line.startswith('wafleet_webhook_events_total{type="PING"}'):
            found["PING"] = float(line.rsplit(" ", 1)[1])
    return found


def per_message(before: dict[str, float], after: dict[str, float], sent: int) -> dict[str, float]:
    spent = {r: (after.get(r, 0) - before.get(r, 0)) / sent for r in (*ROUTES, "redis")}
    spent["/webhook"] -= (after.get("PING", 0) - before.get("PING", 0)) / sent
    return spent


async def one_at_a_time(fleet: Fleet, sid: str, phone: str, count: int) -> tuple[float, ...]:
    """(msgs/s, p50 ms, p99 ms) with one message in flight."""
    samples = []
    start = time.perf_counter()
    for n in range(count):
        wa_id = await post(fleet, sid, f"one {n}")
        accepted = time.time_ns() // 1_000_000
        while (found := (await network_log(fleet, phone)).get(wa_id)) is None:
            await asyncio.sleep(0.002)
        samples.append(float(found["timestamp"] - accepted))
    rate = count / (time.perf_counter() - start)
    return rate, statistics.median(samples), percentile(samples, 99)


def profile_start(py_spy: str, pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def where_time_goes(raw: Path) -> dict[str, float]:
    """Share of samples by WHERE, from py-spy's collapsed stacks (``f1;f2;... count``)."""
    seen: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        files = [m.group(1) if (m := _FILE.search(f)) else "" for f in stack.split(";")]
        seen[_what(files)] += int(count)
    seen.pop(THREADS, None)  # the loop's thread is serve; the pool's threads wait for work
    total = sum(seen.values()) or 1
    return {name: 100 * n / total for name, n in seen.most_common()}


def _what(files: list[str]) -> str:
    if files and files[-1] == "selectors.py":
        return IDLE
    if files and files[0] == "threading.py":
        return THREADS
    for file in reversed(files):
        if file.startswith(LOOP):
            continue
        for name, marks in WHERE:
            if any(file.startswith(m) or file.endswith("/" + m) for m in marks):
                return name
        break
    return "event loop machinery (tasks, callbacks, timers)"


async def main(args: argparse.Namespace) -> None:
    profiles: list[dict[str, float]] = []
    one: list[tuple[float, ...]] = []
    bursts: list[float] = []
    costs: dict[str, list[dict[str, float]]] = {"one": [], "burst": []}
    async with bench_fleet("cost", 2, NO_LIMITS) as fleet:
        sessions = []
        for n in range(args.sessions):
            phone = f"97253{n:07d}"
            sessions.append(((await fleet.link(phone))["id"], phone))
        sid, phone = sessions[0]
        await one_at_a_time(fleet, sid, phone, 10)  # warm up
        assert fleet.serve is not None
        for _ in range(args.runs):
            before = await counters(fleet)
            one.append(await one_at_a_time(fleet, sid, phone, args.one_at_a_time))
            await asyncio.sleep(0.5)  # the last receipts come in
            costs["one"].append(per_message(before, await counters(fleet), args.one_at_a_time))
            before = await counters(fleet)
            spy = None
            raw = Path(tempfile.mkdtemp()) / "serve.raw"
            if args.profile:
                spy = profile_start(args.profile, fleet.serve.popen.pid, raw)
                await asyncio.sleep(0.5)
            bursts.append(await throughput(fleet, sessions, args.per_session))
            await asyncio.sleep(0.5)
            sent = len(sessions) * args.per_session
            costs["burst"].append(per_message(before, await counters(fleet), sent))
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes what it has
                spy.wait(30)
                profiles.append(where_time_goes(raw))
            if args.keep_profile:
                shutil.copy(raw, Path(args.keep_profile) / f"serve-burst-{len(bursts)}.raw")
            shutil.rmtree(raw.parent, ignore_errors=True)
    print(f"\nsessions linked: {args.sessions}; medians of {args.runs} runs")
    print(f"{'':34}{'one at a time':>16}{'burst':>12}")
    print(
        f"{'messages/s at the network':34}{_med([r[0] for r in one]):>16.0f}{_med(bursts):>12.0f}"
    )
    print(
        f"{'accepted -> sent p50 / p99 (ms)':34}"
        f"{_med([r[1] for r in one]):>9.1f} / {_med([r[2] for r in one]):<5.1f}{'':>12}"
    )
    print("requests into serve per message:")
    for route in ROUTES:
        one_cost = _med([c[route] for c in costs["one"]])
        burst_cost = _med([c[route] for c in costs["burst"]])
        print(f"  {route:32}{one_cost:>16.2f}{burst_cost:>12.2f}")
    total_one = _med([sum(c[r] for r in ROUTES) for c in costs["one"]])
    total_burst = _med([sum(c[r] for r in ROUTES) for c in costs["burst"]])
    print(f"  {'all':32}{total_one:>16.2f}{total_burst:>12.2f}")
    redis_one = _med([c["redis"] for c in costs["one"]])
    redis_burst = _med([c["redis"] for c in costs["burst"]])
    print(
        f"{'Redis commands / message (in scripts too)':34}{redis_one:>16.1f}{redis_burst:>12.1f}"
    )
    if profiles:
        print("\nwhere serve's time goes during the bursts (py-spy samples of its event loop's")
        print("thread, median share):")
        names = {n for p in profiles for n in p}
        shares = {n: _med([p.get(n, 0.0) for p in profiles]) for n in names}
        for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"  {name:40}{share:>6.1f} %")


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--per-session", type=int, default=20)
    parser.add_argument("--one-at-a-time", type=int, default=100)
    parser.add_argument("--profile", help="path to py-spy: sample serve during the bursts")
    parser.add_argument("--keep-profile", help="a folder to keep py-spy's raw stacks in")
    asyncio.run(main(parser.parse_args()))
