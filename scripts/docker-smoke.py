"""Smoke test of DockerRunner against the real engine (not a pytest test).

    /work/venv/bin/python scripts/docker-smoke.py [--image wafleet-worker:latest]

Starts a worker container whose command is replaced by an idle Python that imports the
worker's libraries (the image's ``wafleet worker`` needs Redis, an orchestrator, ...), then:
  1. start latency, ``running()``, labels, mount, limits;
  2. ``docker stats`` memory of the idle container;
  3. ``docker kill`` -> the exit callback fires, with the die -> callback latency;
  4. ``stop()`` of a fresh container -> no callback, container removed;
  5. a second runner (a restarted ``serve``) adopts a running container and reports its kill;
  6. with --engine-restart: dockerd restarts under a watching runner; the exit is reported.
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.docker_engine import container_name  # noqa: E402
from core.docker_runner import DockerRunner  # noqa: E402
from core.runner import WorkerExit, WorkerSpec  # noqa: E402

IDLE = [
    "python",
    "-c",
    "import aiohttp, aiohttp_socks, redis, qrcode, PIL, time; time.sleep(3600)",
]
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        failures.append(what)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def exists(name: str) -> bool:
    return subprocess.run(["docker", "inspect", name], capture_output=True).returncode == 0


def restart_engine() -> None:
    pid = int(Path("/var/run/docker.pid").read_text())
    os.kill(pid, 15)
    for _ in range(300):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    script = Path(__file__).resolve().parent / "docker-engine.sh"
    subprocess.run([str(script)], check=True, capture_output=True)


def finished_at(name: str) -> float:
    """The engine's time of death of a container, as a Unix timestamp."""
    raw = docker("inspect", "--format", "{{.State.FinishedAt}}", name).strip()
    # 2026-01-01T12:00:00.123456789Z -> microseconds for fromisoformat
    head, _, frac = raw.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", default="wafleet-worker:latest")
    parser.add_argument(
        "--engine-restart",
        action="store_true",
        help="also restart dockerd (pidfile /var/run/docker.pid, scripts/docker-engine.sh) and "
        "check that the exit of a container killed by the restart is still reported",
    )
    args = parser.parse_args()
    instance = f"smoke-{os.getpid()}"
    exits: list[tuple[str, int | None, float]] = []
    got_exit = asyncio.Event()

    async def on_exit(sid: str, ended: WorkerExit) -> None:
        exits.append((sid, ended.code, time.time()))
        got_exit.set()

    tmp = Path(tempfile.mkdtemp(prefix="wafleet-smoke-"))
    runner = DockerRunner(instance, args.image, "host", command=IDLE, stop_grace_s=2)
    runner.on_exit(on_exit)
    sid = "worker_1"
    name = container_name(sid)
    spec = WorkerSpec(sid, tmp / sid, {"SESSION_ID": sid, "PROXY_URL": "socks5h://x:y@h:1"})
    try:
        print("1. start")
        t0 = time.perf_counter()
        handle = await runner.start(spec)
        t_start = time.perf_counter() - t0
        print(f"  start() returned in {t_start * 1000:.0f} ms (container {handle.ref[:12]})")
        running = await runner.running()
        check(sid in running and running[sid].ref == handle.ref, "running() lists it")
        info = json.loads(docker("inspect", name))[0]
        labels = info["Config"]["Labels"]
        check(labels.get("wafleet.session") == sid, "label wafleet.session")
        check(labels.get("wafleet.instance") == instance, "label wafleet.instance")
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        check(env.get("SESSION_DIR") == "/app/session", "SESSION_DIR=/app/session")
        mounts = {m["Destination"]: m["Source"] for m in info["Mounts"]}
        check(mounts.get("/app/session") == str((tmp / sid).resolve()), "session dir mounted")
        hc = info["HostConfig"]
        check(hc["NetworkMode"] == "host", "network host")
        check(hc["Memory"] == 256 * 1024 * 1024 and hc["PidsLimit"] == 256, "mem/pids limits")
        check(hc["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}, "log rotation")
        check(hc["RestartPolicy"]["Name"] in ("", "no"), "no restart policy")

        print("2. idle memory")
        await asyncio.sleep(3)
        stats = docker("stats", "--no-stream", "--format", "{{.MemUsage}} cpu={{.CPUPerc}}", name)
        print(f"  docker stats: {stats.strip()}")

        print("3. docker kill -> exit callback")
        t_kill = time.time()
        docker("kill", name)
        try:
            await asyncio.wait_for(got_exit.wait(), 10)
        except TimeoutError:
            pass
        check(bool(exits) and exits[0][0] == sid, "exit callback fired")
        if exits:
            died = finished_at(name)
            print(
                f"  exit code {exits[0][1]}; die -> callback {(exits[0][2] - died) * 1000:.0f} ms;"
                f" kill issued -> callback {(exits[0][2] - t_kill) * 1000:.0f} ms"
            )
            check(exits[0][1] == 137, "exit code 137 (SIGKILL)")

        print("4. stop() -> no callback, removed")
        exits.clear()
        got_exit.clear()
        t0 = time.perf_counter()
        await runner.start(spec)  # also removes the dead container of step 3
        t_restart = time.perf_counter() - t0
        t0 = time.perf_counter()
        await runner.stop(sid)
        t_stop = time.perf_counter() - t0
        await asyncio.sleep(1.5)
        check(not exits, "no exit callback for a stop we asked for")
        check(not exists(name), "container removed")
        print(
            f"  start() over a dead one {t_restart * 1000:.0f} ms; stop() {t_stop * 1000:.0f} ms"
        )
        await runner.stop(sid)  # no-op

        print("5. a restarted serve adopts and notices the kill")
        handle = await runner.start(spec)
        await runner.close()  # serve goes away; the worker keeps running
        check(
            docker("inspect", "--format", "{{.State.Running}}", name).strip() == "true",
            "worker survives close()",
        )
        runner2 = DockerRunner(instance, args.image, "host", command=IDLE)
        runner2.on_exit(on_exit)
        other = DockerRunner(f"{instance}-other", args.image, "host", command=IDLE)
        try:
            found = await runner2.running()
            check(found.get(sid) == handle, "running() of the new runner finds it")
            check(await other.running() == {}, "another instance does not see it")
            try:
                await other.stop(sid)
                check(False, "another instance refuses to stop it")
            except RuntimeError:
                check(True, "another instance refuses to stop it")
            await runner2.adopt(found[sid])
            await asyncio.sleep(0.5)  # let the event stream subscribe
            exits.clear()
            got_exit.clear()
            docker("kill", name)
            try:
                await asyncio.wait_for(got_exit.wait(), 10)
            except TimeoutError:
                pass
            check(bool(exits) and exits[0][0] == sid, "adopted worker's exit reported")
            if exits:
                print(f"  die -> callback {(exits[0][2] - finished_at(name)) * 1000:.0f} ms")
        finally:
            await runner2.stop(sid)
            await runner2.close()
            await other.close()
        if args.engine_restart:
            print("6. engine restart -> event stream reconnects, exit reported")
            runner3 = DockerRunner(instance, args.image, "host", command=IDLE)
            runner3.on_exit(on_exit)
            try:
                await runner3.start(spec)
                await asyncio.sleep(0.5)
                exits.clear()
                got_exit.clear()
                t0 = time.time()
                await asyncio.to_thread(restart_engine)
                t_engine = time.time() - t0
                try:
                    await asyncio.wait_for(got_exit.wait(), 60)
                except TimeoutError:
                    pass
                check(bool(exits) and exits[0][0] == sid, "exit across an engine restart reported")
                if exits:
                    print(
                        f"  engine down+up {t_engine:.1f}s; exit code {exits[0][1]};"
                        f" restart begun -> callback {exits[0][2] - t0:.1f}s"
                    )
            finally:
                await runner3.stop(sid)
                await runner3.close()
    finally:
        await runner.close()
        if exists(name):
            docker("rm", "-f", name)
        shutil.rmtree(tmp, ignore_errors=True)
    print("FAILED: " + "; ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
