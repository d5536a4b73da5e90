"""Benchmark of high availability on loopback: two ``serve`` replicas, Redis under Sentinel.

Real parts throughout: the replicas are tests/test_replicas.py's (``wafleet serve`` with its
own SERVE_ID on 127.0.0.1 and 127.0.0.2, one redis-server), the Redis group is
tests/sentinel_redis.py's (a primary, one replica, three Sentinels); sim workers, microsocks
and simwa as in the other benches. One table, the median of the runs with min and max:

- leader take-over: the leading replica SIGKILLed → the other says on ``/healthz`` that it
  leads and has reconciled, at ``LEADER_LEASE_MS`` 5000 and 3000;
- Redis promotion: the primary SIGKILLed while a client posts messages (retrying a 503 with
  the same idempotency key) → the Sentinels name the replica, and → the first 2xx to a
  request sent after the kill (the 503 window). The killed node is started again as a
  replica as soon as the Sentinels have promoted, as a supervisor would: with one replica,
  a promise has nothing to wait for until it is back;
- throughput through one replica, then two, in the same run: signed PINGs/s answered 200
  at ``/webhook`` and messages/s answered 202, round robin over the replicas, 16 at once;
  the workers post to the first replica in both cases;
- accepted (the 202) → sent at the network, p50/p99, one message at a time, through one
  ``serve`` on the Sentinel group: a promise waiting for the replica's copy
  (``REDIS_WAIT_REPLICAS=1``) and not (``0``).

Usage: python bench/ha_bench.py [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from _common import bench_fleet, percentile, poll, row, table_header
from messages_bench import NO_LIMITS, TO, latency, network_log

from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, session_secret, sign
from tests.fleet import API_KEY, WEBHOOK_SECRET, Fleet
from tests.sentinel_redis import SentinelGroup
from tests.test_replicas import Replica, Replicas

WIDTH = 52
CONCURRENCY = 16  # requests in flight at once in the throughput runs
LEASES_MS = (5000, 3000)
Results = dict[str, list[float]]


# requests --------------------------------------------------------------------------------


async def ping(http: aiohttp.ClientSession, api: str, sid: str) -> None:
    """A PING signed with the session's own secret, as a worker sends one."""
    now = time.time_ns() // 1_000_000
    event = {"sessionId": sid, "type": "PING", "data": {"timestamp": now}, "timestamp": now}
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: sign(session_secret(WEBHOOK_SECRET, sid), now, body),
        "Content-Type": "application/json",
    }
    async with http.post(api + "/webhook", data=body, headers=headers) as answer:
        if answer.status != 200:
            raise RuntimeError(f"webhook answered {answer.status}: {await answer.text()}")


async def accept(http: aiohttp.ClientSession, api: str, sid: str, text: str) -> None:
    async with http.post(
        f"{api}/api/sessions/{sid}/messages",
        json={"to": TO, "text": text},
        headers={"X-API-Key": API_KEY},
    ) as answer:
        if answer.status != 202:
            raise RuntimeError(f"messages answered {answer.status}: {await answer.text()}")


async def spread(
    count: int, targets: list[str], call: Callable[[str, int], Awaitable[None]]
) -> float:
    """Calls per second: ``count`` calls, CONCURRENCY at once, round robin over ``targets``."""
    numbers = iter(range(count))

    async def client() -> None:
        for n in numbers:  # one iterator shared: each number is taken once
            await call(targets[n % len(targets)], n)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - start)


async def sent_counts(fleet: Fleet, phones: list[str]) -> dict[str, int]:
    return {phone: len(await network_log(fleet, phone)) for phone in phones}


async def drained(fleet: Fleet, phones: list[str], wanted: int) -> None:
    """Until ``wanted`` messages are at the network: the next measure starts with the
    workers idle."""

    async def done() -> bool:
        return sum((await sent_counts(fleet, phones)).values()) >= wanted

    await poll(done, 120, "every accepted message sent", 0.2)


# two replicas on one redis-server ------------------------------------------------------


async def takeover(replicas: Replicas, pair: list[Replica], lease_ms: int) -> float:
    """Seconds from the leader's SIGKILL to the other leading and reconciled; the killed
    one is started again afterwards, as a follower."""
    leader = await poll(lambda: replicas.leader(pair), lease_ms / 1000 + 30, "a leader")
    (other,) = [r for r in pair if r is not leader]
    assert leader.proc is not None
    leader.proc.kill()
    killed = time.perf_counter()
    await poll(lambda: replicas.leader([other]), lease_ms / 1000 + 30, "a take-over", 0.02)
    took = time.perf_counter() - killed
    await replicas.start(leader)
    await asyncio.sleep(1)  # its first heartbeat in, before the next kill
    return took


