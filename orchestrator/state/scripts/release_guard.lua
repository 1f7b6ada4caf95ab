--[[ release_guard.lua: a guarded run ended; free its schedule's overlap guard and put the event
held by overlap queue-one (if any) back on the events stream.

KEYS[1]  the guard's active key, <p>:schedule:<guard>:active
KEYS[2]  its queued key, <p>:schedule:<guard>:queued
KEYS[3]  the events stream
KEYS[4]  the metrics hash of orch_schedule_overlaps_total
ARGV[1]  the run that ended
ARGV[2]  the metric field to count a released event under

Returns 0 when that run did not hold the guard, 1 when it was freed, 2 when a held event went back.
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local held = redis.call('GET', KEYS[2])
if not held then return 1 end
redis.call('XADD', KEYS[3], '*', 'e', held)
redis.call('DEL', KEYS[2])
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
return 2
