--[[ lib/publish_one.lua (included, not run on its own): the one publish step, shared by publish.lua
and fire_tick.lua so that dedup and XADD are written once.

FUNCTION publish_one(stream, dedup, window_s, payload, seen)
  stream    the events stream key
  dedup     the event's dedup key <p>:dedup:<digest of (source, id)>
  window_s  how long the (source, id) pair is remembered, seconds
  payload   the JSON CloudEvent
  seen      the dedup key's value, read by the caller (GET, or one MGET for a batch), or false
Returns the new entry id, or "=" .. the entry id of the earlier event with the same (source, id). The
dedup key is written with its entry, so a crash can never leave a key that would turn a retry into a
lost event.
]]
local function publish_one(stream, dedup, window_s, payload, seen)
  if seen then return '=' .. seen end
  local entry = redis.call('XADD', stream, '*', 'e', payload)
  redis.call('SET', dedup, entry, 'EX', window_s)
  return entry
end
