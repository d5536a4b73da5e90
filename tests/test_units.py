"""Small pure parts: proxy URLs, signatures, redaction, phone numbers, QR rendering."""

from __future__ import annotations

import io
import logging

import pytest
import zxingcpp
from PIL import Image

from core import qr, signing
from core.errors import InvalidInput
from core.logs import RedactingFilter, redact
from core.phone import normalize
from core.proxy_url import ProxyUrl


def test_proxy_url_masks_and_ids_without_the_password() -> None:
    url = ProxyUrl.parse("socks5h://user:p%40ss@10.0.0.1:1080")
    assert url.password == "p@ss"
    assert url.masked == "socks5h://user:***@10.0.0.1:1080"
    assert "p%40ss" in url.url and "ss" not in url.id
    assert ProxyUrl.parse(url.url) == url
    for bad in (
        "socks5://u:p@h:1",
        "http://h:1",
        "socks5h://h",
        "socks5h://h:99999",
        "socks5h://h:1/path",
        "garbage",
    ):
        with pytest.raises(ValueError) as caught:
            ProxyUrl.parse(bad)
        assert "p@ss" not in str(caught.value)


def test_signatures_bind_session_time_and_body() -> None:
    secret = signing.session_secret("master-secret-123456", "worker_1")
    assert secret != signing.session_secret("master-secret-123456", "worker_2")
    body = b'{"a":1}'
    sig = signing.sign(secret, 1000, body)
    assert signing.verify(secret, "1000", sig, body, 1000) is None
    assert signing.verify(secret, "1000", sig, b'{"a":2}', 1000) == "bad signature"
    assert signing.verify(secret, "1000", sig, body, 1000 + 6 * 60_000) == "stale timestamp"
    assert signing.verify(secret, "x", sig, body, 1000) == "missing or malformed timestamp"


def test_redaction_hides_proxy_passwords_tokens_and_named_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = "via socks5h://u:hunter2@h:1 token 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw key"
    assert redact(text, ["key"]) == "via socks5h://u:***@h:1 token *** ***"
    logger = logging.getLogger("wafleet.test.redaction")
    logger.addFilter(RedactingFilter(["topsecret"]))
    with caplog.at_level(logging.INFO):
        try:
            raise RuntimeError("failed on socks5h://u:hunter2@h:1 with topsecret")
        except RuntimeError:
            logger.exception("boom %s", "topsecret")
    assert "hunter2" not in caplog.text and "topsecret" not in caplog.text
    assert "RuntimeError" in caplog.text


@pytest.mark.parametrize(
    ("raw", "want"), [("+972 50-123-4567", "972501234567"), ("14155550100", "14155550100")]
)
def test_phone_normalisation(raw: str, want: str) -> None:
    assert normalize(raw) == want


@pytest.mark.parametrize("raw", ["abc", "0501234567", "1234567", "1" * 16, 972501234567, None])
def test_phone_refusals(raw: object) -> None:
    with pytest.raises(InvalidInput):
        normalize(raw)


def test_qr_png_decodes_and_is_big_enough_for_a_phone() -> None:
    code = "2@" + "A" * 24 + "," + "B" * 44 + "," + "C" * 44 + "," + "D" * 44
    image = Image.open(io.BytesIO(qr.png(code)))
    assert min(image.size) >= 400
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [code]
    assert len(qr.terminal(code).splitlines()) > 20
