-- Store one worker event for the operator, once: a replay of the same worker event id (a
-- worker resending after a lost answer, or a webhook retried after a failed apply) answers
-- the stream id it was stored as and adds nothing.
-- A session no longer in the fleet gets nothing (an event in flight while it was deleted
-- would otherwise bring back a stream nobody delivers or removes): answers {-1}.
-- KEYS: written marker, the session's operator stream, the index of sessions with a stream,
--       session:<id>:status (the session exists)
-- ARGV: marker ttl ms, session id, event id, type, data (JSON), at (ms)
local written, stream, index, status = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', status) == 0 then
  return {-1}
end
local found = redis.call('GET', written)
if found then
  return {0, found}
end
local id = redis.call('XADD', stream, '*', 'id', ARGV[3], 'type', ARGV[4], 'data', ARGV[5],
  'at', ARGV[6])
redis.call('SET', written, id, 'PX', ARGV[1])
redis.call('SADD', index, ARGV[2])
return {1, id}
