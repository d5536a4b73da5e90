"""The harness every test stands on: what it starts, it stops, even when starting fails."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.conftest import fleet_env
from wafleet import devstack


def test_a_serve_that_does_not_come_up_in_time_is_not_left_running(
    tmp_path: Path, redis_server: str
) -> None:
    """A leaked ``serve`` went on starting workers for the next test's sessions in the shared
    Redis (seen on a loaded machine, when one did not listen within its 20 s)."""
    env = fleet_env(tmp_path, redis_server, [], devstack.free_port())
    port = devstack.free_port()
    with pytest.raises(devstack.StackError):
        devstack.start_serve(tmp_path, env, port, reconciled=0.0)  # "too late" at once
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return  # nothing listens: the serve that was started is gone
        time.sleep(0.05)
    raise AssertionError(f"serve still listens on {port} after start_serve gave up")
