--[[ publish.lua: append events to the stream unless their (source, id) was accepted within the window.

KEYS[1]    the events stream
KEYS[2]    the metrics hash of orch_events_received_total
KEYS[3..]  one dedup key per event, in the order of the events
ARGV[1]    dedup window in seconds
ARGV[2]    the trigger label of these events (e.g. "custom")
ARGV[3..]  one JSON CloudEvent per event

Returns, per event, the new stream entry id, or "=" before the entry id of the earlier event with the same
(source, id) (see lib/publish_one.lua). The dedup keys are read with one MGET, not one GET per event (a
third of the script's time per event); an event repeated within the call is a duplicate of its first.
`unpack` bounds the keys of one call (about 8,000 in Redis' Lua): callers send at most 500 events a call.
]]
--@include publish_one
if #KEYS < 3 then return {} end  -- MGET needs a key
local seen = redis.call('MGET', unpack(KEYS, 3))
local fresh = {}
local accepted = 0
local out = {}
for i = 3, #KEYS do
  local key = KEYS[i]
  local prior = fresh[key] or seen[i - 2]
  local entry = publish_one(KEYS[1], key, ARGV[1], ARGV[i], prior)
  if not prior then
    fresh[key] = entry
    accepted = accepted + 1
  end
  out[i - 2] = entry
end
local duplicates = #KEYS - 2 - accepted
if accepted > 0 then redis.call('HINCRBY', KEYS[2], ARGV[2] .. '\31accepted', accepted) end
if duplicates > 0 then redis.call('HINCRBY', KEYS[2], ARGV[2] .. '\31duplicate', duplicates) end
return out
