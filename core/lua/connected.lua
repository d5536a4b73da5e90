-- A session's device linked (Flow 1, step 8): record the phone and write the sticky keys
-- from the proxy the session holds *now*, for a session that still exists.
-- ARGV: id, phone, now ms. Returns false (gone), '' (as provisioned) or the phone the
-- session was provisioned for when another one linked.
local id, phone, now = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SISMEMBER', 'wafleet:sessions', id) == 0 then
  return false
end
local key = 'session:' .. id .. ':'
local previous = redis.call('GET', key .. 'phone')
if previous and previous ~= phone then
  redis.call('SREM', 'phone:' .. previous .. ':sessions', id)
end
redis.call('SET', key .. 'phone', phone)
redis.call('SADD', 'phone:' .. phone .. ':sessions', id)
redis.call('SET', key .. 'status', 'connected')
redis.call('SET', key .. 'connectedAt', now)
redis.call('DEL', key .. 'qr', key .. 'qrExpires', key .. 'reason', key .. 'pairingCode')
local proxy = redis.call('GET', key .. 'proxy')
if proxy then
  redis.call('SET', 'phone:' .. phone .. ':proxy', proxy)
end
redis.call('SET', 'phone:' .. phone .. ':session', id)
if previous and previous ~= phone then
  return previous
end
return ''
