"""Outgoing messages: accepted durably, handed to the worker one at a time, within limits.

A 202 is a promise, so everything lives in Redis (AOF) and every change is one Lua script:
accept (with its idempotency key), take (the next message for the worker, if the limits
allow), update (the worker's report; statuses only move forward) and expire. The worker
sends with a WhatsApp id derived from our id, so a message handed out again after a crash
is the same message at WhatsApp, never a second one: at most once.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core import keys, text
from core.clock import Clock
from core.errors import InvalidInput, NotFound
from core.media import Media
from core.media.registry import MediaRecord, record_fields
from core.message_media import check_caption, command_media
from core.phone import normalize as normalize_phone
from core.settings import Settings
from core.store import Store, load_script
from core.tasks import every

MAX_TEXT = 4096  # characters; WhatsApp allows more, an operator's notification needs less
MAX_IDEMPOTENCY_KEY = 128
MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
STATUSES = ("queued", "sent", "delivered", "read", "failed")
WORKER_STATUSES = frozenset({"sent", "delivered", "read", "failed"})
EXPIRE_BATCH = 500
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Message:
    id: str
    session: str
    to: str
    status: str
    reason: str | None
    media: MediaRecord | None = None
    caption: str | None = None

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "to": self.to, "status": self.status}
        if self.reason:
            body["reason"] = self.reason
        if self.media is not None:
            body["media"] = self.media.public()
            if self.caption:
                body["caption"] = self.caption
        return body


@dataclass(frozen=True)
class Counts:
    """Per session, for the chat's ``/status``: messages sent, received and failed."""

    sent: int = 0
    received: int = 0
    failed: int = 0


