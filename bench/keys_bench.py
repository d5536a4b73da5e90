"""Benchmark of what checking an API key costs on the hot paths: a real stack on loopback
(redis-server, microsocks, simwa, ``wafleet serve``, sim workers), requests one at a time.

- ``GET /api/sessions/:id/status`` and ``POST /api/sessions/:id/messages`` (a 202: the session
  is not linked, so the message waits) with ``API_KEY`` (a constant-time compare), with a
  client key already verified by this ``serve`` (one Redis read, its token bucket, the
  owner check), and with a client key's first use (the scrypt: the key is rotated before
  each such request, so each presents a secret this ``serve`` has not seen);
- a signed ``PING`` at ``/webhook`` with 200 issued keys and with none (their records taken
  out of Redis for the run, then put back): the webhook takes no API key, so the two must
  not differ.

Each measure is the p50 of a run's requests in ms; the table gives the median of the runs,
their min and max.

Usage: python bench/keys_bench.py [--runs 3] [--requests 200] [--first-uses 10] [--keys 200]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
from _common import bench_fleet, percentile, row, table_header, timed

from core import keys
from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, session_secret, sign
from tests.fleet import API_KEY, WEBHOOK_SECRET, Fleet

ENV = {
    "LOG_LEVEL": "WARNING",
    "MAX_SESSIONS_PER_PROXY": "50",
    "PING_TIMEOUT_MS": "60000",
    "WORKER_PRESENCE_INTERVAL_MS": "5000",
    "WATCHDOG_INTERVAL_MS": "5000",
}
TO = "14155550123"
WIDTH = 52
Results = dict[str, list[float]]


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, key: str, body: Any, wanted: int
) -> Any:
    async with http.request(method, url, json=body, headers={"X-API-Key": key}) as answer:
        if answer.status != wanted:
            raise RuntimeError(f"{method} {url} answered {answer.status}: {await answer.text()}")
        return await answer.json()


class Hot:
    """The two key-checked hot paths of one session, as one caller."""

    def __init__(self, fleet: Fleet, sid: str) -> None:
        self.fleet = fleet
        self.sid = sid
        self.n = 0

    async def status(self, key: str) -> None:
        url = f"{self.fleet.api}/api/sessions/{self.sid}/status"
        await _call(self.fleet.http, "GET", url, key, None, 200)

    async def message(self, key: str) -> None:
        self.n += 1
        url = f"{self.fleet.api}/api/sessions/{self.sid}/messages"
        await _call(self.fleet.http, "POST", url, key, {"to": TO, "text": f"hi {self.n}"}, 202)


async def ping(fleet: Fleet, sid: str) -> None:
    """A PING signed with the session's own secret, as a worker sends one."""
    now = time.time_ns() // 1_000_000
    event = {"sessionId": sid, "type": "PING", "data": {"timestamp": now}, "timestamp": now}
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: sign(session_secret(WEBHOOK_SECRET, sid), now, body),
        "Content-Type": "application/json",
    }
    async with fleet.http.post(fleet.api + "/webhook", data=body, headers=headers) as answer:
        if answer.status != 200:
            raise RuntimeError(f"webhook answered {answer.status}: {await answer.text()}")


async def p50_ms(samples: int, call: Callable[[], Awaitable[Any]]) -> float:
    return percentile(await timed(samples, call), 50) * 1000


async def admin(fleet: Fleet, method: str, path: str, body: Any, wanted: int) -> Any:
    return await _call(fleet.http, method, fleet.api + path, API_KEY, body, wanted)


async def rotate(fleet: Fleet, key_id: str) -> str:
    found = await admin(fleet, "POST", f"/api/v1/keys/{key_id}/rotate", None, 201)
    return str(found["key"])


