"""Benchmarks of sending: a real stack on loopback (redis-server, microsocks,
simwa, ``wafleet serve``, sim workers), no limits, no pauses, no "typing...".

- accepted → sent at the simulated network: the 202's arrival at the client to the
  network's own timestamp of the message, one message at a time (p50 / p99);
- outbound messages per second for one ``serve`` across N sessions: a burst of K messages
  per session, from the first POST to the last message at the network.
- ``--media-files F``: instead, media out: F documents of ``--media-mb`` MB each, posted by
  multipart (streamed from disk, ``--media-at-once`` at a time) through one session; MB/s
  from the first POST to the last file at the network, and ``serve``'s peak RSS meanwhile
  (sampled every 20 ms), which must not grow with the files: they are streamed.

Usage: python bench/messages_bench.py [--latency 200] [--sessions 20] [--per-session 20]
(docs/performance.md's figure is for 100 sessions: ``--sessions 100``; each sim worker is
~23 MB); python bench/messages_bench.py --media-files 20 --media-mb 16.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import bench_fleet, percentile, rss_mb

from tests.fleet import API_KEY, Fleet

NO_LIMITS = {
    "MESSAGES_PER_MINUTE": "0",
    "MESSAGES_PER_DAY": "0",
    "MESSAGE_PAUSE_MIN_MS": "0",
    "MESSAGE_PAUSE_MAX_MS": "0",
    "TYPING_MS_PER_CHAR": "0",
    "MAX_SESSIONS_PER_PROXY": "50",
    "MAX_SESSIONS_PER_PHONE": "1",
    "LOG_LEVEL": "WARNING",
    "PING_TIMEOUT_MS": "60000",
    "WORKER_PRESENCE_INTERVAL_MS": "5000",
    "WATCHDOG_INTERVAL_MS": "5000",
}
TO = "14155550123"
CLIENT_CONNECTIONS = 16  # the operator's client posts this many at once


async def network_log(fleet: Fleet, phone: str) -> dict[str, dict[str, Any]]:
    async with fleet.http.get(fleet.simwa + "/control/messages", params={"phone": phone}) as r:
        return {m["id"]: m for m in await r.json()}


async def post(fleet: Fleet, sid: str, text: str) -> str:
    status, body = await fleet.call(
        "POST", f"/api/sessions/{sid}/messages", {"to": TO, "text": text}
    )
    assert status == 202, body
    return "3EB0" + str(body["id"]).upper()


async def latency(fleet: Fleet, sid: str, phone: str, count: int) -> list[float]:
    """ms from the 202 to the network's timestamp, one message in flight at a time."""
    samples = []
    for n in range(count):
        wa_id = await post(fleet, sid, f"latency {n}")
        accepted = time.time_ns() // 1_000_000
        while True:
            found = (await network_log(fleet, phone)).get(wa_id)
            if found is not None:
                samples.append(float(found["timestamp"] - accepted))
                break
            await asyncio.sleep(0.002)
    return samples


async def throughput(fleet: Fleet, sessions: list[tuple[str, str]], per_session: int) -> float:
    """Messages per second at the network for a burst across every session."""
    before = {phone: len(await network_log(fleet, phone)) for _, phone in sessions}
    start = time.perf_counter()
    await asyncio.gather(
        *(post(fleet, sid, f"burst {n}") for n in range(per_session) for sid, _ in sessions)
    )
    expected = {phone: before[phone] + per_session for _, phone in sessions}
    pending = dict(expected)
    while pending:
        for phone in list(pending):
            if len(await network_log(fleet, phone)) >= pending[phone]:
                del pending[phone]
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    return len(sessions) * per_session / elapsed


async def post_file(fleet: Fleet, sid: str, path: Path) -> str:
    form = aiohttp.FormData()
    form.add_field("to", TO)
    form.add_field("kind", "document")
    form.add_field("filename", path.name)
    with path.open("rb") as file:
        form.add_field("file", file, filename=path.name)
        async with fleet.http.post(
            f"{fleet.api}/api/sessions/{sid}/messages", data=form, headers={"X-API-Key": API_KEY}
        ) as answer:
            body = await answer.json()
    assert answer.status == 202, body
    return "3EB0" + str(body["id"]).upper()


def make_files(folder: Path, files: int, mb: int) -> list[Path]:
    """Distinct files (the store keeps equal bytes once), PDF by their first bytes."""
    paths = []
    for n in range(files):
        path = folder / f"report-{n}.pdf"
        with path.open("wb") as out:
            out.write(b"%PDF-1.4\n")
            for _ in range(mb):
                out.write(os.urandom(1024 * 1024))
        paths.append(path)
    return paths


async def media_out(fleet: Fleet, files: int, mb: int, at_once: int) -> None:
    phone = "972530000001"
    sid = (await fleet.link(phone))["id"]
    folder = Path(tempfile.mkdtemp(prefix="wafleet-media-bench-"))
    paths = await asyncio.to_thread(make_files, folder, files, mb)
    assert fleet.serve is not None
    pid = fleet.serve.popen.pid
    base = rss_mb(pid)
    peak = base
    done = False

    async def sample() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    gate = asyncio.Semaphore(at_once)

    async def one(path: Path) -> str:
        async with gate:
            return await post_file(fleet, sid, path)

    start = time.perf_counter()
    wa_ids = await asyncio.gather(*(one(p) for p in paths))
    accepted = time.perf_counter() - start
    while not set(wa_ids) <= set(await network_log(fleet, phone)):
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    done = True
    await sampler
    total_mb = files * mb * 1024 * 1024 / 1e6
    await asyncio.to_thread(shutil.rmtree, folder)
    print(
        f"media out: {files} x {mb} MB documents by multipart ({at_once} at a time): "
        f"all accepted in {accepted:.1f} s ({total_mb / accepted:.0f} MB/s in), "
        f"all at the network in {elapsed:.1f} s ({total_mb / elapsed:.1f} MB/s out)"
    )
    print(f"serve RSS: {base:.0f} MB before, peak {peak:.0f} MB while they moved")


async def main(args: argparse.Namespace) -> None:
    if args.media_files:
        async with bench_fleet("media", 1, NO_LIMITS) as fleet:
            await media_out(fleet, args.media_files, args.media_mb, args.media_at_once)
        return
    async with bench_fleet("msg", 2, NO_LIMITS) as fleet:
        sessions = []
        for n in range(args.sessions):
            phone = f"97252{n:07d}"
            sessions.append(((await fleet.link(phone))["id"], phone))
        sid, phone = sessions[0]
        await latency(fleet, sid, phone, 10)  # warm up
        samples = await latency(fleet, sid, phone, args.latency)
        rates = [await throughput(fleet, sessions, args.per_session) for _ in range(3)]
        print(f"sessions linked: {len(sessions)}")
        print(
            f"accepted -> sent at the network: p50 {statistics.median(samples):.1f} ms, "
            f"p99 {percentile(samples, 99):.1f} ms ({len(samples)} messages)"
        )
        print(
            f"outbound across {len(sessions)} sessions: median "
            f"{statistics.median(rates):.0f} msgs/s (runs: "
            + ", ".join(f"{r:.0f}" for r in rates)
            + f"; {args.per_session} per session per run)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--per-session", type=int, default=20)
    parser.add_argument("--media-files", type=int, default=0)
    parser.add_argument("--media-mb", type=int, default=16)
    parser.add_argument("--media-at-once", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
