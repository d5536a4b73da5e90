"""A fake Telegram Bot API server on loopback, for aiogram's real HTTP client.

It speaks the wire format (``/bot<token>/<method>``, multipart forms, ``attach://``
uploads, ``{"ok": ..., "result": ...}`` answers), keeps the chat's messages so edits can
be checked, records every call, and can answer the next calls of a method with 429 to
exercise flood limits. Tests push updates (commands, button presses) into its
``getUpdates`` long poll.

It refuses, with Telegram's own HTTP 400 and words, whatever the real Bot API refuses
(``tests/telegram_limits.py``): a text over 4,096 characters, a caption over 1,024, more
than 100 buttons, callback data over 64 bytes, HTML it cannot parse, an edit that changes
nothing. So every bot test also checks that its answers would reach a real chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from multidict import MultiDictProxy

from tests import telegram_limits as limits
from tests.fleet import eventually

TOKEN = "123456789:TEST-fake-token-abcdefghijklmnopqrstuvwxyz"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "wafleet", "username": "wafleet_bot"}
ADMIN = 1001  # in TELEGRAM_ADMIN_IDS; talks to the bot in a private chat
CHAT = -100500  # TELEGRAM_CHAT_ID: the operators' group, where alerts go
STRANGER = 2002
VIEWER = 3003  # in TELEGRAM_VIEWER_IDS: may look, may not act


@dataclass
class Call:
    method: str
    params: dict[str, str]
    files: dict[str, bytes]
    at: float
    status: int = 200
    refused: str = ""  # Telegram's words when it answered 400

    def get(self, name: str) -> Any:
        """A parameter, JSON-decoded when aiogram sent it as JSON."""
        raw = self.params.get(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    @property
    def chat(self) -> int | None:
        raw = self.params.get("chat_id")
        return int(raw) if raw is not None else None

    @property
    def thread(self) -> int | None:
        """The forum topic (``message_thread_id``) the call posts to, if any."""
        raw = self.params.get("message_thread_id")
        return int(raw) if raw is not None else None

    @property
    def text(self) -> str:
        media = self.get("media")
        caption = media.get("caption", "") if isinstance(media, dict) else ""
        return self.params.get("text") or self.params.get("caption") or caption or ""

    @property
    def shown(self) -> str:
        """The text or caption as the chat shows it: the HTML tags out, entities decoded."""
        media = self.get("media")
        mode = media.get("parse_mode") if isinstance(media, dict) else None
        return limits.shown_text(self.text, self.params.get("parse_mode") or mode)

    def buttons(self) -> list[dict[str, str]]:
        markup = self.get("reply_markup")
        rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
        return [button for row in rows for button in row]

    @property
    def photo(self) -> bytes | None:
        """The uploaded picture of ``sendPhoto`` / ``editMessageMedia``."""
        media = self.get("media")
        ref = media.get("media") if isinstance(media, dict) else self.params.get("photo")
        if isinstance(ref, str) and ref.startswith("attach://"):
            return self.files.get(ref.removeprefix("attach://"))
        return None


@dataclass
class StoredMessage:
    chat: int
    message_id: int
    kind: str  # "text" | "photo"
    text: str = ""
    photo: bytes | None = None
    reply_markup: dict[str, Any] | None = None
    edits: int = 0
    thread: int | None = None  # the forum topic it was posted to

    def buttons(self) -> list[dict[str, str]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": self.message_id,
            "date": int(time.time()),
            "chat": _chat(self.chat),
            "from": BOT_USER,
        }
        if self.kind == "photo":
            body["photo"] = [
                {
                    "file_id": f"photo-{self.message_id}-{self.edits}",
                    "file_unique_id": f"u{self.message_id}-{self.edits}",
                    "width": 512,
                    "height": 512,
                }
            ]
            body["caption"] = self.text
        else:
            body["text"] = self.text
        if self.reply_markup:
            body["reply_markup"] = self.reply_markup
        if self.thread is not None:
            body["message_thread_id"] = self.thread
            body["is_topic_message"] = True
        return body


def _chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "user"}
    return {"id": chat_id, "type": "supergroup", "title": "ops"}


@dataclass
class FakeTelegram:
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[int, int], StoredMessage] = field(default_factory=dict)
    polls: int = 0
    conflicts: int = 0  # getUpdates refused with 409 because another was open
    max_hold_s: float = 2.0  # the longest a getUpdates is held (Telegram's timeout, capped)
    _polling: list[web.Request] = field(default_factory=list)  # getUpdates held open now
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _failures: dict[str, list[int]] = field(default_factory=dict)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._arrived.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # what tests do ------------------------------------------------------------------------

    def fail_next(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with 429 Too Many Requests."""
        self._failures.setdefault(method, []).extend([retry_after] * times)

    def send(self, text: str, user: int = ADMIN, chat: int | None = None, lang: str = "en") -> int:
        """A user writes ``text`` (a command) to the bot; returns the message's id."""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": _chat(user if chat is None else chat),
            "from": {"id": user, "is_bot": False, "first_name": "op", "language_code": lang},
            "text": text,
        }
        if text.startswith("/"):
            length = len(text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        self._push({"message": message})
        return int(message["message_id"])

    def press(self, message: StoredMessage, data: str, user: int = ADMIN) -> None:
        """A user presses the inline button with callback data ``data`` under ``message``."""
        self._push(
            {
                "callback_query": {
                    "id": f"cb{next(self._update_ids)}",
                    "from": {"id": user, "is_bot": False, "first_name": "op"},
                    "chat_instance": "ci",
                    "message": message.as_json(),
                    "data": data,
                }
            }
        )

    def calls_of(self, method: str, chat: int | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and c.status == 200 and (chat is None or c.chat == chat)
        ]

    async def wait_call(
        self,
        method: str,
        where: Callable[[Call], bool] = lambda c: True,
        timeout: float = 15.0,
        after: int = 0,
    ) -> Call:
        """The first successful ``method`` call from index ``after`` on satisfying ``where``."""

        async def found() -> Call | None:
            for call in self.calls[after:]:
                if call.method == method and call.status == 200 and where(call):
                    return call
            return None

        return await eventually(found, timeout, f"a {method} call")

    def message(self, chat: int, message_id: int) -> StoredMessage:
        return self.messages[(chat, message_id)]

    # the server ---------------------------------------------------------------------------

    def _push(self, body: dict[str, Any]) -> None:
        self._updates.append({"update_id": next(self._update_ids), **body})
        self._arrived.set()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params, files = await _read_form(request)
        if method == "getUpdates":
            self.polls += 1
            # A poll whose client has gone away (timed out, killed) is no poller.
            self._polling = [r for r in self._polling if not _gone(r)]
            if self._polling:
                # Telegram allows one poller per token: a second one is refused with 409.
                self.conflicts += 1
                return _error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only "
                    "one bot instance is running",
                )
            self._polling.append(request)
            try:
                return _ok(await self._get_updates(params, request))
            finally:
                self._polling = [r for r in self._polling if r is not request]
        call = Call(method, params, files, time.monotonic())
        self.calls.append(call)
        pending = self._failures.get(method)
        if pending:
            retry_after = pending.pop(0)
            call.status = 429
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {retry_after}",
                    "parameters": {"retry_after": retry_after},
                },
                status=429,
            )
        refused = _refusal(call)
        if refused is not None:
            call.status, call.refused = 400, refused
            return _error(400, refused)
        handler = getattr(self, "_m_" + method, None)
        if handler is None:
            return _ok(True)
        result: web.Response = handler(call)
        call.status = result.status
        return result

    async def _get_updates(
        self, params: dict[str, str], request: web.Request
    ) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._arrived.clear()
            # Held as Telegram holds it (capped, to keep tests quick), and, as Telegram does,
            # no longer once the client has gone away: a killed poller is no poller.
            deadline = time.monotonic() + min(float(params.get("timeout") or 0), self.max_hold_s)
            while not self._arrived.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or _gone(request):
                    return []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), min(left, 0.05))
        return list(self._updates)

    def _store(self, call: Call, kind: str, text: str, photo: bytes | None) -> web.Response:
        chat = call.chat or 0
        message = StoredMessage(
            chat,
            next(self._message_ids),
            kind,
            text,
            photo,
            call.get("reply_markup"),
            thread=call.thread,
        )
        self.messages[(chat, message.message_id)] = message
        return _ok(message.as_json())

    def _edit_target(self, call: Call) -> StoredMessage | None:
        return self.messages.get((call.chat or 0, int(call.params.get("message_id") or 0)))

    def _m_getMe(self, call: Call) -> web.Response:  # noqa: N802 - Bot API method names
        return _ok(BOT_USER)

    def _m_sendMessage(self, call: Call) -> web.Response:  # noqa: N802
        return self._store(call, "text", call.params.get("text", ""), None)

    def _m_sendPhoto(self, call: Call) -> web.Response:  # noqa: N802
        if call.photo is None:
            return _error(400, "Bad Request: there is no photo in the request")
        return self._store(call, "photo", call.params.get("caption", ""), call.photo)

    def _m_editMessageMedia(self, call: Call) -> web.Response:  # noqa: N802
        target = self._edit_target(call)
        if target is None or target.kind != "photo":
            return _error(400, "Bad Request: message to edit not found")
        if call.photo is None:
            return _error(400, "Bad Request: there is no photo in the request")
        target.photo, target.text = call.photo, call.text
        target.reply_markup = call.get("reply_markup")
        target.edits += 1
        return _ok(target.as_json())

    def _m_editMessageText(self, call: Call) -> web.Response:  # noqa: N802
        target = self._edit_target(call)
        if target is None or target.kind != "text":
            return _error(400, "Bad Request: message to edit not found")
        if (target.text, target.reply_markup) == (call.text, call.get("reply_markup")):
            call.refused = limits.NOT_MODIFIED
            return _error(400, limits.NOT_MODIFIED)
        target.text = call.params.get("text", "")
        target.reply_markup = call.get("reply_markup")
        target.edits += 1
        return _ok(target.as_json())

    def _m_editMessageCaption(self, call: Call) -> web.Response:  # noqa: N802
        target = self._edit_target(call)
        if target is None or target.kind != "photo":
            return _error(400, "Bad Request: message to edit not found")
        target.text = call.params.get("caption", "")
        target.edits += 1
        return _ok(target.as_json())

    def _m_editMessageReplyMarkup(self, call: Call) -> web.Response:  # noqa: N802
        target = self._edit_target(call)
        if target is None:
            return _error(400, "Bad Request: message to edit not found")
        target.reply_markup = call.get("reply_markup")
        return _ok(target.as_json())

    def _m_deleteMessage(self, call: Call) -> web.Response:  # noqa: N802
        key = (call.chat or 0, int(call.params.get("message_id") or 0))
        self.messages.pop(key, None)
        return _ok(True)


