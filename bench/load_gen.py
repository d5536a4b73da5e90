"""``serve`` alone at 10,000 sessions, with this script playing the workers.

No worker process runs: 10,000 session records are written to a real Redis (2,500 proxy
records at 4 sessions each, every session linked), then this asyncio script sends what
10,000 workers would send to ``POST /webhook``, signed with each session's own secret:
a PING per session every ``WORKER_PRESENCE_INTERVAL_MS`` (15 s, the real interval), spread
evenly, and a steady share of disconnects each followed by a reconnect a few seconds later;
and, as every idle worker does, one long poll of the command channel (``POST
/worker/commands``, signed, held 25 s) open per session at all times (``--no-polls``: PINGs
and events only, as the bench was before the command channel existed).
Meanwhile it measures ``serve``'s RSS and CPU, a watchdog pass, the listing's pages, and at
the end a burst of 1,000 disconnects: how many alerts reach the chat (a fake Telegram Bot
API on loopback, ``tests/fake_telegram.py``) and the log, and how long until all are handled.

``serve`` is started *before* the records are written, so its start-up reconcile finds an
empty fleet and starts no worker; the pings keep every session fresh, so the watchdog
restarts none either (the script stops if a worker process appears).

Usage: python bench/load_gen.py [--sessions 10000] [--seconds 60] [--burst 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import sample, timed  # noqa: E402

from core import keys  # noqa: E402
from core.clock import SystemClock  # noqa: E402
from core.metrics import Metrics  # noqa: E402
from core.notifier import LogNotifier  # noqa: E402
from core.process_runner import ProcessRunner, find_workers  # noqa: E402
from core.proxies import ProxyPool  # noqa: E402
from core.sessions import SessionService  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, session_secret, sign  # noqa: E402
from core.store import Store  # noqa: E402
from tests.fake_telegram import CHAT, FakeTelegram  # noqa: E402
from tests.fleet import API_KEY, WEBHOOK_SECRET  # noqa: E402
from wafleet import devstack  # noqa: E402
from wafleet.serve import instance_id  # noqa: E402

PRESENCE_MS = 15_000  # the worker's real ping interval (WORKER_PRESENCE_INTERVAL_MS)
POLL_MS = 25_000  # the worker's real command-channel poll (POLL_WAIT_MS, COMMAND_POLL_MS)


class Workers:
    """10,000 workers' webhook traffic from one process."""

    def __init__(self, api: str, http: aiohttp.ClientSession, sids: list[str]) -> None:
        self.url = api + "/webhook"
        self.http = http
        self.sids = sids
        self.secrets = {sid: session_secret(WEBHOOK_SECRET, sid) for sid in sids}
        self.phones = {sid: f"97250{int(sid.split('_')[1]):07d}" for sid in sids}
        self.gate = asyncio.Semaphore(64)
        self.sent = 0
        self.failed = 0
        self.polls = 0
        self.poll_failures = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def post(self, sid: str, kind: str, data: dict[str, Any]) -> None:
        event = {
            "sessionId": sid,
            "type": kind,
            "data": data,
            "timestamp": int(time.time() * 1000),
        }
        if kind != "PING":
            event["id"] = uuid.uuid4().hex
        body, headers = self.signed(sid, event)
        async with self.gate:
            try:
                async with self.http.post(self.url, data=body, headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
        self.sent += 1
        self.failed += not ok

    def signed(self, sid: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        now = time.time_ns() // 1_000_000
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(now),
            SIGNATURE_HEADER: sign(self.secrets[sid], now, body),
        }
        return body, headers

    async def poll_forever(self, http: aiohttp.ClientSession, sid: str, api: str) -> None:
        """One worker's command channel: a long poll open at all times, as an idle worker
        keeps one (started at a random point of the poll, as workers link at random times)."""
        await asyncio.sleep(random.uniform(0, POLL_MS / 1000))
        while True:
            body, headers = self.signed(sid, {"sessionId": sid, "waitMs": POLL_MS})
            try:
                async with http.post(api + "/worker/commands", data=body, headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            self.polls += 1
            if not ok:
                self.poll_failures += 1
                await asyncio.sleep(1)  # the worker backs off too

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, churn_per_s: float) -> None:
        """PINGs spread evenly over the interval; ``churn_per_s`` disconnect → reconnect."""
        tick = 0.1
        per_tick = len(self.sids) * tick / (PRESENCE_MS / 1000)
        owed, at, churn_owed = 0.0, 0, 0.0
        next_tick = time.monotonic()
        while True:
            owed += per_tick
            while owed >= 1:
                owed -= 1
                self.spawn(self.post(self.sids[at], "PING", {"timestamp": int(time.time())}))
                at = (at + 1) % len(self.sids)
            churn_owed += churn_per_s * tick
            while churn_owed >= 1:
                churn_owed -= 1
                self.spawn(self.flap(random.choice(self.sids)))
            next_tick += tick
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def flap(self, sid: str, down_s: float = 5.0) -> None:
        await self.disconnect(sid)
        await asyncio.sleep(down_s)
        await self.post(sid, "CONNECTED", {"phoneNumber": self.phones[sid]})

    async def disconnect(self, sid: str) -> None:
        data = {"reason": "connection lost", "code": "connection_lost"}
        await self.post(sid, "DISCONNECTED", data)


async def seed(store: Store, n: int, cap: int) -> list[str]:
    """``n`` linked sessions on ``n / cap`` proxy records (never contacted: no PROXY_ERROR
    is sent, so the prober never probes them; they name loopback ports all the same).

    Each provision lets ``provision.lua`` pick the least-loaded proxy, as a real one does:
    with the proxy load index that is O(log n) (it read all 2,500 proxies each time before,
    and seeding took minutes, so this named each proxy then)."""
    urls = [f"socks5h://wa:pw@127.0.0.1:{20000 + p}" for p in range((n + cap - 1) // cap)]
    for url in urls:
        await store.add_proxy(url)
    now = time.time_ns() // 1_000_000
    sids = []
    for _ in range(n):
        sid, _ = await store.reserve("", "", cap, 4, now)
        sids.append(sid)
    pipe = store.redis.pipeline(transaction=False)
    for sid in sids:
        phone = f"97250{int(sid.split('_')[1]):07d}"
        pipe.set(keys.session(sid, "phone"), phone)
    await pipe.execute()
    for sid in sids:
        await store.mark_connected(sid, f"97250{int(sid.split('_')[1]):07d}", now)
    return sids


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=60, help="steady-state sampling")
    parser.add_argument("--churn", type=float, default=2.0, help="disconnects per second")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="samples of each latency")
    parser.add_argument(
        "--no-polls", action="store_true", help="no command-channel long polls (the old bench)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="wafleet-load-"))
    redis_proc, redis_url = devstack.start_redis(workdir / "redis")
    telegram = FakeTelegram()
    await telegram.start()
    env = devstack.serve_env(workdir, redis_url, [], devstack.free_port(), API_KEY, WEBHOOK_SECRET)
    env |= {
        "WORKER_PRESENCE_INTERVAL_MS": str(PRESENCE_MS),
        "PING_TIMEOUT_MS": "180000",
        "WATCHDOG_INTERVAL_MS": "60000",
        "LOG_LEVEL": "INFO",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_CHAT_ID": str(CHAT),
        "TELEGRAM_ADMIN_IDS": "1001",
    }
    settings = Settings.from_env(env)
    port = devstack.free_port()
    serve = devstack.start_serve(workdir, env, port)
    pid = serve.popen.pid
    api = f"http://127.0.0.1:{port}"
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client)
    out: dict[str, Any] = {"sessions": args.sessions}
    tasks: list[asyncio.Task[None]] = []
    poll_http: aiohttp.ClientSession | None = None
    try:
        out["serve RSS, empty (MB)"], out["serve CPU, empty (% of a core)"] = await sample(pid, 10)
        mem0 = int((await client.info("memory"))["used_memory"])
        t = time.perf_counter()
        sids = await seed(store, args.sessions, settings.max_sessions_per_proxy)
        out["seed (s)"] = time.perf_counter() - t
        out["Redis bytes per session"] = (
            int((await client.info("memory"))["used_memory"]) - mem0
        ) / args.sessions
        conn = aiohttp.TCPConnector(limit=128)
        async with aiohttp.ClientSession(connector=conn, headers={"X-API-Key": API_KEY}) as http:
            workers = Workers(api, http, sids)
            tasks.append(asyncio.create_task(workers.run(args.churn)))
            # The polls on connections of their own (10,000 held open at once).
            poll_http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=POLL_MS / 1000 + 30),
            )
            if not args.no_polls:
                tasks.extend(
                    asyncio.create_task(workers.poll_forever(poll_http, sid, api)) for sid in sids
                )
            # One full round of pings first, and of polls when they run.
            await asyncio.sleep((PRESENCE_MS if args.no_polls else POLL_MS) / 1000 + 5)
            sent0, polls0, t0 = workers.sent, workers.polls, time.monotonic()
            rss, cpu = await sample(pid, args.seconds)
            took = time.monotonic() - t0
            out["PINGs + events sent per s"] = (workers.sent - sent0) / took
            out["command polls answered per s"] = (workers.polls - polls0) / took
            out["serve RSS (MB)"], out["serve CPU (% of a core)"] = rss, cpu
            out["webhook failures"] = workers.failed
            out["poll failures"] = workers.poll_failures
            if find_workers(instance_id(settings)):
                raise SystemExit("a worker process started: the bench is no longer serve alone")

            # The watchdog pass as serve runs it, on the same Redis (nothing is stale).
            runner = ProcessRunner("load-gen-bench", stop_grace_s=1)
            pool = ProxyPool(store, LogNotifier(), settings.max_sessions_per_proxy)
            service = SessionService(
                settings, store, pool, runner, LogNotifier(), SystemClock(), Metrics()
            )
            passes = await timed(args.runs, service.check_pings)
            out["watchdog pass (s)"] = statistics.median(passes)
            await runner.close()

            async def get(path: str) -> None:
                async with http.get(api + path) as r:
                    assert r.status == 200, (path, r.status)
                    await r.read()

            deep = sids[-150]
            for name, path in (
                ("listing, 100 a page (s)", "/api/v1/dashboard/sessions?limit=100"),
                ("listing, default page of 500 (s)", "/api/v1/dashboard/sessions"),
                ("listing, 1000 a page (s)", "/api/v1/dashboard/sessions?limit=1000"),
                ("listing, last page (s)", f"/api/v1/dashboard/sessions?limit=100&cursor={deep}"),
                ("stats (s)", "/api/v1/dashboard/stats"),
                ("/metrics (s)", "/metrics"),
            ):
                out[name] = statistics.median(await timed(args.runs, functools.partial(get, path)))

            # A burst of disconnects: what the chat and the log get, and how fast.
            tasks[0].cancel()  # the steady load stops, so the burst is all that is counted
            await asyncio.gather(*workers.tasks, return_exceptions=True)
            await asyncio.sleep(8)  # the churn's own alerts are sent
            burst = random.sample(sids, args.burst)
            log_before = (workdir / "serve.log").read_text(errors="replace").count("\n")
            chat_before = len(telegram.calls_of("sendMessage", CHAT))
            t0 = time.monotonic()
            await asyncio.gather(*(workers.disconnect(sid) for sid in burst))
            out["burst: all events accepted (s)"] = time.monotonic() - t0
            last_chat = t0
            quiet_since = time.monotonic()
            seen = chat_before
            while time.monotonic() - quiet_since < 10:
                now_seen = len(telegram.calls_of("sendMessage", CHAT))
                if now_seen != seen:
                    seen, last_chat, quiet_since = now_seen, time.monotonic(), time.monotonic()
                await asyncio.sleep(0.05)
            pipe = client.pipeline(transaction=False)
            for sid in burst:
                pipe.get(keys.session(sid, "status"))
            statuses = await pipe.execute()
            lines = (workdir / "serve.log").read_text(errors="replace").splitlines()[log_before:]
            out["burst: sessions marked disconnected"] = statuses.count("disconnected")
            out["burst: chat messages"] = seen - chat_before
            out["burst: last chat message after (s)"] = last_chat - t0
            out["burst: alert log lines"] = sum("wafleet.alerts" in ln for ln in lines)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if poll_http is not None:
            await poll_http.close()
        serve.stop()
        await telegram.stop()
        await client.aclose()
        redis_proc.stop()
    print(json.dumps(out, indent=1))
    rows = ["| measure | value |", "|---|---|"]
    for name, value in out.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        rows.append(f"| {name} | {shown} |")
    print("\n".join(rows))
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    asyncio.run(main())
