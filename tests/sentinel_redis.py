"""A real Redis group watched by Sentinel, on loopback: a primary, its replicas and three
Sentinels (Debian's redis-server; ``--sentinel`` needs no other package).

Each node and Sentinel has its own port and folder; the Sentinels' configuration files are
written here (Sentinel rewrites its own as it learns). ``down-after-milliseconds`` 1000: a
SIGKILLed primary is seen down in about a second, and a majority of the three (quorum 2)
promotes a replica in about 2-3 s. ``sentinel_group`` (a conftest fixture) is one, settled;
``settings`` gives serve's; ``kill_primary`` takes the primary away.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from core.redis_client import via_sentinel
from wafleet import devstack

MASTER = "wafleet"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


@dataclass
class Node:
    folder: Path
    port: int = field(default_factory=devstack.free_port)
    proc: devstack.Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.popen.poll() is None


class SentinelGroup:
    def __init__(self, folder: Path, replicas: int = 1, sentinels: int = 3) -> None:
        self.folder = folder
        self.nodes = [Node(folder / f"redis-{n}") for n in range(1 + replicas)]
        self.sentinels = [Node(folder / f"sentinel-{n}") for n in range(sentinels)]
        self.first_primary = self.nodes[0]

    # settings ----------------------------------------------------------------------------

    @property
    def addresses(self) -> str:
        """``REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def settings(self, **more: str) -> dict[str, str]:
        """What ``serve`` needs to use this group (REDIS_URL names the first primary; only
        its password and database count once REDIS_SENTINELS is set)."""
        return {
            "REDIS_URL": self.first_primary.url,
            "REDIS_SENTINELS": self.addresses,
            "REDIS_SENTINEL_MASTER": MASTER,
            **more,
        }

    # life --------------------------------------------------------------------------------

    def start(self) -> None:
        primary = self.first_primary
        self.start_node(primary)
        for node in self.nodes[1:]:
            self.start_node(node, replica_of=primary.port)
        for sentinel in self.sentinels:
            self._start_sentinel(sentinel, primary.port)
        self.wait_settled(primary.port)

    def start_node(self, node: Node, replica_of: int | None = None) -> None:
        """Start (or restart) a Redis node; a restarted former primary comes back as a
        primary until the Sentinels make it a replica of the one they promoted."""
        node.folder.mkdir(parents=True, exist_ok=True)
        argv = [devstack.need("redis-server"), "--port", str(node.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(node.folder)]
        # A replica (re)joining gets its full copy at once: Redis's default waits 5 s for
        # more replicas to share one transfer, and promises wait for it meanwhile.
        argv += ["--replica-announce-ip", "127.0.0.1", "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        node.proc = devstack.spawn("redis", argv, node.folder / "redis.log")
        devstack.wait_port("127.0.0.1", node.port, timeout=30, proc=node.proc.popen)

    def _start_sentinel(self, sentinel: Node, primary_port: int) -> None:
        sentinel.folder.mkdir(parents=True, exist_ok=True)
        conf = sentinel.folder / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {sentinel.port}",
                    "bind 127.0.0.1",
                    f"dir {sentinel.folder}",
                    "sentinel announce-ip 127.0.0.1",
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2",
                    f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {MASTER} 1",
                    "",
                ]
            )
        )
        argv = [devstack.need("redis-server"), str(conf), "--sentinel"]
        sentinel.proc = devstack.spawn("sentinel", argv, sentinel.folder / "sentinel.log")
        devstack.wait_port("127.0.0.1", sentinel.port, timeout=30, proc=sentinel.proc.popen)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            if node.proc is not None:
                node.proc.kill()

    # looking -----------------------------------------------------------------------------

    @staticmethod
    def client(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, decode_responses=True)

    def _master_at(self, sentinel: Node) -> int | None:
        with self.client(sentinel.port) as client:
            found = client.sentinel_get_master_addr_by_name(MASTER)
        return int(found[1]) if found else None

    def _replication(self, port: int) -> dict[str, object]:
        with self.client(port) as client:
            info: dict[str, object] = client.info("replication")
            return info

    def primary_port(self) -> int | None:
        """The primary's port as a majority of the Sentinels name it; None while they do not
        agree (during a failover)."""
        named: list[int] = []
        for sentinel in self.sentinels:
            try:
                port = self._master_at(sentinel)
            except redis.RedisError:
                continue
            if port is not None:
                named.append(port)
        for port in set(named):
            if named.count(port) * 2 > len(self.sentinels):
                return port
        return None

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def connected_replicas(self, port: int) -> int:
        return int(str(self._replication(port).get("connected_slaves", 0)))

    def wait_settled(self, primary: int, timeout: float = 60.0) -> None:
        """Until the Sentinels know each other and name ``primary``, and every other running
        node is its replica, in sync."""
        deadline = time.monotonic() + timeout
        others = sum(1 for n in self.nodes if n.alive()) - 1
        while time.monotonic() < deadline:
            try:
                known = all(self._peers(s) == len(self.sentinels) - 1 for s in self.sentinels)
                if known and self.primary_port() == primary and self._in_sync(primary) >= others:
                    return
            except (redis.RedisError, KeyError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"the Sentinel group did not settle on {primary} in {timeout} s")

    def _peers(self, sentinel: Node) -> int:
        with self.client(sentinel.port) as client:
            state = client.sentinel_master(MASTER)
        return int(state["num-other-sentinels"])

    def _in_sync(self, primary: int) -> int:
        info = self._replication(primary)
        return sum(
            1
            for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        )

    # faults ------------------------------------------------------------------------------

    def kill_primary(self) -> Node:
        port = self.primary_port()
        assert port is not None, "no primary to kill"
        node = self.node(port)
        assert node.proc is not None
        node.proc.kill()  # SIGKILL: what it had not sent its replica is gone
        return node

    def freeze_primary(self) -> Node:
        """SIGSTOP: connections to it stay open and silent, as with a hung host."""
        port = self.primary_port()
        assert port is not None, "no primary to freeze"
        node = self.node(port)
        assert node.proc is not None
        node.proc.popen.send_signal(signal.SIGSTOP)
        return node

    async def wait_promoted(self, old: int, timeout: float = 30.0) -> tuple[int, float]:
        """The port of the replica the Sentinels promoted, and when (time.monotonic())."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = await asyncio.to_thread(self.primary_port)
            if port is not None and port != old:
                return port, time.monotonic()
            await asyncio.sleep(0.05)
        raise AssertionError(f"no replica promoted in {timeout} s")


# A test module whose fleet runs on the Sentinel group imports these two: they stand in for
# conftest's ``redis_server`` and ``redis_client`` under the same names.
@pytest.fixture(name="redis_server")
def sentinel_redis_server(sentinel_group: SentinelGroup) -> str:
    return sentinel_group.first_primary.url


@pytest.fixture(name="redis_client")
async def sentinel_redis_client(
    sentinel_group: SentinelGroup,
) -> AsyncIterator[aioredis.Redis]:
    """The test's own view of Redis follows a promotion as serve's does."""
    addresses = tuple(("127.0.0.1", s.port) for s in sentinel_group.sentinels)
    client = via_sentinel(addresses, "wafleet", sentinel_group.first_primary.url)
    yield client
    await client.aclose()
