-- promote(held, waiting, results, limit, run_prefix, now_s, until_ms): while the pool has fewer holders than
-- `limit`, the first run in line whose run is still `queued` joins the holders with a lease until `until_ms`
-- and a `start` control record for it goes on the results stream; entries whose run is no longer queued
-- (cancelled, expired) are dropped on the way. Returns the number of runs that got a slot.
local function promote(held, waiting, results, limit, run_prefix, now_s, until_ms)
  local started = 0
  while redis.call('ZCARD', held) < limit do
    local first = redis.call('ZPOPMIN', waiting)
    if #first == 0 then break end
    local ok, run = pcall(cjson.decode, redis.call('HGET', run_prefix .. first[1], 'meta') or '')
    if ok and type(run) == 'table' and run['status'] == 'queued' then
      redis.call('ZADD', held, until_ms, first[1])
      redis.call('XADD', results, '*', 'c', cjson.encode({action = 'start', run = first[1], at_s = now_s,
                                                          by = 'engine'}))
      started = started + 1
    end
  end
  return started
end

-- forget_if_empty(held, waiting, index, pool): the pool leaves the index once nobody holds or waits.
local function forget_if_empty(held, waiting, index, pool)
  if redis.call('EXISTS', held) == 0 and redis.call('EXISTS', waiting) == 0 then
    redis.call('HDEL', index, pool)
  end
end
