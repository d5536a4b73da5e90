"""``wafleet worker``: one session, configured by its environment, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys

from core import logs
from core.proxy_url import ProxyUrl
from worker import media_fetch
from worker.commands import CommandClient
from worker.config import WorkerConfig
from worker.drivers import make_driver
from worker.drivers.base import EXIT_RECYCLE, Recycle
from worker.media_inbox import MediaInbox
from worker.session_loop import SessionLoop
from worker.webhook_client import WebhookClient

log = logging.getLogger("wafleet.worker")


async def run_worker(config: WorkerConfig) -> None:
    driver = make_driver(config)
    # Files a previous process fetched and never sent: a command handed out again fetches
    # its file afresh (with a fresh link).
    media_fetch.clear(config.session_dir)
    # Random per process start: the one thing two copies of a Swarm task do not share.
    boot_id = secrets.token_hex(8)
    inbox = MediaInbox(config.session_dir)  # files of incoming messages, until serve has them
    webhook = WebhookClient(
        config.webhook_url,
        config.session_id,
        config.webhook_secret,
        boot_id=boot_id,
        outbox_dir=config.session_dir,
        outbox_max_bytes=config.outbox_max_bytes,
        inbox=inbox,
    )
    # Files whose events left before an earlier process could remove them.
    inbox.sweep(webhook.outbox.mentions)
    await webhook.start()
    loop = SessionLoop(
        driver,
        webhook,
        config.presence_interval_s,
        config.self_message_interval_s,
        config.attempts_per_process,
        ProxyUrl.parse(config.proxy_url).id,
        inbox,
    )
    commands = CommandClient(
        config.session_id,
        config.webhook_secret,
        driver,
        webhook,
        loop.online,
        config.session_dir,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    session = asyncio.create_task(loop.run(), name="session")
    channel = asyncio.create_task(commands.run(), name="commands")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    log.info("worker %s started (driver %s, boot %s)", config.session_id, config.driver, boot_id)
    try:
        await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (session, channel, stopper):
            task.cancel()
        await asyncio.gather(session, channel, stopper, return_exceptions=True)
        await commands.close()
        await driver.close()
        await webhook.flush(1.0)
        await webhook.close()
    if session.done() and not session.cancelled() and (exc := session.exception()) is not None:
        raise exc
    log.info("worker %s stopped", config.session_id)


def main() -> None:
    config = WorkerConfig.from_env()
    logs.setup(config.log_level, config.log_format, secrets=[config.webhook_secret])
    try:
        asyncio.run(run_worker(config))
    except Recycle as exc:
        log.info("recycling the worker process: %s", exc.reason)
        sys.exit(EXIT_RECYCLE)
