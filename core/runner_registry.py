"""Which runner ``RUNNER`` names: the three wafleet has, and any other that joins it.

A runner from outside wafleet needs no change here. Its package declares an entry point in
the ``wafleet.runners`` group (``myrunner = "mypackage.runner:factory"`` under
``[project.entry-points."wafleet.runners"]``) and ``RUNNER=myrunner`` picks it; the factory
is imported only when it is chosen. Code that builds wafleet itself (an embedding, a test run
in one process) can call ``register_runner`` instead. A factory gets a ``RunnerContext`` and
returns a ``Runner`` (``core/runner.py``); it reports how its workers end as ``WorkerExit``
outcomes, which is all the session service reads of them.

The built-in names cannot be taken over, and looking for installed runners (a scan of every
installed package, a few hundred ms) happens only for a name that is not built in.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.runner import Runner

if TYPE_CHECKING:
    from core.notifier import Notifier
    from core.settings import Settings

ENTRY_POINT_GROUP = "wafleet.runners"
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class RunnerContext:
    """What a runner factory is given."""

    settings: Settings
    # Tells this wafleet's workers from another's on the same host or engine: a runner
    # labels its workers with it, and finds (``running``) only those.
    instance: str
    notifier: Notifier | None = None  # for what only a runner sees (a lost swarm node)
    # Several serve replicas: claims a fleet-wide action (a lost node's move) for this
    # replica, False when another took it; None: this replica is alone.
    claim: Callable[[str], Awaitable[bool]] | None = None


RunnerFactory = Callable[[RunnerContext], Runner]


def _process(context: RunnerContext) -> Runner:
    from core.process_runner import ProcessRunner

    grace = context.settings.worker_stop_grace_ms / 1000
    return ProcessRunner(context.instance, stop_grace_s=grace)


def _docker(context: RunnerContext) -> Runner:
    from core.docker_runner import DockerRunner  # the Docker SDK only when it is used

    s = context.settings
    return DockerRunner(
        instance=context.instance,
        image=s.worker_image,
        network=s.worker_network,
        stop_grace_s=s.worker_stop_grace_ms / 1000,
    )


def _swarm(context: RunnerContext) -> Runner:
    from core.swarm_runner import SwarmRunner

    s = context.settings
    return SwarmRunner(
        instance=context.instance,
        image=s.worker_image,
        network=s.worker_network,
        sessions_dir=s.sessions_dir,
        stop_grace_s=s.worker_stop_grace_ms / 1000,
        memory_reservation=s.worker_memory_reservation,
        memory_limit=s.worker_memory_limit,
        constraints=s.worker_constraints,
        notifier=context.notifier,
        claim=context.claim,
        unschedulable_after_s=s.worker_unschedulable_ms / 1000,
    )


BUILT_IN: dict[str, RunnerFactory] = {"process": _process, "docker": _docker, "swarm": _swarm}
_registered: dict[str, RunnerFactory] = {}


def register_runner(name: str, factory: RunnerFactory) -> None:
    """Make ``RUNNER=name`` build its runner with ``factory`` (in this process)."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"a runner's name is 1 to 32 lowercase letters, digits, - or _, got {name!r}"
        )
    if name in BUILT_IN or name in _registered:
        raise ValueError(f"there is a runner named {name!r} already")
    _registered[name] = factory


def is_runner(name: str) -> bool:
    return name in BUILT_IN or name in _registered or name in _installed()


def runner_names() -> tuple[str, ...]:
    """Every name ``RUNNER`` takes: the built-in ones first."""
    others = (set(_registered) | set(_installed())) - set(BUILT_IN)
    return (*BUILT_IN, *sorted(others))


def create_runner(name: str, context: RunnerContext) -> Runner:
    """The runner ``RUNNER=name`` asks for; a name nobody provides, or an installed runner
    that cannot be loaded, is a ``ConfigError`` that says so."""
    factory = BUILT_IN.get(name) or _registered.get(name)
    if factory is None:
        found = _installed().get(name)
        if found is None:
            raise ConfigError(f"RUNNER must be one of {', '.join(runner_names())}, got {name!r}")
        try:
            factory = found.load()
        except Exception as exc:
            raise ConfigError(
                f"RUNNER={name}: cannot load {found.value} ({type(exc).__name__}: {exc})"
            ) from exc
    return factory(context)


def _installed() -> dict[str, EntryPoint]:
    return _entry_points(tuple(sys.path))


@functools.cache
def _entry_points(path: tuple[str, ...]) -> dict[str, EntryPoint]:
    """The runners installed packages declare; scanned once per ``sys.path`` (``path`` is
    only the cache's key: a folder added to it may hold more)."""
    return {
        ep.name: ep
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if _NAME.fullmatch(ep.name) and ep.name not in BUILT_IN
    }
