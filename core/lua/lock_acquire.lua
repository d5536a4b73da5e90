-- Take a cross-replica lock, fenced for the leader's own work: with a leader value given,
-- the lock is refused (-1) unless that value is still the leader's, so a leader that lost
-- its lease (frozen, cut off) cannot start acting on a session again.
-- KEYS: the lock, leader. ARGV: the holder's token, ttl ms, leader value or ''.
-- Returns 1 taken, 0 held by another, -1 stale leader.
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return -1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
