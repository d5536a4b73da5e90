-- Put up to ARGV[2] dead letters (oldest first) back on the stream, after what is already
-- waiting, with their own event ids so a receiver that did get one can drop the repeat.
-- Bounded, so one call never blocks Redis for long; the caller repeats for the rest.
-- KEYS: dead-letter list, operator stream, the index of sessions with a stream
-- ARGV: session id, how many at most
local dead, stream, index = KEYS[1], KEYS[2], KEYS[3]
local letters = redis.call('LRANGE', dead, 0, tonumber(ARGV[2]) - 1)
for _, raw in ipairs(letters) do
  local e = cjson.decode(raw)
  redis.call('XADD', stream, '*', 'id', e.id, 'type', e.type, 'data', e.data, 'at', e.at)
end
redis.call('LTRIM', dead, #letters, -1)
if #letters > 0 then
  redis.call('SADD', index, ARGV[1])
end
return {#letters, redis.call('LLEN', dead)}
