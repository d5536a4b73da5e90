"""Bad input at the door: a clear 4xx in the JSON error shape, and nothing changes.

Each case here was a 500, a traceback in the log, or a value that poisoned the fleet.
Requests whose bytes aiohttp's client would clean up (a stray byte in a header, a NUL in a
request line) are written on a raw socket.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from core.signing import session_secret
from tests.fleet import API_KEY, PHONE, WEBHOOK_SECRET, Fleet
from worker.webhook_client import WebhookClient

NESTED = b"[" * 64 * 1024
NESTED_OBJECT = b'{"phone": ' + b"[" * 60_000


async def raw_http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is and read the whole answer (the server closes after an error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
        return status, headers, body
    finally:
        writer.close()


def _error(headers: dict[str, str], body: bytes) -> dict[str, str]:
    assert headers["content-type"].startswith("application/json"), (headers, body[:200])
    error: dict[str, str] = json.loads(body)["error"]
    assert error["code"] and error["message"]
    return error


def _no_traceback(fleet: Fleet) -> None:
    assert "Traceback" not in fleet.log()
    assert "RecursionError" not in fleet.log()
    assert "UnicodeEncodeError" not in fleet.log()


# 1. malformed requests: 4xx JSON, cheap, no traceback ------------------------------------


@pytest.mark.parametrize("path", ["/api/sessions/provision", "/api/v1/proxies"])
@pytest.mark.parametrize("key", [API_KEY, "wrong-key"])
async def test_deeply_nested_json_is_a_400_or_401_not_a_500(
    fleet: Fleet, path: str, key: str
) -> None:
    before = await fleet.snapshot()
    for body in (NESTED, NESTED_OBJECT):
        status, answer = await fleet.call("POST", path, headers={"X-API-Key": key}, raw=body)
        assert status == (400 if key == API_KEY else 401), answer
        assert answer["error"]["code"] == ("invalid_input" if key == API_KEY else "unauthorized")
    assert await fleet.snapshot() == before
    _no_traceback(fleet)


async def test_deeply_nested_webhook_is_refused_before_it_is_parsed(fleet: Fleet) -> None:
    await fleet.provision_settled()
    before = await fleet.snapshot()
    nested_with_id = b'{"sessionId": "worker_1", "data": ' + b"[" * 60_000
    for body in (NESTED, nested_with_id):
        status, answer = await fleet.post_webhook({}, raw=body, signature="sha256=" + "0" * 64)
        assert status in (400, 401), answer
    # Signed by the session itself: parsed, and still a clean 400.
    status, answer = await fleet.post_webhook({"sessionId": "worker_1"}, raw=nested_with_id)
    assert (status, answer["error"]["code"]) == (400, "invalid_input")
    assert "nested" in answer["error"]["message"]
    assert await fleet.snapshot() == before
    _no_traceback(fleet)


@pytest.mark.parametrize(
    "header",
    [b"X-API-Key: \xff\xfekey", b"Authorization: Bearer \xe9t\xe9", b"X-API-Key: \xd7\xa9"],
)
async def test_a_non_ascii_byte_in_the_api_key_is_a_401(fleet: Fleet, header: bytes) -> None:
    before = await fleet.snapshot()
    request = (
        b"POST /api/sessions/provision HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    status, headers, body = await raw_http(fleet.port, request)
    assert status == 401
    assert _error(headers, body)["code"] == "unauthorized"
    assert await fleet.snapshot() == before
    _no_traceback(fleet)


@pytest.mark.parametrize(
    ("request_bytes", "echo"),
    [
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"aaaaaaaaaa"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: ab\x00cd-echo\r\n\r\n", b"cd-echo"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"e" * 20_000 + b"\r\n\r\n", b"eeee"),
        (b"G\x01T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"\x01"),
        (b"GET /healthz HTTP/9z\r\nHost: x\r\n\r\n", b"9z"),
    ],
    ids=["long path", "NUL in a header", "long header", "bad method", "bad version"],
)
async def test_requests_the_parser_refuses_get_the_json_shape_without_an_echo(
    fleet: Fleet, request_bytes: bytes, echo: bytes
) -> None:
    status, headers, body = await raw_http(fleet.port, request_bytes)
    assert 400 <= status < 500
    _error(headers, body)
    assert echo not in body
    _no_traceback(fleet)
    # one line at most per refusal, and the server still answers
    assert fleet.log().count("unreadable request refused") == 1
    got, health = await fleet.call("GET", "/healthz", headers={"X-API-Key": ""})
    assert got == 200, health


async def test_a_405_carries_allow_and_the_json_shape(fleet: Fleet) -> None:
    async with fleet.http.put(
        fleet.api + "/api/sessions/provision", headers={"X-API-Key": API_KEY}
    ) as r:
        assert r.status == 405
        assert "POST" in r.headers["Allow"]
        body = await r.json()
    assert body["error"]["code"] == "method_not_allowed"


# 2. values that cannot be stored, logged, passed in an environment or shown in a chat -----

BAD_TEXT = ["a\x00b", "a\ud800b", "a\x1b[31mb", "a\nb"]


@pytest.mark.parametrize("bad", BAD_TEXT, ids=["NUL", "lone surrogate", "ESC", "newline"])
async def test_a_proxy_url_that_cannot_be_passed_on_is_refused_and_poisons_nothing(
    fleet: Fleet, bad: str
) -> None:
    url = f"socks5h://u:p@127.{bad}0.0.1:1080"
    before = await fleet.snapshot()
    for path, field in (("/api/v1/proxies", "url"), ("/api/sessions/provision", "proxy")):
        status, answer = await fleet.call("POST", path, {field: url})
        assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
        assert bad not in answer["error"]["message"]
    assert await fleet.snapshot() == before
    # the pool is not poisoned: the next provision gets a worker and a QR
    session = await fleet.provision()
    assert await fleet.qr(session["id"])
    _no_traceback(fleet)


async def test_a_percent_encoded_nul_in_a_proxy_password_is_refused(fleet: Fleet) -> None:
    before = await fleet.snapshot()
    status, answer = await fleet.call(
        "POST", "/api/v1/proxies", {"url": "socks5h://u:p%00w@127.0.0.1:1080"}
    )
    assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
    assert await fleet.snapshot() == before


@pytest.mark.parametrize("bad", BAD_TEXT, ids=["NUL", "lone surrogate", "ESC", "newline"])
async def test_every_rest_string_field_obeys_the_same_rule(fleet: Fleet, bad: str) -> None:
    before = await fleet.snapshot()
    for body in ({"phone": f"97250{bad}1234567"}, {"phone": PHONE, f"x{bad}": 1}):
        status, answer = await fleet.call("POST", "/api/sessions/provision", body)
        assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
    assert await fleet.snapshot() == before


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("DISCONNECTED", {"reason": "lost \ud800", "code": 428}),
        ("DISCONNECTED", {"reason": "lost\x00", "code": 428}),
        ("PAIRING_CODE", {"code": "ABCD\ud800"}),
        ("PAIRING_CODE", {"code": "AB\x00CD"}),
        ("QR_CODE", {"qr": "2@abc\ud800"}),
        ("PROXY_ERROR", {"error": "\x07bell"}),
        ("AUTH_FAILURE", {"reason": "x", "extra": ["\ud800"]}),
        ("PING", {"timestamp": 1, "\ud800": 1}),
    ],
)
async def test_signed_events_with_unusable_text_are_refused_before_any_write(
    fleet: Fleet, kind: str, data: dict[str, Any]
) -> None:
    sid = await fleet.provision_settled()
    before = await fleet.snapshot()
    payload = {"sessionId": sid, "type": kind, "data": data, "timestamp": 1}
    status, answer = await fleet.post_webhook(payload)
    assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
    assert await fleet.snapshot() == before
    _no_traceback(fleet)


@pytest.mark.parametrize("path", ["/api/sessions/worker_%00/status", "/api/sessions/a%1Bb/qr"])
async def test_path_ids_obey_the_same_rule(fleet: Fleet, path: str) -> None:
    status, answer = await fleet.call("GET", path)
    assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer


# 3. phones: ASCII digits or nothing --------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "٩٧٢٥٠١٢٣٤٥٦٧",  # Arabic-Indic
        "９７２５０１２３４５６７",  # full-width
        "972٥٠١٢٣٤٥٦٧",  # mixed
        "۹۷۲۵۰۱۲۳۴۵۶۷",  # Extended Arabic-Indic (Persian)
        "९७२५०१२३४५६७",  # Devanagari
    ],
)
async def test_phones_in_other_digit_systems_are_refused(fleet: Fleet, phone: str) -> None:
    before = await fleet.snapshot()
    status, answer = await fleet.call("POST", "/api/sessions/provision", {"phone": phone})
    assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
    assert await fleet.snapshot() == before


async def test_a_connected_event_with_foreign_digits_is_refused(fleet: Fleet) -> None:
    sid = await fleet.provision_settled()
    before = await fleet.snapshot()
    payload = {"sessionId": sid, "type": "CONNECTED", "data": {"phoneNumber": "٩٧٢٥٠١٢٣٤٥٦٧"}}
    status, _ = await fleet.post_webhook(payload)
    assert status == 400
    assert await fleet.snapshot() == before


# 4. proxy hosts: the operator's networks, tested on a loopback address only ---------------

DENIED = "127.0.0.77"


class Listener:
    """A TCP listener on a denied loopback address: it must never hear a connection."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        def accepted(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            w.close()

        self.server = await asyncio.start_server(accepted, DENIED, 0)
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize(
    "fleet_options", [{"PROXY_DENY_NETWORKS": f"{DENIED}/32, .denied.localhost"}]
)
async def test_a_denied_proxy_host_is_refused_and_never_connected_to(fleet: Fleet) -> None:
    listener = Listener()
    port = await listener.start()
    try:
        before = await fleet.snapshot()
        for host in (DENIED, f"[::ffff:{DENIED}]", "x.denied.localhost"):
            url = f"socks5h://u:p@{host}:{port}"
            for path, field in (("/api/v1/proxies", "url"), ("/api/sessions/provision", "proxy")):
                status, answer = await fleet.call("POST", path, {field: url})
                assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
                assert "PROXY_DENY_NETWORKS" in answer["error"]["message"]
        assert await fleet.snapshot() == before
        # Time passes with the fleet at work (a worker starts and shows a QR, the prober
        # runs every 300 ms): still nobody knocked.
        session = await fleet.provision()
        await fleet.qr(session["id"])
        assert listener.connections == 0
    finally:
        listener.close()


