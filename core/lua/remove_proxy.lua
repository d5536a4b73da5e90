-- Remove a proxy from the pool unless a session still uses it.
-- ARGV: url. Returns 1 removed, 0 unknown, -n in use by n sessions.
local url = ARGV[1]
if redis.call('SISMEMBER', 'wafleet:proxies', url) == 0 then
  return 0
end
local n = redis.call('SCARD', 'proxy:' .. url .. ':members')
if n > 0 then
  return -n
end
redis.call('SREM', 'wafleet:proxies', url)
redis.call('DEL', 'proxy:' .. url .. ':status', 'proxy:' .. url .. ':sessions',
  'proxy:' .. url .. ':members')
return 1
