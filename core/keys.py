"""Every Redis key wafleet uses, built in one place.

The ``session:*``, ``phone:*`` and ``proxy:*`` keys are a fixed format, byte for
byte (operators' scripts and older data read them);
the ``wafleet:*`` indexes and the extra per-session keys are ours.
"""

from __future__ import annotations

SESSIONS = "wafleet:sessions"  # set of session ids
PROXIES = "wafleet:proxies"  # set of full proxy URLs
SESSION_SEQ = "wafleet:session_seq"  # counter behind worker_<n>
# Counter written just before a WAIT on the same connection, so the WAIT has a write to wait
# for (core/promise.py); its value means nothing.
PROMISE = "wafleet:promise"
# Sorted set of the same ids scored by their number (``worker_<n>`` -> n): a listing page is
# a range of it, O(page), not a read and sort of every id. The scripts that add or remove an
# id of SESSIONS keep it; ``session_order.lua`` rebuilds it when it is missing (older data).
SESSION_ORDER = "wafleet:session_order"
# Sorted set: every pooled ``active`` proxy URL scored by its session count, so a provision
# or failover finds the least-loaded proxy in O(log n) instead of reading every proxy. The
# scripts that change a count, a status or the pool keep it (common.lua ``reload_load``).
PROXY_LOAD = "wafleet:proxy_load"

SESSION_FIELDS = ("status", "phone", "proxy", "qr", "lock", "created", "lastPing")
# bootId: the worker process that last reported CONNECTED (a stale DISCONNECTED is told by it).
EXTRA_SESSION_FIELDS = (
    "reason",
    "qrExpires",
    "pairingCode",
    "connectedAt",
    "bootId",
    "eventsWebhookUrl",  # the operator's endpoint for this session, set at provision
)

# The formats of the per-id keys. Python builds keys with the functions below; the Lua scripts
# get the same formats (``LUA_FORMATS``) for the keys they can only name once they have read a
# value inside the script (the least-loaded proxy, a session's phone), so no script spells a key.
SESSION = "session:{id}:{field}"
PHONE_PROXY = "phone:{phone}:proxy"
PHONE_SESSION = "phone:{phone}:session"
PHONE_SESSIONS = "phone:{phone}:sessions"
PROXY_STATUS = "proxy:{url}:status"
PROXY_SESSIONS = "proxy:{url}:sessions"
PROXY_MEMBERS = "proxy:{url}:members"


def session(session_id: str, field: str) -> str:
    return SESSION.format(id=session_id, field=field)


def session_events(session_id: str) -> str:
    return session(session_id, "events")


def phone_proxy(phone: str) -> str:
    return PHONE_PROXY.format(phone=phone)


def phone_session(phone: str) -> str:
    return PHONE_SESSION.format(phone=phone)


def phone_sessions(phone: str) -> str:
    return PHONE_SESSIONS.format(phone=phone)


def proxy_status(url: str) -> str:
    return PROXY_STATUS.format(url=url)


def proxy_sessions(url: str) -> str:
    return PROXY_SESSIONS.format(url=url)


def proxy_members(url: str) -> str:
    return PROXY_MEMBERS.format(url=url)


def provision_receipt(token: str) -> str:
    """A provision's answer for a minute, so a resent provision script answers it again."""
    return f"wafleet:provision:{token}"


# Handed to every Lua script as its ``FORMAT`` table (see ``core.store.load_script``).
LUA_FORMATS = {
    "sessions": SESSIONS,
    "proxies": PROXIES,
    "session_seq": SESSION_SEQ,
    "session_order": SESSION_ORDER,
    "proxy_load": PROXY_LOAD,
    "session": SESSION,
    "phone_proxy": PHONE_PROXY,
    "phone_session": PHONE_SESSION,
    "phone_sessions": PHONE_SESSIONS,
    "proxy_status": PROXY_STATUS,
    "proxy_sessions": PROXY_SESSIONS,
    "proxy_members": PROXY_MEMBERS,
}


# The Telegram bot's own state (not one of the fixed formats): the chat language and where
# a QR is shown.
def bot_lang(chat_or_user_id: int) -> str:
    return f"wafleet:lang:{chat_or_user_id}"


def bot_qr_message(session_id: str) -> str:
    """Hash ``chat`` + ``message``: the chat that shows the session's QR, and its message."""
    return f"wafleet:bot:qr:{session_id}"


# What a restore replaces, and puts back when it fails: every key of the fleet itself.
FLEET_INDEXES = (SESSIONS, PROXIES, SESSION_SEQ, SESSION_ORDER, PROXY_LOAD)
FLEET_PATTERNS = ("session:*", "phone:*", "proxy:*")
PHONE_PROXY_PATTERN = phone_proxy("*")


def phone_of_proxy_key(key: str) -> str:
    """``phone:<phone>:proxy`` -> ``<phone>`` (a phone has no colon)."""
    return key.split(":")[1]