@pytest.mark.parametrize("fleet_options", [{"PROXY_ALLOW_NETWORKS": "127.0.0.1/32"}])
async def test_with_an_allow_list_only_its_networks_are_accepted(fleet: Fleet) -> None:
    listener = Listener()
    port = await listener.start()
    try:
        before = await fleet.snapshot()
        for host in (DENIED, "proxy.localhost", "localhost"):  # localhost is also ::1
            status, answer = await fleet.call(
                "POST", "/api/v1/proxies", {"url": f"socks5h://u:p@{host}:{port}"}
            )
            assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
            assert "PROXY_ALLOW_NETWORKS" in answer["error"]["message"]
        assert await fleet.snapshot() == before
        status, added = await fleet.call(
            "POST", "/api/v1/proxies", {"url": "socks5h://u:p@127.0.0.1:1"}
        )
        assert status == 201, added
        assert listener.connections == 0
    finally:
        listener.close()


def test_proxy_url_n_outside_the_operator_networks_stops_the_start() -> None:
    from core.errors import ConfigError
    from core.settings import Settings

    base = {"API_KEY": "k" * 20, "WEBHOOK_SECRET": "s" * 20}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            base
            | {
                "PROXY_URL_1": f"socks5h://u:p@{DENIED}:1080",
                "PROXY_URL_2": "socks5h://u:p@127.0.0.1:1080",
                "PROXY_DENY_NETWORKS": f"{DENIED}/32",
            }
        )
    assert "PROXY_URL_1" in caught.value.message
    assert "PROXY_URL_2" not in caught.value.message
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(base | {"PROXY_ALLOW_NETWORKS": "10.0.0.0/8, not a network"})
    assert "PROXY_ALLOW_NETWORKS" in caught.value.message
    allowed = Settings.from_env(
        base | {"PROXY_URL_1": "socks5h://u:p@127.0.0.1:1", "PROXY_ALLOW_NETWORKS": "127.0.0.0/8"}
    )
    assert [u.host for u in allowed.proxy_urls] == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("host", "allow", "deny", "refused"),
    [
        # Pure checks of literal strings: nothing here opens a socket.
        ("169.254.169.254", "", "", "link-local or metadata"),
        ("169.254.1.1", "0.0.0.0/0", "", "link-local or metadata"),
        ("fe80::1", "", "", "link-local or metadata"),
        ("::ffff:169.254.169.254", "", "", "link-local or metadata"),
        ("metadata.google.internal", "", "", "link-local or metadata"),
        ("METADATA.google.internal.", "", "", "link-local or metadata"),
        ("2852039166", "", "", "dotted IPv4"),  # 169.254.169.254 as one number
        ("0251.0376.0251.0376", "", "", "dotted IPv4"),  # the same in octal
        ("0xa9.254.169.254", "", "", "dotted IPv4"),
        ("exa_mple..com", "", "", "not a valid host name"),
        ("127.0.0.77", "", "127.0.0.0/24", "PROXY_DENY_NETWORKS"),
        ("127.0.0.77", "127.0.0.0/8", "127.0.0.77/32", "PROXY_DENY_NETWORKS"),
        ("proxy.example.com", "127.0.0.0/8", "", "PROXY_ALLOW_NETWORKS"),
        ("proxy.example.com", ".example.com", "", None),
        ("evil.example.com", ".example.com", "evil.example.com", "PROXY_DENY_NETWORKS"),
        ("127.0.0.5", "127.0.0.0/8", "", None),
        ("proxy.example.com", "", "", None),
        ("localhost", "127.0.0.0/8, ::1/128", "", None),
    ],
)
def test_the_proxy_policy_decides_by_network_and_by_name(
    host: str, allow: str, deny: str, refused: str | None
) -> None:
    from core.proxy_policy import ProxyPolicy, Rules

    problem = ProxyPolicy(Rules.parse(allow), Rules.parse(deny)).problem(host)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem


