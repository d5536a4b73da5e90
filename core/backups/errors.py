"""Every way a backup or restore can be refused or fail, each with its own stable ``code``.

The codes are published (REST, CLI, chat): an operator or a script tells one fault from
another by the code alone, so a code never changes once released.
"""

from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound, WafleetError


class BackupNotFound(NotFound):
    code = "backup_not_found"


class BackupBusy(Conflict):
    code = "backup_busy"


class DiskFull(WafleetError):
    """The disk filled up while writing; the partial file is gone (HTTP 507)."""

    code = "disk_full"


class RestoreFailed(WafleetError):
    """A restore failed after the swap and was rolled back to the fleet it replaced."""

    code = "restore_failed"


class BadArchive(InvalidInput):
    """The archive cannot be restored; nothing was changed."""

    code = "backup_invalid"


class NotAZip(BadArchive):
    code = "backup_not_zip"


class CorruptArchive(BadArchive):
    code = "backup_corrupt"


class PathTraversal(BadArchive):
    code = "backup_path_traversal"


class AbsolutePath(BadArchive):
    code = "backup_absolute_path"


class LinkMember(BadArchive):
    code = "backup_symlink"


class UnexpectedMember(BadArchive):
    code = "backup_unexpected_member"


class DuplicateMember(BadArchive):
    """Two members with one name: which one would win depends on the extractor."""

    code = "backup_duplicate_member"


class NotAFolder(BadArchive):
    """A file stands where a session folder should be."""

    code = "backup_not_a_folder"


class TooLarge(BadArchive):
    """More uncompressed bytes than ``BACKUP_MAX_BYTES`` (a zip bomb, or a wrong file)."""

    code = "backup_too_large"


class TooManyFiles(BadArchive):
    code = "backup_too_many_files"


class NoManifest(BadArchive):
    code = "backup_no_manifest"


class BadManifest(BadArchive):
    code = "backup_bad_manifest"


class ManifestTooLarge(BadArchive):
    code = "backup_manifest_too_large"


class NoSessions(BadArchive):
    code = "backup_no_sessions"


class BadSessionId(BadArchive):
    """A folder that is not ``worker_<n>`` with a sane ``n``: provision could never make it."""

    code = "backup_bad_session_id"


class BadPhone(BadArchive):
    code = "backup_bad_phone"


class BadProxy(BadArchive):
    code = "backup_bad_proxy"


class BadEventsUrl(BadArchive):
    """A session's ``eventsWebhookUrl`` that provision would refuse (scheme, host policy)."""

    code = "backup_bad_events_url"


class BadLimits(BadArchive):
    """A session's limits that ``PUT …/limits`` would refuse."""

    code = "backup_bad_limits"


class BadAudit(BadArchive):
    """The archive's audit trail holds an entry the trail never writes."""

    code = "backup_bad_audit"


class BadKeys(BadArchive):
    """The archive lists an API key ``POST /api/v1/keys`` could not have made."""

    code = "backup_bad_keys"
