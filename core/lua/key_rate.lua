-- One request against a key's token bucket, atomically (every replica shares the bucket).
-- The bucket holds up to `burst` tokens and gains `rate` a second; a request takes one.
-- Time is the server's (TIME), so replicas with skewed clocks agree.
-- KEYS: the bucket (hash tokens, at)
-- ARGV: rate per second, burst
-- Returns {1, 0} when allowed, {0, ms until a token is there} when not.
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then
  tokens, at = burst, now
end
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
-- A full bucket needs no memory: it is gone once it would have refilled.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
