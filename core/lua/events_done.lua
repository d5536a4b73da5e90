-- The event at the head is done with: delivered, or (with ARGV[3]) a dead letter. The
-- cursor moves past it, its retry state goes, and what is both done and older than the
-- retention is trimmed (ARGV[2] is at most the id just above this event: nothing
-- undelivered goes).
-- A resend (the reply was lost) finds the cursor already there; a stream forgotten with
-- its session in between gets no keys back.
-- KEYS: operator stream, cursor, retry hash, dead-letter list
-- ARGV: stream id, MINID to trim below, dead letter JSON or ''
local stream, cursor, retry, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', stream) == 0 then
  return 0
end
if redis.call('GET', cursor) == ARGV[1] then
  return 0
end
redis.call('SET', cursor, ARGV[1])
redis.call('DEL', retry)
if ARGV[3] ~= '' then
  redis.call('RPUSH', dead, ARGV[3])
end
redis.call('XTRIM', stream, 'MINID', ARGV[2])
return 1
