"""The ``wafleet`` console script (DESIGN.md contract): serve, worker, simwa, demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from wafleet import __version__


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        sys.exit(f"{name} must be a whole number")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wafleet", description="A fleet of WhatsApp sessions.")
    parser.add_argument("--version", action="version", version=f"wafleet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="the orchestrator: REST API, webhook, watchdog, bot")
    commands.add_parser("worker", help="one session worker, configured by environment")
    simwa = commands.add_parser("simwa", help="the simulated WhatsApp network")
    simwa.add_argument("--host", default="127.0.0.1")
    simwa.add_argument("--port", type=int, default=8765)
    simwa.add_argument(
        "--qr-first-ttl-ms", type=int, default=_env_int("SIMWA_QR_FIRST_TTL_MS", 60_000)
    )
    simwa.add_argument(
        "--qr-next-ttl-ms", type=int, default=_env_int("SIMWA_QR_NEXT_TTL_MS", 20_000)
    )
    simwa.add_argument("--qr-count", type=int, default=_env_int("SIMWA_QR_COUNT", 6))
    demo = commands.add_parser("demo", help="the whole system on this machine, one session")
    demo.add_argument("--port", type=int, default=3000, help="the API port")
    demo.add_argument("--no-wait", action="store_true", help="stop after linking (for tests)")
    args = parser.parse_args(argv)

    if args.command == "worker":
        from wafleet.worker.config import WorkerConfigError
        from wafleet.worker.main import main as worker_main

        try:
            worker_main()
        except WorkerConfigError as exc:
            sys.exit(str(exc))
    elif args.command == "simwa":
        from wafleet.core import logs
        from wafleet.simwa.server import QrTimings, run

        logs.setup(os.environ.get("LOG_LEVEL", "INFO"))
        run(
            args.host,
            args.port,
            QrTimings(args.qr_first_ttl_ms, args.qr_next_ttl_ms, args.qr_count),
        )
    elif args.command == "serve":
        _serve()
    elif args.command == "demo":
        from wafleet.demo import run_demo

        sys.exit(run_demo(args.port, wait=not args.no_wait))


def _serve() -> None:
    from wafleet.core import logs
    from wafleet.core.errors import ConfigError
    from wafleet.core.settings import Settings
    from wafleet.serve import serve

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.exit(exc.message)
    logs.setup(
        settings.log_level,
        settings.log_format,
        secrets=[settings.api_key, settings.webhook_secret, settings.telegram_bot_token],
    )
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:
        sys.exit(exc.message)
