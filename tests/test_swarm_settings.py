"""RUNNER=swarm settings: checked at start, every problem named in one message."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings
from tests.fleet import API_KEY, WEBHOOK_SECRET

BASE = {"API_KEY": API_KEY, "WEBHOOK_SECRET": WEBHOOK_SECRET, "RUNNER": "swarm"}


def test_swarm_settings_are_read_with_their_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {**BASE, "SESSIONS_DIR": str(tmp_path), "WORKER_CONSTRAINTS": " a==b , node.role==worker,"}
    )
    assert settings.runner == "swarm"
    assert settings.worker_memory_reservation == "96m"
    assert settings.worker_memory_limit == "256m"
    assert settings.worker_constraints == ("a==b", "node.role==worker")
    assert settings.worker_unschedulable_ms == 30_000


def test_swarm_refuses_a_missing_shared_sessions_dir_and_bad_sizes(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                **BASE,
                "SESSIONS_DIR": str(missing),
                "WORKER_MEMORY_RESERVATION": "lots",
                "WORKER_MEMORY_LIMIT": "-1m",
            }
        )
    message = caught.value.message
    assert f"SESSIONS_DIR {missing} does not exist" in message
    assert "same shared path on every node" in message
    assert "WORKER_MEMORY_RESERVATION must be a size" in message
    assert "WORKER_MEMORY_LIMIT must be a size" in message
    assert not missing.exists()  # not created behind the operator's back