def _refusal(call: Call) -> str | None:
    """What the real Bot API would answer 400 to in ``call``, in its words; None if nothing."""
    mode = call.params.get("parse_mode")
    if call.method in ("sendMessage", "editMessageText"):
        refused = limits.text_refusal(call.params.get("text", ""), mode)
    elif call.method in ("sendPhoto", "editMessageCaption"):
        refused = limits.caption_refusal(call.params.get("caption", ""), mode)
    elif call.method == "editMessageMedia":
        media = call.get("media")
        media = media if isinstance(media, dict) else {}
        refused = limits.caption_refusal(media.get("caption") or "", media.get("parse_mode"))
    elif call.method == "answerCallbackQuery":
        refused = limits.popup_refusal(call.params.get("text"))
    else:
        refused = None
    return refused or limits.markup_refusal(call.get("reply_markup"))


async def _read_form(request: web.Request) -> tuple[dict[str, str], dict[str, bytes]]:
    params: dict[str, str] = {}
    files: dict[str, bytes] = {}
    if request.content_type == "application/json":
        body = await request.json()
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}, files
    form: MultiDictProxy[Any] = await request.post()
    for name, value in form.items():
        if isinstance(value, web.FileField):
            files[name] = value.file.read()
        else:
            params[name] = str(value)
    return params, files


def _gone(request: web.Request) -> bool:
    """The client closed the connection (a timed-out or killed poller)."""
    return request.transport is None or request.transport.is_closing()


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(code: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": code, "description": description}, status=code
    )


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    await fake.start()
    yield fake
    await fake.stop()


def bot_env(fake: FakeTelegram, **extra: Any) -> dict[str, Any]:
    """``fleet_options`` for a fleet whose ``serve`` runs the bot against ``fake``."""
    return {
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.url,
        "TELEGRAM_CHAT_ID": str(CHAT),
        "TELEGRAM_ADMIN_IDS": f"{ADMIN},4242",
        "TELEGRAM_VIEWER_IDS": str(VIEWER),
        **extra,
    }
