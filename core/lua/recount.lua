-- Make every proxy counter equal to the sessions that really use it (reconcile, restore):
-- members whose session is gone are dropped first.
local fixed = 0
for _, url in ipairs(redis.call('SMEMBERS', 'wafleet:proxies')) do
  local members = 'proxy:' .. url .. ':members'
  for _, id in ipairs(redis.call('SMEMBERS', members)) do
    if redis.call('SISMEMBER', 'wafleet:sessions', id) == 0
        or redis.call('GET', 'session:' .. id .. ':proxy') ~= url then
      redis.call('SREM', members, id)
    end
  end
  local real = redis.call('SCARD', members)
  if count_of(url) ~= real then
    redis.call('SET', 'proxy:' .. url .. ':sessions', real)
    fixed = fixed + 1
  end
end
return fixed
