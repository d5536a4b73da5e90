"""What a finished message costs in Redis: bytes per message, for capacity planning.

Starts a real redis-server on loopback and drives ``MessageService`` (and, for the
receipts, ``EventLog``) exactly as ``serve`` does: accept (with an idempotency key, as a
careful client sends), take (the command handed to the worker), the worker's ``sent``
acknowledgement, then the ``sent`` / ``delivered`` / ``read`` status events, each stored once
on the session's operator stream and applied to the record. Prints Redis's ``used_memory``
growth per message, split by how long each part stays:

- the message itself (its record, idempotency key, index entry): ``MESSAGE_RETENTION_DAYS``
  after it finished;
- its three receipts on the operator stream: ``EVENTS_RETENTION_MS`` once delivered;
- the per-day send log and the receipts' applied-once marks: a day.

The session is made by hand (its status key), since only the message path is measured.

Usage: python bench/message_memory_bench.py [--messages 5000] [--sessions 10] [--text 120]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import keys  # noqa: E402
from core.clock import ManualClock  # noqa: E402
from core.event_log import EventLog  # noqa: E402
from core.messages import MessageService  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import Store  # noqa: E402
from wafleet import devstack  # noqa: E402

# Which keys a finished message leaves, by how long they stay.
FAMILIES = {
    "message (MESSAGE_RETENTION_DAYS)": re.compile(r"wafleet:(message|msgkey|msgids):"),
    "receipts (EVENTS_RETENTION_MS)": re.compile(r"wafleet:events:worker_\d+$"),
    "one day (send log, applied-once marks)": re.compile(r"wafleet:(sendlog:|events:.*:written:)"),
}


async def used_memory(store: Store) -> int:
    info = await store.redis.info("memory")
    return int(info["used_memory"]) - int(info.get("used_memory_scripts", 0))


async def by_family(store: Store) -> dict[str, int]:
    """``MEMORY USAGE`` (exact, ``SAMPLES 0``) summed over each family's keys."""
    sums = dict.fromkeys(FAMILIES, 0)
    async for key in store.redis.scan_iter(count=1000):
        for name, pattern in FAMILIES.items():
            if pattern.match(key):
                sums[name] += int(await store.redis.memory_usage(key, samples=0) or 0)
    return sums


async def run(messages: int, sessions: int, text_len: int, url: str) -> None:
    store = Store.connect(url)
    settings = Settings(
        api_key="x" * 32,
        webhook_secret="y" * 32,
        redis_url=url,
        messages_per_minute=0,
        messages_per_day=0,
        message_pause_min_ms=0,
        message_pause_max_ms=0,
    )
    clock = ManualClock()
    service = MessageService(store, settings, clock)
    stream = EventLog(store.redis, settings.events_retention_ms)
    sids = [f"worker_{n}" for n in range(1, sessions + 1)]
    for sid in sids:
        await store.redis.set(keys.session(sid, "status"), "connected")
        await store.redis.set(keys.session(sid, "created"), clock.now_ms())
    body = ("Your order 12345 is on its way, track it at example.com/t/12345. " * 80)[:text_len]

    async def one(n: int) -> None:
        sid = sids[n % sessions]
        found, _ = await service.accept(sid, "+1 415 555 0123", body, f"order-{uuid.uuid4()}")
        commands, _ = await service.take(sid)
        assert [c["id"] for c in commands] == [found.id], commands
        await service.update(sid, found.id, "sent", None, ack=True)
        for status in ("sent", "delivered", "read"):
            data = {"messageId": found.id, "status": status, "bootId": "b" * 16}
            eid = f"{found.id}-{status}"
            await stream.append(sid, eid, "MESSAGE_STATUS", data, clock.now_ms())
            await service.update(sid, found.id, status, None, ack=False)
        clock.advance(0.01)

    before = await used_memory(store)
    for n in range(messages):
        await one(n)
    total = (await used_memory(store) - before) / messages
    families = {name: value / messages for name, value in (await by_family(store)).items()}
    await store.close()
    print(f"{messages} messages read, {sessions} sessions, text {text_len} characters")
    print(f"  Redis used_memory: {total:.0f} B/message, of which (MEMORY USAGE of the keys):")
    for name, value in families.items():
        print(f"    {name}: {value:.0f} B/message")
    rest = total - sum(families.values())
    print(f"    the keyspace's own tables (key and expiry entries, growth): {rest:.0f} B/message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--text", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = devstack.start_redis(Path(tmp))
        try:
            asyncio.run(run(args.messages, args.sessions, args.text, url))
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
