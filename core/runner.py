"""The ``Runner`` interface: how core starts, stops and watches one worker per session.

Core never knows whether a worker is a local process or a Docker container. It hands a
``WorkerSpec`` to ``start`` and learns about workers that die on their own through the
exit callback, so a crash is handled within seconds instead of at the next watchdog tick.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

# A worker that exits with this code asks for a fresh process (see worker.drivers.base).
EXIT_RECYCLE = 75

# What a worker's fingerprint leaves out: changing these must not replace a running worker.
# SESSION_PHONE is only a hint for pairing codes, and the record's phone changes when the
# device links (a session provisioned without a phone); log settings are cosmetic; the
# outbox cap is a safety bound a worker may keep until its next start (and a wafleet that
# began passing it must not replace every running worker at its first start).
FINGERPRINT_IGNORES = frozenset(
    {"SESSION_PHONE", "LOG_LEVEL", "LOG_FORMAT", "WORKER_OUTBOX_MAX_BYTES"}
)


class ExitKind(StrEnum):
    """What a worker's end means for its session; the runner decides, core acts on it.

    A runner knows how its workers end (an exit code, a task Swarm could not place, ...);
    the session service knows only these outcomes, so a new runner needs no change there.
    """

    RECYCLED = "recycled"  # the worker asked for a fresh process: start one at once
    CRASHED = "crashed"  # it died: restart it, and park it as a crash loop if it keeps dying
    UNPLACEABLE = "unplaceable"  # nowhere to run it: park it until the operator makes room


@dataclass(frozen=True)
class WorkerExit:
    """A worker that ended without ``stop`` being asked: what it means, and its exit code."""

    kind: ExitKind
    code: int | None = None  # the process's exit code, when known

    @classmethod
    def of_code(cls, code: int | None) -> WorkerExit:
        """A worker process that exited with ``code`` (None: unknown, e.g. it vanished)."""
        return cls(ExitKind.RECYCLED if code == EXIT_RECYCLE else ExitKind.CRASHED, code)


# Called with (session_id, what the exit means) when a worker stops by itself.
ExitCallback = Callable[[str, WorkerExit], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a runner needs to start the worker of one session."""

    session_id: str
    session_dir: Path
    # The worker's whole environment, by its fixed names (SESSION_ID, PROXY_URL, ...).
    # It carries secrets: never log it.
    env: dict[str, str] = field(repr=False)

    def fingerprint(self, *extra: str) -> str:
        """A short digest of what the worker is started with (proxy, webhook, driver, worker
        settings, plus what the runner adds in ``extra``, e.g. the image).

        Runners keep it on the worker (an env var, a label), so a ``serve`` that restarts
        can tell a worker started with what Redis says now from one started before a change
        it never got to apply (a failover cut short by a crash). A digest, never the values:
        the environment holds secrets.
        """
        digest = hashlib.sha256()
        for name in sorted(self.env):
            if name not in FINGERPRINT_IGNORES:
                digest.update(f"{name}={self.env[name]}\0".encode())
        for item in extra:
            digest.update(f"+{item}\0".encode())
        return digest.hexdigest()[:24]


@dataclass(frozen=True)
class WorkerHandle:
    """A worker the runner knows about. ``ref`` goes to ``session:<id>:lock``."""

    session_id: str
    ref: str
    # Found by ``running``: the fingerprint the worker was started with (None: unknown, a
    # worker of an older wafleet), and whether it is frozen (a backup's pause).
    fingerprint: str | None = None
    paused: bool = False


@dataclass(frozen=True)
class NodeInfo:
    """One machine the workers run on, as the operator's nodes view shows it.

    Process and docker runners have one (this host); a swarm has one per node, listed even
    when it runs no session, so an operator sees a drained or down node next to the others.
    """

    id: str
    name: str
    state: str  # Swarm's words: ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    session_ids: tuple[str, ...] = ()


def this_host(session_ids: Iterable[str]) -> NodeInfo:
    """The one node of a runner whose workers all run beside ``serve``."""
    host = socket.gethostname()
    return NodeInfo(host, host, "ready", "active", tuple(sorted(session_ids)))


class Runner(Protocol):
    """One worker per session, whatever it runs in."""

    name: str

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        """Start the session's worker; an old one still running for the id is stopped first."""
        ...

    async def stop(self, session_id: str) -> None:
        """Stop gracefully, kill after a grace period; a no-op if nothing runs."""
        ...

    async def running(self) -> dict[str, WorkerHandle]:
        """Every worker of this wafleet instance that is alive now, adopted ones included."""
        ...

    async def adopt(self, handle: WorkerHandle) -> None:
        """Watch a worker found running at start (after ``serve`` restarted) for its exit."""
        ...

    def fingerprint(self, spec: WorkerSpec) -> str:
        """The fingerprint a worker started from ``spec`` by this runner carries."""
        ...

    async def pause(self, session_id: str) -> bool:
        """Freeze the worker in place (its connection stays open); False if none runs.

        For a consistent copy of the session's files (a rolling backup): a frozen worker
        writes nothing. Keep it short: a frozen worker does not ping either.
        """
        ...

    async def resume(self, session_id: str) -> None:
        """Let a paused worker run on; a no-op if it is not paused or not running."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Where the workers run: every node, with the sessions whose worker is alive on it."""
        ...

    def on_exit(self, callback: ExitCallback) -> None:
        """Register the callback for workers that exit without ``stop`` being asked."""
        ...

    async def close(self) -> None:
        """Stop watching; workers keep running (so restarting ``serve`` loses none)."""
        ...
