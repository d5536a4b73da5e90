"""``RUNNER=process``: one OS process per session, for the demo, tests and small hosts.

Workers run in their own process group and survive a restart of ``serve``; every worker
carries ``WAFLEET_INSTANCE`` in its environment, which is how a new ``serve`` finds
(``running``) and adopts them, and how two wafleet instances on one host never touch
each other's workers. Exits are noticed through a pidfd, for children and adopted
workers alike, so a crash reaches the session service at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.runner import (
    ExitCallback,
    NodeInfo,
    WorkerExit,
    WorkerHandle,
    WorkerSpec,
    this_host,
)
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.runner.process")

INSTANCE_ENV = "WAFLEET_INSTANCE"
# The WorkerSpec's fingerprint, so the next ``serve`` can tell a stale worker (see reconcile).
FINGERPRINT_ENV = "WAFLEET_SPEC"
LOG_NAME = "worker.log"
LOG_MAX_BYTES = 2 * 1024 * 1024
PAUSE_CONFIRM_S = 1.0  # how long ``pause`` waits for the kernel to stop the worker
# What a worker inherits from serve; everything else comes from its WorkerSpec.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")


@dataclass
class _Worker:
    pid: int
    pidfd: int
    popen: subprocess.Popen[bytes] | None  # None for adopted workers (not our children)
    exited: asyncio.Event


class ProcessRunner:
    name = "process"

    def __init__(self, instance: str, stop_grace_s: float = 5.0) -> None:
        self.instance = instance
        self.stop_grace_s = stop_grace_s
        self._workers: dict[str, _Worker] = {}
        self._stopping: set[str] = set()
        self._callbacks: list[ExitCallback] = []
        self._tasks = TaskGroup()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._seen: dict[str, int] = {}  # what ``running`` last found, for ``stop``

    def on_exit(self, callback: ExitCallback) -> None:
        self._callbacks.append(callback)

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        async with self._locks[spec.session_id]:  # never two workers for one session
            await self._stop_locked(spec.session_id)
            spec.session_dir.mkdir(parents=True, exist_ok=True)
            env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
            env.update(spec.env)
            env[INSTANCE_ENV] = self.instance
            env[FINGERPRINT_ENV] = self.fingerprint(spec)
            popen = await asyncio.to_thread(_spawn, env, spec.session_dir)
            self._watch(spec.session_id, popen.pid, popen)
        log.info("started worker %s (pid %d)", spec.session_id, popen.pid)
        return WorkerHandle(spec.session_id, f"pid:{popen.pid}")

    async def adopt(self, handle: WorkerHandle) -> None:
        pid = _pid_of(handle.ref)
        watched = self._workers.get(handle.session_id)
        # Another serve replica may have replaced the worker this one watches: watch the new.
        if pid is None or (watched is not None and watched.pid == pid):
            return
        if _session_of(pid, self.instance) != handle.session_id:
            return
        self._watch(handle.session_id, pid, None)
        log.info("adopted worker %s (pid %d)", handle.session_id, pid)

    def fingerprint(self, spec: WorkerSpec) -> str:
        return spec.fingerprint()

    async def stop(self, session_id: str) -> None:
        async with self._locks[session_id]:
            await self._stop_locked(session_id)

    async def _stop_locked(self, session_id: str) -> None:
        worker = self._workers.get(session_id)
        if worker is None:
            # Not watched: a worker ``running`` reported (an orphan) is watched now to stop it.
            pid = self._seen.get(session_id)
            if pid is None or _session_of(pid, self.instance) != session_id:
                return
            self._watch(session_id, pid, None)
            worker = self._workers.get(session_id)
            if worker is None:
                return
        self._stopping.add(session_id)
        try:
            _signal(worker.pid, signal.SIGTERM)
            _signal(worker.pid, signal.SIGCONT)  # a frozen worker must be able to handle it
            try:
                await asyncio.wait_for(worker.exited.wait(), self.stop_grace_s)
            except TimeoutError:
                log.warning("worker %s ignored SIGTERM; killing it", session_id)
                _signal(worker.pid, signal.SIGKILL)
                await asyncio.wait_for(worker.exited.wait(), 10)
        finally:
            self._stopping.discard(session_id)

    async def pause(self, session_id: str) -> bool:
        worker = self._workers.get(session_id)
        if worker is None:
            return False
        try:
            os.kill(worker.pid, signal.SIGSTOP)
        except ProcessLookupError:
            return False
        # kill() only queues the signal: wait until the kernel has really stopped it, so
        # nothing the worker writes can land in the middle of the caller's copy.
        deadline = time.monotonic() + PAUSE_CONFIRM_S
        while not _is_stopped(worker.pid):
            if time.monotonic() > deadline or worker.exited.is_set():
                log.warning("worker %s did not confirm its pause", session_id)
                break
            await asyncio.sleep(0.001)
        return True

    async def resume(self, session_id: str) -> None:
        worker = self._workers.get(session_id)
        if worker is not None:
            _signal(worker.pid, signal.SIGCONT)

    async def running(self) -> dict[str, WorkerHandle]:
        handles = await asyncio.to_thread(_handles, self.instance)  # reads /proc
        self._seen = {sid: int(h.ref[4:]) for sid, h in handles.items()}
        return handles

    async def nodes(self) -> list[NodeInfo]:
        # Read like ``running`` but without refreshing what ``stop`` relies on.
        return [this_host(await asyncio.to_thread(_handles, self.instance))]

    async def close(self) -> None:
        for session_id in list(self._workers):
            self._unwatch(session_id)
        await self._tasks.cancel()

    # exit notice --------------------------------------------------------------------------

    def _watch(self, session_id: str, pid: int, popen: subprocess.Popen[bytes] | None) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        self._unwatch(session_id)  # a watch replaced must not leave its pidfd registered
        worker = _Worker(pid, pidfd, popen, asyncio.Event())
        self._workers[session_id] = worker
        asyncio.get_running_loop().add_reader(pidfd, self._on_exit, session_id, worker)

    def _unwatch(self, session_id: str) -> _Worker | None:
        worker = self._workers.pop(session_id, None)
        if worker is not None:
            _release(worker)
        return worker

    def _on_exit(self, session_id: str, worker: _Worker) -> None:
        current = self._workers.get(session_id) is worker
        if current:
            self._workers.pop(session_id)
        _release(worker)  # always: a readable pidfd left registered would spin the loop
        code = worker.popen.wait() if worker.popen is not None else None
        worker.exited.set()
        if not current or session_id in self._stopping:
            return
        log.warning("worker %s (pid %d) exited with %s", session_id, worker.pid, code)
        ended = WorkerExit.of_code(code)
        for callback in self._callbacks:
            self._tasks.spawn(callback(session_id, ended), name=f"exit-{session_id}")


def _release(worker: _Worker) -> None:
    """Stop watching a worker's pidfd and close it; safe to call twice."""
    if worker.pidfd >= 0:
        asyncio.get_running_loop().remove_reader(worker.pidfd)
        os.close(worker.pidfd)
        worker.pidfd = -1


