-- Extend a lease (the leader's, a lock's) only if the caller still holds it: a holder that
-- lost it (frozen past its expiry, another won since) must not take it back.
-- KEYS: the lease. ARGV: the holder's value, lease ms. Returns 1 renewed, 0 not held.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