def test_phone_normalisation_keeps_only_ascii_digits() -> None:
    from core.errors import InvalidInput
    from core.phone import normalize

    assert normalize("+972-50-123 4567") == "972501234567"
    for bad in ("٩٧٢٥٠١٢٣٤٥٦٧", "９７２５０１２３４５６７", "97250123456７"):
        with pytest.raises(InvalidInput):
            normalize(bad)


async def test_refusals_are_cheap(fleet: Fleet) -> None:
    """A burst of hostile bodies is answered fast: no parse of an unsigned webhook."""
    started = time.monotonic()
    for _ in range(50):
        status, _ = await fleet.post_webhook({}, raw=NESTED, signature="")
        assert status == 400
        status, _ = await fleet.call("POST", "/api/v1/proxies", raw=NESTED)
        assert status == 400
    assert time.monotonic() - started < 10
    got, _ = await fleet.call("GET", "/healthz", headers={"X-API-Key": ""})
    assert got == 200


async def test_a_webhook_body_naming_another_session_is_refused(fleet: Fleet) -> None:
    """The session id is read from the raw bytes to check the signature before parsing; the
    parsed body must name the same session, whatever the order or repetition of keys."""
    await fleet.provision()
    await fleet.provision("972509999999")
    before = await fleet.snapshot()
    for raw, signer in (
        (b'{"sessionId":"worker_1","type":"PING","sessionId":"worker_2"}', "worker_1"),
        (b'{"data":{"sessionId":"worker_2"},"sessionId":"worker_1","type":"PING"}', "worker_2"),
    ):
        status, answer = await fleet.post_webhook({}, raw=raw, secret_for=signer)
        assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
    assert await fleet.snapshot() == before


