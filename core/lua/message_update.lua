-- A message's status moves forward only: queued -> sent -> delivered -> read, or
-- queued -> failed. From the worker's acknowledgement of a command (mode 'ack', which also
-- takes the command off the channel) or its MESSAGE_STATUS event (mode 'event').
-- KEYS: the session's commands, the session's counts, the fleet's counts.
-- ARGV: mode, session id, message id, status, reason ('' for none), keep ms.
-- Returns 1 applied (or nothing to change), 0 not this session's message.
local commands, counts, fleet_counts = unpack(KEYS, 1, 3)
local mode, session, id, status, reason, keep = unpack(ARGV, 1, 6)
local message = fill(FORMAT.message, id)
if redis.call('HGET', message, 'session') ~= session then
  return 0
end
if mode == 'ack' then
  redis.call('LREM', commands, 0, id)
end
local RANK = {queued = 0, sent = 1, delivered = 2, read = 3}
local current = redis.call('HGET', message, 'status')
if current == 'failed' then
  return 1
end
if status == 'failed' then
  if current ~= 'queued' then
    return 1  -- it reached WhatsApp: a late failure report cannot undo that
  end
  redis.call('HSET', message, 'status', 'failed', 'reason', reason)
  redis.call('HINCRBY', counts, 'failed', 1)
  redis.call('HINCRBY', fleet_counts, 'failed', 1)
  finish(message, keep)
  return 1
end
if RANK[status] > RANK[current] then
  redis.call('HSET', message, 'status', status)
  if current == 'queued' then
    redis.call('HINCRBY', counts, 'sent', 1)
    redis.call('HINCRBY', fleet_counts, 'sent', 1)
    finish(message, keep)
  end
end
return 1
