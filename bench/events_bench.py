"""Benchmark of incoming events: posted by a worker → delivered to the operator's endpoint.

Starts a real stack on loopback (redis-server, microsocks, simwa, ``wafleet serve`` with
``EVENTS_WEBHOOK_URL`` set) and an aiohttp endpoint in this process playing the operator
(``tests/event_receiver.py``: it checks every signature). Events are posted exactly as a
worker posts them (signed ``MESSAGE_IN`` with an id, to ``/webhook``). Prints medians over
several runs:

- latency: one event at a time, round robin over the sessions; from the start of the
  worker's POST to the event's arrival at the endpoint (p50 and p99 of each run);
- throughput: a burst of events posted by several concurrent "workers" across the
  sessions; events delivered per second, from the first post to the last arrival.

Usage: python bench/events_bench.py [--runs 3] [--sessions 8] [--events 200] [--burst 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

import aiohttp
from _common import bench_fleet, percentile

from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, session_secret, sign
from tests.event_receiver import EVENTS_SECRET, Receiver
from tests.fleet import WEBHOOK_SECRET


class Poster:
    """Signs and posts worker events the way ``worker/webhook_client.py`` does."""

    def __init__(self, http: aiohttp.ClientSession, api: str) -> None:
        self.http = http
        self.url = api + "/webhook"

    async def post(self, sid: str, n: int) -> str:
        worker_id = uuid.uuid4().hex
        ts = time.time_ns() // 1_000_000
        body = json.dumps(
            {
                "id": worker_id,
                "sessionId": sid,
                "type": "MESSAGE_IN",
                "data": {"messageId": f"m{n}", "from": "972541112233", "text": f"hi {n}"},
                "timestamp": ts,
            }
        ).encode()
        headers = {
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(session_secret(WEBHOOK_SECRET, sid), ts, body),
            "Content-Type": "application/json",
        }
        async with self.http.post(self.url, data=body, headers=headers) as answer:
            if answer.status != 200:
                raise RuntimeError(f"webhook answered {answer.status}: {await answer.text()}")
        return f"{sid}.{worker_id}"


def arrivals(receiver: Receiver) -> dict[str, float]:
    found: dict[str, float] = {}
    for hit in receiver.hits:
        if hit.status == 200 and hit.signed:
            found.setdefault(hit.event_id, hit.at)
    return found


async def wait_for(receiver: Receiver, ids: list[str], limit_s: float = 120.0) -> dict[str, float]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        got = arrivals(receiver)
        if all(i in got for i in ids):
            return got
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{len(ids) - len(set(ids) & set(arrivals(receiver)))} events missing")


async def latency_run(
    poster: Poster, receiver: Receiver, sids: list[str], events: int
) -> list[float]:
    started: dict[str, float] = {}
    for n in range(events):
        t0 = time.monotonic()
        event_id = await poster.post(sids[n % len(sids)], n)
        started[event_id] = t0
        await wait_for(receiver, [event_id], limit_s=30)
    got = arrivals(receiver)
    return sorted((got[i] - t0) * 1000 for i, t0 in started.items())


async def burst_run(
    poster: Poster, receiver: Receiver, sids: list[str], burst: int, concurrency: int
) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(burst):
        queue.put_nowait(n)
    ids: list[str] = []

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            ids.append(await poster.post(sids[n % len(sids)], n))

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    got = await wait_for(receiver, ids)
    return burst / (max(got[i] for i in ids) - t0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    receiver = Receiver()
    await receiver.start()
    try:
        env = {
            "LOG_LEVEL": "WARNING",
            "EVENTS_WEBHOOK_URL": receiver.url(),
            "EVENTS_WEBHOOK_SECRET": EVENTS_SECRET,
        }
        async with bench_fleet("events", args.sessions // 4 + 1, env) as fleet:
            sids = [
                str((await fleet.provision(f"97250{n:07d}"))["id"]) for n in range(args.sessions)
            ]
            poster = Poster(fleet.http, fleet.api)
            p50s, p99s, rates = [], [], []
            for _ in range(args.runs):
                samples = await latency_run(poster, receiver, sids, args.events)
                p50s.append(percentile(samples, 50))
                p99s.append(percentile(samples, 99))
                rates.append(await burst_run(poster, receiver, sids, args.burst, args.concurrency))
    finally:
        await receiver.stop()
    assert all(hit.signed for hit in receiver.hits), "a delivery with a bad signature"
    print(f"sessions {args.sessions}, {args.runs} runs (median of the runs; min-max)")
    print("| measure | median | min | max |")
    print("|---|---|---|---|")
    for name, values, unit in (
        ("posted → delivered, p50", p50s, "ms"),
        ("posted → delivered, p99", p99s, "ms"),
        (f"burst of {args.burst}, delivered", rates, "events/s"),
    ):
        print(
            f"| {name} | {statistics.median(values):.1f} {unit} | {min(values):.1f} | "
            f"{max(values):.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
