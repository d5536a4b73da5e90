-- The watchdog's first cut, made where the data is: the sessions whose last ping (or, with
-- none, whose creation) is older than the cutoff, with what the pass needs to judge them.
-- Everything else pinged recently and cannot be stale, so at 10,000 healthy sessions the
-- client reads nothing but this script's empty answer instead of 40,000 values.
-- KEYS: sessions set. ARGV: cutoff ms (now - ping timeout).
-- Returns {id, status, reason, lastPing, created, ...} ('' for a missing value).
local cutoff = tonumber(ARGV[1])
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local last = tonumber(redis.call('GET', fill(FORMAT.session, id, 'lastPing')) or '')
  if not last or last == 0 or last < cutoff then
    local status = redis.call('GET', fill(FORMAT.session, id, 'status'))
    if status then
      out[#out + 1] = id
      out[#out + 1] = status
      out[#out + 1] = redis.call('GET', fill(FORMAT.session, id, 'reason')) or ''
      out[#out + 1] = redis.call('GET', fill(FORMAT.session, id, 'lastPing')) or ''
      out[#out + 1] = redis.call('GET', fill(FORMAT.session, id, 'created')) or ''
    end
  end
end
return out
