-- Accept one message for a session (POST /api/sessions/:id/messages), at most once per
-- idempotency key: the key, the record and the queue entry are written together or not at all.
-- KEYS: idempotency key, message hash, session's queue, deadlines, session:<id>:status,
-- the session's logged-out mark, session's counts, the fleet's counts, the session's index
-- of message ids.
-- ARGV: message id, session id, to, text, now ms, deadline ms, has key ('1'/'0'), keep ms,
-- the idempotency key ('' for none), media id ('' for a text), then the media record's
-- field, value, ... (written with the message, so neither is ever there without the other).
-- Returns {id, 'new' | 'existing' | 'no_session'}.
local idem, message, queue, deadlines, status_key, logged_out, counts, fleet_counts, index =
  unpack(KEYS, 1, 9)
local id, session, to, text, now, deadline, has_key, keep, key, media = unpack(ARGV, 1, 10)
if has_key == '1' then
  local existing = redis.call('GET', idem)
  if existing then
    return {existing, 'existing'}
  end
end
local status = redis.call('GET', status_key)
if not status then
  return {'', 'no_session'}
end
redis.call('HSET', message, 'id', id, 'session', session, 'to', to, 'text', text,
  'created', now, 'deadline', deadline, 'status', 'queued')
if media and media ~= '' then
  redis.call('HSET', fill(FORMAT.media, media), unpack(ARGV, 11))
  redis.call('HSET', message, 'media', media)
end
-- Indexed so a delete of the session finds it; an id older than a queued message's life plus
-- a finished record's keep is gone (its record expired), so it leaves the index.
redis.call('ZADD', index, now, id)
redis.call('ZREMRANGEBYSCORE', index, '-inf', now - keep - (deadline - now))
if redis.call('EXISTS', logged_out) == 1 then
  -- Logged out: nothing will send it until someone links the phone again.
  redis.call('HSET', message, 'status', 'failed', 'reason', 'logged_out')
  redis.call('HINCRBY', counts, 'failed', 1)
  redis.call('HINCRBY', fleet_counts, 'failed', 1)
  finish(message, keep)
else
  redis.call('RPUSH', queue, id)
  redis.call('ZADD', deadlines, deadline, id)
end
if has_key == '1' then
  redis.call('SET', idem, id, 'PX', keep)
  redis.call('HSET', message, 'idemKey', key)
end
return {id, 'new'}