async def throughput(
    fleet: Fleet, pair: list[Replica], sessions: list[tuple[str, str]], args: argparse.Namespace
) -> Results:
    """PINGs/s and messages/s answered through the first replica, then through both."""
    out: Results = {}
    sids, phones = [s for s, _ in sessions], [p for _, p in sessions]
    for n, targets in ((1, [pair[0].api]), (2, [r.api for r in pair])):

        async def one_ping(api: str, k: int) -> None:
            await ping(fleet.http, api, sids[k % len(sids)])

        async def one_message(api: str, k: int) -> None:
            await accept(fleet.http, api, sids[k % len(sids)], f"ha {k}")

        out[f"pings{n}"] = [await spread(args.events, targets, one_ping)]
        before = await sent_counts(fleet, phones)
        out[f"messages{n}"] = [await spread(args.messages, targets, one_message)]
        await drained(fleet, phones, sum(before.values()) + args.messages)
    return out


async def replicas_part(args: argparse.Namespace, results: Results) -> None:
    async with bench_fleet("ha", 2, NO_LIMITS) as fleet:
        fleet.stop()  # its one serve makes way for the two replicas
        replicas = Replicas(fleet)  # fleet.api and the workers' webhook: replica-c's
        pair = [replicas.c, replicas.a]  # 127.0.0.1 first, then 127.0.0.2
        try:
            for lease in LEASES_MS:
                fleet.env["LEADER_LEASE_MS"] = str(lease)
                await replicas.start(pair[0])
                await poll(lambda: replicas.leader(pair[:1]), lease / 1000 + 30, "a leader")
                await replicas.start(pair[1])
                if lease == LEASES_MS[0]:
                    sessions = []
                    for n in range(args.sessions):
                        phone = f"97253{n:07d}"
                        sessions.append((str((await fleet.link(phone))["id"]), phone))
                    for _ in range(args.runs):
                        for key, values in (await throughput(fleet, pair, sessions, args)).items():
                            results.setdefault(key, []).extend(values)
                results[f"takeover{lease}"] = [
                    await takeover(replicas, pair, lease) for _ in range(args.runs)
                ]
                replicas.stop()
        finally:
            replicas.stop()


# one serve on a Sentinel group ---------------------------------------------------------


async def failover(fleet: Fleet, group: SentinelGroup, sid: str) -> tuple[float, float, int, int]:
    """(kill → promoted, kill → first 2xx, 503s meanwhile, answers neither 2xx nor 503)
    for one SIGKILLed primary."""
    answers: list[tuple[float, float, int]] = []  # (sent, answered, status)
    stop = asyncio.Event()

    async def client() -> None:
        n = 0
        while not stop.is_set():
            body = {"to": TO, "text": f"failover {n}", "idempotencyKey": f"f{time.time_ns()}"}
            while not stop.is_set():  # a 503 is asked again, with the same key
                sent = time.monotonic()
                try:
                    status, _ = await fleet.call("POST", f"/api/sessions/{sid}/messages", body)
                except aiohttp.ClientError:
                    status = 0
                answers.append((sent, time.monotonic(), status))
                if 200 <= status < 300:
                    break
                await asyncio.sleep(0.02)
            n += 1
            await asyncio.sleep(0.02)

    task = asyncio.create_task(client())
    try:
        await asyncio.sleep(1.0)
        old = await asyncio.to_thread(group.kill_primary)
        killed = time.monotonic()
        new_port, promoted = await group.wait_promoted(old.port)
        await asyncio.to_thread(group.start_node, old, new_port)

        async def back() -> tuple[float, float, int] | None:
            after = [a for a in answers if a[0] > killed and 200 <= a[2] < 300]
            return after[0] if after else None

        first = await poll(back, 60, "a 2xx after the kill")
        await asyncio.to_thread(group.wait_settled, new_port)
    finally:
        stop.set()
        await task
    refused = sum(1 for a in answers if killed < a[1] <= first[1] and a[2] == 503)
    wrong = sum(1 for a in answers if not (200 <= a[2] < 300 or a[2] == 503))
    return promoted - killed, first[1] - killed, refused, wrong


