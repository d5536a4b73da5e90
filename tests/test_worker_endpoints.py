"""A worker given several ``serve`` URLs (``PUBLIC_WEBHOOK_URL`` -> ``WEBHOOK_URL``) uses
the first that answers and moves on when it fails: real sockets, a real worker process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.fleet import PHONE, Fleet
from tests.messaging import FAST, OUTSIDE, send, sent_by, wait_message
from wafleet import devstack
from worker.config import WorkerConfig, WorkerConfigError
from worker.endpoints import Endpoints
from worker.http_post import HttpError


class Replica:
    """A stand-in ``serve`` that answers every POST with its own name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = devstack.free_port()
        self.runner: web.AppRunner | None = None
        self.paths: list[str] = []

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._answer)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _answer(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return web.json_response({"at": self.name})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = Replica("a"), Replica("b")
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_a_replica_that_dies_is_left_for_the_next_within_the_request(
    replicas: tuple[Replica, Replica],
) -> None:
    """Caught: a worker that sticks to the first URL (its events pile up in the outbox and
    its messages wait while another replica is up), or that moves only after the retry
    backoff of a failed request rather than in the same request."""
    a, b = replicas
    endpoints = Endpoints(f"{a.url}, {b.url}")
    events = endpoints.poster(lambda url: url)
    polls = endpoints.poster(lambda url: url.removesuffix("/webhook") + "/worker/commands")
    try:
        assert (await events.post(b"{}", {})).body == b'{"at": "a"}'
        await a.stop()
        started = time.monotonic()
        assert (await events.post(b"{}", {})).body == b'{"at": "b"}'
        assert time.monotonic() - started < 1.0
        # the command channel learnt it too: its poll goes to b without trying a first
        assert (await polls.post(b"{}", {})).body == b'{"at": "b"}'
        assert a.paths == ["/webhook"]
        assert b.paths == ["/webhook", "/worker/commands"]
    finally:
        await events.close()
        await polls.close()


async def test_one_url_fails_as_before_and_a_dead_first_url_is_skipped(
    replicas: tuple[Replica, Replica],
) -> None:
    """Caught: one URL behaving differently from before (it must fail the request so the
    caller backs off and the outbox keeps the event), or a dead first URL costing more
    than a refused connection."""
    _, b = replicas
    dead = f"http://127.0.0.1:{devstack.free_port()}/webhook"
    alone = Endpoints(dead).poster(lambda url: url)
    with pytest.raises(HttpError):
        await alone.post(b"{}", {})
    await alone.close()
    endpoints = Endpoints(f"{dead},{b.url}")
    poster = endpoints.poster(lambda url: url)
    started = time.monotonic()
    assert (await poster.post(b"{}", {})).body == b'{"at": "b"}'
    assert time.monotonic() - started < 1.0
    assert endpoints.current == 1
    await poster.close()


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    return {**FAST, "start": False}


async def test_a_worker_whose_first_serve_url_is_dead_links_and_sends_through_the_next(
    fleet: Fleet,
) -> None:
    """Caught: ``WEBHOOK_URL`` with several URLs read as one (no event would arrive) or the
    command channel not following the list (the message would stay queued)."""
    fleet.port = devstack.free_port()
    dead = f"http://127.0.0.1:{devstack.free_port()}/webhook"
    fleet.env["PUBLIC_WEBHOOK_URL"] = f"{dead},http://127.0.0.1:{fleet.port}/webhook"
    fleet.start()
    sid = (await fleet.link())["id"]  # its QR and CONNECTED came through the second URL
    mid = (await send(fleet, sid, OUTSIDE, "via the second replica"))["id"]
    await wait_message(fleet, sid, mid, {"sent", "delivered", "read"})
    assert [m["text"] for m in await sent_by(fleet, PHONE)] == ["via the second replica"]


class Relay:
    """A stand-in replica in front of the real ``serve``: a TCP relay that can be killed,
    cutting every connection through it (a long poll held open included)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = devstack.free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def kill(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.transport.abort()  # a reset, as from a dead host's kernel
        if self.server is not None:
            await self.server.wait_closed()


async def test_a_worker_whose_replica_dies_moves_on_with_its_poll_and_events(
    fleet: Fleet,
) -> None:
    """Caught: a worker that notices a dead replica only for its events and keeps polling
    the dead one for commands (or backs off for long): a message accepted after the replica
    died would wait. The relay dies while the worker's long poll is held open through it."""
    fleet.port = devstack.free_port()
    relay = Relay(fleet.port)
    await relay.start()
    fleet.env["PUBLIC_WEBHOOK_URL"] = (
        f"http://127.0.0.1:{relay.port}/webhook,http://127.0.0.1:{fleet.port}/webhook"
    )
    fleet.start()
    try:
        sid = (await fleet.link())["id"]
        first = (await send(fleet, sid, OUTSIDE, "through the first"))["id"]
        await wait_message(fleet, sid, first, {"sent", "delivered", "read"})
        assert relay.connections > 0  # the worker was talking through the first replica
        await asyncio.sleep(0.5)  # its next long poll is waiting at serve, through the relay
        await relay.kill()
        killed = time.monotonic()
        second = (await send(fleet, sid, OUTSIDE, "after it died"))["id"]
        await wait_message(fleet, sid, second, {"sent", "delivered", "read"}, timeout=15)
        took = time.monotonic() - killed
        assert took < 3.0, f"the message waited {took:.1f} s for the worker to move on"
    finally:
        await relay.kill()
    texts = [m["text"] for m in await sent_by(fleet, PHONE)]
    assert texts == ["through the first", "after it died"]
    print(f"\nreplica killed -> message sent through the next: {took:.2f} s")


def test_a_worker_refuses_a_webhook_list_with_a_bad_url() -> None:
    """Caught: a bad entry in the list found only when the worker first fails over to it
    (its events would then wait in the outbox for a URL that can never answer)."""
    env = {
        "SESSION_ID": "worker_1",
        "PROXY_URL": "socks5h://user:pass@127.0.0.1:1080",
        "WEBHOOK_URL": "http://127.0.0.1:3000/webhook,127.0.0.2:3000/webhook",
        "WEBHOOK_SECRET": "s" * 20,
    }
    with pytest.raises(WorkerConfigError, match="'127.0.0.2:3000/webhook' is not an http"):
        WorkerConfig.from_env(env)
    env["WEBHOOK_URL"] = "http://127.0.0.1:3000/webhook"
    assert WorkerConfig.from_env(env).webhook_url == "http://127.0.0.1:3000/webhook"
