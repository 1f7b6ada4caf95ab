--[[ next_queued.lua: KEYS: a workflow's running set, its queued zset, the results stream. ARGV: the run that ended, the run key prefix, now (s). If that run held a slot, give it to the oldest run still queued: a `start` control record.
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
