--[[ ack_settled.lua: acknowledge events that concern nobody (announcements no rule listens to, events no
rule is a candidate for), in one call instead of the engine's whole commit, unless the commit would do more:
the rule-set version is no longer the one they were planned under, or a step waits for their type.

KEYS[1]    the rule-set version key, <p>:ruleset
KEYS[2]    the events stream
KEYS[3..]  the waiters of each of their types, <p>:waits:<type>
ARGV[1]    the rule-set version they were planned under
ARGV[2]    the engine's consumer group
ARGV[3..]  their entry ids

Returns the number acknowledged, or -1 when nothing was done (the engine commits them the whole way).
]]
local version = redis.call('GET', KEYS[1])
if version and version ~= ARGV[1] then return -1 end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -1 end
end
local acked = 0
for first = 3, #ARGV, 1000 do  -- in chunks: unpack has a stack limit (about 8,000 values)
  acked = acked + redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return acked
