-- Move a session off its (failed) proxy onto the least-loaded healthy one, and move the
-- phone's sticky mapping with it (Flow 4, steps 3 and 6). Returns the new URL or false.
-- ARGV: id, cap
local id, cap = ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', 'wafleet:sessions', id) == 0 then
  return false
end
local old = redis.call('GET', 'session:' .. id .. ':proxy')
local new = least_loaded(cap, old or '')
if not new then
  return false
end
move(id, old, new)
return new
