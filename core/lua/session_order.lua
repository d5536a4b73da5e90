-- Rebuild the session order index from the sessions set when the two disagree: data written
-- before the index existed, or a restore of a snapshot taken then. The scripts that add or
-- remove a session keep both in one step, so in a running fleet this finds them equal and
-- writes nothing. KEYS: sessions set, session order index. Returns 1 when it rebuilt the
-- index (perhaps to empty, when the set is), 0 when the index agreed.
local sessions, order = KEYS[1], KEYS[2]
if redis.call('ZCARD', order) == redis.call('SCARD', sessions) then
  return 0
end
redis.call('DEL', order)
local ids = redis.call('SMEMBERS', sessions)
for _, id in ipairs(ids) do
  redis.call('ZADD', order, order_score(id), id)
end
return 1
