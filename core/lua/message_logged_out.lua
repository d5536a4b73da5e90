-- The session was logged out on the phone: its credentials are void and nothing will send
-- until someone links it again, so its queued messages fail now (reason 'logged_out') and
-- new ones fail at once until it connects (the mark). A message already handed to the
-- worker is left to the worker's report: it may have reached WhatsApp.
-- KEYS: the logged-out mark, the session's queue, deadlines, the session's counts, the
-- fleet's counts.
-- ARGV: keep ms. Returns how many failed.
local mark, queue, deadlines, counts, fleet_counts = unpack(KEYS, 1, 5)
local keep = ARGV[1]
redis.call('SET', mark, '1')
local failed = 0
for _, id in ipairs(redis.call('LRANGE', queue, 0, -1)) do
  local message = fill(FORMAT.message, id)
  if redis.call('HGET', message, 'status') == 'queued' then
    redis.call('HSET', message, 'status', 'failed', 'reason', 'logged_out')
    finish(message, keep)
    redis.call('HINCRBY', counts, 'failed', 1)
    redis.call('HINCRBY', fleet_counts, 'failed', 1)
    failed = failed + 1
  end
  redis.call('ZREM', deadlines, id)
end
redis.call('DEL', queue)
return failed