async def sentinel_part(args: argparse.Namespace, results: Results) -> None:
    folder = Path(tempfile.mkdtemp(prefix="wafleet-ha-sentinel-bench-"))
    group = SentinelGroup(folder)
    try:
        await asyncio.to_thread(group.start)
        env = {**NO_LIMITS, **group.settings(REDIS_WAIT_REPLICAS="0")}
        async with bench_fleet("ha-redis", 1, env) as fleet:
            phone = "972540000001"
            sid = str((await fleet.link(phone))["id"])
            for wait in ("0", "1"):
                if fleet.env["REDIS_WAIT_REPLICAS"] != wait:
                    fleet.stop()
                    fleet.env["REDIS_WAIT_REPLICAS"] = wait
                    await asyncio.to_thread(fleet.start)
                    await fleet.wait_status(sid, "connected", 30)
                await latency(fleet, sid, phone, 10)  # warm up
                for _ in range(args.runs):
                    samples = await latency(fleet, sid, phone, args.latency)
                    results.setdefault(f"p50wait{wait}", []).append(percentile(samples, 50))
                    results.setdefault(f"p99wait{wait}", []).append(percentile(samples, 99))
            for _ in range(args.runs):  # REDIS_WAIT_REPLICAS=1, the default
                promoted, window, refused, wrong = await failover(fleet, group, sid)
                results.setdefault("promoted", []).append(promoted)
                results.setdefault("window", []).append(window)
                results.setdefault("refused", []).append(float(refused))
                results.setdefault("wrong", []).append(float(wrong))
    finally:
        group.stop()
        shutil.rmtree(folder, ignore_errors=True)


# the table -------------------------------------------------------------------------------


def table(results: Results, args: argparse.Namespace) -> str:
    def ratio(key: str) -> list[float]:
        return [two / one for one, two in zip(results[f"{key}1"], results[f"{key}2"], strict=True)]

    lines = [table_header(WIDTH)]
    for lease in LEASES_MS:
        target = f"< {lease / 1000 + 2:.0f} s"
        name = f"leader SIGKILLed → other leads, lease {lease} ms"
        lines.append(row(name, results[f"takeover{lease}"], "s", target, WIDTH))
    measures: list[tuple[str, str, str]] = [
        ("Redis primary SIGKILLed → Sentinels name replica", "promoted", "s"),
        ("Redis primary SIGKILLed → first 2xx (503 window)", "window", "s"),
        ("503 answers in that window (client retries 20 ms)", "refused", "n"),
        (f"PINGs at /webhook, 1 replica ({args.events} a run)", "pings1", "/s"),
        ("PINGs at /webhook, 2 replicas", "pings2", "/s"),
        (f"messages accepted, 1 replica ({args.messages} a run)", "messages1", "/s"),
        ("messages accepted, 2 replicas", "messages2", "/s"),
        ("accepted → sent p50, REDIS_WAIT_REPLICAS=1", "p50wait1", "ms"),
        ("accepted → sent p99, REDIS_WAIT_REPLICAS=1", "p99wait1", "ms"),
        ("accepted → sent p50, REDIS_WAIT_REPLICAS=0", "p50wait0", "ms"),
        ("accepted → sent p99, REDIS_WAIT_REPLICAS=0", "p99wait0", "ms"),
    ]
    for name, key, unit in measures:
        lines.append(row(name, results[key], unit, "—", WIDTH))
        if key.endswith("2"):
            lines.append(row("  ratio 2 replicas / 1", ratio(key[:-1]), "x", "—", WIDTH))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    results: Results = {}
    await replicas_part(args, results)
    await sentinel_part(args, results)
    print(
        f"\n{os.cpu_count()} cores, loopback; {args.runs} runs (median, min, max); "
        f"{args.sessions} sessions for throughput, {args.latency} messages a latency run\n"
    )
    print(table(results, args))
    if sum(results["wrong"]):
        print(f"\nanswers neither 2xx nor 503 during the failovers: {sum(results['wrong']):.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--sessions", type=int, help="linked sessions for throughput (4)")
    parser.add_argument("--events", type=int, help="PINGs a throughput run (2000)")
    parser.add_argument("--messages", type=int, help="messages a throughput run (400)")
    parser.add_argument("--latency", type=int, help="messages a latency run (200)")
    parsed = parser.parse_args()
    sizes = {
        "sessions": (4, 2),
        "events": (2000, 500),
        "messages": (400, 100),
        "latency": (200, 50),
    }
    for name, (full, quick) in sizes.items():
        if getattr(parsed, name) is None:
            setattr(parsed, name, quick if parsed.quick else full)
    asyncio.run(main(parsed))
