"""The bot's catalogues: complete in both languages, and in step with the code.

No servers needed: these read the ``.po`` files and the bot's source.
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot import texts
from bot.i18n import LANGUAGES, build_i18n, locales_dir
from core.notifier import AlertKind, Done

BOT_SOURCE = Path(texts.__file__).parent


def catalogue(name: str) -> Catalog:
    path = locales_dir() / name
    with path.open("rb") as source:
        return read_po(source)


def po(lang: str) -> Catalog:
    return catalogue(f"{lang}/LC_MESSAGES/messages.po")


def msgids(cat: Catalog) -> set[str]:
    return {str(m.id) for m in cat if m.id}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def source_msgids() -> set[str]:
    """Every literal passed to ``_()`` in the bot's code."""
    found: set[str] = set()
    for path in BOT_SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "_"
            ):
                arg = node.args[0]
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), (
                    f"{path.name}:{node.lineno}: _() takes a literal (no f-string, no variable)"
                )
                found.add(arg.value)
    return found


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_every_message_has_a_translation(lang: str) -> None:
    template = msgids(catalogue("messages.pot"))
    translated = po(lang)
    assert msgids(translated) == template, "run pybabel update after changing texts"
    for message in translated:
        if not message.id:
            continue
        assert message.string, f"{lang}: no translation for {message.id!r}"
        assert not message.fuzzy, f"{lang}: fuzzy translation for {message.id!r}"
        assert fields(str(message.string)) == fields(str(message.id)), (
            f"{lang}: placeholders differ in {message.id!r}"
        )


def test_the_template_matches_the_code() -> None:
    assert source_msgids() == msgids(catalogue("messages.pot"))


def test_hebrew_is_hebrew_and_compiles() -> None:
    i18n = build_i18n()
    assert set(i18n.locales) == set(LANGUAGES)
    hebrew = re.compile(r"[\u0590-\u05FF]")
    with i18n.context(), i18n.use_locale("he"):
        assert hebrew.search(texts.refusal())
        assert all(hebrew.search(c.description) for c in texts.commands())
    with i18n.context(), i18n.use_locale("en"):
        assert "operators" in texts.refusal()


def test_every_alert_kind_has_a_title_and_what_was_done() -> None:
    i18n = build_i18n()
    for lang in LANGUAGES:
        with i18n.context(), i18n.use_locale(lang):
            for kind in AlertKind:
                if kind in (AlertKind.QR_READY, AlertKind.PAIRING_CODE):
                    continue  # shown as the QR message, not as an alert
                assert kind in texts.ALERT_ICONS, kind
                assert texts._alert_title(kind) != kind.value, kind
            for done in Done:
                if done is not Done.NOTHING:
                    assert texts._done_text(done), done
