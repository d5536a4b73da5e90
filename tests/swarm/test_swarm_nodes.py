"""The operator's view of the nodes on a real two-node swarm: REST, the dashboard, ``/metrics``.

Runs before ``test_swarm_runner.py`` (whose last tests take the second node down), so both
nodes are up here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.fleet import Fleet, eventually
from tests.swarm.conftest import Swarm, placement

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(300)]

PHONES = [f"97250200000{n}" for n in range(1, 5)]


async def _nodes(fleet: Fleet) -> list[dict[str, Any]]:
    status, body = await fleet.call("GET", "/api/v1/nodes")
    assert status == 200, body
    nodes: list[dict[str, Any]] = body["nodes"]
    return nodes


async def test_both_nodes_with_their_sessions_in_rest_dashboard_and_metrics(
    fleet: Fleet, swarm: Swarm
) -> None:
    # Before any session: both nodes listed, with nothing on them.
    empty = await _nodes(fleet)
    assert {n["id"] for n in empty} == {swarm.manager_node, swarm.second_node}
    assert [n["sessions"] for n in empty] == [0, 0]
    assert all(n["state"] == "ready" and n["availability"] == "active" for n in empty)
    # Both report the same hostname: the names tell them apart by a short id.
    names = {n["id"]: n["name"] for n in empty}
    assert len(set(names.values())) == 2
    for node_id, name in names.items():
        assert name.endswith("-" + node_id[:6])

    sids = [(await fleet.provision(phone))["id"] for phone in PHONES]
    for sid in sids:
        await fleet.wait_status(sid, "qr_ready", 60)

    async def all_placed() -> dict[str, str] | None:
        placed = placement(swarm, fleet)
        return placed if set(placed) == set(sids) else None

    placed = await eventually(all_placed, timeout=60, what="every session's task running")
    expected = {
        node: sorted(sid for sid, on in placed.items() if on == node)
        for node in (swarm.manager_node, swarm.second_node)
    }
    assert all(expected.values()), expected  # the scheduler spread them over both nodes

    nodes = await _nodes(fleet)
    assert {n["id"]: n["sessionIds"] for n in nodes} == expected
    assert {n["id"]: n["sessions"] for n in nodes} == {k: len(v) for k, v in expected.items()}

    status, stats = await fleet.call("GET", "/api/v1/dashboard/stats")
    assert status == 200 and stats["nodes"] == nodes

    _, body = await fleet.call("GET", "/metrics")
    text = body.decode()
    for node in nodes:
        line = rf'^wafleet_node_sessions{{node="{re.escape(node["name"])}"}} (\S+)$'
        found = re.search(line, text, re.M)
        assert found and float(found.group(1)) == node["sessions"], node
