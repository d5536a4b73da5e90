"""``/lang``: the language prompt and its answer, in the language just chosen."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _


def language_prompt() -> str:
    return _("Choose your language:")


def language_set() -> str:
    return _("From now on I answer you in English.")
