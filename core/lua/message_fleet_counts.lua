-- The fleet's message counts from the sessions' sums (MessageService.count_fleet_if_new),
-- only if they do not exist yet: a count that created them since the scan wins.
-- KEYS: the fleet's counts. ARGV: sent, received, failed. Returns 1 written, 0 already there.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'sent', ARGV[1], 'received', ARGV[2], 'failed', ARGV[3])
return 1
