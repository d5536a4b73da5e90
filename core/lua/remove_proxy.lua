-- Remove a proxy from the pool unless a session still uses it.
-- KEYS: proxies set, proxy:<url>: status, sessions, members. ARGV: url.
-- Returns 1 removed, 0 unknown, -n in use by n sessions.
local proxies, status_key, count_key, members = unpack(KEYS, 1, 4)
local url = ARGV[1]
if redis.call('SISMEMBER', proxies, url) == 0 then
  return 0
end
local n = redis.call('SCARD', members)
if n > 0 then
  return -n
end
redis.call('SREM', proxies, url)
redis.call('DEL', status_key, count_key, members)
reload_load(url)
return 1
