"""Small pure parts: proxy URLs, signatures, redaction, phone numbers, QR rendering."""

from __future__ import annotations

import dataclasses
import io
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from core import qr, signing
from core.cron import cron_trigger
from core.errors import ConfigError, InvalidInput
from core.logs import RedactingFilter, redact
from core.notifier import Alert, AlertKind, LogNotifier
from core.phone import normalize
from core.proxy_url import ProxyUrl
from core.runner import WorkerSpec
from core.settings import Settings, env_names


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


_BASE_ENV = {"API_KEY": "a" * 20, "WEBHOOK_SECRET": "b" * 20}


class _Recording(dict[str, str]):
    """An environment that remembers every name asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, name: str, default: object = None) -> Any:
        self.asked.add(name)
        return super().get(name, default)


def test_env_example_lists_every_setting_serve_reads() -> None:
    env = _Recording(dict(_BASE_ENV))
    Settings.from_env(env)
    example = Path(__file__).parent.parent / ".env.example"
    text = example.read_text().split("# --- docker-compose.yml only")[0]
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    listed = {"PROXY_URL_<n>" if re.fullmatch(r"PROXY_URL_\d+", n) else n for n in listed}
    assert "PROXY_URL_<n>" in listed  # read by pattern from the whole environment
    assert env.asked == listed - {"PROXY_URL_<n>"}


def test_every_setting_is_declared_once_with_its_name_and_default() -> None:
    """One declaration per setting: the name it is read from, and the default it gets when the
    environment does not say (a second, drifting copy of a default is what this replaced)."""
    names = env_names()
    assert len(names) == len(set(names))
    read = Settings.from_env(_BASE_ENV)
    for f in dataclasses.fields(Settings):
        assert "env" in f.metadata, f"{f.name} is not declared with setting()"
        if f.name in ("api_key", "webhook_secret"):
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        if isinstance(default, Path):
            default = default.resolve()
        assert getattr(read, f.name) == default, f.name


def test_a_setting_in_the_environment_reaches_its_field() -> None:
    read = Settings.from_env(
        _BASE_ENV
        | {
            "MAX_SESSIONS_PER_PROXY": "2",
            "TELEGRAM_VIEWER_IDS": "7, 8",
            "WORKER_CONSTRAINTS": "node.role==worker, node.labels.a==b",
            "DIGEST_SKIP_EMPTY": "yes",
        }
    )
    assert read.max_sessions_per_proxy == 2
    assert read.telegram_viewer_ids == frozenset({7, 8})
    assert read.worker_constraints == ("node.role==worker", "node.labels.a==b")
    assert read.digest_skip_empty is True


def test_message_retention_is_whole_days_from_the_environment() -> None:
    assert Settings.from_env(dict(_BASE_ENV)).message_retention_days == 7
    month = Settings.from_env({**_BASE_ENV, "MESSAGE_RETENTION_DAYS": "30"})
    assert month.message_retention_days == 30


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("0", "MESSAGE_RETENTION_DAYS must be at least 1, got 0"),
        ("-3", "MESSAGE_RETENTION_DAYS must be at least 1, got -3"),
        ("1.5", "MESSAGE_RETENTION_DAYS must be a whole number, got '1.5'"),
        ("week", "MESSAGE_RETENTION_DAYS must be a whole number, got 'week'"),
    ],
)
def test_a_message_retention_that_is_not_a_positive_whole_number_is_refused(
    raw: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**_BASE_ENV, "MESSAGE_RETENTION_DAYS": raw})
    assert problem in str(refused.value)


def test_sentinel_settings_are_read_and_bad_ones_refused_in_one_message() -> None:
    """Caught: a Sentinel list read wrong (an IPv6 address, spaces), or a typo in it, a
    master name or a webhook URL list found only when serve first talks to it."""
    settings = Settings.from_env(
        {
            **_BASE_ENV,
            "REDIS_SENTINELS": " 127.0.0.1:26379, [::1]:26380 ,sentinel-3:26381",
            "PUBLIC_WEBHOOK_URL": "http://127.0.0.1:3000/webhook, http://127.0.0.2:3000/webhook",
        }
    )
    assert settings.redis_sentinels == (
        ("127.0.0.1", 26379),
        ("::1", 26380),
        ("sentinel-3", 26381),
    )
    assert (settings.redis_sentinel_master, settings.redis_wait_replicas) == ("wafleet", 1)
    assert settings.redis_wait_ms == 1000
    assert settings.webhook_url == "http://127.0.0.1:3000/webhook,http://127.0.0.2:3000/webhook"
    assert Settings.from_env(_BASE_ENV).redis_sentinels == ()  # one host: unchanged
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(
            {
                **_BASE_ENV,
                "REDIS_URL": "unix:///run/redis.sock",
                "REDIS_SENTINELS": "127.0.0.1:26379,127.0.0.1,host:99999",
                "REDIS_SENTINEL_MASTER": "my master",
                "REDIS_WAIT_REPLICAS": "-1",
                "REDIS_WAIT_MS": "0",
                "PUBLIC_WEBHOOK_URL": "http://127.0.0.1:3000/webhook,ftp://x/webhook",
            }
        )
    message = str(refused.value)
    assert message.count("\n  - ") == 7
    for part in (
        "REDIS_SENTINELS: '127.0.0.1' is not host:port",
        "REDIS_SENTINELS: 'host:99999' is not host:port",
        "REDIS_URL must be redis:// or rediss:// when REDIS_SENTINELS is set",
        "REDIS_SENTINEL_MASTER must be the name Sentinel monitors",
        "REDIS_WAIT_REPLICAS must be at least 0",
        "REDIS_WAIT_MS must be at least 1",
        "PUBLIC_WEBHOOK_URL: 'ftp://x/webhook' is not an http(s) URL",
    ):
        assert part in message


def test_settings_that_cannot_work_together_are_refused_in_one_message() -> None:
    env = {
        **_BASE_ENV,
        "WORKER_PRESENCE_INTERVAL_MS": "15000",
        "PING_TIMEOUT_MS": "20000",  # one late ping would restart a healthy worker
        "WATCHDOG_INTERVAL_MS": "30000",
        "WORKER_STOP_GRACE_MS": "5000",
        "BACKUP_CRON": "0 25 * * *",  # hour 25
    }
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    message = str(refused.value)
    assert message.count("\n  - ") == 4
    assert (
        "PING_TIMEOUT_MS (20000) must be at least 3 times WORKER_PRESENCE_INTERVAL_MS" in message
    )
    assert "WATCHDOG_INTERVAL_MS (30000) must not exceed PING_TIMEOUT_MS (20000)" in message
    assert "WORKER_STOP_GRACE_MS (5000) plus two WORKER_PRESENCE_INTERVAL_MS" in message
    assert "BACKUP_CRON is not a valid crontab line" in message and "'0 25 * * *'" in message
    # the defaults, and the tests' short timings, work
    Settings.from_env(_BASE_ENV)
    fast = {
        "WORKER_PRESENCE_INTERVAL_MS": "400",
        "PING_TIMEOUT_MS": "4000",
        "WORKER_STOP_GRACE_MS": "2000",
    }
    Settings.from_env({**_BASE_ENV, **fast, "WATCHDOG_INTERVAL_MS": "500"})


@pytest.mark.parametrize("cron", ["0 3 * * *", "*/5 * * * * 1-5", "30 2 * * 7", "0 4 1 * sun"])
def test_valid_backup_crons_are_accepted(cron: str) -> None:
    assert Settings.from_env({**_BASE_ENV, "BACKUP_CRON": cron}).backup_cron == cron


@pytest.mark.parametrize("cron", ["0 3 * *", "x 3 * * *", "0 3 32 * *", "0 3 * 13 *"])
def test_invalid_backup_crons_are_refused_at_start(cron: str) -> None:
    with pytest.raises(ConfigError, match="BACKUP_CRON"):
        Settings.from_env({**_BASE_ENV, "BACKUP_CRON": cron})


def test_worker_spec_fingerprint_follows_what_the_worker_runs_with() -> None:
    env = {"SESSION_ID": "worker_1", "PROXY_URL": "socks5h://u:p@127.0.0.1:1", "LOG_LEVEL": "INFO"}
    spec = WorkerSpec("worker_1", Path("/tmp/x"), env)
    same = WorkerSpec(
        "worker_1",
        Path("/tmp/x"),
        {**env, "LOG_LEVEL": "DEBUG", "SESSION_PHONE": "1", "WORKER_OUTBOX_MAX_BYTES": "65536"},
    )
    moved = WorkerSpec(
        "worker_1", Path("/tmp/x"), {**env, "PROXY_URL": "socks5h://u:p@127.0.0.1:2"}
    )
    assert spec.fingerprint() == same.fingerprint()
    assert spec.fingerprint() != moved.fingerprint()
    assert spec.fingerprint("image:a") != spec.fingerprint("image:b")
    assert "p@127" not in spec.fingerprint()  # a digest, never the values


@pytest.mark.parametrize(
    ("line", "fires_on"),
    [
        ("0 3 * * 0-6", {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}),  # crontab's week
        ("0 3 * * 0", {"Sun"}),
        ("0 3 * * 7", {"Sun"}),
        ("0 3 * * 1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0 3 * * 5-7", {"Fri", "Sat", "Sun"}),
        ("0 3 * * */2", {"Sun", "Tue", "Thu", "Sat"}),  # crontab counts from Sunday
        ("0 3 * * sat,1", {"Sat", "Mon"}),
    ],
)
def test_cron_weekdays_mean_what_crontab_means(line: str, fires_on: set[str]) -> None:
    trigger = cron_trigger(line, UTC)
    fired: set[str] = set()
    when = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
    for _ in range(14):
        nxt = trigger.get_next_fire_time(None, when)
        assert nxt is not None
        fired.add(nxt.strftime("%a"))
        when = nxt + timedelta(seconds=1)
    assert fired == fires_on


@pytest.mark.parametrize("line", ["0 3 * * 6-2", "0 3 * * 9", "0 3 * * *-2", "0 3 * *"])
def test_a_cron_line_that_cannot_run_is_refused_at_start(line: str) -> None:
    with pytest.raises(ValueError):
        cron_trigger(line, UTC)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**_BASE_ENV, "BACKUP_CRON": line})
    assert "BACKUP_CRON" in str(refused.value)


async def test_the_log_never_carries_a_pairing_code(caplog: pytest.LogCaptureFixture) -> None:
    """A pairing code links the number to whoever types it in: like a QR, never logged."""
    alert = Alert(AlertKind.PAIRING_CODE, "worker_1", "972501234567", facts={"code": "ZX9Q-W7KT"})
    with caplog.at_level(logging.INFO):
        await LogNotifier().notify(alert)
    assert "worker_1" in caplog.text
    assert "ZX9Q-W7KT" not in caplog.text


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        ({}, None),
        ({"waitSeconds": 0}, None),
        ({"waitSeconds": 299.5}, None),
        ({"waitSeconds": True}, "waitSeconds must be a number from 0 to 300"),
        ({"waitSeconds": None}, "waitSeconds must be a number from 0 to 300"),
        ({"waitSeconds": float("nan")}, "waitSeconds must be a number from 0 to 300"),
        ({"waitSeconds": 301}, "waitSeconds must be a number from 0 to 300"),
        ({"waitSeconds": "30"}, "waitSeconds must be a number from 0 to 300"),
    ],
)
def test_a_declared_body_checks_what_its_document_says(
    body: dict[str, Any], refusal: str | None
) -> None:
    """api/backups.py's restore body: the schema the document shows is the one enforced."""
    from api.backups import RESTORE

    schema = RESTORE.schema()["properties"]["waitSeconds"]
    assert (schema["minimum"], schema["maximum"]) == (0, 300)
    if refusal is None:
        assert RESTORE.check(body) is body
        return
    with pytest.raises(InvalidInput) as caught:
        RESTORE.check(body)
    assert caught.value.message == refusal


@pytest.mark.parametrize(
    "body",
    [
        {"status": "sent"},
        {"id": 7, "status": "sent"},
        {"id": "m1"},
        {"id": "m1", "status": "SENT"},
        {"id": "m1", "status": ["sent"]},  # unhashable: once a 500, a 400 like the others
        {"id": "m1", "status": {"sent": 1}},
    ],
)
def test_a_worker_ack_names_its_shape_when_it_is_not_one(body: dict[str, Any]) -> None:
    from api.worker_channel import ACK

    with pytest.raises(InvalidInput) as caught:
        ACK.check(body)
    assert caught.value.message == "an ack is {id, status: failed | sent}"
    assert ACK.check({"id": "m1", "status": "failed", "reason": None})
    with pytest.raises(InvalidInput, match="reason must be a string of at most 512"):
        ACK.check({"id": "m1", "status": "failed", "reason": "r" * 513})
