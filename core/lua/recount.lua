-- Make every proxy counter equal to the sessions that really use it (reconcile, restore):
-- members whose session is gone are dropped first. The proxy load index is built again
-- from the repaired counts.
-- KEYS: proxies set, sessions set (every other key is named by a URL or id read here).
local proxies, sessions = KEYS[1], KEYS[2]
local fixed = 0
for _, url in ipairs(redis.call('SMEMBERS', proxies)) do
  local members = fill(FORMAT.proxy_members, url)
  for _, id in ipairs(redis.call('SMEMBERS', members)) do
    if redis.call('SISMEMBER', sessions, id) == 0
        or redis.call('GET', fill(FORMAT.session, id, 'proxy')) ~= url then
      redis.call('SREM', members, id)
    end
  end
  local real = redis.call('SCARD', members)
  if count_of(url) ~= real then
    redis.call('SET', fill(FORMAT.proxy_sessions, url), real)
    fixed = fixed + 1
  end
end
rebuild_load()
return fixed
