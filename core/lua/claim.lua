-- Give a session parked for lack of capacity a real slot before its worker starts again:
-- keep its own proxy if it already holds a slot there or the proxy has room, else move it
-- to the least-loaded usable proxy (and its phone's sticky mapping with it).
-- KEYS: sessions set, session:<id>:proxy. ARGV: id, cap.
-- Returns the proxy URL to start on, or false when there is still no room.
local sessions, own_key = KEYS[1], KEYS[2]
local id, cap = ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', sessions, id) == 0 then
  return false
end
local own = redis.call('GET', own_key)
if own and redis.call('GET', fill(FORMAT.proxy_status, own)) == ACTIVE then
  if redis.call('SISMEMBER', fill(FORMAT.proxy_members, own), id) == 1 then
    return own
  end
  if usable(own, cap) then
    attach(id, own)
    return own
  end
end
local new = least_loaded(cap, own or '')
if not new then
  return false
end
move(id, own, new)
return new
