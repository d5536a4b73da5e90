"""Restoring a backup: rebuild the whole fleet from one archive, or refuse a bad archive
with nothing changed.

A restore does everything that can fail on bad input *before* it stops a worker: the
archive is checked (``archive.inspect``), every value it would write is validated against
the live API's rules (``validate.plan``) and the folders are extracted into a staging folder.
Only then the fleet is stopped, the folders swapped in by rename and Redis rebuilt; if that
fails, the fleet it replaced comes back (files and Redis) and is started again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from core import session_files
from core.api_keys import ApiKeys
from core.audit import Audit
from core.backups import archive, on_disk, trail, validate
from core.backups.base import BackupParts, Progress, why
from core.backups.errors import RestoreFailed
from core.backups.records import BackupInfo, Plan, Reassigned, RestoreReport
from core.errors import Conflict
from core.models import Reason, Status
from core.notifier import Alert, AlertKind, Done, Move
from core.owners import Owners
from core.proxy_probe import probe
from core.proxy_url import ProxyUrl, mask
from core.store import FleetSnapshot

log = logging.getLogger("wafleet.backups")


@dataclass(frozen=True)
class _Rebuilt:
    startable: list[str]
    reassigned: list[Reassigned]
    added: list[str]


class Restoring(BackupParts):
    """``BackupService``'s half that puts an archive's fleet in place of the live one."""

    async def _restore(self, info: BackupInfo, say: Progress, wait_s: float) -> RestoreReport:
        await say(f"checking {info.path.name}")
        plan = await asyncio.to_thread(self._plan, info.path)
        unknown = await self._probe_unknown(plan)
        sessions_dir = self.settings.sessions_dir
        await asyncio.to_thread(sessions_dir.mkdir, parents=True, exist_ok=True)
        # Staged *inside* SESSIONS_DIR: in Docker it is a bind mount whose parent may be
        # neither writable nor on the same filesystem, and a mount point cannot be renamed.
        # Dot-names are never session folders, so nothing else ever reads it.
        staging = sessions_dir / f".restore-{self.clock.now_ms()}"
        try:
            await say(f"extracting {len(plan.sessions)} session(s)")
            await asyncio.to_thread(self._extract, info.path, staging)
            replaced = await self._replace_fleet(info, plan, unknown, staging, say)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        return await self._finish(info, plan, replaced, say, wait_s)

    def _plan(self, path: Path) -> Plan:
        contents = archive.inspect(path, self.limits)
        plan = validate.plan(
            path.name, contents.manifest, contents.metas, self.settings.events_webhook_policy
        )
        return replace(plan, audit=trail.read_audit(path))

    def _extract(self, path: Path, staging: Path) -> None:
        try:
            archive.extract(path, staging, self.limits.max_bytes)
        except OSError as exc:
            if archive.no_space(exc):
                raise archive.disk_full(f"the sessions of {path.name}") from exc
            raise

    async def _probe_unknown(self, plan: Plan) -> dict[str, str | None]:
        """For every proxy the archive knows and the pool does not: add it back when it
        answers (the phones keep their IP), else ``None`` with the probe's reason."""
        pool = {p.url for p in await self.store.proxies()}
        wanted = {s.proxy for s in plan.sessions} | set(plan.proxies)
        unknown = sorted(wanted - pool)
        problems = await asyncio.gather(*(probe(ProxyUrl.parse(url)) for url in unknown))
        return dict(zip(unknown, problems, strict=True))

    async def _replace_fleet(
        self,
        info: BackupInfo,
        plan: Plan,
        unknown: dict[str, str | None],
        staging: Path,
        say: Progress,
    ) -> _Rebuilt:
        """Stop the fleet, swap the folders, rebuild Redis; on failure put it all back."""
        sessions_dir = self.settings.sessions_dir
        old = sessions_dir / f".old-{self.clock.now_ms()}"
        # Nothing else starts, moves or deletes a worker until the new fleet is in place.
        async with self.service.maintenance("a restore"):
            if self.on_step is not None:
                await self.on_step("maintenance")
            before = await self.store.fleet_snapshot()
            swapped = False
            keys_added: list[str] = []
            try:
                current = sorted(
                    set(await self.store.session_ids()) | set(await self.runner.running())
                )
                await say(f"stopping {len(current)} worker(s)")
                await asyncio.gather(*(self.runner.stop(sid) for sid in current))
                # The swap: renames within one folder, all or nothing.
                await asyncio.to_thread(on_disk.swap_in, sessions_dir, staging, old)
                swapped = True
                carried = await asyncio.to_thread(session_files.carry_outboxes, old, sessions_dir)
                if carried:
                    log.info(
                        "carried %d unsent message event(s) into the restored folders", carried
                    )
                await say("rebuilding the state")
                rebuilt = await self._rebuild(info, plan, unknown, current)
                # Last, and each in one step: a failure before them leaves keys and trail as
                # they were; the keys added are taken out again if the trail's merge fails.
                keys_added = await self._merge_keys(plan)
                if plan.audit is not None:
                    await self._audit().merge(plan.audit)
            except Exception as exc:
                log.exception("restore of %s failed; rolling back", info.id)
                await self._roll_back(info, before, old if swapped else None, exc, keys_added)
                raise RestoreFailed(
                    f"restoring {info.id} failed ({why(exc)}); the previous fleet is back"
                ) from exc
        await asyncio.to_thread(shutil.rmtree, old, True)
        return rebuilt

    async def _rebuild(
        self,
        info: BackupInfo,
        plan: Plan,
        unknown: dict[str, str | None],
        current: Sequence[str],
    ) -> _Rebuilt:
        for sid in current:
            await self.store.release(sid)
        added = []
        for url, problem in unknown.items():
            if problem is None and await self.store.add_proxy(url):
                added.append(url)
            elif problem is not None:
                log.warning("proxy %s from the backup is unreachable: %s", mask(url), problem)
        await self.store.set_sticky_proxies(plan.sticky)
        now = self.clock.now_ms()
        cap = self.settings.max_sessions_per_proxy
        reassigned: list[Reassigned] = []
        startable: list[str] = []
        for s in plan.sessions:
            outcome, url = await self.store.restore_session(
                s.id, s.phone, s.proxy, cap, s.created, now, s.stopped, s.events_webhook_url
            )
            if outcome == "err":
                raise Conflict(f"could not restore {s.id}: {url}")
            if s.limits is not None:
                await self.store.set_own_limits(s.id, s.limits)
            if s.owner_known:
                await Owners(self.store.redis).set(s.id, s.owner)
            why = unknown.get(s.proxy) or "the proxy is marked bad or full"
            if outcome == "moved":
                await session_files.write_record_meta(self.settings.sessions_dir, s, proxy=url)
                reassigned.append(Reassigned(s.id, s.phone, mask(s.proxy), mask(url), why))
            elif outcome == "parked":
                reassigned.append(Reassigned(s.id, s.phone, mask(s.proxy), None, why))
            if outcome != "parked" and not s.stopped:
                startable.append(s.id)  # one the operator stopped stays stopped: no worker
            await self.store.add_event(
                s.id, "RESTORED", {"backup": info.id, "proxy": mask(url)}, now
            )
        await self.store.set_sticky_sessions(plan.sticky_sessions)
        await self.store.recount()
        return _Rebuilt(startable, reassigned, added)

    def _api_keys(self) -> ApiKeys:
        return ApiKeys(self.store.redis, self.clock, self.settings.key_rotate_grace_s)

    def _audit(self) -> Audit:
        return Audit(self.store.redis, self.clock, self.settings.audit_retention_days)

    async def _merge_keys(self, plan: Plan) -> list[str]:
        """The archive's keys this Redis lacks, added back (never one revoked here)."""
        if plan.api_keys is None:
            return []
        added = await self._api_keys().merge(plan.api_keys)
        left_out = len(plan.api_keys) - len(added)
        log.info("restore: %d key(s) added back, %d already here or revoked", len(added), left_out)
        return added

    async def _roll_back(
        self,
        info: BackupInfo,
        before: FleetSnapshot,
        old: Path | None,
        cause: Exception,
        keys_added: Sequence[str] = (),
    ) -> None:
        """The fleet the restore replaced, back as it was: folders (when they were swapped),
        Redis (owners included), the keys it added taken out, running workers. If even that
        fails, the operator must be told so."""
        sessions_dir = self.settings.sessions_dir
        try:
            if old is not None:
                discard = sessions_dir / f".discard-{self.clock.now_ms()}"
                await asyncio.to_thread(on_disk.swap_back, sessions_dir, old, discard)
            await self.store.restore_fleet(before)
            await self._api_keys().forget(list(keys_added))
            await self.service.reconcile()
        except Exception as exc:
            log.exception("rolling back the restore of %s failed", info.id)
            kept = f"; the previous folders are in {old}" if old is not None else ""
            raise RestoreFailed(
                f"restoring {info.id} failed ({why(cause)}) and so did putting the previous "
                f"fleet back ({why(exc)}): see the server log{kept}"
            ) from exc

    async def _finish(
        self, info: BackupInfo, plan: Plan, rebuilt: _Rebuilt, say: Progress, wait_s: float
    ) -> RestoreReport:
        await say(f"starting {len(rebuilt.startable)} worker(s)")
        # Bounded and connected-first, like a reconcile: a restore of hundreds starts them all.
        records = [r for r in await self.store.list_sessions() if r.id in rebuilt.startable]
        await self.service.start_many(records, Reason.STARTING, announce=False)
        await say(f"waiting up to {wait_s:.0f} s for the sessions to connect")
        connected = await self._wait_connected(rebuilt.startable, wait_s)
        ids = [s.id for s in plan.sessions]
        report = RestoreReport(
            backup_id=info.id,
            sessions=ids,
            connected=sorted(connected, key=ids.index),
            not_connected=[sid for sid in ids if sid not in connected],
            reassigned=rebuilt.reassigned,
            proxies_added=[mask(u) for u in rebuilt.added],
        )
        await self._tell(report)
        await say(f"restored {len(ids)} session(s), {len(connected)} connected")
        return report

    async def _wait_connected(self, ids: Sequence[str], wait_s: float) -> set[str]:
        deadline = self.clock.now_ms() + wait_s * 1000
        while True:
            records = await self.store.list_sessions()
            connected = {r.id for r in records if r.status == Status.CONNECTED and r.id in ids}
            if len(connected) == len(ids) or self.clock.now_ms() >= deadline:
                return connected
            await asyncio.sleep(0.25)

    async def _tell(self, report: RestoreReport) -> None:
        await self.notifier.notify(
            Alert(
                AlertKind.RESTORE_DONE,
                facts={
                    "backup": report.backup_id,
                    "sessions": len(report.sessions),
                    "connected": len(report.connected),
                    "not_connected": len(report.not_connected),
                    "proxies_added": len(report.proxies_added),
                },
                done=Done.RESTARTED_RESTORED,
                moves=tuple(
                    Move(r.session_id, r.phone, r.old_proxy, r.new_proxy)
                    for r in report.reassigned
                ),
            )
        )
