"""aiogram's types load deferred (bot/deferred_types.py) and still validate as aiogram's own.

Each check runs in a fresh interpreter: whether the types are deferred depends on what was
imported first, and this test process has long imported ``bot``. These fail if an aiogram or
pydantic upgrade stops the deferral working or leaves a type that cannot be built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A rich update: nested models, lists of models, a union (the reply markup), aliases (from).
UPDATE = {
    "update_id": 9,
    "message": {
        "message_id": 5,
        "date": 1_700_000_000,
        "chat": {"id": -100, "type": "supergroup", "title": "ops"},
        "from": {"id": 7, "is_bot": False, "first_name": "Dana", "language_code": "he"},
        "text": "/status worker_3",
        "entities": [{"type": "bot_command", "offset": 0, "length": 7}],
        "photo": [{"file_id": "a", "file_unique_id": "b", "width": 90, "height": 90}],
        "reply_to_message": {
            "message_id": 4,
            "date": 1_700_000_000,
            "chat": {"id": -100, "type": "supergroup"},
            "reply_markup": {"inline_keyboard": [[{"text": "Restart", "callback_data": "r:3"}]]},
        },
    },
}

DUMP_UPDATE = f"""
import json
update = aiogram.types.Update.model_validate(json.loads({json.dumps(json.dumps(UPDATE))}))
print(update.model_dump_json(exclude_none=True))
"""


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_bot_leaves_aiogram_types_unbuilt_and_model_rebuild_restored() -> None:
    out = run_python(
        """
import pydantic
before = pydantic.BaseModel.__dict__["model_rebuild"]
import bot, aiogram.types as t
models = [getattr(t, name) for name in t.__all__]
models = [m for m in models if isinstance(m, type) and issubclass(m, pydantic.BaseModel)]
deferred = sum(not m.__pydantic_complete__ for m in models)
print(len(models), deferred, pydantic.BaseModel.__dict__["model_rebuild"] is before)
"""
    )
    total, deferred, restored = out.split()
    assert int(total) > 200
    assert int(deferred) == int(total)  # every type waits for its first use
    assert restored == "True"  # pydantic models outside aiogram build as they always do


def test_every_deferred_aiogram_model_builds_on_first_use() -> None:
    # Everything the console imports (methods, generic responses, utils), not only the types.
    out = run_python(
        """
import pydantic, bot.app
from aiogram.methods.base import Response
from aiogram.types import Update
from bot.deferred_types import _subclasses
Response[list[Update]]
models = [m for m in _subclasses(pydantic.BaseModel) if m.__module__.startswith("aiogram.")]
deferred = [m for m in models if not m.__pydantic_complete__]
failed = []
for m in deferred:
    try:
        m.model_rebuild(_parent_namespace_depth=0)
        assert m.__pydantic_complete__
    except Exception as exc:
        failed.append(f"{m.__qualname__}: {exc!r}"[:200])
print(len(deferred), len(failed))
print(*failed[:5], sep="\\n")
"""
    )
    deferred, failed = out.splitlines()[0].split()
    assert int(deferred) > 500
    assert failed == "0", out


def test_a_deferred_update_validates_exactly_as_aiogram_builds_it_eagerly() -> None:
    eager = run_python("import aiogram.types\n" + DUMP_UPDATE)
    deferred = run_python("import bot, aiogram.types\n" + DUMP_UPDATE)
    assert deferred == eager
    got = json.loads(deferred)
    assert got["message"]["from_user"]["first_name"] == "Dana"
    markup = got["message"]["reply_to_message"]["reply_markup"]
    assert markup["inline_keyboard"][0][0]["callback_data"] == "r:3"
