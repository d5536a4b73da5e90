"""The dashboard's listing a page at a time (10,000 sessions in one answer was
megabytes and most of a second). The store against a real Redis, the API through a real
``serve``."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.store import Store
from tests.fleet import Fleet

P1 = "socks5h://u:p@127.0.0.1:1"


async def test_pages_follow_the_id_order_and_survive_deletes_between_them(
    redis_client: aioredis.Redis,
) -> None:
    store = Store(redis_client)
    await store.add_proxy(P1)
    ids = [(await store.reserve("", "", 100, 4, 1))[0] for _ in range(12)]
    assert ids[:3] == ["worker_1", "worker_2", "worker_3"]

    first, cursor, total = await store.session_page(None, 5)
    assert [r.id for r in first] == ids[:5] and cursor == "worker_5" and total == 12
    # A session of the page just read and one of the next page go between two pages: the
    # next page starts after the cursor all the same, with nothing repeated or skipped.
    await store.release("worker_5")
    await store.release("worker_7")
    second, cursor, total = await store.session_page(cursor, 5)
    assert [r.id for r in second] == ["worker_6", "worker_8", "worker_9", "worker_10", "worker_11"]
    assert (cursor, total) == ("worker_11", 10)  # worker_10 after worker_9, not after worker_1
    last, cursor, _ = await store.session_page(cursor, 5)
    assert [r.id for r in last] == ["worker_12"] and cursor is None
    exact, cursor, _ = await store.session_page("worker_8", 4)  # ends on the last one
    assert [r.id for r in exact] == ["worker_9", "worker_10", "worker_11", "worker_12"]
    assert cursor is None
    assert (await store.session_page("worker_99", 5))[:2] == ([], None)


@pytest.mark.parametrize("fleet_options", [{"proxies": 1}])
async def test_the_api_pages_the_listing_and_refuses_bad_paging(fleet: Fleet) -> None:
    sids = [(await fleet.provision(f"97250555000{i}"))["id"] for i in range(3)]
    status, page = await fleet.call("GET", "/api/v1/dashboard/sessions?limit=2")
    assert status == 200, page
    assert [s["id"] for s in page["sessions"]] == sids[:2]
    assert (page["total"], page["next"]) == (3, sids[1])
    status, page = await fleet.call("GET", f"/api/v1/dashboard/sessions?limit=2&cursor={sids[1]}")
    assert status == 200 and [s["id"] for s in page["sessions"]] == sids[2:]
    assert page["next"] is None
    # No parameters: the answer it always gave (every session, under "sessions"), plus
    # total and next, as long as the fleet fits in the default page.
    status, page = await fleet.call("GET", "/api/v1/dashboard/sessions")
    assert status == 200 and [s["id"] for s in page["sessions"]] == sids
    assert (page["total"], page["next"]) == (3, None)
    assert all("proxy" in s and "s3cret" not in s["proxy"] for s in page["sessions"])

    for query in (
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=" + "9" * 5000,
        "limit=%D9%A3",  # an Arabic-Indic three: a digit to str.isdigit, not to us
        "limit=2&limit=3",
        "cursor=bogus",
        "cursor=worker_",
        "cursor=worker_1%00",
        "offset=10",
    ):
        status, body = await fleet.call("GET", f"/api/v1/dashboard/sessions?{query}")
        assert status == 400, (query, status, body)
        assert body["error"]["code"] == "invalid_input", (query, body)
        assert body["error"]["message"], query