def _spawn(env: dict[str, str], session_dir: Path) -> subprocess.Popen[bytes]:
    with _open_log(session_dir / LOG_NAME) as logfile:
        return subprocess.Popen(
            [sys.executable, "-m", "wafleet", "worker"],
            env=env,
            cwd=session_dir,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on serve's terminal must not kill workers
        )


def _open_log(path: Path) -> BinaryIO:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > LOG_MAX_BYTES:
            path.replace(path.with_suffix(".log.1"))
    return path.open("ab")


def _pid_of(ref: str | None) -> int | None:
    if ref and ref.startswith("pid:") and ref[4:].isdigit():
        return int(ref[4:])
    return None


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _is_stopped(pid: int) -> bool:
    """True once the process is in the stopped state (``T``) or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("T", "t", "Z", "X")


def _env_of(pid: int) -> dict[bytes, bytes]:
    """A live process's environment as it was started; empty if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return {}
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.partition(b"=")[::2] for item in raw.split(b"\0") if b"=" in item)


def _session_of(pid: int, instance: str) -> str | None:
    """The session a live process works for, if it is a worker of this instance."""
    env = _env_of(pid)
    if env.get(INSTANCE_ENV.encode()) != instance.encode():
        return None
    session = env.get(b"SESSION_ID")
    return session.decode() if session else None


def find_workers(instance: str) -> dict[str, int]:
    """``{session id: pid}`` of every live worker of ``instance`` on this host."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (sid := _session_of(int(entry.name), instance)):
            found[sid] = int(entry.name)
    return found


def _handles(instance: str) -> dict[str, WorkerHandle]:
    """Every live worker of ``instance``, with what it was started with and whether frozen."""
    return {
        sid: WorkerHandle(
            sid,
            f"pid:{pid}",
            fingerprint=_env_of(pid).get(FINGERPRINT_ENV.encode(), b"").decode() or None,
            paused=_is_stopped(pid),
        )
        for sid, pid in find_workers(instance).items()
    }
