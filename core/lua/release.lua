-- Delete a session's record and give its proxy slot back. The phone's sticky proxy stays:
-- the next session of the same phone must come out of the same IP.
-- KEYS: sessions set, session:<id>:proxy, session:<id>:phone, then every session key to
-- delete (its fields and its event stream). ARGV: id
local sessions, proxy_key, phone_key = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]
if redis.call('SREM', sessions, id) == 0 then
  return 0
end
unindex_session(id)
detach(id, redis.call('GET', proxy_key))
local phone = redis.call('GET', phone_key)
if phone then
  redis.call('SREM', fill(FORMAT.phone_sessions, phone), id)
  if redis.call('GET', fill(FORMAT.phone_session, phone)) == id then
    redis.call('DEL', fill(FORMAT.phone_session, phone))
  end
end
redis.call('DEL', unpack(KEYS, 4))
return 1
