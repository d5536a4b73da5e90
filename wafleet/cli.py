"""The ``wafleet`` console script (its commands are a fixed interface): serve, worker,
simwa, demo, backup."""

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
    backup = commands.add_parser(
        "backup",
        help="backups through the running serve's API (HTTP_PORT, API_KEY or WAFLEET_API_URL)",
    )
    backup.add_argument("--json", action="store_true", help="print the API's JSON answer")
    actions = backup.add_subparsers(dest="action", required=True)
    actions.add_parser("create", help="back up every session now")
    actions.add_parser("list", help="the backups, newest first")
    restore = actions.add_parser("restore", help="replace every session with a backup's")
    restore.add_argument("id", help="a backup id, e.g. backup_2024-05-01")
    restore.add_argument(
        "--wait", dest="wait_s", type=float, default=30, help="seconds to wait for connects"
    )
    backup.set_defaults(wait_s=30.0)
    args = parser.parse_args(argv)

    if args.command == "worker":
        from worker.config import WorkerConfigError
        from worker.main import main as worker_main

        try:
            worker_main()
        except WorkerConfigError as exc:
            sys.exit(str(exc))
    elif args.command == "simwa":
        from core import logs
        from simwa.app import run
        from simwa.models import QrTimings

        logs.setup(os.environ.get("LOG_LEVEL", "INFO"))
        run(
            args.host,
            args.port,
            QrTimings(args.qr_first_ttl_ms, args.qr_next_ttl_ms, args.qr_count),
        )
    elif args.command == "serve":
        _serve()
    elif args.command == "backup":
        sys.exit(_backup(args.action, getattr(args, "id", None), args.json, args.wait_s))
    elif args.command == "demo":
        from wafleet.demo import run_demo

        sys.exit(run_demo(args.port, wait=not args.no_wait))


def _serve() -> None:
    from core import logs
    from core.errors import ConfigError
    from core.settings import Settings
    from wafleet.serve import serve

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.exit(exc.message)
    logs.setup(
        settings.log_level,
        settings.log_format,
        secrets=[
            settings.api_key,
            settings.webhook_secret,
            settings.telegram_bot_token,
            settings.events_webhook_secret,
        ],
    )
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:
        sys.exit(exc.message)


def _backup(action: str, backup_id: str | None, as_json: bool, wait_s: float) -> int:
    """Go through the running ``serve``: a restore must stop the workers serve manages, and
    one process must own the backup lock."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    host = os.environ.get("HTTP_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    base = os.environ.get("WAFLEET_API_URL") or f"http://{host}:{_env_int('HTTP_PORT', 3000)}"
    api_key = os.environ.get("API_KEY", "")
    if not api_key:
        print("wafleet backup: API_KEY is not set (the serve's API key)", file=sys.stderr)
        return 2
    method, path, body, timeout = {
        "list": ("GET", "/api/v1/backups", None, 30.0),
        "create": ("POST", "/api/v1/backups/create", b"{}", 600.0),
        "restore": (
            "POST",
            f"/api/v1/backups/restore/{urllib.parse.quote(backup_id or '', safe='')}",
            json.dumps({"waitSeconds": wait_s}).encode(),
            600.0 + wait_s,
        ),
    }[action]
    request = urllib.request.Request(
        base.rstrip("/") + path,
        data=body,
        method=method,
        headers={"X-API-Key": api_key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            print(
                f"wafleet backup {action}: {error['message']} ({error['code']})", file=sys.stderr
            )
        except (ValueError, KeyError, TypeError):
            print(f"wafleet backup {action}: HTTP {exc.code}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"wafleet backup: wafleet serve is not reachable at {base} ({reason}).\n"
            "Start it with `wafleet serve`, or point HTTP_PORT / WAFLEET_API_URL at it.",
            file=sys.stderr,
        )
        return 3
    if as_json:
        print(json.dumps(answer, indent=2))
    elif action == "list":
        print(_backup_table(answer["backups"]))
    elif action == "create":
        print(
            f"{answer['file']}: {answer['size']} bytes, {answer['sessions']} session(s), "
            f"{answer['mode']}, max pause {answer['maxPauseMs']} ms, "
            f"took {answer['durationMs']} ms"
        )
    else:
        print(
            f"restored {len(answer['sessions'])} session(s) from {answer['backup']}: "
            f"{len(answer['connected'])} connected"
        )
        if answer["notConnected"]:
            print(f"not connected yet: {', '.join(answer['notConnected'])}")
        for moved in answer["reassigned"]:
            print(
                f"{moved['id']}: proxy {moved['from']} -> {moved['to'] or 'none'} ({moved['why']})"
            )
        for url in answer["proxiesAdded"]:
            print(f"proxy re-added to the pool: {url}")
    return 0


def _backup_table(backups: list[dict[str, object]]) -> str:
    from datetime import UTC, datetime

    if not backups:
        return "no backups yet"
    rows = [("ID", "CREATED", "SIZE", "SESSIONS")]
    for b in backups:
        created = datetime.fromtimestamp(int(str(b["created"])) / 1000, tz=UTC).astimezone()
        sessions = "?" if b["sessions"] is None else str(b["sessions"])
        rows.append((str(b["id"]), f"{created:%Y-%m-%d %H:%M:%S}", str(b["size"]), sessions))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
