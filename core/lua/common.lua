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

-- The active proxy with the fewest sessions under the cap; ties go to the smallest URL
-- so the choice is deterministic.
local function least_loaded(cap, exclude)
  local best, best_count = false, nil
  local urls = redis.call('SMEMBERS', FORMAT.proxies)
  table.sort(urls)
  for _, url in ipairs(urls) do
    if url ~= exclude and usable(url, cap) then
      local n = count_of(url)
      if best_count == nil or n < best_count then
        best, best_count = url, n
      end
    end
  end
  return best
end

local function attach(id, url)
  if redis.call('SADD', fill(FORMAT.proxy_members, url), id) == 1 then
    redis.call('INCR', fill(FORMAT.proxy_sessions, url))
  end
  redis.call('SET', fill(FORMAT.session, id, 'proxy'), url)
end

local function detach(id, url)
  if url and redis.call('SREM', fill(FORMAT.proxy_members, url), id) == 1 then
    redis.call('DECR', fill(FORMAT.proxy_sessions, url))
  end
end

-- Move a session's slot to ``new`` and its phone's sticky proxy with it (Flow 4, step 6).
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
