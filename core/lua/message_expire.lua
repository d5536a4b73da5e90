-- Fail the queued messages whose time ran out (MESSAGE_TTL_S) while their session could not
-- send (disconnected, stopped, over its limits). One handed to the worker is no longer here:
-- it may already be at WhatsApp, so only the worker's report decides it.
-- KEYS: deadlines, the fleet's counts. ARGV: now ms, at most this many, keep ms. Returns how many expired.
local deadlines, fleet_counts = KEYS[1], KEYS[2]
local now, batch, keep = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local due = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now, 'LIMIT', 0, batch)
local expired = 0
for _, id in ipairs(due) do
  redis.call('ZREM', deadlines, id)
  local message = fill(FORMAT.message, id)
  local fields = redis.call('HMGET', message, 'status', 'session', 'handedAt')
  if fields[1] == 'queued' and not fields[3] then
    redis.call('LREM', fill(FORMAT.message_queue, fields[2]), 0, id)
    redis.call('HSET', message, 'status', 'failed', 'reason', 'expired')
    redis.call('HINCRBY', fill(FORMAT.message_counts, fields[2]), 'failed', 1)
    redis.call('HINCRBY', fleet_counts, 'failed', 1)
    finish(message, keep)
    expired = expired + 1
  end
end
return expired
