"""Issued API keys: scoped, stored only as a slow hash, looked up by the id they carry.

A key reads ``wfk_<id>_<secret>``. The id is not secret: it names the one Redis hash to read,
so a check is one read plus one scrypt, never a scan of every key. Only the scrypt of the
secret (with a salt of the key's own) is stored, so a copy of Redis yields no usable key.

scrypt is slow on purpose (tens of ms), so a verified key is remembered in memory for
``CACHE_S`` — but the record is still read on every request and the cached proof only counts
while it matches the record's hash: a revoked key (record gone), an expired one, or a rotated
one past its grace is refused at once, on every replica.

``API_KEY`` from the settings is the admin key and is not stored here (api/auth.py).

A backup carries the records (hashes and salts, never a key: there is none to carry) and a
restore adds back those this Redis lacks (``merge``), except ids revoked here: a revocation
leaves the id in a set of its own, so no archive can revive it.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from core import keys
from core.clock import Clock
from core.errors import Conflict, InvalidInput, NotFound

SCOPES = ("admin", "read", "client")
PREFIX = "wfk_"
_KEY = re.compile(r"wfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
# scrypt's cost: 16 MiB and ~30-60 ms a check on one core; what a stolen hash costs to guess.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
CACHE_S = 60.0
CACHE_MAX = 10_000
# scrypt runs in threads (it releases the GIL), so the event loop — the webhook, the workers'
# command channel — never waits on it; at most this many at once, so a flood of wrong
# secrets for a real key id queues here instead of taking every core.
HASHING_AT_ONCE = 2
MAX_NAME = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_RATE = 10_000


@dataclass(frozen=True)
class ApiKey:
    """One issued key as the API lists it (never its secret or hash)."""

    id: str
    name: str
    scope: str
    created: int
    expires_at: int | None
    rate_per_s: int | None

    def view(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created": self.created,
            "expiresAt": self.expires_at,
        }
        if self.rate_per_s is not None:
            found["ratePerS"] = self.rate_per_s
        return found


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20, dklen=32
    ).hex()


def _new_secret() -> tuple[str, bytes, str]:
    """``(secret, salt, hash)``: 32 random bytes as 43 url-safe characters."""
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    return secret, salt, _hash(secret, salt)


def _opt_int(raw: object) -> int | None:
    return int(str(raw)) if raw not in (None, "") else None


def _record(key_id: str, f: dict[str, str]) -> ApiKey:
    return ApiKey(
        key_id,
        f["name"],
        f["scope"],
        int(f["created"]),
        _opt_int(f.get("expiresAt")),
        _opt_int(f.get("ratePerS")),
    )


class ApiKeys:
    """Create, list, revoke, rotate and verify issued keys."""

    def __init__(self, redis: aioredis.Redis, clock: Clock, rotate_grace_s: int) -> None:
        self.redis = redis
        self.clock = clock
        self.rotate_grace_ms = rotate_grace_s * 1000
        # sha256 of a presented key -> (the stored hash it proved, until when (monotonic)).
        self._verified: dict[str, tuple[str, float]] = {}
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    async def create(
        self, name: object, scope: object, expires_at: object = None, rate_per_s: object = None
    ) -> tuple[ApiKey, str]:
        """The new key and its full value, which is shown this once and stored nowhere."""
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "admin":
            raise InvalidInput(
                "name must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter or "
                "digit), and not 'admin'"
            )
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
        now = self.clock.now_ms()
        if expires_at is not None and (
            not isinstance(expires_at, int) or isinstance(expires_at, bool) or expires_at <= now
        ):
            raise InvalidInput("expiresAt must be a time in the future, in epoch ms")
        if rate_per_s is not None and (
            not isinstance(rate_per_s, int)
            or isinstance(rate_per_s, bool)
            or not 1 <= rate_per_s <= MAX_RATE
        ):
            raise InvalidInput(f"ratePerS must be a whole number from 1 to {MAX_RATE}")
        if any(k.name == name for k in await self.list()):
            raise Conflict(f"a key named {name!r} exists")
        key_id = secrets.token_hex(6)
        secret, salt, digest = _new_secret()
        fields: dict[str, str | int] = {
            "name": name,
            "scope": str(scope),
            "created": now,
            "salt": salt.hex(),
            "hash": digest,
            "expiresAt": "" if expires_at is None else expires_at,
            "ratePerS": "" if rate_per_s is None else rate_per_s,
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.api_key(key_id), mapping=fields)  # type: ignore[arg-type]
        pipe.sadd(keys.API_KEYS, key_id)
        await pipe.execute()
        record = ApiKey(key_id, name, str(scope), now, expires_at, rate_per_s)
        return record, f"{PREFIX}{key_id}_{secret}"

    async def list(self) -> list[ApiKey]:
        ids = sorted(cast("set[str]", await self.redis.smembers(keys.API_KEYS)))
        pipe = self.redis.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(keys.api_key(key_id))
        found = await pipe.execute()
        return sorted(
            (_record(i, f) for i, f in zip(ids, found, strict=True) if f),
            key=lambda k: (k.created, k.id),
        )

    async def get(self, key_id: str) -> ApiKey:
        found = cast("dict[str, str]", await self.redis.hgetall(keys.api_key(key_id)))
        if not found:
            raise NotFound(f"no key {key_id!r}")
        return _record(key_id, found)

    async def revoke(self, key_id: str) -> ApiKey:
        """Gone at once: the next request with it finds no record (the cache needs one)."""
        record = await self.get(key_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.api_key(key_id), keys.api_key_rate(key_id))
        pipe.srem(keys.API_KEYS, key_id)
        pipe.sadd(keys.API_KEYS_REVOKED, key_id)
        await pipe.execute()
        return record

    async def rotate(self, key_id: str) -> tuple[ApiKey, str]:
        """A new secret for the same id (its sessions and name stay); the old one is still
        accepted for the grace period."""
        record = await self.get(key_id)
        old = await self.redis.hmget(keys.api_key(key_id), ["salt", "hash"])
        secret, salt, digest = _new_secret()
        until = self.clock.now_ms() + self.rotate_grace_ms
        await self.redis.hset(
            keys.api_key(key_id),
            mapping={
                "salt": salt.hex(),
                "hash": digest,
                "oldSalt": old[0] or "",
                "oldHash": old[1] or "",
                "oldUntil": until,
            },
        )
        return record, f"{PREFIX}{key_id}_{secret}"

    async def verify(self, given: str) -> ApiKey | None:
        """The key ``given`` is, when it is a live issued key; None otherwise."""
        match = _KEY.fullmatch(given)
        if match is None:
            return None
        key_id, secret = match.groups()
        f = cast("dict[str, str]", await self.redis.hgetall(keys.api_key(key_id)))
        if not f:
            return None
        now = self.clock.now_ms()
        expires = _opt_int(f.get("expiresAt"))
        if expires is not None and expires <= now:
            return None
        accepted = {f["hash"]: f["salt"]}
        if f.get("oldHash") and now < int(f.get("oldUntil") or 0):
            accepted[f["oldHash"]] = f["oldSalt"]
        fingerprint = hashlib.sha256(given.encode()).hexdigest()
        cached = self._verified.get(fingerprint)
        if cached is not None and cached[1] > time.monotonic() and cached[0] in accepted:
            return _record(key_id, f)
        for stored, salt in accepted.items():
            async with self._hashing:
                proof = await asyncio.to_thread(_hash, secret, bytes.fromhex(salt))
            if hmac.compare_digest(proof, stored):
                if len(self._verified) >= CACHE_MAX:
                    self._verified.clear()
                self._verified[fingerprint] = (stored, time.monotonic() + CACHE_S)
                return _record(key_id, f)
        return None

    # backup and restore -------------------------------------------------------------------

    async def export(self) -> builtins.list[dict[str, Any]]:
        """Every key's record as a backup carries it: its hash and salt, not a usable key."""
        ids = sorted(cast("set[str]", await self.redis.smembers(keys.API_KEYS)))
        pipe = self.redis.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(keys.api_key(key_id))
        found = []
        for key_id, f in zip(ids, await pipe.execute(), strict=True):
            if f:
                found.append(
                    {"id": key_id}
                    | {n: _opt_int(f.get(n)) if n in _INTS else f.get(n) for n in _ARCHIVED}
                )
        return found

    async def merge(self, records: Sequence[dict[str, str]]) -> builtins.list[str]:
        """Add back the archived keys (checked by ``archived``) that this Redis lacks, in one
        transaction; the ids added. A live key keeps its live record (a rotation since the
        backup stands); an id revoked here, or a name a live key has taken, is left out."""
        live = await self.list()
        revoked = cast("set[str]", await self.redis.smembers(keys.API_KEYS_REVOKED))
        ids, names = {k.id for k in live}, {k.name for k in live}
        added: builtins.list[str] = []
        pipe = self.redis.pipeline(transaction=True)
        for record in records:
            key_id, fields = record["id"], {k: v for k, v in record.items() if k != "id"}
            if key_id in ids or key_id in revoked or fields["name"] in names:
                continue
            pipe.hset(keys.api_key(key_id), mapping=fields)  # type: ignore[arg-type]
            pipe.sadd(keys.API_KEYS, key_id)
            ids.add(key_id)
            names.add(fields["name"])
            added.append(key_id)
        if added:
            await pipe.execute()
        return added

    async def forget(self, key_ids: Sequence[str]) -> None:
        """Undo ``merge`` (a restore that failed after it): no tombstone, nothing revoked."""
        if key_ids:
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(*(keys.api_key(i) for i in key_ids))
            pipe.srem(keys.API_KEYS, *key_ids)
            await pipe.execute()


