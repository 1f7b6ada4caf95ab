--[[ next_queued.lua: a run of a workflow with a concurrency limit ended; give its slot to the oldest
run still waiting.

KEYS[1]  the workflow's running set, <p>:workflow:<name>:running
KEYS[2]  its queued zset, <p>:workflow:<name>:queued (score: created, ms)
KEYS[3]  the results stream
ARGV[1]  the run that ended
ARGV[2]  the run key prefix, <p>:run:
ARGV[3]  now, epoch seconds

Returns 1 when a queued run got the slot (it joins the running set, and a `start` control record for it
goes on the results stream, for the engine to start it), else 0 (the run held no slot, or none waits).
Queued entries whose run is no longer `queued` (cancelled, expired) are dropped on the way.
]]
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
while true do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then return 0 end
  local meta = redis.call('HGET', ARGV[2] .. oldest[1], 'meta')
  if meta and cjson.decode(meta)['status'] == 'queued' then
    redis.call('SADD', KEYS[1], oldest[1])
    redis.call('XADD', KEYS[3], '*', 'c', cjson.encode({action = 'start', run = oldest[1], at_s = tonumber(ARGV[3]),
                                                        by = 'engine'}))
    return 1
  end
end
