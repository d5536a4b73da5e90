-- Write one restored session and attach it to a proxy slot in one atomic step (restore).
-- The session's own proxy wins (sticky IP) while it is in the pool, active and under the
-- cap; otherwise it gets the least-loaded active proxy, and the phone's sticky mapping moves
-- with it as in a failover. With no slot anywhere the record is written parked (failed,
-- no_proxy_capacity) on its old proxy without taking a slot, like an impossible failover.
-- Every value was validated by the caller (worker_<n> with at most 12 digits, a normalised
-- phone, a canonical socks5h:// URL).
-- A session the operator had stopped comes back stopped on its slot (no worker starts; a
-- stopped session keeps its slot, as POST .../stop leaves it); parked if there is none.
-- KEYS: wafleet:sessions, wafleet:session_seq, session:<id>:{created, lastPing, proxy,
--       status, reason, phone, eventsWebhookUrl}, and with a phone
--       phone:<p>:{sessions, session, proxy}.
--       The proxy keys are reached through common.lua's helpers (the slot is chosen here).
-- ARGV: id, phone ('' = unknown), proxy, cap, created ms, now ms, stopped ('1'/'0'),
--       the session's own events endpoint ('' = none)
-- Returns {'ok', proxy} | {'moved', new proxy} | {'parked', old proxy} | {'err', why}.
local sessions, seq = KEYS[1], KEYS[2]
local k_created, k_ping, k_proxy, k_status, k_reason, k_phone, k_events =
  KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local id, phone, wanted = ARGV[1], ARGV[2], ARGV[3]
local cap, created, now = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local stopped, events_url = ARGV[7] == '1', ARGV[8]
if redis.call('SISMEMBER', sessions, id) == 1 then
  return {'err', 'exists'}
end

local outcome, chosen = 'ok', wanted
if not usable(wanted, cap) then
  chosen = least_loaded(cap, wanted)
  outcome = chosen and 'moved' or 'parked'
end

redis.call('SADD', sessions, id)
index_session(id)
redis.call('SET', k_created, created)
redis.call('SET', k_ping, now)
if chosen and stopped then
  attach(id, chosen)
  redis.call('SET', k_status, 'stopped')
  redis.call('DEL', k_reason)
elseif chosen then
  attach(id, chosen)
  redis.call('SET', k_status, 'pending')
  redis.call('SET', k_reason, 'starting')
else
  redis.call('SET', k_proxy, wanted)
  redis.call('SET', k_status, 'failed')
  redis.call('SET', k_reason, 'no_proxy_capacity')
end
if events_url ~= '' then
  redis.call('SET', k_events, events_url)
else
  redis.call('DEL', k_events)
end
if phone ~= '' then
  local phone_sessions, phone_session, phone_proxy = KEYS[10], KEYS[11], KEYS[12]
  redis.call('SET', k_phone, phone)
  redis.call('SADD', phone_sessions, id)
  redis.call('SET', phone_session, id)
  local sticky = redis.call('GET', phone_proxy)
  if chosen and (not sticky or sticky == wanted) then
    redis.call('SET', phone_proxy, chosen)
  end
end

-- New sessions must never reuse a restored id. The digits are written as they are: a Lua
-- number would print as 1e+12 from 15 digits on, which INCR then refuses.
local digits = string.match(id, '^worker_(%d+)$')
if digits and tonumber(digits) > tonumber(redis.call('GET', seq) or '0') then
  redis.call('SET', seq, digits)
end
if chosen then
  return {outcome, chosen}
end
return {outcome, wanted}
