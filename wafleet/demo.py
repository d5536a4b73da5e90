"""``wafleet demo``: the whole system on this machine, one session linked, API left running.

No Docker, Telegram or WhatsApp account needed: Redis, two SOCKS5 proxies and the
simulated network are started here, ``serve`` runs with the process runner, and the QR is
"scanned" through the simulated network's control API, as a phone would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from core import qr
from core.process_runner import find_workers
from core.settings import Settings
from wafleet import devstack
from wafleet.serve import instance_id

DEMO_PHONE = "972500000001"


def _call(method: str, url: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _until(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := check()) is not None:
            return value
        time.sleep(0.1)
    raise devstack.StackError(f"timed out waiting for {what}")


def run_demo(port: int, wait: bool = True) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wafleet-demo-"))
    procs: list[devstack.Proc] = []
    api_key = secrets.token_urlsafe(24)
    env: dict[str, str] = {}
    try:
        print(f"wafleet demo: working in {workdir}")
        redis, redis_url = devstack.start_redis(workdir / "redis")
        procs.append(redis)
        proxies = [
            devstack.start_proxy(workdir, n, password=secrets.token_urlsafe(8)) for n in (1, 2)
        ]
        procs += [p.proc for p in proxies]
        simwa, simwa_port = devstack.start_simwa(workdir)
        procs.append(simwa)
        env = devstack.serve_env(
            workdir, redis_url, proxies, simwa_port, api_key, secrets.token_urlsafe(24)
        )
        procs.append(devstack.start_serve(workdir, env, port))
        api = f"http://127.0.0.1:{port}"
        print(f"started Redis, 2 SOCKS5 proxies, the simulated network and serve on {api}")

        status, session = _call(
            "POST", f"{api}/api/sessions/provision", api_key, {"phone": DEMO_PHONE}
        )
        if status != 201:
            print(f"provision failed: {session}", file=sys.stderr)
            return 1
        sid = session["id"]
        print(f"provisioned {sid} on {session['proxy']}")

        def current_qr() -> str | None:
            status, body = _call("GET", f"{api}/api/sessions/{sid}/qr", api_key)
            return str(body["qr"]) if status == 200 else None

        def connected() -> dict[str, Any] | None:
            _, body = _call("GET", f"{api}/api/sessions/{sid}/status", api_key)
            return body if body.get("status") == "connected" else None

        code = _until("the QR", current_qr)
        print(qr.terminal(code))
        print(f"QR of {sid} (also as PNG: GET {api}/api/sessions/{sid}/qr, Accept: image/png)")
        print(f"scanning it as phone +{DEMO_PHONE} through the simulated network…")
        _call(
            "POST",
            f"http://127.0.0.1:{simwa_port}/control/scan",
            None,
            {"qr": code, "phone": DEMO_PHONE},
        )
        linked = _until("the connection", connected)
        print(f"{sid}: {linked['status']} as +{linked['phone']} via {linked['proxy']}")
        print(f"\nAPI: {api}   key: {api_key}")
        print(f"try: curl -H 'X-API-Key: {api_key}' {api}/api/v1/dashboard/sessions")
        if wait:
            print("running; Ctrl-C stops everything this demo started")
            _wait_for_interrupt()
        return 0
    finally:
        for proc in reversed(procs):
            proc.stop()
        if env:
            _stop_workers(instance_id(Settings.from_env(env)))
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _stop_workers(instance: str) -> None:
    """Workers outlive ``serve`` by design; the demo owns its machine, so it ends them."""
    for pid in find_workers(instance).values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
