"""Benchmarks of the Docker runner, against their targets, on a real Docker Engine.

Starts a real stack on loopback (redis-server, microsocks, simwa, ``wafleet serve`` with
``RUNNER=docker``, worker containers with host networking) and prints one table of medians
over several runs:

- provision → first QR at the API (target < 1.5 s)
- container killed (``docker kill``) → a new container's worker connected (target < 5 s)
- memory of one idle, connected sim worker container, as ``docker stats`` reports it
- for reference: a bare ``docker run --rm`` of the base image

Needs the engine and the images: scripts/docker-engine.sh, then scripts/build-images.sh.
Usage: python bench/docker_bench.py [--runs 5] [--image wafleet-worker:latest]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_fleet, poll, remove_engine_workers, row, table_header  # noqa: E402

from core.docker_engine import INSTANCE_LABEL  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.fleet import Fleet  # noqa: E402
from wafleet.serve import instance_id  # noqa: E402

POLL_S = 0.01  # this table times starts of ~1 s: poll finer than the default
WIDTH = 44
UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 1e3, "mb": 1e6, "gb": 1e9}


async def docker(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


def mib(text: str) -> float:
    """``38.5MiB`` (docker stats' unit style) → MiB."""
    m = re.fullmatch(r"([\d.]+)\s*([a-zA-Z]+)", text.strip())
    if not m:
        return float("nan")
    return float(m.group(1)) * UNITS[m.group(2).lower()] / (1 << 20)


async def provision_to_qr(fleet: Fleet, phone: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    session = await fleet.provision(phone)
    sid = session["id"]

    async def qr() -> str | None:
        status, body = await fleet.call("GET", f"/api/sessions/{sid}/qr")
        return body["qr"] if status == 200 else None

    code = await poll(qr, 15, f"the first QR of {sid}", every=POLL_S)
    elapsed = time.perf_counter() - t0
    assert await fleet.scan(code, phone) == 200
    await fleet.wait_status(sid, "connected")
    return sid, elapsed


async def kill_to_connected(fleet: Fleet, sid: str) -> float:
    old = await fleet.text(f"session:{sid}:lock")
    assert old is not None, f"{sid} has no container"
    t0 = time.perf_counter()
    await docker("kill", old)

    async def back() -> bool:
        lock = await fleet.text(f"session:{sid}:lock")
        status = await fleet.text(f"session:{sid}:status")
        return lock not in (None, old) and status == "connected"

    await poll(back, 15, f"{sid} connected in a new container", every=POLL_S)
    return time.perf_counter() - t0


async def memory(instance: str) -> list[float]:
    ids = (await docker("ps", "-q", "--filter", f"label={INSTANCE_LABEL}={instance}")).split()
    out = await docker("stats", "--no-stream", "--format", "{{json .}}", *ids)
    return [mib(json.loads(line)["MemUsage"].split("/")[0]) for line in out.splitlines()]


async def bare_run(image: str) -> float:
    t0 = time.perf_counter()
    await docker("run", "--rm", "--network", "host", image, "true")
    return time.perf_counter() - t0


async def bench(args: argparse.Namespace) -> None:
    env = {
        "RUNNER": "docker",
        "WORKER_IMAGE": args.image,
        "WORKER_NETWORK": "host",
        "LOG_LEVEL": "WARNING",
        # production clocks: the idle memory is that of a worker as it really runs
        "WORKER_PRESENCE_INTERVAL_MS": "15000",
        "WORKER_SELF_MESSAGE_INTERVAL_MS": "600000",
        "WATCHDOG_INTERVAL_MS": "60000",
        "PING_TIMEOUT_MS": "180000",
    }
    async with bench_fleet("docker", 2, env, cleanup=remove_engine_workers) as fleet:
        instance = instance_id(Settings.from_env(fleet.env))
        await provision_to_qr(fleet, "972500000999")  # warm-up: page cache, first import
        qr_times, sids = [], []
        for n in range(args.runs):
            sid, elapsed = await provision_to_qr(fleet, f"97250000{n:04d}")
            sids.append(sid)
            qr_times.append(elapsed)
        crash_times = [await kill_to_connected(fleet, sid) for sid in sids]
        await asyncio.sleep(args.idle)  # let every worker settle into its idle loop
        mem = await memory(instance)
        base = [await bare_run(args.base_image) for _ in range(args.runs)]

    print(f"\nDocker runner, {args.runs} runs, median (min, max); image {args.image}\n")
    print(table_header(WIDTH))
    print(row("provision → first QR", qr_times, "s", "< 1.5", WIDTH))
    print(row("docker kill → new container connected", crash_times, "s", "< 5", WIDTH))
    print(row(f"idle sim worker container memory (n={len(mem)})", mem, "MiB", "", WIDTH))
    print(row("reference: bare docker run --rm (base image)", base, "s", "", WIDTH))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="wafleet-worker:latest")
    parser.add_argument("--base-image", default="wafleet-base:bookworm")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before docker stats")
    args = parser.parse_args()
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
