-- Reserve a proxy slot and write the session record in one atomic step, so concurrent
-- provisions can never push a proxy over the cap or a phone over its session limit.
-- The id is drawn only on success, so a refused provision leaves Redis as it was.
-- ARGV: phone ('' = unknown), requested proxy ('' = choose), cap, phone cap, now ms
local phone, requested = ARGV[1], ARGV[2]
local cap, phone_cap, now = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if phone ~= '' and redis.call('SCARD', 'phone:' .. phone .. ':sessions') >= phone_cap then
  return {'err', 'phone_limit'}
end

local chosen = false
if requested ~= '' then
  if redis.call('SISMEMBER', 'wafleet:proxies', requested) == 0 then
    return {'err', 'unknown_proxy'}
  end
  if redis.call('GET', 'proxy:' .. requested .. ':status') ~= 'active' then
    return {'err', 'proxy_bad'}
  end
  if count_of(requested) >= cap then
    return {'err', 'proxy_full'}
  end
  chosen = requested
else
  local sticky = false
  if phone ~= '' then
    sticky = redis.call('GET', 'phone:' .. phone .. ':proxy')
  end
  if sticky and redis.call('SISMEMBER', 'wafleet:proxies', sticky) == 1
      and redis.call('GET', 'proxy:' .. sticky .. ':status') == 'active' then
    -- Sticky IP: the phone keeps its proxy while that proxy works, even when full.
    if count_of(sticky) >= cap then
      return {'err', 'sticky_full'}
    end
    chosen = sticky
  else
    chosen = least_loaded(cap, '')
  end
  if not chosen then
    return {'err', 'no_capacity'}
  end
end

local id = 'worker_' .. redis.call('INCR', 'wafleet:session_seq')
attach(id, chosen)
redis.call('SADD', 'wafleet:sessions', id)
redis.call('SET', 'session:' .. id .. ':status', 'pending')
redis.call('SET', 'session:' .. id .. ':created', now)
redis.call('SET', 'session:' .. id .. ':lastPing', now)
if phone ~= '' then
  redis.call('SET', 'session:' .. id .. ':phone', phone)
  redis.call('SADD', 'phone:' .. phone .. ':sessions', id)
end
return {'ok', id, chosen}
