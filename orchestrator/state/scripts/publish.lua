--[[ publish.lua: append events to the stream unless their (source, id) was accepted within the window.

KEYS[1]    the events stream
KEYS[2]    the metrics hash of orch_events_received_total
KEYS[3..]  one dedup key per event, in the order of the events
ARGV[1]    dedup window in seconds
ARGV[2]    the trigger label of these events (e.g. "custom")
ARGV[3..]  one JSON CloudEvent per event

Returns, per event, the new stream entry id, or "=" .. the entry id of the earlier event with the same
(source, id) (see lib/publish_one.lua).
]]
--@include publish_one
local accepted, duplicates = 0, 0
local out = {}
for i = 3, #ARGV do
  local entry = publish_one(KEYS[1], KEYS[i], ARGV[1], ARGV[i])
  out[#out + 1] = entry
  if string.sub(entry, 1, 1) == '=' then duplicates = duplicates + 1 else accepted = accepted + 1 end
end
if accepted > 0 then redis.call('HINCRBY', KEYS[2], ARGV[2] .. '\31accepted', accepted) end
if duplicates > 0 then redis.call('HINCRBY', KEYS[2], ARGV[2] .. '\31duplicate', duplicates) end
return out
