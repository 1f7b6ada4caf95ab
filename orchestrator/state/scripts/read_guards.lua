--[[ read_guards.lua: read schedule overlap guards, under WATCH, before the engine's MULTI.

KEYS     per guard, its active key then its queued key (<p>:schedule:<guard>:active, ...:queued)
ARGV[1]  the run key prefix, <p>:run:

Returns, per guard, {holder run id or false, the holder's `meta` field or false, 1 if an event is held
else 0}.
]]
local out = {}
for i = 1, #KEYS, 2 do
  local holder = redis.call('GET', KEYS[i])
  local meta = false
  if holder then meta = redis.call('HGET', ARGV[1] .. holder, 'meta') end
  out[#out + 1] = {holder, meta, redis.call('EXISTS', KEYS[i + 1])}
end
return out
