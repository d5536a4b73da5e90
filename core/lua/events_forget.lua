-- A deleted session's operator stream has drained (or its events can go nowhere): the stream,
-- its cursor, retry state, dead letters and the deleted mark go. Unless the session exists
-- again (a restore brought the id back): then the stream is its own again, only the mark goes.
-- KEYS: sessions set, the index of sessions with a stream, then stream, cursor, retry hash,
-- dead letters, the deleted mark. ARGV: session id. Returns 1 removed, 0 kept.
local sessions, streams = KEYS[1], KEYS[2]
local id = ARGV[1]
if redis.call('SISMEMBER', sessions, id) == 1 then
  redis.call('DEL', KEYS[7])
  return 0
end
redis.call('DEL', unpack(KEYS, 3))
redis.call('SREM', streams, id)
return 1
