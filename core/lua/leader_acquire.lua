-- Win the leader's lease if nobody holds it, or if it is held under this replica's own
-- SERVE_ID (a previous run of this replica that died holding it: a live one would still
-- hold its port, so this one could not have started). Each win takes the next fencing token.
-- KEYS: leader, leader epoch counter. ARGV: SERVE_ID, lease ms.
-- Returns the token won, or 0 while another replica holds the lease.
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, string.find(held, ' ', 1, true) + 1) ~= ARGV[1] then
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
