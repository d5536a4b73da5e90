-- Move a session off its (failed) proxy onto the least-loaded healthy one, and move the
-- phone's sticky mapping with it (a failover). Returns the new URL or false.
-- KEYS: sessions set, session:<id>:proxy. ARGV: id, cap, the proxy to move off ('' = none)
-- A session no longer on that proxy has moved already (a resent script after a broken
-- connection, or a failover that won the race): it stays where it is.
local sessions, proxy_key = KEYS[1], KEYS[2]
local id, cap, from = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('SISMEMBER', sessions, id) == 0 then
  return false
end
local old = redis.call('GET', proxy_key)
if (old or '') ~= from then
  return old
end
local new = least_loaded(cap, old or '')
if not new then
  return false
end
move(id, old, new)
return new
