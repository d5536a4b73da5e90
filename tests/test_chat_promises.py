"""An action in the chat is a promise like a 2xx: its answer waits for a Redis replica.

Real ``serve`` with the bot (aiogram's client against the fake Bot API), a Redis primary and
replica under three Sentinels, worker processes. The replica is frozen (SIGSTOP: connected,
acknowledging nothing), so no write can reach it.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests import fake_telegram
from tests.fake_telegram import ADMIN, FakeTelegram, bot_env
from tests.fleet import Fleet
from tests.sentinel_redis import (  # the fleet's Redis: the Sentinel group
    SentinelGroup,
    sentinel_redis_client,  # noqa: F401
    sentinel_redis_server,  # noqa: F401
)

telegram = fake_telegram.telegram  # the fixture
NOT_CONFIRMED = "Not confirmed: Redis could not copy this to a replica in time"


@pytest.fixture
def fleet_options(sentinel_group: SentinelGroup, telegram: FakeTelegram) -> dict[str, Any]:
    return bot_env(telegram, **sentinel_group.settings(REDIS_WAIT_MS="800"))


async def test_an_action_is_not_confirmed_in_the_chat_until_a_replica_has_it(
    fleet: Fleet, telegram: FakeTelegram, sentinel_group: SentinelGroup
) -> None:
    """Would have caught: "restarting worker_1" said while no replica held the restart (a
    primary lost then would take back what the chat had told the operator), and reads
    refused for no reason while the replica is away."""
    sid = (await fleet.provision())["id"]
    await fleet.qr(sid)
    (replica,) = [n for n in sentinel_group.nodes if n is not sentinel_group.first_primary]
    assert replica.proc is not None
    os.kill(replica.proc.popen.pid, signal.SIGSTOP)
    try:
        asked = time.monotonic()
        telegram.send(f"/restart {sid}")
        answer = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN)
        assert NOT_CONFIRMED in answer.text, answer.text
        assert time.monotonic() - asked >= 0.8  # it waited REDIS_WAIT_MS for the replica
        assert not [c for c in telegram.calls_of("sendMessage") if "Restarting" in c.text]
        telegram.send(f"/status {sid}")  # a read promises nothing: answered as ever
        status = await telegram.wait_call(
            "sendMessage", lambda c: c.chat == ADMIN and sid in c.text and c is not answer
        )
        assert NOT_CONFIRMED not in status.text
    finally:
        os.kill(replica.proc.popen.pid, signal.SIGCONT)
    telegram.send(f"/restart {sid}")
    again = await telegram.wait_call(
        "sendMessage", lambda c: c.chat == ADMIN and "Restarting" in c.text
    )
    assert NOT_CONFIRMED not in again.text
