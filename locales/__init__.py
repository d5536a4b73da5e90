"""The bot's gettext catalogues (``en``, ``he`` and the ``.pot``), shipped as package data.

A package only so that an installed wheel carries the catalogues and ``importlib.resources``
finds them; it holds no code.
"""
