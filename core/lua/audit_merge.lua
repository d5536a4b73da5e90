-- The last step of merging archived entries into the audit trail: the merged trail was
-- written aside (KEYS[2]) from the live one (KEYS[1]) up to the live id ARGV[1]; entries
-- appended to the live trail since then move over, and the merged trail takes its place.
-- An entry appended meanwhile keeps its id unless that is not above the merged trail's last
-- (an archive from a clock ahead of this one): then it gets a new one, never lost.
local live, aside, last = KEYS[1], KEYS[2], ARGV[1]
local late = redis.call('XRANGE', live, '(' .. last, '+')
for _, entry in ipairs(late) do
  local ok = redis.pcall('XADD', aside, entry[1], unpack(entry[2]))
  if type(ok) == 'table' and ok.err then
    redis.call('XADD', aside, '*', unpack(entry[2]))
  end
end
redis.call('RENAME', aside, live)
return #late
