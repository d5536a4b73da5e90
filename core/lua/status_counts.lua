-- How many sessions have each status, counted where the data is: at 10,000 sessions
-- sending every status to the client costs more in redis-py's parsing than counting them
-- here (a few ms). Exact at the moment it runs, unlike counters that writes would have to
-- keep. A session without a status is not counted (``Store.list_sessions`` leaves it out).
-- KEYS: sessions set. Returns {status, count, status, count, ...}.
local counts, found = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local status = redis.call('GET', fill(FORMAT.session, id, 'status'))
  if status then
    if not counts[status] then
      counts[status] = 0
      found[#found + 1] = status
    end
    counts[status] = counts[status] + 1
  end
end
local out = {}
for _, status in ipairs(found) do
  out[#out + 1] = status
  out[#out + 1] = counts[status]
end
return out
