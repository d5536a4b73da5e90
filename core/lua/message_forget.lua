-- The session is being deleted: every message key of it goes, and each message still queued
-- (accepted, never handed to a worker, so surely not at WhatsApp) is reported to the operator
-- as failed ('session_deleted') on the session's operator stream, in the same step, so no
-- accepted message disappears without a word. One handed to the worker and not reported may
-- have reached WhatsApp: no outcome is made up for it.
-- KEYS: deadlines, the fleet's counts, the operator stream, the index of sessions with a
-- stream, then the session's own keys, all deleted: index of message ids, queue, commands,
-- counts, send log, send state, limits, logged-out mark.
-- ARGV: session id, now ms.
-- Returns how many queued messages were reported failed.
local deadlines, fleet_counts, stream, streams = unpack(KEYS, 1, 4)
local index, queue, commands = KEYS[5], KEYS[6], KEYS[7]
local session, now = ARGV[1], ARGV[2]
local failed = 0

local function remove(id)
  local message = fill(FORMAT.message, id)
  local fields = redis.call('HMGET', message, 'session', 'idemKey', 'media')
  if fields[1] ~= session then
    return  -- gone already, or not this session's
  end
  if fields[2] then
    redis.call('DEL', fill(FORMAT.message_key, session, fields[2]))
  end
  if fields[3] then
    redis.call('DEL', fill(FORMAT.media, fields[3]))  -- its file goes with the next sweep
  end
  redis.call('DEL', message)
  redis.call('ZREM', deadlines, id)
end

for _, id in ipairs(redis.call('LRANGE', queue, 0, -1)) do
  local fields = redis.call('HMGET', fill(FORMAT.message, id), 'status', 'session', 'to')
  if fields[1] == 'queued' and fields[2] == session then
    local data = cjson.encode({messageId = id, to = fields[3], status = 'failed',
      reason = 'session_deleted'})
    redis.call('XADD', stream, '*', 'id', session .. '.deleted-' .. id,
      'type', 'MESSAGE_STATUS', 'data', data, 'at', now)
    redis.call('SADD', streams, session)
    redis.call('HINCRBY', fleet_counts, 'failed', 1)
    failed = failed + 1
  end
  remove(id)
end
for _, id in ipairs(redis.call('LRANGE', commands, 0, -1)) do
  remove(id)
end
for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  remove(id)
end
redis.call('DEL', unpack(KEYS, 5))
return failed
