-- A session's device linked: record the phone and write the sticky keys
-- from the proxy the session holds *now*, for a session that still exists.
-- KEYS: sessions set; session:<id>: phone, status, connectedAt, proxy, then the fields to
-- clear (qr, qrExpires, reason, pairingCode); phone:<phone>: sessions, proxy, session.
-- ARGV: id, phone, now ms. Returns false (gone), '' (as provisioned) or the phone the
-- session was provisioned for when another one linked.
local sessions, phone_key, status_key, connected_at_key, proxy_key = unpack(KEYS, 1, 5)
local stale = {unpack(KEYS, 6, 9)}
local phone_sessions, phone_proxy, phone_session = unpack(KEYS, 10, 12)
local id, phone, now = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SISMEMBER', sessions, id) == 0 then
  return false
end
local previous = redis.call('GET', phone_key)
if previous and previous ~= phone then
  redis.call('SREM', fill(FORMAT.phone_sessions, previous), id)
end
redis.call('SET', phone_key, phone)
redis.call('SADD', phone_sessions, id)
redis.call('SET', status_key, 'connected')
redis.call('SET', connected_at_key, now)
redis.call('DEL', unpack(stale))
local proxy = redis.call('GET', proxy_key)
if proxy then
  redis.call('SET', phone_proxy, proxy)
end
redis.call('SET', phone_session, id)
if previous and previous ~= phone then
  return previous
end
return ''
