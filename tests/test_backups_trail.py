"""What a backup carries beside the fleet, against a real serve: the audit trail, the issued
keys (hashes only) and the sessions' owners; what a restore does with them, and what a failed
restore leaves of them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from tests.fleet import PHONE, Fleet
from tests.keyring import OTHER_PHONE, call_as, issue, provision_as
from tests.test_backups import PHONES, backups_dir, create, restore, wipe


async def _trail(fleet: Fleet, since: str = "0") -> list[dict[str, Any]]:
    status, body = await fleet.call("GET", f"/api/v1/audit?limit=1000&since={since}")
    assert status == 200, body
    entries: list[dict[str, Any]] = body["entries"]
    return entries


def _archive(fleet: Fleet, backup_id: str) -> Path:
    return backups_dir(fleet) / f"{backup_id}.zip"


def _rewrite(source: Path, target: Path, **changes: Any) -> None:
    """A copy of ``source`` with members replaced (bytes) or left out (None), and the
    manifest's fields changed by ``manifest`` (a dict; a None value drops the field)."""
    manifest_changes = changes.pop("manifest", {})
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for member in src.infolist():
            data = src.read(member)
            if member.filename == "manifest.json":
                manifest = json.loads(data)
                for name, value in manifest_changes.items():
                    if value is None:
                        manifest.pop(name, None)
                    else:
                        manifest[name] = value
                data = json.dumps(manifest).encode()
            if member.filename in changes:
                data = changes.pop(member.filename)
                if data is None:
                    continue
            out.writestr(member, data)


async def test_after_total_loss_the_trail_keys_and_owners_come_back(fleet: Fleet) -> None:
    """Catches a backup without the audit trail or the keys (after a total loss a client's
    key would be refused and the trail empty), an entry that comes back under another id
    (``since=`` paging would repeat or skip), and a key's value written into the archive."""
    a = await issue(fleet, "client-a", "client")
    reader = await issue(fleet, "reader", "read")
    sid = await provision_as(fleet, a["key"], PHONE)
    assert (await call_as(fleet, a["key"], "POST", f"/api/sessions/{sid}/stop"))[0] == 200
    before = await _trail(fleet)
    assert [e["action"] for e in before] == ["key_create", "key_create", "provision", "stop"]
    backup = await create(fleet)

    raw = _archive(fleet, backup["id"]).read_bytes()
    with zipfile.ZipFile(_archive(fleet, backup["id"])) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
        everything = b"".join(zf.read(n) for n in names)
    assert "audit.jsonl" in names and manifest["format"] == 2
    assert {k["id"] for k in manifest["apiKeys"]} == {a["id"], reader["id"]}
    for key in (a["key"], reader["key"]):
        secret = key.split("_", 2)[2].encode()  # wfk_<id>_<secret>: the secret may hold "_"
        assert len(secret) >= 40
        assert secret not in raw and secret not in everything

    await wipe(fleet)
    fleet.start()
    status, report = await restore(fleet, backup["id"], wait=0)
    assert status == 200 and report["sessions"] == [sid], report

    after = await _trail(fleet)
    assert after[: len(before)] == before
    assert [(e["actor"], e["action"], e["result"]) for e in after[len(before) :]] == [
        ("admin", "restore", "done")
    ]
    assert [e["id"] for e in await _trail(fleet, before[1]["id"])] == [e["id"] for e in after[2:]]
    path = f"/api/sessions/{sid}/status"
    assert (await call_as(fleet, a["key"], "GET", path))[0] == 200
    assert (await call_as(fleet, reader["key"], "GET", path))[0] == 200
    assert (await fleet.status(sid))["owner"] == a["id"]
    _, page = await call_as(fleet, a["key"], "GET", "/api/v1/dashboard/sessions")
    assert [s["id"] for s in page["sessions"]] == [sid]


async def test_a_restore_merges_the_trail_once_and_never_revives_a_revoked_key(
    fleet: Fleet,
) -> None:
    """Catches a restore that appends the archive's entries again (each twice in the trail),
    drops the entries recorded since the backup, puts lost entries anywhere but in their
    place, or brings back a key revoked since the backup."""
    a = await issue(fleet, "client-a", "client")
    b = await issue(fleet, "client-b", "client")
    await provision_as(fleet, a["key"], PHONE)
    await provision_as(fleet, b["key"], OTHER_PHONE)
    backup = await create(fleet)
    assert (await fleet.call("DELETE", f"/api/v1/keys/{b['id']}"))[0] == 204
    before = await _trail(fleet)
    # Two entries lost here since the backup (the archive still has them).
    await fleet.redis.xdel("wafleet:audit", before[1]["id"], before[2]["id"])

    status, report = await restore(fleet, backup["id"], wait=0)
    assert status == 200, report
    after = await _trail(fleet)
    assert after[:-1] == before
    assert (after[-1]["action"], after[-1]["result"]) == ("restore", "done")
    assert len({e["id"] for e in after}) == len(after)

    assert (await call_as(fleet, b["key"], "GET", "/api/v1/dashboard/sessions"))[0] == 401
    _, listed = await fleet.call("GET", "/api/v1/keys")
    assert [k["name"] for k in listed["keys"]] == ["client-a"]


