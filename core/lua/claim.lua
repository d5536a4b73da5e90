-- Give a session parked for lack of capacity a real slot before its worker starts again:
-- keep its own proxy if it already holds a slot there or the proxy has room, else move it
-- to the least-loaded usable proxy (and its phone's sticky mapping with it).
-- ARGV: id, cap. Returns the proxy URL to start on, or false when there is still no room.
local id, cap = ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', 'wafleet:sessions', id) == 0 then
  return false
end
local own = redis.call('GET', 'session:' .. id .. ':proxy')
if own and redis.call('GET', 'proxy:' .. own .. ':status') == 'active' then
  if redis.call('SISMEMBER', 'proxy:' .. own .. ':members', id) == 1 then
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
