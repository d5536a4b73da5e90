-- Reserve a proxy slot and write the session record in one atomic step, so concurrent
-- provisions can never push a proxy over the cap or a phone over its session limit.
-- The id is drawn only on success, so a refused provision leaves Redis as it was.
-- The client resends a script whose connection broke, possibly after Redis ran it: the
-- receipt makes a resend answer the first run's session instead of reserving a second one.
-- KEYS: proxies set, sessions set, session counter, phone:<phone>:sessions,
-- phone:<phone>:proxy, proxy:<requested>:status, proxy:<requested>:sessions
-- (the phone and requested keys are unused when those are ''), the call's receipt,
-- the owners hash, the owner key's own sessions (unused without an owner).
-- ARGV: phone ('' = unknown), requested proxy ('' = choose), cap, phone cap, now ms,
-- owner: the client key's id ('' = an admin's session, no owner)
-- The owner is written here, with the record, so no reader ever sees the session without
-- it and a refused provision leaves no owner behind.
local proxies, sessions, seq, phone_sessions, phone_proxy = unpack(KEYS, 1, 5)
local requested_status, requested_count, receipt = KEYS[6], KEYS[7], KEYS[8]
local owners, owned = KEYS[9], KEYS[10]
local phone, requested = ARGV[1], ARGV[2]
local cap, phone_cap, now = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local owner = ARGV[6]
local done = redis.call('HMGET', receipt, 'id', 'proxy')
if done[1] then
  return {'ok', done[1], done[2]}
end
if phone ~= '' and redis.call('SCARD', phone_sessions) >= phone_cap then
  return {'err', 'phone_limit'}
end

local chosen = false
if requested ~= '' then
  if redis.call('SISMEMBER', proxies, requested) == 0 then
    return {'err', 'unknown_proxy'}
  end
  if redis.call('GET', requested_status) ~= ACTIVE then
    return {'err', 'proxy_bad'}
  end
  if tonumber(redis.call('GET', requested_count) or '0') >= cap then
    return {'err', 'proxy_full'}
  end
  chosen = requested
else
  local sticky = false
  if phone ~= '' then
    sticky = redis.call('GET', phone_proxy)
  end
  if sticky and redis.call('SISMEMBER', proxies, sticky) == 1
      and redis.call('GET', fill(FORMAT.proxy_status, sticky)) == ACTIVE then
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

-- The id is drawn here, so its keys come from the format, not from KEYS.
local id = 'worker_' .. redis.call('INCR', seq)
attach(id, chosen)
redis.call('SADD', sessions, id)
index_session(id)
redis.call('SET', fill(FORMAT.session, id, 'status'), 'pending')
redis.call('SET', fill(FORMAT.session, id, 'created'), now)
redis.call('SET', fill(FORMAT.session, id, 'lastPing'), now)
if phone ~= '' then
  redis.call('SET', fill(FORMAT.session, id, 'phone'), phone)
  redis.call('SADD', phone_sessions, id)
end
local previous = redis.call('HGET', owners, id)
if previous then
  redis.call('ZREM', fill(FORMAT.owner_sessions, previous), id)
end
if owner ~= '' then
  redis.call('HSET', owners, id, owner)
  redis.call('ZADD', owned, order_score(id), id)
else
  redis.call('HDEL', owners, id)
end
redis.call('HSET', receipt, 'id', id, 'proxy', chosen)
redis.call('PEXPIRE', receipt, 60000)
return {'ok', id, chosen}
