"""Checks schemathesis loads (``SCHEMATHESIS_HOOKS``) when ``tests/test_fuzz_api.py`` fuzzes
the API with a key of one scope (``WAFLEET_FUZZ_SCOPE``): an operation the document says the
scope may not call (its ``x-scopes``) answers 403 to every request, and none answers a 5xx
but the documented 503 of a full pool."""

from __future__ import annotations

import os
from typing import Any

import schemathesis

SCOPE = os.environ.get("WAFLEET_FUZZ_SCOPE", "admin")
KEY_HEADER = "X-API-Key"


@schemathesis.check
def outside_its_scope_is_forbidden(ctx: Any, response: Any, case: Any) -> bool | None:
    scopes = case.operation.definition.raw.get("x-scopes")
    sent = response.request
    if (
        scopes is None
        or SCOPE in scopes
        or KEY_HEADER not in sent.headers
        or str(sent.method).upper() != case.operation.method.upper()
    ):
        return None  # the fuzzer also tries each path without the key (401), or a TRACE (405)
    if response.status_code != 403:
        raise AssertionError(
            f"{case.operation.label} answered {response.status_code} to a {SCOPE} key; "
            f"its x-scopes are {scopes}, so 403"
        )
    return True


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"{case.operation.label} answered {response.status_code}")
    return True
