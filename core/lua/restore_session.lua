-- Write one restored session and attach it to a proxy slot in one atomic step (restore).
-- The session's own proxy wins (sticky IP) while it is in the pool, active and under the
-- cap; otherwise it gets the least-loaded active proxy, and the phone's sticky mapping moves
-- with it as in a failover. With no slot anywhere the record is written parked (failed,
-- no_proxy_capacity) on its old proxy without taking a slot, like an impossible failover.
-- ARGV: id, phone ('' = unknown), proxy, cap, created ms, now ms
-- Returns {'ok', proxy} | {'moved', new proxy} | {'parked', old proxy} | {'err', why}.
local id, phone, wanted = ARGV[1], ARGV[2], ARGV[3]
local cap, created, now = tonumber(ARGV[4]), ARGV[5], ARGV[6]
if redis.call('SISMEMBER', 'wafleet:sessions', id) == 1 then
  return {'err', 'exists'}
end

local outcome, chosen = 'ok', wanted
if not usable(wanted, cap) then
  chosen = least_loaded(cap, wanted)
  outcome = chosen and 'moved' or 'parked'
end

redis.call('SADD', 'wafleet:sessions', id)
redis.call('SET', 'session:' .. id .. ':created', created)
redis.call('SET', 'session:' .. id .. ':lastPing', now)
if chosen then
  attach(id, chosen)
  redis.call('SET', 'session:' .. id .. ':status', 'pending')
  redis.call('SET', 'session:' .. id .. ':reason', 'starting')
else
  redis.call('SET', 'session:' .. id .. ':proxy', wanted)
  redis.call('SET', 'session:' .. id .. ':status', 'failed')
  redis.call('SET', 'session:' .. id .. ':reason', 'no_proxy_capacity')
end
if phone ~= '' then
  redis.call('SET', 'session:' .. id .. ':phone', phone)
  redis.call('SADD', 'phone:' .. phone .. ':sessions', id)
  redis.call('SET', 'phone:' .. phone .. ':session', id)
  local sticky = redis.call('GET', 'phone:' .. phone .. ':proxy')
  if chosen and (not sticky or sticky == wanted) then
    redis.call('SET', 'phone:' .. phone .. ':proxy', chosen)
  end
end

-- New sessions must never reuse a restored id.
local n = tonumber(string.match(id, '^worker_(%d+)$'))
if n and n > tonumber(redis.call('GET', 'wafleet:session_seq') or '0') then
  redis.call('SET', 'wafleet:session_seq', n)
end
if chosen then
  return {outcome, chosen}
end
return {outcome, wanted}
