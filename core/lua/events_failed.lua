-- One more failed attempt of the event at the head, and when to try again: kept in Redis
-- so a restarted serve goes on with the same count and backoff.
-- KEYS: operator stream, retry hash
-- ARGV: stream id, attempts, next attempt at (ms), error
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], 'streamId', ARGV[1], 'attempts', ARGV[2], 'nextAt', ARGV[3],
  'error', ARGV[4])
return 1
