-- Count an incoming message for its session and for the fleet together (the fleet's count
-- stays the sum of the sessions'), only while the session is in the fleet: a count landing
-- after a delete would bring back a counts key nobody removes.
-- KEYS: session:<id>:status (the session exists), the session's counts, the fleet's counts
-- Returns 1 counted, 0 no such session.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'received', 1)
redis.call('HINCRBY', KEYS[3], 'received', 1)
return 1
