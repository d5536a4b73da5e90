-- A worker polls its command channel: answer every command it has not acknowledged yet
-- (a worker that died mid-send gets it again; the WhatsApp id derived from the message id
-- makes the resend the same message), else hand out the session's next queued message if
-- the operator's limits and the random pause allow it now. One message in flight at a time.
-- KEYS: commands, queue, send log, send state, limits, session:<id>:status,
-- session:<id>:created, deadlines, counts, the fleet's counts.
-- ARGV: now ms, default per minute, default per day, default warm-up days, pause ms,
-- keep ms (how long a finished record is kept).
-- Returns {{message ids}, wait ms}: wait -1 = nothing queued (or stopped), else how long
-- until a limit lets the next one go.
local commands, queue, sent_log, state, limits, status_key, created_key, deadlines, counts,
  fleet_counts = unpack(KEYS, 1, 10)
local now = tonumber(ARGV[1])
local pause, keep = tonumber(ARGV[5]), ARGV[6]
local held = redis.call('LRANGE', commands, 0, -1)
if #held > 0 then
  return {held, 0}
end
local status = redis.call('GET', status_key)
if not status or status == 'stopped' then
  return {{}, -1}
end
local DAY, MINUTE = 86400000, 60000
while true do
  local id = redis.call('LINDEX', queue, 0)
  if not id then
    return {{}, -1}
  end
  local message = fill(FORMAT.message, id)
  local fields = redis.call('HMGET', message, 'status', 'deadline')
  if fields[1] ~= 'queued' then
    redis.call('LPOP', queue)  -- gone or already final: not ours to send
    redis.call('ZREM', deadlines, id)
  elseif tonumber(fields[2]) <= now then
    redis.call('LPOP', queue)
    redis.call('ZREM', deadlines, id)
    redis.call('HSET', message, 'status', 'failed', 'reason', 'expired')
    redis.call('HINCRBY', counts, 'failed', 1)
    redis.call('HINCRBY', fleet_counts, 'failed', 1)
    finish(message, keep)
  else
    break
  end
end
local next_at = tonumber(redis.call('HGET', state, 'nextAt') or '0')
if now < next_at then
  return {{}, next_at - now}
end
local function limit(name, default)
  local value = redis.call('HGET', limits, name)
  return tonumber(value or default)
end
local per_minute, per_day = limit('perMinute', ARGV[2]), limit('perDay', ARGV[3])
local warmup = limit('warmupDays', ARGV[4])
redis.call('ZREMRANGEBYSCORE', sent_log, '-inf', now - DAY)
if per_minute > 0 then
  local recent = redis.call('ZRANGEBYSCORE', sent_log, now - MINUTE + 1, '+inf', 'WITHSCORES')
  if #recent / 2 >= per_minute then
    -- The oldest of the window must leave it first.
    local index = (#recent / 2 - per_minute) * 2 + 2
    return {{}, tonumber(recent[index]) + MINUTE - now}
  end
end
if per_day > 0 then
  local allowed = per_day
  local age_days = math.floor((now - tonumber(redis.call('GET', created_key) or now)) / DAY)
  if warmup > 0 and age_days < warmup then
    -- A new number ramps up: day 0 may send per_day / warmup, day 1 twice that, ...
    allowed = math.max(1, math.floor(per_day * (age_days + 1) / warmup))
  end
  local today = redis.call('ZCARD', sent_log)
  if today >= allowed then
    local oldest = redis.call('ZRANGE', sent_log, today - allowed, today - allowed, 'WITHSCORES')
    return {{}, math.max(1, tonumber(oldest[2]) + DAY - now)}
  end
end
local id = redis.call('LPOP', queue)
redis.call('RPUSH', commands, id)
redis.call('ZREM', deadlines, id)
redis.call('ZADD', sent_log, now, id)
redis.call('HSET', state, 'nextAt', now + pause)
redis.call('HSET', fill(FORMAT.message, id), 'handedAt', now)
return {{id}, 0}