def check_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("text must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"text must be at most {MAX_TEXT} characters")
    return text.check(value, "text")


class MessageService:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self.redis = store.redis
        self.settings = settings
        self.clock = clock
        # A finished record (and its idempotency key) is kept this long for GET and resends.
        self.keep_ms = settings.message_retention_days * DAY_MS
        # Media links for the worker are signed when a command is handed out.
        self.media = Media.from_settings(settings, self.redis, clock)
        self._accept = self.redis.register_script(load_script("message_accept.lua"))
        self._take = self.redis.register_script(load_script("message_take.lua"))
        self._update = self.redis.register_script(load_script("message_update.lua"))
        self._expire = self.redis.register_script(load_script("message_expire.lua"))
        self._logged_out = self.redis.register_script(load_script("message_logged_out.lua"))
        self._forget = self.redis.register_script(load_script("message_forget.lua"))
        self._received = self.redis.register_script(load_script("message_received.lua"))
        self._fleet_counts_if_new = self.redis.register_script(
            load_script("message_fleet_counts.lua")
        )
        # Per session: set when something may now be handed to its worker, so a waiting
        # poll answers at once instead of at its next recheck.
        self._wakers: dict[str, asyncio.Event] = {}
        # Set by serve: passes every wake on to the other replicas (core/cluster_bus.py).
        self.on_wake: Callable[[str], None] | None = None

    # the operator's side ----------------------------------------------------------------

    async def accept(
        self,
        session_id: str,
        to: object,
        body: object,
        idempotency_key: object = None,
        media: MediaRecord | None = None,
    ) -> tuple[Message, bool]:
        """Queue a message; ``(message, created)``. Validated before anything is written.

        With ``media`` (a file already in the store), ``body`` is its optional caption and
        the media record is written in the same step as the message: a resend with a known
        idempotency key writes neither (its file, not named, goes with the next sweep)."""
        phone = normalize_phone(to)
        message_text = check_text(body) if media is None else check_caption(body)
        key = check_key(idempotency_key)
        media_args = [media.id, *record_fields(media)] if media is not None else [""]
        now = self.clock.now_ms()
        mid = uuid.uuid4().hex
        found = await self._accept(
            keys=[
                keys.message_key(session_id, key or ""),
                keys.message(mid),
                keys.message_queue(session_id),
                keys.message_deadlines(),
                keys.session(session_id, "status"),
                keys.session_logged_out(session_id),
                keys.message_counts(session_id),
                keys.fleet_message_counts(),
                keys.message_index(session_id),
            ],
            args=[
                mid,
                session_id,
                phone,
                message_text,
                now,
                now + self.settings.message_ttl_s * 1000,
                "1" if key else "0",
                self.keep_ms,
                key or "",
                *media_args,
            ],
        )
        mid, outcome = str(found[0]), str(found[1])
        if outcome == "no_session":
            raise NotFound(f"no session {session_id!r}")
        self.wake(session_id)
        return await self.get(session_id, mid), outcome == "new"

    async def existing(self, session_id: str, idempotency_key: str) -> Message | None:
        """The message an idempotency key already made (a resend need not upload again)."""
        mid = await self.redis.get(keys.message_key(session_id, idempotency_key))
        return None if mid is None else await self.get(session_id, str(mid))

    async def get(self, session_id: str, message_id: str) -> Message:
        if not MESSAGE_ID.fullmatch(message_id):
            raise NotFound(f"no message {message_id!r}")
        fields = await self.redis.hmget(
            keys.message(message_id), ["session", "to", "status", "reason", "media", "text"]
        )
        if fields[0] != session_id:
            raise NotFound(f"no message {message_id!r} in session {session_id!r}")
        reason = str(fields[3]) if fields[3] else None
        media = await self.media.registry.get(str(fields[4])) if fields[4] else None
        caption = str(fields[5]) if fields[4] and fields[5] else None
        return Message(
            message_id, session_id, str(fields[1]), str(fields[2]), reason, media, caption
        )

    async def counts(self, session_id: str) -> Counts:
        found = await self.redis.hgetall(keys.message_counts(session_id))
        return Counts(*(int(found.get(name, 0)) for name in ("sent", "received", "failed")))

    async def fleet_counts(self) -> Counts:
        """The whole fleet's counts: one hash, kept by the same scripts as each session's,
        so ``/stats`` costs the same at 10,000 sessions as at one."""
        found = await self.redis.hgetall(keys.fleet_message_counts())
        return Counts(*(int(found.get(name, 0)) for name in ("sent", "received", "failed")))

    async def count_fleet_if_new(self) -> Counts | None:
        """Data from before the fleet's counts existed (they came after the sessions'): sum
        every session's into them, once; None when they exist already (nothing read).

        Run at start, before anything can count. Written even when all zero, so the next
        start does not scan again; a count that lands between the scan and the write is not
        lost (the script writes only if the hash is still missing), only left out of it."""
        fleet = keys.fleet_message_counts()
        if await self.redis.exists(fleet):
            return None
        totals = dict.fromkeys(("sent", "received", "failed"), 0)
        async for key in self.redis.scan_iter(match=keys.message_counts("*"), count=1000):
            for name, value in (await self.redis.hgetall(key)).items():
                if name in totals:
                    totals[name] += int(value)
        await self._fleet_counts_if_new(keys=[fleet], args=list(totals.values()))
        return Counts(**totals)

    async def queued(self, session_id: str) -> int:
        """Messages waiting: in the queue, plus the one handed out and not yet reported."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(keys.message_queue(session_id))
        pipe.llen(keys.session_commands(session_id))
        waiting, held = await pipe.execute()
        return int(waiting) + int(held)

    async def set_limits(self, session_id: str, limits: dict[str, int]) -> dict[str, int]:
        await self.redis.hset(keys.send_limits(session_id), mapping=limits)  # type: ignore[arg-type]
        self.wake(session_id)
        return await self.limits(session_id)

    async def limits(self, session_id: str) -> dict[str, int]:
        """The limits in force for the session: its own where set, else the settings'."""
        own = await self.redis.hgetall(keys.send_limits(session_id))
        s = self.settings
        defaults = {
            "perMinute": s.messages_per_minute,
            "perDay": s.messages_per_day,
            "warmupDays": s.message_warmup_days,
        }
        return {name: int(own.get(name, default)) for name, default in defaults.items()}

    # the worker's side (the command channel) --------------------------------------------

    async def take(self, session_id: str) -> tuple[list[dict[str, Any]], int]:
        """The commands the session's worker must carry out now, and, when there are none,
        how long (ms) until a limit lets the next one go (-1: nothing is waiting)."""
        s = self.settings
        found = await self._take(
            keys=[
                keys.session_commands(session_id),
                keys.message_queue(session_id),
                keys.send_log(session_id),
                keys.send_state(session_id),
                keys.send_limits(session_id),
                keys.session(session_id, "status"),
                keys.session(session_id, "created"),
                keys.message_deadlines(),
                keys.message_counts(session_id),
                keys.fleet_message_counts(),
            ],
            args=[
                self.clock.now_ms(),
                s.messages_per_minute,
                s.messages_per_day,
                s.message_warmup_days,
                random.randint(s.message_pause_min_ms, s.message_pause_max_ms),
                self.keep_ms,
            ],
        )
        ids, wait_ms = [str(i) for i in found[0]], int(found[1])
        commands = []
        for mid in ids:
            fields = await self.redis.hmget(keys.message(mid), ["to", "text", "media"])
            media = await command_media(self.media, fields[2]) if fields[2] else None
            if fields[0] is None or fields[1] is None or (fields[2] and media is None):
                # Its record is gone (never expected): drop the command rather than offer
                # the worker something it could never acknowledge.
                await self.redis.lrem(keys.session_commands(session_id), 0, mid)
                continue
            command: dict[str, Any] = {
                "id": mid,
                "type": "send",
                "to": str(fields[0]),
                "text": str(fields[1]),
                "typingMs": self.typing_ms(str(fields[1])),
            }
            if media is not None:
                command["media"] = media
            commands.append(command)
        return commands, wait_ms

    def typing_ms(self, message_text: str) -> int:
        """ "typing..." for a time that fits the text, as a person would take."""
        s = self.settings
        return min(s.typing_max_ms, len(message_text) * s.typing_ms_per_char)

    async def update(
        self, session_id: str, message_id: str, status: str, reason: str | None, ack: bool
    ) -> bool:
        """Apply the worker's report about one of its session's messages; False when the
        message is not that session's (nothing changes)."""
        if not MESSAGE_ID.fullmatch(message_id) or status not in WORKER_STATUSES:
            return False
        applied = await self._update(
            keys=[
                keys.session_commands(session_id),
                keys.message_counts(session_id),
                keys.fleet_message_counts(),
            ],
            args=[
                "ack" if ack else "event",
                session_id,
                message_id,
                status,
                reason or "",
                self.keep_ms,
            ],
        )
        if ack:
            self.wake(session_id)  # the next message may go (after its pause)
        return bool(applied)

    async def all_of(self, session_id: str, message_ids: Sequence[str]) -> bool:
        """True when every one of ``message_ids`` is a message of this session."""
        if not all(MESSAGE_ID.fullmatch(mid) for mid in message_ids):
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            for mid in message_ids:
                pipe.hget(keys.message(mid), "session")
            owners = await pipe.execute()
        return all(owner == session_id for owner in owners)

    async def logged_out(self, session_id: str) -> None:
        """The session was logged out on the phone: its queue fails, and so do new
        messages, until it connects again."""
        await self._logged_out(
            keys=[
                keys.session_logged_out(session_id),
                keys.message_queue(session_id),
                keys.message_deadlines(),
                keys.message_counts(session_id),
                keys.fleet_message_counts(),
            ],
            args=[self.keep_ms],
        )

    async def connected(self, session_id: str) -> None:
        """The session is linked again: it takes messages, and its worker is woken for any
        that wait."""
        await self.redis.delete(keys.session_logged_out(session_id))
        self.wake(session_id)

    async def count_received(self, session_id: str) -> bool:
        """Count an incoming message (the session's count and the fleet's in one step); False
        when the session is no longer in the fleet (nothing counted)."""
        counted = await self._received(
            keys=[
                keys.session(session_id, "status"),
                keys.message_counts(session_id),
                keys.fleet_message_counts(),
            ],
        )
        return bool(counted)

    async def forget(self, session_id: str) -> int:
        """The session is being deleted: remove every message key of it (records, queue,
        commands, counts, limits, send state) and report each message still queued as
        ``failed: session_deleted`` on its operator stream, all in one script. How many were
        reported. The fleet's counts keep what the session did (and count those failures).
        """
        failed = await self._forget(
            keys=[
                keys.message_deadlines(),
                keys.fleet_message_counts(),
                keys.operator_events(session_id),
                keys.DELIVERY_SESSIONS,
                keys.message_index(session_id),
                keys.message_queue(session_id),
                keys.session_commands(session_id),
                keys.message_counts(session_id),
                keys.send_log(session_id),
                keys.send_state(session_id),
                keys.send_limits(session_id),
                keys.session_logged_out(session_id),
            ],
            args=[session_id, self.clock.now_ms()],
        )
        self._wakers.pop(session_id, None)
        return int(failed)

    async def expire_due(self) -> int:
        """Fail queued messages whose time ran out; how many."""
        expired = await self._expire(
            keys=[keys.message_deadlines(), keys.fleet_message_counts()],
            args=[self.clock.now_ms(), EXPIRE_BATCH, self.keep_ms],
        )
        return int(expired)

    # waking waiting polls ---------------------------------------------------------------

    def waker(self, session_id: str) -> asyncio.Event:
        return self._wakers.setdefault(session_id, asyncio.Event())

    def wake_all(self) -> None:
        for event in self._wakers.values():
            event.set()

    def wake(self, session_id: str) -> None:
        self.wake_here(session_id)
        if self.on_wake is not None:  # the session's worker may be polling another replica
            self.on_wake(session_id)

    def wake_here(self, session_id: str) -> None:
        """Wake a poll waiting in this process only (what another replica's wake does)."""
        event = self._wakers.get(session_id)
        if event is not None:
            event.set()


def check_key(value: object) -> str | None:
    """An idempotency key (None: the request has none)."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(
            f"idempotencyKey must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )
    return text.check(value, "idempotencyKey")


async def run_expiry(messages: MessageService, interval_s: float = 1.0) -> None:
    """Fail queued messages as their time runs out, for sessions whose worker never asks."""

    async def one_pass() -> None:
        while await messages.expire_due() >= EXPIRE_BATCH:
            pass  # a backlog: the next batch at once

    await every(interval_s, one_pass, "message expiry")