def event_applied(session_id: str, event_id: str) -> str:
    """Marks one worker event of one session as applied (expires): a repeat is dropped."""
    return f"wafleet:applied:{session_id}:{event_id}"


def bot_outbox() -> str:
    """Stream of alerts waiting for the chat (field ``alert``: the alert's JSON); an entry is
    deleted once sent, so what is left after a crash goes out after the next start."""
    return "wafleet:bot:outbox"


def bot_alert_sent(alert_id: str) -> str:
    """Set (with a day's expiry) once an alert reached the chat: a repeat of it is dropped."""
    return f"wafleet:bot:sent:{alert_id}"


def connected_history() -> str:
    """List of ``<ms> <connected> <sessions>`` samples, newest first, capped (core/history.py):
    the chat's 24-hour chart of connected sessions."""
    return "wafleet:history:connected"


def digest_journal() -> str:
    """Hash of counters since the last digest (core/journal.py), plus ``since`` (ms)."""
    return "wafleet:digest:journal"


# Incoming messages and receipts for the operator (core/event_log.py, core/deliveries.py).
# Outside ``session:*`` on purpose: a restore replaces the fleet's keys, and must not throw
# away events the operator has not received yet.
DELIVERY_SESSIONS = "wafleet:deliveries"  # set of session ids that have an operator stream


def operator_events(session_id: str) -> str:
    """Stream of the session's events for the operator (fields ``id``, ``type``, ``data``,
    ``at``), in arrival order; trimmed only below the cursor and after the retention."""
    return f"wafleet:events:{session_id}"


def operator_cursor(session_id: str) -> str:
    """The stream id of the last event delivered or dead-lettered: the next is after it."""
    return f"wafleet:events:{session_id}:cursor"


def operator_retry(session_id: str) -> str:
    """Hash: the failed attempts of the event at the head (``streamId``, ``attempts``,
    ``nextAt``, ``error``), so a restarted serve keeps its backoff and attempt count."""
    return f"wafleet:events:{session_id}:retry"


def operator_dead(session_id: str) -> str:
    """List of dead letters (JSON each, oldest first), kept until redelivered."""
    return f"wafleet:events:{session_id}:dead"


def operator_written(session_id: str, event_id: str) -> str:
    """The stream id a worker event was stored as (expires): a replay is not stored twice."""
    return f"wafleet:events:{session_id}:written:{event_id}"


# Messages: outside the fixed ``session:*`` keys on purpose, so a restore (which
# replaces every ``session:*`` key) neither wipes a queue of accepted messages nor needs them.
MESSAGE = "wafleet:message:{id}"  # hash: the record of one message we accepted
MESSAGE_QUEUE = "wafleet:outbox:{id}"  # list of a session's message ids not yet handed out
MESSAGE_COUNTS = "wafleet:msgcounts:{id}"  # hash sent / received / failed per session
LUA_FORMATS |= {
    "message": MESSAGE,
    "message_queue": MESSAGE_QUEUE,
    "message_counts": MESSAGE_COUNTS,
}


def message(message_id: str) -> str:
    return MESSAGE.format(id=message_id)


def message_queue(session_id: str) -> str:
    return MESSAGE_QUEUE.format(id=session_id)


def message_counts(session_id: str) -> str:
    return MESSAGE_COUNTS.format(id=session_id)


def message_key(session_id: str, idempotency_key: str) -> str:
    """The message an ``idempotencyKey`` of one session already made (string: its id)."""
    return f"wafleet:msgkey:{session_id}:{idempotency_key}"


def session_commands(session_id: str) -> str:
    """List of message ids handed to the session's worker and not acknowledged yet: the
    command channel. Every poll answers all of them again until each is acknowledged."""
    return f"wafleet:commands:{session_id}"


def message_deadlines() -> str:
    """Sorted set: queued message id -> the time (ms) it expires if still not handed out."""
    return "wafleet:message_deadlines"


def send_log(session_id: str) -> str:
    """Sorted set: message id -> when it was handed out (ms), the last day: the rate limits."""
    return f"wafleet:sendlog:{session_id}"


def send_state(session_id: str) -> str:
    """Hash ``nextAt``: the earliest time (ms) the next message may go (the random pause)."""
    return f"wafleet:sendstate:{session_id}"


def send_limits(session_id: str) -> str:
    """Hash of the operator's per-session limits (``perMinute``, ``perDay``, ``warmupDays``)."""
    return f"wafleet:limits:{session_id}"


def session_logged_out(session_id: str) -> str:
    """Set from a logout on the phone until the session connects again: messages fail at once."""
    return f"wafleet:loggedout:{session_id}"


def fleet_message_counts() -> str:
    """Hash sent / received / failed over the whole fleet, bumped in the same script (or
    transaction) as the session's own ``message_counts``: ``/stats`` reads one key instead of
    summing every session's. A deleted session's messages stay counted: they happened."""
    return "wafleet:msgcounts"


