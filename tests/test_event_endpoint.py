"""The operator's events endpoint and its settings: checked at start and at provision, shown
without credentials; the retry schedule's bounds. No server needed."""

from __future__ import annotations

import pytest

from core import endpoint_url
from core.deliveries import DeliveryError, RetryPolicy
from core.errors import ConfigError, InvalidInput
from core.proxy_policy import ProxyPolicy, Rules
from core.settings import Settings

BASE = {"API_KEY": "a" * 20, "WEBHOOK_SECRET": "b" * 20}
OPEN = ProxyPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://hooks.example.net/wafleet?token=x",
        "http://user:pw@127.0.0.1/hook",
        "http://[::1]:9/x",
    ],
)
def test_http_and_https_urls_pass(url: str) -> None:
    assert endpoint_url.parse(url, OPEN) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://127.0.0.1/x", "http:// or https://"),
        ("http://169.254.169.254/latest", "link-local or metadata"),
        ("http://metadata.google.internal/", "link-local or metadata"),
        ("http://[::ffff:169.254.169.254]/", "link-local or metadata"),
        ("http://0xa9.254.169.254/", "dotted IPv4"),
        ("http://127.0.0.1:0/", "port 0"),
        ("http://127.0.0.1:70000/", "not a valid URL"),
        ("http:///x", "no host"),
        ("", "non-empty"),
    ],
)
def test_urls_that_could_reach_where_they_must_not_are_refused(url: str, why: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        endpoint_url.parse(url, OPEN)
    assert why in refused.value.message


def test_the_operator_s_networks_apply_and_name_their_own_setting() -> None:
    policy = ProxyPolicy(allow=Rules.parse("127.0.0.0/8"), deny=Rules.parse("127.0.0.9"))
    assert endpoint_url.parse("http://127.0.0.1/x", policy)
    with pytest.raises(InvalidInput, match="EVENTS_WEBHOOK_DENY_NETWORKS"):
        endpoint_url.parse("http://127.0.0.9/x", policy)
    with pytest.raises(InvalidInput, match="EVENTS_WEBHOOK_ALLOW_NETWORKS"):
        endpoint_url.parse("http://hooks.example.net/x", policy)


def test_credentials_are_masked() -> None:
    assert endpoint_url.mask("https://ops:s3cr3t@h.example:8443/p?q=1") == (
        "https://***@h.example:8443/p?q=1"
    )
    assert endpoint_url.mask("http://127.0.0.1/x") == "http://127.0.0.1/x"


def test_settings_refuse_an_endpoint_without_a_key_or_outside_the_policy() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(
            {
                **BASE,
                "EVENTS_WEBHOOK_URL": "http://u:topsecretpw@127.0.0.1/x",
                "EVENTS_RETRY_BASE_MS": "500",
                "EVENTS_RETRY_MAX_MS": "100",
            }
        )
    message = str(refused.value)
    assert "EVENTS_WEBHOOK_SECRET must be set" in message
    assert "EVENTS_RETRY_MAX_MS (100) must be at least EVENTS_RETRY_BASE_MS (500)" in message
    assert "topsecretpw" not in message
    with pytest.raises(ConfigError, match="EVENTS_WEBHOOK_DENY_NETWORKS"):
        Settings.from_env(
            {
                **BASE,
                "EVENTS_WEBHOOK_URL": "http://127.0.0.1/x",
                "EVENTS_WEBHOOK_SECRET": "c" * 20,
                "EVENTS_WEBHOOK_DENY_NETWORKS": "127.0.0.0/8",
            }
        )
    settings = Settings.from_env(
        {**BASE, "EVENTS_WEBHOOK_URL": "http://127.0.0.1/x", "EVENTS_WEBHOOK_SECRET": "c" * 20}
    )
    assert "c" * 20 not in repr(settings)


def test_the_backoff_doubles_to_its_cap_with_jitter_and_gives_up_by_count_or_age() -> None:
    policy = RetryPolicy(base_ms=100, max_ms=1_000, max_attempts=5, max_age_ms=60_000)
    assert [policy.delay_ms(n, 0.999999) for n in range(1, 7)] == [99, 199, 399, 799, 999, 999]
    assert [policy.delay_ms(n, 0.0) for n in range(1, 7)] == [50, 100, 200, 400, 500, 500]
    assert policy.delay_ms(10_000, 0.5) == 750  # no overflow far along the schedule
    assert not policy.gives_up(4, 59_999)
    assert policy.gives_up(5, 0)
    assert policy.gives_up(1, 60_000)


def test_the_log_filter_hides_an_endpoint_s_password_as_it_hides_a_proxy_s() -> None:
    from core.logs import redact

    line = "POST http://ops:pa55word@127.0.0.1:9/hook failed; https://u:x1@h.example/p too"
    assert (
        redact(line)
        == "POST http://ops:***@127.0.0.1:9/hook failed; https://u:***@h.example/p too"
    )


async def test_a_name_resolving_to_a_refused_address_is_refused_before_any_connect() -> None:
    """DNS rebinding: a name admitted at provision may point elsewhere later, so the
    resolver checks what it resolves to now (``localhost`` → loopback, denied here)."""
    from wafleet.event_post import HttpPost, PolicyResolver

    policy = ProxyPolicy(deny=Rules.parse("127.0.0.0/8, ::1/128"))
    resolver = PolicyResolver(policy)
    try:
        with pytest.raises(OSError, match="events policy refuses"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    post = HttpPost(policy, timeout_s=2)
    try:
        with pytest.raises(DeliveryError) as refused:
            await post("http://localhost:9/hook", b"{}", {})
        assert refused.value.reason == "refused by the events policy"
    finally:
        await post.close()


async def test_a_redirect_is_a_failed_attempt_not_followed() -> None:
    """A 3xx could bounce serve to an address the policy refuses: it is never followed."""
    from aiohttp import web

    from wafleet.event_post import HttpPost

    calls: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append(request.path)
        raise web.HTTPFound("/elsewhere")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    post = HttpPost(ProxyPolicy(), timeout_s=5)
    try:
        assert await post(f"http://127.0.0.1:{port}/hook", b"{}", {}) == 302
        assert calls == ["/hook"]
    finally:
        await post.close()
        await runner.cleanup()
