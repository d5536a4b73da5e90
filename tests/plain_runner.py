"""A fourth runner, from outside wafleet: ``wafleet worker`` as plain asyncio subprocesses.

It exists to show that a runner joins wafleet without a line of ``core/`` changed: it is
declared as an entry point (``tests/test_plain_runner.py`` installs one), ``RUNNER=plain``
picks it, and it tells the session service how a worker ended as a ``WorkerExit``.

It works differently from ``core/process_runner.py`` on purpose: children are started with
``asyncio.create_subprocess_exec`` and their exit is awaited (asyncio's child watcher, no
pidfd); a worker found after a restart of ``serve`` (not a child) is polled in ``/proc``;
workers are tagged with ``PLAIN_RUNNER`` in their environment, not ``WAFLEET_INSTANCE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from core.runner import (
    ExitCallback,
    NodeInfo,
    Runner,
    WorkerExit,
    WorkerHandle,
    WorkerSpec,
    this_host,
)
from core.runner_registry import RunnerContext
from core.tasks import TaskGroup

TAG = "PLAIN_RUNNER"  # the instance a worker belongs to
SPEC = "PLAIN_RUNNER_SPEC"  # its fingerprint
POLL_S = 0.1  # how often an adopted worker (not a child) is looked for in /proc
INHERITED = ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")


def factory(context: RunnerContext) -> Runner:
    """The entry point: ``RUNNER=plain``."""
    return PlainRunner(context.instance, context.settings.worker_stop_grace_ms / 1000)


class PlainRunner:
    name = "plain"

    def __init__(self, instance: str, stop_grace_s: float) -> None:
        self.instance = instance
        self.stop_grace_s = stop_grace_s
        self._pids: dict[str, int] = {}  # session id -> pid of the worker whose exit we report
        self._done: dict[int, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._callbacks: list[ExitCallback] = []
        self._tasks = TaskGroup()

    def on_exit(self, callback: ExitCallback) -> None:
        self._callbacks.append(callback)

    def fingerprint(self, spec: WorkerSpec) -> str:
        return spec.fingerprint("plain")

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        sid = spec.session_id
        async with self._lock(sid):
            await self._stop_locked(sid)
            spec.session_dir.mkdir(parents=True, exist_ok=True)
            env = {k: os.environ[k] for k in INHERITED if k in os.environ}
            env |= {**spec.env, TAG: self.instance, SPEC: self.fingerprint(spec)}
            with (spec.session_dir / "plain.log").open("ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "wafleet",
                    "worker",
                    env=env,
                    cwd=spec.session_dir,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,  # a worker outlives serve
                )
            self._pids[sid] = proc.pid
            self._done[proc.pid] = asyncio.Event()
            self._tasks.spawn(self._await_child(sid, proc), name=f"plain-{sid}")
            return WorkerHandle(sid, str(proc.pid))

    async def stop(self, session_id: str) -> None:
        async with self._lock(session_id):
            await self._stop_locked(session_id)

    async def running(self) -> dict[str, WorkerHandle]:
        return {
            sid: WorkerHandle(
                sid, str(pid), fingerprint=_env(pid).get(SPEC), paused=_state(pid) == "T"
            )
            for sid, pid in find(self.instance).items()
        }

    async def adopt(self, handle: WorkerHandle) -> None:
        sid, pid = handle.session_id, int(handle.ref)
        if sid in self._pids or find(self.instance).get(sid) != pid:
            return
        self._pids[sid] = pid
        self._done[pid] = asyncio.Event()
        self._tasks.spawn(self._poll_adopted(sid, pid), name=f"plain-{sid}")

    async def pause(self, session_id: str) -> bool:
        pid = self._pids.get(session_id)
        if pid is None or not _signal(pid, signal.SIGSTOP):
            return False
        for _ in range(1000):  # kill() only queues the signal: until the kernel stopped it
            if _state(pid) in ("T", ""):
                break
            await asyncio.sleep(0.001)
        return True

    async def resume(self, session_id: str) -> None:
        if (pid := self._pids.get(session_id)) is not None:
            _signal(pid, signal.SIGCONT)

    async def nodes(self) -> list[NodeInfo]:
        return [this_host(find(self.instance))]

    async def close(self) -> None:
        self._pids.clear()  # workers keep running; the next serve adopts them
        await self._tasks.cancel()

    # internals ------------------------------------------------------------------------------

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    async def _stop_locked(self, session_id: str) -> None:
        pid = self._pids.pop(session_id, None)  # its end is not an exit to report
        if pid is None:
            pid = find(self.instance).get(session_id)  # one found by ``running``
            if pid is None:
                return
            self._done[pid] = asyncio.Event()
            self._tasks.spawn(self._poll_adopted(session_id, pid), name=f"plain-{session_id}")
        ended = self._done[pid]
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)  # a frozen worker must be able to handle it
        try:
            await asyncio.wait_for(ended.wait(), self.stop_grace_s)
        except TimeoutError:
            _signal(pid, signal.SIGKILL)
            await asyncio.wait_for(ended.wait(), 10)

    async def _await_child(self, sid: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self._finished(sid, proc.pid, code)

    async def _poll_adopted(self, sid: str, pid: int) -> None:
        while True:
            if _state(pid) in ("", "Z"):
                break
            await asyncio.sleep(POLL_S)
        self._finished(sid, pid, None)  # not our child: its exit code is not ours to read

    def _finished(self, sid: str, pid: int, code: int | None) -> None:
        ended = self._done.pop(pid, None)
        if ended is not None:
            ended.set()
        if self._pids.get(sid) != pid:
            return  # stopped on purpose, or replaced
        del self._pids[sid]
        for callback in self._callbacks:
            self._tasks.spawn(callback(sid, WorkerExit.of_code(code)), name=f"exit-{sid}")


def find(instance: str) -> dict[str, int]:
    """``{session id: pid}`` of the live workers this runner started for ``instance``."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        env = _env(pid)
        if env.get(TAG) == instance and env.get("SESSION_ID") and _state(pid) != "Z":
            found[env["SESSION_ID"]] = pid
    return found


def _env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0"))
    return {name: value for name, sep, value in pairs if sep}


def _state(pid: int) -> str:
    """The process's state letter (``T``: stopped, ``Z``: a zombie); empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def _signal(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_all(under: Path) -> None:
    """SIGKILL every worker of this runner whose session folder is below ``under``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            env = _env(int(entry.name))
            if TAG in env and env.get("SESSION_DIR", "").startswith(str(under)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)
