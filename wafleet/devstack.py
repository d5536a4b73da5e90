"""Start the real servers wafleet needs on loopback: for the demo, the tests and the benchmarks.

Everything binds to 127.0.0.0/8. Each SOCKS5 proxy (Debian's ``microsocks``) makes its
outgoing connections from its own 127.0.0.x address, so the simulated network sees a
different IP per proxy, as WhatsApp would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class StackError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(
    host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise StackError(f"nothing listens on {host}:{port} after {timeout} s")


def need(binary: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/bin/{binary}", f"/usr/sbin/{binary}") if os.path.exists(p)), None
    )
    if path is None:
        raise StackError(f"{binary} is not installed (apt-get install {binary.split('-')[0]})")
    return path


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env if env is not None else dict(os.environ),
        )
    return Proc(name, popen, log)


def start_redis(workdir: Path, port: int | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        "redis",
        [
            need("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        workdir / "redis.log",
    )
    wait_port("127.0.0.1", port, proc=proc.popen)
    return proc, f"redis://127.0.0.1:{port}/0"


@dataclass
class Proxy:
    proc: Proc
    listen: str
    port: int
    bind: str
    user: str
    password: str = field(repr=False)

    @property
    def url(self) -> str:
        return f"socks5h://{self.user}:{self.password}@{self.listen}:{self.port}"

    def restart(self) -> None:
        self.proc.kill()
        self.proc = _microsocks(
            self.listen,
            self.port,
            self.bind,
            self.user,
            self.password,
            self.proc.log or Path("/dev/null"),
        )


def _microsocks(listen: str, port: int, bind: str, user: str, password: str, log: Path) -> Proc:
    proc = spawn(
        "microsocks",
        [
            need("microsocks"),
            "-i",
            listen,
            "-p",
            str(port),
            "-u",
            user,
            "-P",
            password,
            "-b",
            bind,
        ],
        log,
    )
    wait_port(listen, port, proc=proc.popen)
    return proc


def start_proxy(workdir: Path, n: int, user: str = "wa", password: str = "s3cret-pw") -> Proxy:
    """Proxy ``n`` listens on 127.0.0.1 and goes out from 127.0.0.(10+n)."""
    port = free_port()
    bind = f"127.0.0.{10 + n}"
    proc = _microsocks("127.0.0.1", port, bind, user, password, workdir / f"proxy{n}.log")
    return Proxy(proc, "127.0.0.1", port, bind, user, password)


def start_simwa(
    workdir: Path, first_ttl_ms: int = 60_000, next_ttl_ms: int = 20_000, count: int = 6
) -> tuple[Proc, int]:
    port = free_port()
    proc = spawn(
        "simwa",
        [
            sys.executable,
            "-m",
            "wafleet",
            "simwa",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--qr-first-ttl-ms",
            str(first_ttl_ms),
            "--qr-next-ttl-ms",
            str(next_ttl_ms),
            "--qr-count",
            str(count),
        ],
        workdir / "simwa.log",
    )
    wait_port("127.0.0.1", port, proc=proc.popen)
    return proc, port


def serve_env(
    workdir: Path,
    redis_url: str,
    proxies: list[Proxy],
    simwa_port: int,
    api_key: str,
    webhook_secret: str,
) -> dict[str, str]:
    """The environment of a ``serve`` on this machine: process runner, sim driver."""
    return {
        "API_KEY": api_key,
        "WEBHOOK_SECRET": webhook_secret,
        "REDIS_URL": redis_url,
        "RUNNER": "process",
        "WA_DRIVER": "sim",
        "SIMWA_URL": f"ws://localhost:{simwa_port}/ws",
        "SESSIONS_DIR": str(workdir / "sessions"),
        "MEDIA_DIR": str(workdir / "media"),
        "BACKUPS_DIR": str(workdir / "backups"),
        **{f"PROXY_URL_{n}": p.url for n, p in enumerate(proxies, 1)},
    }


def start_serve(
    workdir: Path, env: dict[str, str], port: int, reconciled: float | None = 300.0
) -> Proc:
    """``reconciled``: also wait (that many seconds) until the start-up reconcile is over
    (serve answers while it runs); None returns as soon as serve listens."""
    full = {**os.environ, **env, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port)}
    proc = spawn("serve", [sys.executable, "-m", "wafleet", "serve"], workdir / "serve.log", full)
    try:
        wait_port("127.0.0.1", port, timeout=20, proc=proc.popen)
        if reconciled is not None:
            wait_reconciled(port, reconciled, proc.popen)
    except BaseException:
        # A serve that did not come up in time is nobody's to stop but ours: left running, it
        # would go on starting workers for whatever the next user of this Redis provisions.
        proc.kill()
        raise
    return proc


def wait_reconciled(
    port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``/healthz`` until serve says its start-up reconcile is over."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"serve exited with {proc.returncode} during its reconcile")
        url = f"http://127.0.0.1:{port}/healthz"
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as r:
            if json.loads(r.read()).get("reconciling") is False:
                return
        time.sleep(0.05)
    raise StackError(f"serve on port {port} still reconciling after {timeout} s")