class Issued:
    """Every issued key's record, taken out of Redis and put back as it was."""

    def __init__(self, fleet: Fleet) -> None:
        self.redis = fleet.redis
        self.records: dict[str, dict[str, str]] = {}

    async def save(self) -> None:
        ids = cast("set[str]", await self.redis.smembers(keys.API_KEYS))
        self.records = {
            i: cast("dict[str, str]", await self.redis.hgetall(keys.api_key(i))) for i in ids
        }

    async def remove(self) -> None:
        await self.redis.delete(keys.API_KEYS, *(keys.api_key(i) for i in self.records))

    async def put_back(self) -> None:
        for key_id, record in self.records.items():
            await self.redis.hset(keys.api_key(key_id), mapping=record)  # type: ignore[arg-type]
            await self.redis.sadd(keys.API_KEYS, key_id)


async def first_uses(
    fleet: Fleet, key_id: str, count: int, use: Callable[[str], Awaitable[None]]
) -> float:
    """p50 of ``count`` first uses: each after a rotation, so each secret is new here."""
    took = []
    for _ in range(count):
        fresh = await rotate(fleet, key_id)
        start = time.perf_counter()
        await use(fresh)
        took.append(time.perf_counter() - start)
    return percentile(took, 50) * 1000


async def measure(args: argparse.Namespace) -> Results:
    results: Results = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    async with bench_fleet("keys", 1, ENV) as fleet:
        admin_sid = str((await fleet.provision("972500000001"))["id"])
        made = await admin(
            fleet,
            "POST",
            "/api/v1/keys",
            {"name": "c0", "scope": "client", "ratePerS": 10000},
            201,
        )
        client, key_id = made["key"], made["id"]
        provision = fleet.api + "/api/sessions/provision"
        body = {"phone": "972500000002"}
        client_sid = str((await _call(fleet.http, "POST", provision, client, body, 201))["id"])
        for n in range(1, args.keys):
            body = {"name": f"k{n}", "scope": ("client", "read", "admin")[n % 3]}
            await admin(fleet, "POST", "/api/v1/keys", body, 201)
        issued = Issued(fleet)
        await issued.save()
        mine, theirs = Hot(fleet, client_sid), Hot(fleet, admin_sid)
        for _ in range(args.runs):
            # The same serve, the same sessions: only whether the keys exist differs.
            await issued.remove()
            add("webhook0", await p50_ms(args.requests, lambda: ping(fleet, admin_sid)))
            await issued.put_back()
            add("webhookN", await p50_ms(args.requests, lambda: ping(fleet, admin_sid)))
            add("statusA", await p50_ms(args.requests, lambda: theirs.status(API_KEY)))
            await mine.status(client)  # verified once: the rest hit the cache
            add("statusC", await p50_ms(args.requests, functools.partial(mine.status, client)))
            add("statusF", await first_uses(fleet, key_id, args.first_uses, mine.status))
            client = await rotate(fleet, key_id)
            add("messageA", await p50_ms(args.requests, lambda: theirs.message(API_KEY)))
            await mine.message(client)
            add("messageC", await p50_ms(args.requests, functools.partial(mine.message, client)))
            add("messageF", await first_uses(fleet, key_id, args.first_uses, mine.message))
            client = await rotate(fleet, key_id)
            await issued.save()  # the rotations changed c0's record
    return results


def table(results: Results, args: argparse.Namespace) -> str:
    lines = [table_header(WIDTH)]
    for name, key in (
        ("GET …/status, API_KEY", "statusA"),
        ("GET …/status, client key (verified before)", "statusC"),
        ("GET …/status, client key's first use (scrypt)", "statusF"),
        ("POST …/messages, API_KEY", "messageA"),
        ("POST …/messages, client key (verified before)", "messageC"),
        ("POST …/messages, client key's first use (scrypt)", "messageF"),
        ("POST /webhook PING, no key issued", "webhook0"),
        (f"POST /webhook PING, {args.keys} keys issued", "webhookN"),
    ):
        lines.append(row(name, results[key], "ms", "—", WIDTH))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    results = await measure(args)
    print(
        f"\n{os.cpu_count()} cores, loopback; {args.runs} runs (median, min, max) of each "
        f"run's p50; {args.requests} requests a run, {args.first_uses} first uses a run\n"
    )
    print(table(results, args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--first-uses", type=int, default=10)
    parser.add_argument("--keys", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
