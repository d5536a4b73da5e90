-- Shared helpers, prepended to every script (Redis scripts cannot import).
local function count_of(url)
  return tonumber(redis.call('GET', 'proxy:' .. url .. ':sessions') or '0')
end

local function usable(url, cap)
  return redis.call('SISMEMBER', 'wafleet:proxies', url) == 1
    and redis.call('GET', 'proxy:' .. url .. ':status') == 'active'
    and count_of(url) < cap
end

-- The active proxy with the fewest sessions under the cap; ties go to the smallest URL
-- so the choice is deterministic.
local function least_loaded(cap, exclude)
  local best, best_count = false, nil
  local urls = redis.call('SMEMBERS', 'wafleet:proxies')
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
  if redis.call('SADD', 'proxy:' .. url .. ':members', id) == 1 then
    redis.call('INCR', 'proxy:' .. url .. ':sessions')
  end
  redis.call('SET', 'session:' .. id .. ':proxy', url)
end

local function detach(id, url)
  if url and redis.call('SREM', 'proxy:' .. url .. ':members', id) == 1 then
    redis.call('DECR', 'proxy:' .. url .. ':sessions')
  end
end

-- Move a session's slot to ``new`` and its phone's sticky proxy with it (Flow 4, step 6).
local function move(id, old, new)
  detach(id, old)
  attach(id, new)
  local phone = redis.call('GET', 'session:' .. id .. ':phone')
  if phone and redis.call('EXISTS', 'phone:' .. phone .. ':proxy') == 1 then
    redis.call('SET', 'phone:' .. phone .. ':proxy', new)
  end
end