_ARCHIVED = (
    "name",
    "scope",
    "created",
    "expiresAt",
    "ratePerS",
    "salt",
    "hash",
    "oldSalt",
    "oldHash",
    "oldUntil",
)
_INTS = frozenset({"created", "expiresAt", "ratePerS", "oldUntil"})
_HEX = {"salt": 32, "hash": 64, "oldSalt": 32, "oldHash": 64}
_ID = re.compile(r"[0-9a-f]{12}")


def archived(raw: object) -> dict[str, str]:
    """One key as a backup carries it, checked as ``create`` would have made it; the Redis
    hash to write (with its ``id``). Raises ``InvalidInput`` naming the fault."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise InvalidInput("a key is not an object with an id")
    key_id = raw["id"]
    if not _ID.fullmatch(key_id):
        raise InvalidInput("a key's id is not 12 hex digits")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "admin":
        raise InvalidInput(f"key {key_id} has a name create would refuse")
    if raw.get("scope") not in SCOPES:
        raise InvalidInput(f"key {key_id} has an unknown scope")
    fields: dict[str, str] = {"id": key_id, "name": name, "scope": str(raw["scope"])}
    for field in sorted(_INTS):
        value = raw.get(field)
        required = field == "created"
        if value is None and not required:
            fields[field] = ""
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            fields[field] = str(value)
        else:
            raise InvalidInput(f"key {key_id}: {field} is not a whole number of ms")
    rate = fields["ratePerS"]
    if rate and not 1 <= int(rate) <= MAX_RATE:
        raise InvalidInput(f"key {key_id}: ratePerS is out of range")
    for field, size in _HEX.items():
        value = raw.get(field)
        old = field.startswith("old")
        if old and value in (None, ""):
            fields[field] = ""
        elif isinstance(value, str) and re.fullmatch(f"[0-9a-f]{{{size}}}", value):
            fields[field] = value
        else:
            raise InvalidInput(f"key {key_id}: {field} is not a hash this server writes")
    return fields
