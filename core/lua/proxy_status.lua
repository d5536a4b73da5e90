-- Set a pooled proxy's status; returns 1 when it changed (callers alert once per change),
-- 0 when unchanged or the proxy is not in the pool (a removed proxy stays removed).
-- ARGV: url, status
local url, status = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', 'wafleet:proxies', url) == 0 then
  return 0
end
local old = redis.call('GETSET', 'proxy:' .. url .. ':status', status)
if old == status then
  return 0
end
return 1
