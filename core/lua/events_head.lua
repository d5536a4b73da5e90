-- What the delivery lane of one session needs, in one round trip: the next event after
-- the cursor, the failed attempts recorded for it, whether the session still exists and
-- its own endpoint.
-- KEYS: operator stream, cursor, retry hash, sessions set, session:<id>:eventsWebhookUrl
-- ARGV: session id
local cursor = redis.call('GET', KEYS[2]) or '0-0'
local entries = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', 1)
local retry = redis.call('HGETALL', KEYS[3])
local exists = redis.call('SISMEMBER', KEYS[4], ARGV[1])
local url = redis.call('GET', KEYS[5]) or ''
return {entries, retry, exists, url}
