"""The Lua scripts' text: each one headed by the key formats and the shared helpers."""

from __future__ import annotations

from importlib import resources

from core import keys
from core.models import ProxyStatus


def load_script(name: str) -> str:
    """The script behind the key formats of ``core.keys`` and the shared helpers.

    The formats travel in the script's text rather than in ``ARGV`` so every script, however
    its arguments are laid out, names keys the way ``keys.py`` does and never spells one.
    """
    lua = resources.files("core").joinpath("lua")
    return "\n".join(
        (lua_constants(), lua.joinpath("common.lua").read_text(), lua.joinpath(name).read_text())
    )


def lua_constants() -> str:
    formats = ",\n".join(f"  {name} = {_lua_string(f)}" for name, f in keys.LUA_FORMATS.items())
    return f"local FORMAT = {{\n{formats}\n}}\nlocal ACTIVE = {_lua_string(ProxyStatus.ACTIVE)}\n"


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
