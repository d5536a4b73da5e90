"""A real wafleet on loopback for tests: redis-server, microsocks proxies, simwa, serve.

Nothing is mocked: the tests talk HTTP to ``wafleet serve``, workers are real processes,
proxies are Debian's ``microsocks``, and the simulated network plays WhatsApp.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import aiohttp
import redis.asyncio as aioredis

from core.process_runner import find_workers
from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, session_secret, sign
from wafleet import devstack

T = TypeVar("T")

API_KEY = "test-api-key-0123456789abcdef"
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
PHONE = "972501234567"


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 15.0, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last not in (None, False):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@dataclass
class Fleet:
    workdir: Path
    redis_url: str
    proxies: list[devstack.Proxy]
    simwa_port: int
    env: dict[str, str]
    http: aiohttp.ClientSession
    redis: aioredis.Redis
    port: int = 0
    serve: devstack.Proc | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def simwa(self) -> str:
        return f"http://127.0.0.1:{self.simwa_port}"

    @property
    def sessions_dir(self) -> Path:
        return Path(self.env["SESSIONS_DIR"])

    def start(self) -> None:
        self.port = self.port or devstack.free_port()
        self.serve = devstack.start_serve(self.workdir, self.env, self.port)

    def stop(self) -> None:
        if self.serve is not None:
            self.serve.stop()

    def kill(self) -> None:
        if self.serve is not None:
            self.serve.kill()

    def workers(self) -> dict[str, int]:
        from core.settings import Settings
        from wafleet.serve import instance_id

        return find_workers(instance_id(Settings.from_env(self.env)))

    def kill_workers(self) -> None:
        for pid in self.workers().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log(self) -> str:
        return (self.workdir / "serve.log").read_text(errors="replace")

    # HTTP -------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        sent = {"X-API-Key": API_KEY, **(headers or {})}
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.api + path, data=data, headers=sent) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.read()

    async def provision(self, phone: str | None = PHONE, **extra: Any) -> dict[str, Any]:
        body = {"phone": phone, **extra} if phone else extra
        status, answer = await self.call("POST", "/api/sessions/provision", body)
        assert status == 201, answer
        session: dict[str, Any] = answer
        return session

    async def provision_settled(self, phone: str | None = PHONE) -> str:
        """Provision and wait until the worker's first events are in: its QR and, with a
        phone, its pairing code. A test comparing Redis snapshots starts from here, so no
        event of the new worker lands between its two snapshots."""
        sid = str((await self.provision(phone))["id"])
        await self.qr(sid)
        if phone:

            async def has_code() -> bool:
                return bool(await self.redis.exists(f"session:{sid}:pairingCode"))

            await eventually(has_code, what=f"the pairing code of {sid}")
        return sid

    async def status(self, sid: str) -> dict[str, Any]:
        status, answer = await self.call("GET", f"/api/sessions/{sid}/status")
        assert status == 200, answer
        body: dict[str, Any] = answer
        return body

    async def wait_status(self, sid: str, wanted: str, timeout: float = 15.0) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            body = await self.status(sid)
            return body if body["status"] == wanted else None

        return await eventually(check, timeout, f"{sid} {wanted}")

    async def qr(self, sid: str, timeout: float = 15.0) -> str:
        async def check() -> str | None:
            status, body = await self.call("GET", f"/api/sessions/{sid}/qr")
            return body["qr"] if status == 200 else None

        return await eventually(check, timeout, f"a QR for {sid}")

    async def events(self, sid: str, kind: str) -> list[dict[str, Any]]:
        _, body = await self.call("GET", f"/api/sessions/{sid}/events")
        return [e for e in body["events"] if e["type"] == kind]

    async def link(self, phone: str = PHONE) -> dict[str, Any]:
        """Provision, scan the QR as ``phone`` and wait until connected."""
        session = await self.provision(phone)
        await self.scan(await self.qr(session["id"]), phone)
        return await self.wait_status(session["id"], "connected")

    # simulated network ------------------------------------------------------------------

    async def scan(self, code: str, phone: str = PHONE) -> int:
        async with self.http.post(
            self.simwa + "/control/scan", json={"qr": code, "phone": phone}
        ) as r:
            return r.status

    async def control(self, action: str, **body: Any) -> int:
        async with self.http.post(self.simwa + f"/control/{action}", json=body) as r:
            return r.status

    async def device(self, sid: str) -> dict[str, Any]:
        async with self.http.get(self.simwa + "/control/devices") as r:
            devices = await r.json()
        found = [d for d in devices if d["sessionId"] == sid and not d["loggedOut"]]
        assert found, f"no device for {sid} at the network: {devices}"
        device: dict[str, Any] = found[-1]
        return device

    # redis ------------------------------------------------------------------------------

    async def text(self, key: str) -> str | None:
        """The string at ``key``, typed as what the fleet's client returns.

        redis-py types every reply ``bytes | str`` whatever the client; ``redis`` here is made
        with ``decode_responses=True`` (``conftest.redis_client``), so a value is a ``str``.
        """
        return cast("str | None", await self.redis.get(key))

    async def members(self, key: str) -> set[str]:
        """The set at ``key``, decoded like :meth:`text`."""
        return cast("set[str]", await self.redis.smembers(key))

    # webhook ----------------------------------------------------------------------------

    async def post_webhook(
        self,
        payload: dict[str, Any],
        secret_for: str | None = None,
        ts: int | None = None,
        signature: str | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        body = raw if raw is not None else json.dumps(payload).encode()
        ts = ts if ts is not None else time.time_ns() // 1_000_000
        secret = session_secret(WEBHOOK_SECRET, secret_for or payload.get("sessionId", ""))
        headers = {
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: signature if signature is not None else sign(secret, ts, body),
            "Content-Type": "application/json",
        }
        async with self.http.post(self.api + "/webhook", data=body, headers=headers) as r:
            return r.status, await r.json()

    async def snapshot(self) -> dict[str, Any]:
        """Every key and value in Redis but the audit trail and the locks of the moment: to
        prove a refused request changed nothing."""
        state: dict[str, Any] = {}
        keys = cast("list[str]", await self.redis.keys("*"))  # decoded, as in text()
        for key in sorted(keys):
            if key.startswith("wafleet:audit"):
                continue  # a refused request is recorded on purpose (core/audit.py)
            if key.startswith("wafleet:lock:"):
                # A lock held for a moment by whatever the worker reported meanwhile (a QR
                # rotating): it guards state, it is none (core/redis_locks.py).
                continue
            kind = await self.redis.type(key)
            if kind == "string":
                value: Any = await self.redis.get(key)
            elif kind == "set":
                value = sorted(await self.redis.smembers(key))
            elif kind == "stream":
                value = await self.redis.xlen(key)
            else:
                value = kind
            if key.endswith(":lastPing"):
                value = "<ping>"  # workers keep pinging while we look
            state[key] = value
        return state