# Deleting a session (core/messages.py ``forget``): the keys a script can only name from what
# it reads (a message id from the index, an idempotency key from a record).
MESSAGE_KEY = "wafleet:msgkey:{id}:{key}"  # == message_key(); a key may hold braces
MESSAGE_INDEX = "wafleet:msgids:{id}"
LUA_FORMATS |= {"message_key": MESSAGE_KEY}

# Media ids (core/media/registry.py): a message's media record gets the message's retention
# in the same script that makes the message final (common.lua ``finish``).
MEDIA = "wafleet:media:{id}"
LUA_FORMATS |= {"media": MEDIA}


def message_index(session_id: str) -> str:
    """Sorted set: every message id of the session -> when it was accepted (ms), trimmed of
    ids whose record has surely expired: so a delete finds every record it must remove."""
    return MESSAGE_INDEX.format(id=session_id)


def operator_deleted(session_id: str) -> str:
    """Set while a deleted session's operator stream drains: the endpoint its events go to
    (the session's own, '' for ``EVENTS_WEBHOOK_URL``). The lane removes the stream (and this)
    once nothing is left to deliver."""
    return f"wafleet:events:{session_id}:deleted"


# Issued API keys (core/api_keys.py): a hash per key id, the set of ids, each key's token
# bucket; which key owns a session (hash id -> key id, kept outside the fleet's patterns so a
# restore keeps it) and each key's sessions.
API_KEYS = "wafleet:apikeys"
# Every id ever revoked here: a restore never brings one of them back from an archive.
API_KEYS_REVOKED = "wafleet:apikeys:revoked"
SESSION_OWNERS = "wafleet:owners"


def api_key(key_id: str) -> str:
    return f"wafleet:apikey:{key_id}"


def api_key_rate(key_id: str) -> str:
    return f"wafleet:apikey:{key_id}:rate"


OWNER_SESSIONS = "wafleet:owner:{key}:sessions"
# provision.lua writes the new session's owner with its record, and clears the one an id
# held before (an id used again after a restore of an older archive).
LUA_FORMATS["owner_sessions"] = OWNER_SESSIONS


def owner_sessions(key_id: str) -> str:
    return OWNER_SESSIONS.format(key=key_id)


# The audit trail (core/audit.py): one stream, a counter of refused entries per actor and
# minute, the flood entry of that minute, and the count each flood entry stands for.
AUDIT = "wafleet:audit"


def audit_refused(actor: str, minute: int) -> str:
    return f"wafleet:audit:refused:{minute}:{actor}"


def audit_flood(actor: str, minute: int) -> str:
    return f"wafleet:audit:flood:{minute}:{actor}"


def audit_flood_count(entry_id: str) -> str:
    return f"wafleet:audit:count:{entry_id}"


# Several serve replicas (core/leadership.py, core/cluster.py, core/redis_locks.py) ----------

LEADER = "wafleet:leader"  # "<fencing token> <SERVE_ID>" of the leader, expiring with its lease
LEADER_EPOCH = "wafleet:leader_epoch"  # counter: each win of the lease takes the next token
REPLICAS = "wafleet:replicas"  # sorted set: SERVE_ID scored by its last heartbeat (epoch ms)
REPLICA_URLS = "wafleet:replica_urls"  # hash: SERVE_ID -> its own base URL
CLUSTER_BUS = "wafleet:bus"  # pub/sub channel between replicas (core/cluster_bus.py)
CAPACITY_LOW_SAID = "wafleet:capacity_low"  # set once the low-capacity alert went out
MAINTENANCE = "wafleet:maintenance"  # "<SERVE_ID> <what>" while a replica replaces the fleet


def lock(kind: str, name: str) -> str:
    """A cross-replica lock (``core/redis_locks.py``): ``kind`` is ``session`` or ``proxy``;
    a proxy's ``name`` is a digest of its URL, never the URL (it holds the password)."""
    return f"wafleet:lock:{kind}:{name}"


def worker_replacing(session_id: str) -> str:
    """Set while a replica stops or replaces the session's worker on purpose: the leader,
    which watches every worker's exit, then does not take that exit for a crash."""
    return f"wafleet:replacing:{session_id}"


def job_run(job: str, fire_time: str) -> str:
    """One scheduled run of ``job`` (backup, digest), by its fire time (epoch s), claimed by
    the leader that runs it."""
    return f"wafleet:job:{job}:{fire_time}"


def runner_claim(what: str) -> str:
    """Claimed by the ``serve`` replica that takes a fleet-wide runner action (moving a lost
    swarm node's sessions): the others leave it to that one (wafleet/leader_work.py)."""
    return f"wafleet:runner_claim:{what}"


# Across replicas (core/sessions/): a session's recent worker exits (sorted set of exit times,
# for the crash-loop rule), and when it was provisioned (until its first QR, for the metric).
def session_crashes(session_id: str) -> str:
    return f"wafleet:crashes:{session_id}"


def session_provisioned(session_id: str) -> str:
    return f"wafleet:provisioned:{session_id}"
