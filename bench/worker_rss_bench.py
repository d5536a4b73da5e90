"""Benchmark of one idle neonize worker's memory, before and after the
lighter neonize loader.

Starts real ``wafleet worker`` processes with ``WA_DRIVER=neonize`` whose WhatsApp is
unreachable, samples each one's RSS (``/proc/PID/status``) every few seconds, and prints one
table: the steady RSS (median, min, max over runs of each run's last sample) and its growth
over the run, for six variants run side by side:

- ``before``: neonize imported whole and the Go library's pages kept (the worker before
  the light loader); ``after``: the worker as it is (``neonize_slim`` loads only what the driver
  uses, and the driver drops the Go library's start-up pages);
- each lever alone (``light loader only``, ``page drop only``);
- ``before`` and ``after`` also with ``MALLOC_ARENA_MAX=2`` (glibc's malloc arenas).

Nothing leaves this machine: the worker's proxy is a SOCKS5 listener of this script on
127.0.0.1 that accepts the greeting and the credentials and refuses every CONNECT (so
neither the driver's pre-flight nor anything else can reach web.whatsapp.com), and its
webhook is a loopback aiohttp server of this script that answers 200.

Usage: python bench/worker_rss_bench.py [--runs 3] [--seconds 60] [--every 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

USER, PASSWORD = "bench", "bench-secret"
SEEN = {"connects refused": 0, "webhook posts": 0}  # proof the workers ran as described
# the levers, switched off by what runs before the worker's own entry point
WHOLE_PACKAGE = "import neonize\n"  # the package __init__ first: neonize_slim then uses it
KEEP_PAGES = (  # the Go library's start-up pages stay mapped
    "import worker.drivers.neonize_slim as slim\n"
    "slim.drop_clean_library_pages = lambda *args, **kwargs: 0\n"
)
WORKER = "from wafleet.cli import main\nmain(['worker'])\n"


@dataclass
class Variant:
    name: str
    code: str
    arena_max: str | None
    finals_kb: list[int] = field(default_factory=list)
    growth_kb: list[int] = field(default_factory=list)
    anon_kb: list[int] = field(default_factory=list)


async def refusing_socks5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A SOCKS5 server that takes any user/password and refuses every CONNECT (RFC 1928:
    reply 0x05, connection refused): the proxy is up, what lies beyond it is not."""
    try:
        _version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if 2 in methods:
            writer.write(b"\x05\x02")
            _ver, user_len = await reader.readexactly(2)
            await reader.readexactly(user_len)
            (password_len,) = await reader.readexactly(1)
            await reader.readexactly(password_len)
            writer.write(b"\x01\x00")
        else:
            writer.write(b"\x05\x00")
        await reader.readexactly(4)  # VER CMD RSV ATYP: whatever it asks, it is refused
        SEEN["connects refused"] += 1
        writer.write(b"\x05\x05\x00\x01" + bytes(6))
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def webhook(_request: web.Request) -> web.Response:
    SEEN["webhook posts"] += 1
    return web.json_response({"ok": True})


def rss_kb(pid: int, key: str = "VmRSS") -> int | None:
    """One memory figure of a live process (``VmRSS``: all resident; ``RssAnon``: the part
    that is the process's own, not file pages the page cache could share)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(rf"{key}:\s+(\d+) kB", status)
    return int(found.group(1)) if found else None


async def one_run(
    variant: Variant, run: int, proxy_port: int, hook_port: int, seconds: float, every: float
) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"rss-{variant.name}-"))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),
        "SESSION_ID": f"rss_{run}",
        "PROXY_URL": f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{proxy_port}",
        "WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/webhook",
        "WEBHOOK_SECRET": "bench",
        "SESSION_DIR": str(folder / "session"),
        "WA_DRIVER": "neonize",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if variant.arena_max is not None:
        env["MALLOC_ARENA_MAX"] = variant.arena_max
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        variant.code,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL if not os.environ.get("RSS_BENCH_LOGS") else None,
    )
    samples: list[int] = []
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < seconds:
            await asyncio.sleep(every)  # a sampling period, not a wait for a condition
            kb = rss_kb(process.pid)
            if kb is None or process.returncode is not None:
                raise RuntimeError(
                    f"{variant.name}: the worker exited after {len(samples)} samples"
                )
            samples.append(kb)
        variant.anon_kb.append(rss_kb(process.pid, "RssAnon") or 0)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
    variant.finals_kb.append(samples[-1])
    settled = samples[min(1, len(samples) - 1)]  # after start-up (the first period)
    variant.growth_kb.append(samples[-1] - settled)


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--every", type=float, default=5)
    args = parser.parse_args()

    proxy = await asyncio.start_server(refusing_socks5, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = runner.addresses[0][1]

    variants = [
        Variant("before", WHOLE_PACKAGE + KEEP_PAGES + WORKER, None),
        Variant("before + arenas=2", WHOLE_PACKAGE + KEEP_PAGES + WORKER, "2"),
        Variant("light loader only", KEEP_PAGES + WORKER, None),
        Variant("page drop only", WHOLE_PACKAGE + WORKER, None),
        Variant("after", WORKER, None),
        Variant("after + arenas=2", WORKER, "2"),
    ]
    try:
        for run in range(args.runs):  # the variants of one run side by side, same conditions
            await asyncio.gather(
                *(
                    one_run(v, run, proxy_port, hook_port, args.seconds, args.every)
                    for v in variants
                )
            )
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    finally:
        proxy.close()
        await runner.cleanup()

    print(f"idle neonize worker RSS, MB ({args.runs} runs of {args.seconds:.0f} s)")
    print(f"{'variant':<22}{'median':>8}{'min':>8}{'max':>8}{'growth':>9}{'anon':>8}")
    for v in variants:
        print(
            f"{v.name:<22}{mb(statistics.median(v.finals_kb)):>8}{mb(min(v.finals_kb)):>8}"
            f"{mb(max(v.finals_kb)):>8}{mb(statistics.median(v.growth_kb)):>9}"
            f"{mb(statistics.median(v.anon_kb)):>8}"
        )
    print(", ".join(f"{what}: {count}" for what, count in SEEN.items()))
    print("median/min/max: RSS at the end of each run; growth: from the second sample to the")
    print("last (median); anon: RssAnon at the end (median), the part no other process shares")


if __name__ == "__main__":
    asyncio.run(main())
