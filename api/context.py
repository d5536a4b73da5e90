"""Typed keys for what the composition root hands the aiohttp app."""

from __future__ import annotations

from aiohttp import web

from core.api_keys import ApiKeys
from core.audit import Audit
from core.cluster import Cluster
from core.metrics import Metrics
from core.owners import Owners
from core.proxies import ProxyPool
from core.rate_limit import KeyRate
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", SessionService)
POOL = web.AppKey("pool", ProxyPool)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
KEYS = web.AppKey("api_keys", ApiKeys)
AUDIT = web.AppKey("audit", Audit)
OWNERS = web.AppKey("owners", Owners)
RATE = web.AppKey("key_rate", KeyRate)
CLUSTER = web.AppKey("cluster", Cluster)