async def test_an_archive_without_trail_or_keys_still_restores(fleet: Fleet) -> None:
    """Catches a restore that requires what older archives (format 1) do not carry, or that
    empties the live trail and keys when the archive has none."""
    a = await issue(fleet, "client-a", "client")
    sid = await provision_as(fleet, a["key"], PHONE)
    made = await create(fleet)
    older = _archive(fleet, "backup_2001-01-01")
    _rewrite(
        _archive(fleet, made["id"]),
        older,
        manifest={"format": 1, "apiKeys": None},
        **{"audit.jsonl": None},
    )
    before = await _trail(fleet)
    status, report = await restore(fleet, "backup_2001-01-01", wait=0)
    assert status == 200 and report["sessions"] == [sid], report
    after = await _trail(fleet)
    assert after[:-1] == before and after[-1]["action"] == "restore"
    path = f"/api/sessions/{sid}/status"
    assert (await call_as(fleet, a["key"], "GET", path))[0] == 200


async def test_a_crafted_trail_or_key_list_is_refused_and_changes_nothing(fleet: Fleet) -> None:
    """Catches an archive that writes into the trail what the trail never records (a made-up
    action, ids out of order) or adds a key create could not have made (a key named admin, a
    hash of the wrong size), instead of being refused before anything stops."""
    a = await issue(fleet, "client-a", "client")
    await provision_as(fleet, a["key"], PHONE)
    made = _archive(fleet, (await create(fleet))["id"])
    with zipfile.ZipFile(made) as zf:
        lines = zf.read("audit.jsonl").decode().splitlines()
        good_key = json.loads(zf.read("manifest.json"))["apiKeys"][0]
    entry = json.loads(lines[0])
    wrong_action = {**entry, "fields": {**entry["fields"], "action": "format_disk"}}
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "backup_2002-02-01": ({"audit.jsonl": json.dumps(wrong_action).encode()}, "audit"),
        "backup_2002-02-02": ({"audit.jsonl": b"not json\n"}, "audit"),
        "backup_2002-02-03": ({"audit.jsonl": f"{lines[0]}\n{lines[0]}\n".encode()}, "audit"),
        "backup_2002-02-04": (
            {"manifest": {"apiKeys": [{**good_key, "id": "0" * 12, "name": "admin"}]}},
            "keys",
        ),
        "backup_2002-02-05": ({"manifest": {"apiKeys": [{**good_key, "hash": "ab"}]}}, "keys"),
    }
    for backup_id, (changes, _) in cases.items():
        _rewrite(made, _archive(fleet, backup_id), **changes)
    before = await fleet.snapshot()
    trail = await _trail(fleet)
    for backup_id, (_, what) in cases.items():
        status, body = await restore(fleet, backup_id, wait=0)
        assert (status, body["error"]["code"]) == (400, f"backup_bad_{what}"), (backup_id, body)
    assert await fleet.snapshot() == before
    after = await _trail(fleet)
    assert after[: len(trail)] == trail
    assert {(e["action"], e["result"]) for e in after[len(trail) :]} == {("restore", "refused")}


async def test_a_failed_restore_leaves_owners_keys_and_trail_as_they_were(fleet: Fleet) -> None:
    """Catches a rollback that puts the fleet back but leaves the owners the restore had
    written (a deleted session's owner, another key's sessions), keeps the keys it added,
    or keeps the archive's entries in the trail."""
    a = await issue(fleet, "client-a", "client")
    spare = await issue(fleet, "spare", "read")
    first = await provision_as(fleet, a["key"], PHONES[0])
    second = await provision_as(fleet, a["key"], PHONES[1])
    backup = await create(fleet)
    for sid in (first, second):
        assert (await fleet.call("DELETE", f"/api/sessions/{sid}"))[0] == 200
    # As if this Redis had never known the spare key (not revoked: a restore may add it).
    await fleet.redis.delete(f"wafleet:apikey:{spare['id']}")
    await fleet.redis.srem("wafleet:apikeys", spare["id"])
    b = await issue(fleet, "client-b", "client")
    kept = await provision_as(fleet, b["key"], PHONES[2])
    await fleet.redis.xdel("wafleet:audit", (await _trail(fleet))[0]["id"])
    # A real fault for the rebuild to hit on the second session, after the first one's owner
    # is written: its phone index holds a string, so Redis answers WRONGTYPE.
    await fleet.redis.set(f"phone:{PHONES[1]}:sessions", "not a set")

    async def owners() -> dict[str, Any]:
        found: dict[str, Any] = {"all": await fleet.redis.hgetall("wafleet:owners")}
        for key in await fleet.redis.keys("wafleet:owner:*"):
            found[str(key)] = await fleet.redis.zrange(key, 0, -1)
        found["keys"] = sorted(await fleet.redis.smembers("wafleet:apikeys"))
        return found

    owned_before, trail_before = await owners(), await _trail(fleet)
    assert owned_before["all"] == {kept: b["id"]}
    status, body = await restore(fleet, backup["id"], wait=0)
    assert (status, body["error"]["code"]) == (500, "restore_failed"), body

    assert await owners() == owned_before
    trail = await _trail(fleet)
    assert trail[:-1] == trail_before
    assert (trail[-1]["action"], trail[-1]["result"]) == ("restore", "refused")
    assert (await call_as(fleet, b["key"], "GET", f"/api/sessions/{kept}/status"))[0] == 200
    assert (await call_as(fleet, spare["key"], "GET", "/api/v1/dashboard/sessions"))[0] == 401
