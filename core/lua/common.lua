-- Shared helpers, prepended to every script (Redis scripts cannot import), after the
-- ``FORMAT`` table of key formats and the ``ACTIVE`` status that core/store.py writes from
-- core/keys.py and core/models.py. A script takes the keys it can name before it runs in
-- KEYS[]; these helpers build only the keys of values read inside the script (the
-- least-loaded proxy, a session's phone or current proxy).

-- ``fill(FORMAT.session, id, 'proxy')``: each ``{name}`` placeholder in turn gets the next
-- value, searched only after the values already put in, so a value may hold braces.
local function fill(format, ...)
  local out, from = format, 1
  for _, value in ipairs({...}) do
    local first, last = string.find(out, '{%a+}', from)
    out = string.sub(out, 1, first - 1) .. value .. string.sub(out, last + 1)
    from = first + #value
  end
  return out
end

local function count_of(url)
  return tonumber(redis.call('GET', fill(FORMAT.proxy_sessions, url)) or '0')
end

local function usable(url, cap)
  return redis.call('SISMEMBER', FORMAT.proxies, url) == 1
    and redis.call('GET', fill(FORMAT.proxy_status, url)) == ACTIVE
    and count_of(url) < cap
end

-- The proxy load index (``FORMAT.proxy_load``): every pooled active proxy scored by its
-- count. Called after anything that changes a proxy's count, status or pool membership.
local function reload_load(url)
  if redis.call('SISMEMBER', FORMAT.proxies, url) == 1
      and redis.call('GET', fill(FORMAT.proxy_status, url)) == ACTIVE then
    redis.call('ZADD', FORMAT.proxy_load, count_of(url), url)
  else
    redis.call('ZREM', FORMAT.proxy_load, url)
  end
end

-- The index from scratch: for data written before it existed (or a snapshot of such data),
-- and by recount.lua, which repairs the counts it is scored by.
local function rebuild_load()
  redis.call('DEL', FORMAT.proxy_load)
  for _, url in ipairs(redis.call('SMEMBERS', FORMAT.proxies)) do
    reload_load(url)
  end
end

-- The active proxy with the fewest sessions under the cap; ties go to the smallest URL
-- (byte order) so the choice is deterministic. The lowest two of the load index: one of
-- them is not ``exclude``. The one picked is checked against its own keys; one that does
-- not match (a status or count written around the scripts) is put right and the search
-- goes on. An absent index with proxies in the pool is built first (older data; with no
-- active proxy that is every time, as cheap as the scan it replaced).
local function least_loaded(cap, exclude)
  if redis.call('EXISTS', FORMAT.proxy_load) == 0 then
    rebuild_load()
  end
  while true do
    local lowest = redis.call(
      'ZRANGEBYSCORE', FORMAT.proxy_load, '-inf', '(' .. cap, 'WITHSCORES', 'LIMIT', 0, 2)
    local candidate = false
    for i = 1, #lowest, 2 do
      if not candidate and lowest[i] ~= exclude then
        candidate = lowest[i]
        if usable(candidate, cap) and count_of(candidate) == tonumber(lowest[i + 1]) then
          return candidate
        end
      end
    end
    if not candidate then
      return false
    end
    reload_load(candidate) -- it was wrong: now right (or gone), so the loop ends
  end
end

local function attach(id, url)
  if redis.call('SADD', fill(FORMAT.proxy_members, url), id) == 1 then
    redis.call('INCR', fill(FORMAT.proxy_sessions, url))
    reload_load(url)
  end
  redis.call('SET', fill(FORMAT.session, id, 'proxy'), url)
end

local function detach(id, url)
  if url and redis.call('SREM', fill(FORMAT.proxy_members, url), id) == 1 then
    redis.call('DECR', fill(FORMAT.proxy_sessions, url))
    reload_load(url)
  end
end

-- Move a session's slot to ``new`` and its phone's sticky proxy with it (a failover).
local function move(id, old, new)
  detach(id, old)
  attach(id, new)
  local phone = redis.call('GET', fill(FORMAT.session, id, 'phone'))
  if phone and redis.call('EXISTS', fill(FORMAT.phone_proxy, phone)) == 1 then
    redis.call('SET', fill(FORMAT.phone_proxy, phone), new)
  end
end

-- The session order index (``FORMAT.session_order``): an id's score is its number, as
-- core/store.py's ``id_order`` sorts (``worker_2`` before ``worker_10``; an id without one
-- after every numbered id). The digits go to Redis as they are: a Lua number would print
-- 15 digits and more as 1e+14.
local UNNUMBERED = '4611686018427387904' -- 2^62, exact as a double

local function order_score(id)
  return string.match(id, '_(%d+)$') or string.match(id, '^(%d+)$') or UNNUMBERED
end

local function index_session(id)
  redis.call('ZADD', FORMAT.session_order, order_score(id), id)
end

local function unindex_session(id)
  redis.call('ZREM', FORMAT.session_order, id)
end

-- A message is final (sent, failed): its record, and its media record if it carries one, are
-- kept ``keep`` ms more, together, so a file lives exactly as long as the message naming it.
local function finish(message, keep)
  redis.call('PEXPIRE', message, keep)
  local media = redis.call('HGET', message, 'media')
  if media then
    redis.call('PEXPIRE', fill(FORMAT.media, media), keep)
  end
end
