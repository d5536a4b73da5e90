-- Claim a one-off piece of the leader's work (one scheduled backup), fenced: only while the
-- token is the leader's, and only once. KEYS: the claim, leader.
-- ARGV: leader value, claim ttl s. Returns 1 claimed, 0 already claimed, -1 stale leader.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 1
end
return 0
