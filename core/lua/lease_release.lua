-- Give a lease back (a clean stop, a lock's end), only if the caller still holds it.
-- KEYS: the lease. ARGV: the holder's value. Returns 1 released, 0 not held.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
