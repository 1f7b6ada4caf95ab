--[[ fire_tick.lua: decide one cron tick, once across every replica, and publish it in the same step.

KEYS[1]  the events stream
KEYS[2]  the tick key <p>:schedule:<name>:tick:<ms> (the fencing token)
KEYS[3]  the schedule's last-decided key <p>:schedule:<name>:last (epoch ms)
KEYS[4]  the event's dedup key
KEYS[5]  metrics hash orch_schedule_ticks_total
KEYS[6]  metrics hash orch_events_received_total
ARGV[1]  tick, epoch ms
ARGV[2]  tick key TTL, seconds
ARGV[3]  dedup window, seconds
ARGV[4]  this replica's name (kept in the tick key)
ARGV[5]  schedule name (metric label)
ARGV[6]  result label: 'fired', 'caught_up' or 'missed' ('missed' publishes nothing)
ARGV[7]  ticks missed before this one (counted as missed)
ARGV[8]  the JSON CloudEvent (unused when missed)

Returns {1, entry id} when this call decided the tick, {0, 'taken'} when another replica did, and
{0, 'stale'} when a newer tick was already decided: a replica that was paused or partitioned can never
fire a tick that is older than what the schedule has done since. The event goes out through the same
publish step as every other event (lib/publish_one.lua).
]]
--@include publish_one
local tick = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[3]) or '-1')
if tick <= last then return {0, 'stale'} end
if not redis.call('SET', KEYS[2], ARGV[4], 'NX', 'EX', ARGV[2]) then return {0, 'taken'} end
redis.call('SET', KEYS[3], ARGV[1])
local missed = tonumber(ARGV[7])
if missed > 0 then redis.call('HINCRBY', KEYS[5], ARGV[5] .. '\31missed', missed) end
redis.call('HINCRBY', KEYS[5], ARGV[5] .. '\31' .. ARGV[6], 1)
if ARGV[6] == 'missed' then return {1, ''} end
local entry = publish_one(KEYS[1], KEYS[4], ARGV[3], ARGV[8], redis.call('GET', KEYS[4]))
if string.sub(entry, 1, 1) == '=' then
  redis.call('HINCRBY', KEYS[6], 'cron\31duplicate', 1)
  return {1, string.sub(entry, 2)}
end
redis.call('HINCRBY', KEYS[6], 'cron\31accepted', 1)
return {1, entry}
