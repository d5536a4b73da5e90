"""RUNNER names a built-in runner or one added from outside; anything else is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.process_runner import ProcessRunner
from core.runner import ExitKind, WorkerExit
from core.runner_registry import (
    RunnerContext,
    create_runner,
    is_runner,
    register_runner,
    runner_names,
)
from core.settings import Settings
from tests.fleet import API_KEY, WEBHOOK_SECRET

BASE = {"API_KEY": API_KEY, "WEBHOOK_SECRET": WEBHOOK_SECRET}


def _plugin(where: Path, name: str, target: str) -> Path:
    info = where / f"wafleet_{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: wafleet-{name}\nVersion: 1\n")
    (info / "entry_points.txt").write_text(f"[wafleet.runners]\n{name} = {target}\n")
    return where


def test_an_unknown_runner_is_refused_with_the_names_there_are() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, "RUNNER": "k8s"})
    assert "RUNNER must be one of process, docker, swarm, got 'k8s'" in caught.value.message


def test_an_installed_runner_is_a_valid_name_and_a_broken_one_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(_plugin(tmp_path, "broken", "nowhere.at_all:factory")))
    assert runner_names()[:3] == ("process", "docker", "swarm")
    assert "broken" in runner_names()
    settings = Settings.from_env({**BASE, "RUNNER": "broken", "SESSIONS_DIR": str(tmp_path)})
    with pytest.raises(ConfigError) as caught:
        create_runner("broken", RunnerContext(settings, "instance"))
    assert "RUNNER=broken: cannot load nowhere.at_all:factory" in caught.value.message
    assert "ModuleNotFoundError" in caught.value.message


def test_register_runner_refuses_a_taken_or_bad_name() -> None:
    def factory(context: RunnerContext) -> ProcessRunner:
        return ProcessRunner(context.instance)

    for taken in ("process", "swarm"):
        with pytest.raises(ValueError, match="already"):
            register_runner(taken, factory)
    for bad in ("", "Upper", "a b", "x" * 33):
        with pytest.raises(ValueError, match="lowercase"):
            register_runner(bad, factory)
    assert not is_runner("Upper")


def test_what_an_exit_code_means_is_the_runners_word() -> None:
    assert WorkerExit.of_code(75) == WorkerExit(ExitKind.RECYCLED, 75)
    assert WorkerExit.of_code(78) == WorkerExit(ExitKind.CRASHED, 78)  # no code means "parked"
    assert WorkerExit.of_code(-9) == WorkerExit(ExitKind.CRASHED, -9)
    assert WorkerExit.of_code(None) == WorkerExit(ExitKind.CRASHED, None)
