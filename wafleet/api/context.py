"""Typed keys for what the composition root hands the aiohttp app."""

from __future__ import annotations

from aiohttp import web

from wafleet.core.metrics import Metrics
from wafleet.core.proxies import ProxyPool
from wafleet.core.sessions import SessionService
from wafleet.core.settings import Settings
from wafleet.core.store import Store

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", SessionService)
POOL = web.AppKey("pool", ProxyPool)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
