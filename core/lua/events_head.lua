-- What the delivery lane of one session needs, in one round trip: the next event after
-- the cursor, the failed attempts recorded for it, whether the session still exists and
-- its own endpoint; for a deleted session whose stream still drains, the endpoint kept when
-- it was deleted, and the flag 'deleted'.
-- KEYS: operator stream, cursor, retry hash, sessions set, session:<id>:eventsWebhookUrl,
-- the deleted mark
-- ARGV: session id
local cursor = redis.call('GET', KEYS[2]) or '0-0'
local entries = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', 1)
local retry = redis.call('HGETALL', KEYS[3])
local exists = redis.call('SISMEMBER', KEYS[4], ARGV[1])
local url = redis.call('GET', KEYS[5]) or ''
local deleted = 0
if exists == 0 then
  local kept = redis.call('GET', KEYS[6])
  if kept then
    deleted, url = 1, kept
  end
end
return {entries, retry, exists, url, deleted}
