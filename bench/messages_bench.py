"""Benchmarks of sending: a real stack on loopback (redis-server, microsocks,
simwa, ``wafleet serve``, sim workers), no limits, no pauses, no "typing...".

- accepted → sent at the simulated network: the 202's arrival at the client to the
  network's own timestamp of the message, one message at a time (p50 / p99);
- outbound messages per second for one ``serve`` across N sessions: a burst of K messages
  per session, from the first POST to the last message at the network.
- ``--media-files F``: instead, media out and in, ``--runs`` times: F documents of
  ``--media-mb`` MiB each, posted by multipart (streamed from disk, ``--media-at-once`` at a
  time) through one session, MB/s from the first POST to the last file at the network; then
  F documents from an outside number to another session (simwa's control API), MB/s until
  ``serve`` holds every file and its ``MESSAGE_IN``; ``serve``'s peak RSS during each
  (sampled every 20 ms), which must not grow with the files: they are streamed.

Usage: python bench/messages_bench.py [--latency 200] [--sessions 20] [--per-session 20]
(docs/performance.md's figure is for 100 sessions: ``--sessions 100``; each sim worker is
~23 MB); python bench/messages_bench.py --media-files 20 --media-mb 16.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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


class PeakRss:
    """``serve``'s resident memory, sampled every 20 ms while files move."""

    def __init__(self, fleet: Fleet) -> None:
        assert fleet.serve is not None
        self.pid = fleet.serve.popen.pid
        self.base = self.peak = rss_mb(self.pid)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.02)


async def media_out(
    fleet: Fleet, sid: str, phone: str, files: int, mb: int, at_once: int
) -> tuple[float, float, PeakRss]:
    """One run out: (s until every 202, s until every file at the network, serve's RSS)."""
    folder = Path(tempfile.mkdtemp(prefix="wafleet-media-bench-"))
    paths = await asyncio.to_thread(make_files, folder, files, mb)
    gate = asyncio.Semaphore(at_once)

    async def one(path: Path) -> str:
        async with gate:
            return await post_file(fleet, sid, path)

    async with PeakRss(fleet) as rss:
        start = time.perf_counter()
        wa_ids = await asyncio.gather(*(one(p) for p in paths))
        accepted = time.perf_counter() - start
        while not set(wa_ids) <= set(await network_log(fleet, phone)):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
    await asyncio.to_thread(shutil.rmtree, folder)
    return accepted, elapsed, rss


async def media_in(
    fleet: Fleet, sid: str, phone: str, files: int, mb: int, at_once: int
) -> tuple[float, PeakRss]:
    """One run in: documents from an outside number (simwa's control API, base64) to the
    session's phone; (s until serve holds every one, its file uploaded and its MESSAGE_IN on
    the operator's stream, serve's RSS)."""
    stream = f"wafleet:events:{sid}"
    before = int(await fleet.redis.xlen(stream))
    gate = asyncio.Semaphore(at_once)

    async def one(n: int) -> None:
        data = b"%PDF-1.4\n" + os.urandom(mb * 1024 * 1024)
        body = {
            "from": TO,
            "to": phone,
            "text": f"file {n}",
            "media": {
                "kind": "document",
                "data": base64.b64encode(data).decode(),
                "filename": f"in-{n}.pdf",
            },
        }
        async with gate, fleet.http.post(fleet.simwa + "/control/message", json=body) as r:
            assert r.status == 200, await r.text()

    async with PeakRss(fleet) as rss:
        start = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(files)))
        while int(await fleet.redis.xlen(stream)) < before + files:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
    return elapsed, rss


async def media(args: argparse.Namespace) -> None:
    files, mb, at_once = args.media_files, args.media_mb, args.media_at_once
    total_mb = files * mb * 1024 * 1024 / 1e6
    outs: list[tuple[float, float, PeakRss]] = []
    ins: list[tuple[float, PeakRss]] = []
    async with bench_fleet("media", 1, NO_LIMITS) as fleet:
        sender, receiver = "972530000001", "972530000002"
        out_sid = (await fleet.link(sender))["id"]
        in_sid = (await fleet.link(receiver))["id"]
        for _ in range(args.runs):
            outs.append(await media_out(fleet, out_sid, sender, files, mb, at_once))
            ins.append(await media_in(fleet, in_sid, receiver, files, mb, at_once))
    med = statistics.median
    print(f"\n{files} x {mb} MiB documents a run ({total_mb:.0f} MB), {at_once} at a time, one")
    print(f"serve; medians of {len(outs)} runs (min-max):")
    rows = [
        ("out: every 202 (multipart in)", [total_mb / o[0] for o in outs], "MB/s"),
        ("out: every file at the network", [total_mb / o[1] for o in outs], "MB/s"),
        ("in: every file in serve, its event", [total_mb / i[0] for i in ins], "MB/s"),
        ("serve RSS before", [o[2].base for o in outs], "MB"),
        ("serve RSS peak while files go out", [o[2].peak for o in outs], "MB"),
        ("serve RSS peak while files come in", [i[1].peak for i in ins], "MB"),
    ]
    for name, values, unit in rows:
        print(f"  {name:38}{med(values):>8.1f} {unit:5} ({min(values):.1f}-{max(values):.1f})")


async def main(args: argparse.Namespace) -> None:
    if args.media_files:
        await media(args)
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
    parser.add_argument("--runs", type=int, default=3, help="media runs (medians)")
    asyncio.run(main(parser.parse_args()))