@pytest.mark.parametrize(
    "url",
    [
        "socks5h://u:pw\x00x@127.0.0.1:1080",
        "socks5h://u:pw%00x@127.0.0.1:1080",
        "socks5h://u:pw%ffx@127.0.0.1:1080",
        "socks5h://u:pw\tx@127.0.0.1:1080",  # urlsplit would silently drop the tab
        "socks5h://u:pw\ud800x@127.0.0.1:1080",
    ],
)
def test_proxy_urls_that_cannot_reach_a_worker_intact_are_refused_without_the_password(
    url: str,
) -> None:
    from core.proxy_url import ProxyUrl

    with pytest.raises(ValueError) as caught:
        ProxyUrl.parse(url)
    assert "pw" not in str(caught.value)


async def test_a_worker_reason_with_a_newline_still_reaches_serve(fleet: Fleet) -> None:
    """The door refuses control characters; the worker's own client must not lose an event
    over library text it quotes (a 400 is never retried): it sends the text cleaned."""
    session = await fleet.provision()
    sid = session["id"]
    await fleet.qr(sid)
    client = WebhookClient(fleet.api + "/webhook", sid, session_secret(WEBHOOK_SECRET, sid))
    await client.start()
    try:
        client.send(
            "DISCONNECTED", {"code": "connection_lost", "reason": "EOF\r\nread tcp\x00 \ud800x"}
        )
        await client.flush(10)
    finally:
        await client.close()
    status = await fleet.wait_status(sid, "disconnected")
    assert status["reason"] == "connection_lost"
    (event,) = await fleet.events(sid, "DISCONNECTED")
    assert event["data"]["reason"] == "EOF  read tcp   x"
