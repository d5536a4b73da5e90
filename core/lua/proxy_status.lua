-- Set a pooled proxy's status; returns 1 when it changed (callers alert once per change),
-- 0 when unchanged or the proxy is not in the pool (a removed proxy stays removed).
-- KEYS: proxies set, proxy:<url>:status. ARGV: url, status
local proxies, status_key = KEYS[1], KEYS[2]
local url, status = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', proxies, url) == 0 then
  return 0
end
local old = redis.call('GETSET', status_key, status)
reload_load(url)
if old == status then
  return 0
end
return 1
