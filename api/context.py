"""Typed keys for what the composition root hands the aiohttp app."""

from __future__ import annotations

from aiohttp import web

from core.cluster import Cluster
from core.metrics import Metrics
from core.proxies import ProxyPool
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", SessionService)
POOL = web.AppKey("pool", ProxyPool)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
CLUSTER = web.AppKey("cluster", Cluster)
