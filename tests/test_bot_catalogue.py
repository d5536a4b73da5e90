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

import bot
from bot import texts
from bot.i18n import LANGUAGES, build_i18n, compile_catalogue, locales_dir
from core.fleet_stats import FleetStats
from core.journal import Tally
from core.notifier import Alert, AlertKind, Done
from core.runner import NodeInfo

BOT_SOURCE = Path(bot.__file__).parent  # every module below bot/, the texts' sub-package too


def catalogue(name: str) -> Catalog:
    path = locales_dir() / name
    with path.open("rb") as source:
        return read_po(source)


def po(lang: str) -> Catalog:
    return catalogue(f"{lang}/LC_MESSAGES/messages.po")


MsgId = str | tuple[str, ...]  # a plural message is (singular, plural)


def msgids(cat: Catalog) -> set[MsgId]:
    return {m.id if isinstance(m.id, tuple) else str(m.id) for m in cat if m.id}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def source_msgids() -> set[MsgId]:
    """Every literal passed to ``_()``, and every pair passed to ``ngettext()``, in the bot's
    code."""
    found: set[MsgId] = set()
    for path in BOT_SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            if node.func.id not in ("_", "ngettext"):
                continue
            literals = node.args[:2] if node.func.id == "ngettext" else node.args[:1]
            for arg in literals:
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), (
                    f"{path.name}:{node.lineno}: {node.func.id}() takes literals "
                    "(no f-string, no variable)"
                )
            words = [str(a.value) for a in literals if isinstance(a, ast.Constant)]
            found.add((words[0], words[1]) if node.func.id == "ngettext" else words[0])
    return found


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_every_message_has_a_translation(lang: str) -> None:
    template = msgids(catalogue("messages.pot"))
    translated = po(lang)
    assert msgids(translated) == template, "run pybabel update after changing texts"
    for message in translated:
        if not message.id:
            continue
        assert not message.fuzzy, f"{lang}: fuzzy translation for {message.id!r}"
        if isinstance(message.id, tuple):
            # Every plural form the language has; each names only the message's fields, the
            # last (the general one) all of them. "One" may say the number in words.
            assert isinstance(message.string, tuple | list), (lang, message.id)
            forms = [str(f) for f in message.string]
            assert len(forms) == translated.num_plurals and all(forms), (lang, message.id)
            known = fields(message.id[0]) | fields(message.id[1])
            assert all(fields(f) <= known for f in forms), (lang, message.id)
            assert fields(forms[-1]) == fields(message.id[1]), (lang, message.id)
            continue
        assert message.string, f"{lang}: no translation for {message.id!r}"
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


def test_plural_forms_are_declared_for_each_language() -> None:
    """English has one and other; Hebrew one, two (the dual: שעתיים, פעמיים) and other."""
    assert (po("en").num_plurals, po("he").num_plurals) == (2, 3)
    he = compile_catalogue(locales_dir() / "he/LC_MESSAGES/messages.po")
    assert [he.plural(n) for n in (0, 1, 2, 3, 11, 100)] == [2, 0, 1, 2, 2, 2]  # type: ignore[attr-defined]


COUNTS = {
    # (language, count): what the digest header, a session count, an age and a crash loop say
    ("en", 1): ("the last hour", "1 session", "1 s ago", "exited 1 time in 1 min"),
    ("en", 2): ("the last 2 hours", "2 sessions", "2 s ago", "exited 2 times in 2 min"),
    ("en", 5): ("the last 5 hours", "5 sessions", "5 s ago", "exited 5 times in 5 min"),
    ("he", 1): ("השעה האחרונה", "חיבור אחד", "לפני שנייה", "יצא פעם אחת תוך דקה"),
    ("he", 2): ("השעתיים האחרונות", "שני חיבורים", "לפני שתי שניות", "יצא פעמיים תוך שתי דקות"),
    ("he", 5): ("5 השעות האחרונות", "5 חיבורים", "לפני 5 שניות", "יצא 5 פעמים תוך 5 דקות"),
}


@pytest.mark.parametrize(("lang", "n"), sorted(COUNTS))
def test_counts_take_the_plural_form_of_their_language(lang: str, n: int) -> None:
    hours, sessions, ago, loop = COUNTS[(lang, n)]
    i18n = build_i18n()
    hour_ms = 3_600_000
    tally = Tally(since_ms=0, counts={})
    fleet = FleetStats({"connected": n}, [], 0, 4)
    with i18n.context(), i18n.use_locale(lang):
        header = texts.digest(tally, fleet, n * hour_ms).splitlines()[0]
        assert header.endswith(" · " + hours), header
        assert texts.sessions_count(n) == sessions
        assert texts.age(n * 1000, 0) == ago
        crash = Alert(AlertKind.CRASH_LOOP, "worker_1", facts={"exits": n, "minutes": n})
        assert texts._alert_facts(crash) == loop
        node = NodeInfo("n1", "n1", "ready", "active", tuple(f"w{i}" for i in range(n)))
        assert texts.nodes([node]).splitlines()[1].endswith(" · " + sessions)
    if lang == "he" and n < 3:
        assert not re.search(r"\d", hours + sessions + ago + loop)  # said in words
