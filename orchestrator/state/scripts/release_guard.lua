--[[ release_guard.lua: KEYS: active key, queued key, events stream, overlaps metric hash. ARGV: the run that ended, metric field. Frees the guard if that run held it and puts the held event (if any) back on the stream.
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local held = redis.call('GET', KEYS[2])
if not held then return 1 end
redis.call('XADD', KEYS[3], '*', 'e', held)
redis.call('DEL', KEYS[2])
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
return 2
