--[[ lib/flow_hold.lua (included, not run on its own): releasing one hold of a hold-back control, shared
by flow_decide.lua (a batch that fills) and flow_release.lua (holds that came due).

A hold is <prefix><id> (hash: rule, kind, key, state, first_ms, due_ms, why, n, bytes, depth) with the
events it holds, as stored, in <prefix><id>:events and their stream entry ids in <prefix><id>:entries.

FUNCTION flow_release_hold(prefix, id, due, results, metric, reason, now_ms)
  prefix    the hold key prefix, <p>:flow:hold:
  id        the hold
  due       the due holds zset, <p>:flow:due
  results   the results stream: the hold goes there as one entry, fields `h` (JSON: hold, rule, kind,
            key, reason, first_ms, due_ms, released_ms, depth, entries) and `e` (the events as stored,
            joined into one JSON array without being decoded, so no number changes on the way)
  metric    the metrics hash of orch_flow_holds_released_total (field rule, kind, reason)
  reason    why it goes now (full, bound), or false for the reason the hold keeps (quiet, max_wait, ...)
  now_ms    now, epoch ms
Returns 1 when the hold was released, 0 when it no longer exists. Its key state is updated: a debounce or
batch key forgets it as its open hold, a throttle key counts one held event less.
]]
local function flow_release_hold(prefix, id, due, results, metric, reason, now_ms)
  local hk = prefix .. id
  redis.call('ZREM', due, id)
  local flat = redis.call('HGETALL', hk)
  if #flat == 0 then return 0 end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  local why = reason or h['why'] or 'due'
  local events = redis.call('LRANGE', hk .. ':events', 0, -1)
  local entries = redis.call('LRANGE', hk .. ':entries', 0, -1)
  local meta = cjson.encode({hold = id, rule = h['rule'], kind = h['kind'], key = h['key'], reason = why,
                             first_ms = tonumber(h['first_ms']), due_ms = tonumber(h['due_ms']),
                             released_ms = now_ms, depth = tonumber(h['depth']), entries = entries})
  redis.call('XADD', results, '*', 'h', meta, 'e', '[' .. table.concat(events, ',') .. ']')
  redis.call('DEL', hk, hk .. ':events', hk .. ':entries')
  if h['kind'] == 'throttle' then
    if redis.call('HINCRBY', h['state'], 'pending', -1) <= 0 then
      redis.call('HDEL', h['state'], 'pending')
      local tat_ms = (tonumber(redis.call('HGET', h['state'], 'tat')) or 0) / 1000
      redis.call('PEXPIRE', h['state'], math.max(0, math.ceil(tat_ms - now_ms)) + 1000)
    end
  elseif redis.call('GET', h['state']) == id then
    redis.call('DEL', h['state'])
  end
  redis.call('HINCRBY', metric, h['rule'] .. '\031' .. h['kind'] .. '\031' .. why, 1)
  return 1
end
