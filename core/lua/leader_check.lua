-- The fence: is this fencing token still the leader's? KEYS: leader. ARGV: "<token> <id>".
-- Returns 1 when current, 0 when stale (a newer leader, or the lease expired).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
return 0
