"""The worker's side of the command channel (core/commands.py): poll, carry out, acknowledge.

While connected, the worker long-polls ``POST /worker/commands`` and carries out what it
gets one command at a time: "typing..." for the time serve chose, then the text with the
WhatsApp id derived from our message id. A command with ``media`` names a file: it is
fetched from serve by its signed link into the session folder (worker/media_fetch.py,
streamed, its size and SHA-256 checked), sent with its caption, and the copy removed as
soon as the network accepted or refused it (a command handed out again fetches afresh).
Each outcome (``sent``, or ``failed`` with a reason) rides on the next poll, which goes out
at once: one request per message where an acknowledgement, a status event and a poll were
three; serve makes the operator's status event from it. The outcomes are kept until a poll
is answered, so serve away only delays them. A command whose message could not leave (the
connection dropped) is not acknowledged: the next poll answers it again. Serve paces the
messages (limits, random pauses); the worker does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from worker import media_fetch
from worker.drivers.base import Driver, NotConnected, OutgoingMedia, SendFailed
from worker.endpoints import FailoverPoster
from worker.http_post import HttpError
from worker.message_ids import wa_id
from worker.webhook_client import WebhookClient

log = logging.getLogger("wafleet.worker.commands")

# How long a poll may wait at serve for a command. An idle worker makes one request this
# often, so it sets the cost of an idle fleet (N / 25 requests a second); a message accepted
# meanwhile still answers the waiting poll at once (serve wakes it).
POLL_WAIT_MS = 25_000
RETRY_BASE_S, RETRY_CAP_S = 0.2, 3.0
MAX_ACKS = 64  # outcomes one poll carries (serve takes at most this many)


def channel_url(webhook_url: str, path: str) -> str:
    """The channel lives beside ``/webhook`` on the same orchestrator."""
    base = webhook_url.rsplit("/webhook", 1)[0] if "/webhook" in webhook_url else webhook_url
    return base.rstrip("/") + path


class CommandClient:
    def __init__(
        self,
        session_id: str,
        secret: str,
        driver: Driver,
        webhook: WebhookClient,
        connected: asyncio.Event,
        session_dir: Path | None = None,
    ) -> None:
        self.session_id = session_id
        self.session_dir = session_dir or Path(".")
        self.secret = secret
        self.driver = driver
        self.webhook = webhook
        self.connected = connected
        # At the replica the events go to (``webhook.endpoints``, which moves on for both).
        # The poll is held open up to POLL_WAIT_MS: give it that long and some more.
        self._poll = webhook.endpoints.poster(
            lambda url: channel_url(url, "/worker/commands"), 20 + POLL_WAIT_MS / 1000
        )
        self._acks: list[dict[str, Any]] = []  # outcomes serve has not answered for yet
        self._failures = 0

    async def run(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the channel die silently: log, back off, go on
                log.exception("command channel round failed")
                await self._backoff()

    async def _round(self) -> None:
        """Wait until connected, poll once, carry out what came. Outcomes still to tell go
        at once even while disconnected (a poll that does not wait, whose commands wait for
        the connection)."""
        if not self._acks:
            await self.connected.wait()
        online = self.connected.is_set()
        acks = self._acks[:MAX_ACKS]
        body: dict[str, Any] = {"waitMs": POLL_WAIT_MS if online else 0}
        if acks:
            body["acks"] = acks
        commands = await self._call(self._poll, body)
        if commands is not None:
            # Answered: serve has applied them (a refusal is final: sending them again would
            # only be refused again).
            del self._acks[: len(acks)]
        if commands is None or "commands" not in commands:
            await self._backoff()  # serve away, or refusing: do not spin
            return
        self._failures = 0
        for command in commands["commands"] if online else []:
            if not await self._carry_out(command):
                return  # not connected: the next poll answers it again

    async def _carry_out(self, command: dict[str, Any]) -> bool:
        mid, to, text = command["id"], command["to"], command["text"]
        outcome: dict[str, Any] = {"id": mid, "status": "sent"}
        media: OutgoingMedia | None = None
        try:
            if "media" in command:
                media = await self._fetch(to, text, command["media"])
            if command.get("typingMs"):
                await self.driver.send_typing(to, int(command["typingMs"]))
            if media is not None:
                await self.driver.send_media(media, wa_id(mid))
            else:
                await self.driver.send_text(to, text, wa_id(mid))
        except media_fetch.MediaGone as exc:
            outcome = {"id": mid, "status": "failed", "reason": exc.reason}
        except media_fetch.FetchFailed as exc:
            log.warning("fetching the file of %s failed (%s); it is tried again", mid, exc)
            await self._backoff()
            return False
        except SendFailed as exc:
            outcome = {"id": mid, "status": "failed", "reason": exc.reason}
        except NotConnected:
            return False
        except Exception as exc:  # a dropped connection mid-send: try again when back
            log.warning("sending %s failed (%s); it waits for the next connection", mid, exc)
            return False
        finally:
            if media is not None:
                media.path.unlink(missing_ok=True)
        self._acks.append(outcome)
        return True

    async def _fetch(self, to: str, caption: str, media: dict[str, Any]) -> OutgoingMedia:
        """The command's file, fetched and checked (``FetchFailed``, ``MediaGone``)."""
        size, sha256 = int(media["size"]), str(media["sha256"])
        urls = media_fetch.alternatives(str(media["url"]), self.webhook.endpoints.urls)
        path = await media_fetch.fetch(urls, self.session_dir, size, sha256)
        return OutgoingMedia(
            to=to,
            kind=str(media["kind"]),
            path=path,
            mime=str(media["mime"]),
            size=size,
            sha256=sha256,
            filename=media.get("filename"),
            caption=caption,
        )

    async def _call(self, http: FailoverPoster, body: dict[str, Any]) -> dict[str, Any] | None:
        """A signed request; its JSON answer, or None when it should be tried again."""
        raw = json.dumps({"sessionId": self.session_id, **body}, separators=(",", ":")).encode()
        ts = time.time_ns() // 1_000_000
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self.secret, ts, raw),
        }
        try:
            answer = await http.post(raw, headers)
        except HttpError as exc:
            log.debug("command channel unreachable (%s); retrying", exc)
            return None
        if answer.status == 200:
            found = json.loads(answer.body)
            return found if isinstance(found, dict) else {}
        if 400 <= answer.status < 500 and answer.status not in (408, 429):
            # Refused for good (a deleted session, an expired record): do not loop on it.
            log.error("command channel refused (%d): %s", answer.status, answer.body[:200])
            return {}
        return None

    async def _backoff(self) -> None:
        self._failures += 1
        delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(self._failures, 10))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def close(self) -> None:
        await self._poll.close()
