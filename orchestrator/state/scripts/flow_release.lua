--[[ flow_release.lua: release the holds of hold-back controls that came due (debounce quiet or at its
max wait, batch timeout, a throttled event's start), each as one entry on the results stream, for the
engine to start its run. Any engine may call it at any time: each hold is released once.

KEYS[1]  the due holds, <p>:flow:due (zset: hold id -> due ms)
KEYS[2]  the results stream
KEYS[3]  the metrics hash of orch_flow_holds_released_total
ARGV[1]  now, epoch ms
ARGV[2]  most holds to release in this call
ARGV[3]  the hold key prefix, <p>:flow:hold:

Returns the number of holds released. Due holds go in due order (ties: the older hold first, ids are
zero-padded counters), so a throttled key's events start in the order they came.
]]
--@include flow_hold
local now_ms = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[2]))
local released = 0
for _, id in ipairs(due) do
  released = released + flow_release_hold(ARGV[3], id, KEYS[1], KEYS[2], KEYS[3], false, now_ms)
end
return released
