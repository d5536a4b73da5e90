-- Delete a session's record and give its proxy slot back. The phone's sticky proxy stays:
-- the next session of the same phone must come out of the same IP.
-- ARGV: id, then the session field names to delete
local id = ARGV[1]
if redis.call('SREM', 'wafleet:sessions', id) == 0 then
  return 0
end
detach(id, redis.call('GET', 'session:' .. id .. ':proxy'))
local phone = redis.call('GET', 'session:' .. id .. ':phone')
if phone then
  redis.call('SREM', 'phone:' .. phone .. ':sessions', id)
  if redis.call('GET', 'phone:' .. phone .. ':session') == id then
    redis.call('DEL', 'phone:' .. phone .. ':session')
  end
end
for i = 2, #ARGV do
  redis.call('DEL', 'session:' .. id .. ':' .. ARGV[i])
end
redis.call('DEL', 'session:' .. id .. ':events')
return 1
