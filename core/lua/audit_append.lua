-- Append one audit entry, trimming the trail exactly to the retention (MINID without `~`:
-- only what is past it goes, and nothing older stays). Past `limit` refused entries in a
-- minute for one actor, the first over it is a `flood` entry and the rest only count in it
-- (a guessing loop cannot fill the trail, and the count still says how hard it tried).
-- KEYS: the stream, the actor's refused counter for this minute, the minute's flood entry id
-- ARGV: oldest id kept (MINID), refused ('1'/'0'), limit, count key prefix, retention ms,
--       then field, value pairs (for a refused entry the last pair is its reason)
-- Returns the id of the entry written or counted in.
local stream, counter, flood = KEYS[1], KEYS[2], KEYS[3]
local minid, refused, limit = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local count_prefix, retention = ARGV[4], tonumber(ARGV[5])
local fields = {}
for i = 6, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
if refused then
  local n = redis.call('INCR', counter)
  if n == 1 then
    redis.call('PEXPIRE', counter, 120000)
  end
  if n > limit then
    local id = redis.call('GET', flood)
    if id then
      redis.call('INCR', count_prefix .. id)
      return id
    end
    fields[#fields] = 'flood'
    id = redis.call('XADD', stream, 'MINID', minid, '*', unpack(fields))
    redis.call('SET', flood, id, 'PX', 120000)
    redis.call('SET', count_prefix .. id, 1, 'PX', retention)
    return id
  end
end
return redis.call('XADD', stream, 'MINID', minid, '*', unpack(fields))
