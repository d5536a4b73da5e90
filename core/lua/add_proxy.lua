-- Add a proxy to the pool; an existing proxy keeps its status and count. Returns 1 when it
-- was new. A script (not a transaction of SETs) because the load index needs the status and
-- count that end up stored. KEYS: proxies set, proxy:<url>:status, proxy:<url>:sessions.
-- ARGV: url
local proxies, status_key, count_key = KEYS[1], KEYS[2], KEYS[3]
local url = ARGV[1]
local added = redis.call('SADD', proxies, url)
redis.call('SET', status_key, ACTIVE, 'NX')
redis.call('SET', count_key, 0, 'NX')
reload_load(url)
return added
