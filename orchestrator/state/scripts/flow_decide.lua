--[[ flow_decide.lua: decide, once, what a rule's hold-back control does with one event; the engine calls
it while planning, before the transaction that acknowledges the event. The decision is kept (the memo)
for ARGV[3] ms, which that transaction shortens to a while past the commit (flow/decide.py memo_keep_s),
so an event delivered or processed again gets the same answer and is counted, held or merged once. The arithmetic mirrors orchestrator/flow/maths.py.

KEYS[1]  the memo of this (rule, event), <p>:flow:memo:<digest>
KEYS[2]  the key's state, <p>:flow:state:<rule>:<key digest>: throttle, a hash (tat and last start in
         microseconds, pending held events); rate_limit, a list of the admitted times (ms, newest first);
         debounce and batch, the id of the key's open hold
KEYS[3]  the due holds, <p>:flow:due (zset: hold id -> due ms)
KEYS[4]  the hold id counter, <p>:flow:seq
KEYS[5]  the results stream (a hold that fills is released at once)
KEYS[6]  the metrics hash of orch_flow_holds_released_total
KEYS[7]  the run the event starts without the control, <p>:run:<derived id>: when it exists (the event
         was planned and committed under a rule-set version without the control, then processed again
         under this one), the answer is `start`, which finds that run: no second run for the event
ARGV[1]  the control: debounce, batch, throttle or rate_limit
ARGV[2]  now, epoch ms
ARGV[3]  how long the memo lives at most, ms
ARGV[4]  the event as stored (JSON)
ARGV[5]  its events stream entry id
ARGV[6]  its chain depth
ARGV[7]  the rule
ARGV[8]  the key, as text
ARGV[9]  the hold key prefix, <p>:flow:hold:
ARGV[10] period, ms (debounce: quiet period; throttle, rate_limit)
ARGV[11] debounce: max wait, ms (0: none); batch: timeout, ms
ARGV[12] throttle, rate_limit: limit; batch: max size
ARGV[13] throttle: burst
ARGV[14] most events one hold keeps
ARGV[15] most bytes of events one hold keeps

Returns the decision, JSON, each with "k" (the control) and "key" (ARGV[8]):
  {"a":"start"}                                          start the run now
  {"a":"drop","n":N}                                     rate_limit: N starts already in the window
  {"a":"delay","hold":H,"due":MS}                        throttle: held as hold H, starts at MS
  {"a":"merge","hold":H,"due":MS,"n":N,"why":W,"released":B}   debounce, batch: event N of hold H, due at
                                                         MS for reason W (released now when B)
]]
--@include flow_hold
local memo = redis.call('GET', KEYS[1])
if memo then return memo end

local kind, now = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[7]) == 1 then
  local text = cjson.encode({a = 'start', k = kind, key = ARGV[8]})
  redis.call('SET', KEYS[1], text, 'PX', ARGV[3])
  return text
end
local raw, entry, depth = ARGV[4], ARGV[5], tonumber(ARGV[6])
local prefix = ARGV[9]
local period, wait, limit = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])

local function open_hold()
  local id = string.format('%016d', redis.call('INCR', KEYS[4]))
  redis.call('HSET', prefix .. id, 'rule', ARGV[7], 'kind', kind, 'key', ARGV[8], 'state', KEYS[2],
             'first_ms', now, 'n', 0, 'bytes', 0, 'depth', 0)
  return id
end

local function add(id)
  local hk = prefix .. id
  redis.call('RPUSH', hk .. ':events', raw)
  redis.call('RPUSH', hk .. ':entries', entry)
  if depth > tonumber(redis.call('HGET', hk, 'depth')) then redis.call('HSET', hk, 'depth', depth) end
  return redis.call('HINCRBY', hk, 'n', 1), redis.call('HINCRBY', hk, 'bytes', #raw)
end

local function schedule(id, due, why)
  redis.call('HSET', prefix .. id, 'due_ms', due, 'why', why)
  redis.call('ZADD', KEYS[3], due, id)
end

local answer
if kind == 'rate_limit' then
  local n = redis.call('LLEN', KEYS[2])
  local oldest = tonumber(redis.call('LINDEX', KEYS[2], limit - 1))
  if n >= limit and oldest and oldest > now - period then
    answer = {a = 'drop', n = n}
  else
    redis.call('LPUSH', KEYS[2], string.format('%d', now))
    redis.call('LTRIM', KEYS[2], 0, limit - 1)
    redis.call('PEXPIRE', KEYS[2], period)
    answer = {a = 'start'}
  end
elseif kind == 'throttle' then
  local s = redis.call('HMGET', KEYS[2], 'tat', 'last', 'pending')
  local now_us = now * 1000
  local interval = math.max(1, math.floor(period * 1000 / limit))
  local tau = (tonumber(ARGV[13]) - 1) * interval
  local tat = tonumber(s[1]) or now_us
  local start = math.max(now_us, tat - tau, tonumber(s[2]) or now_us)
  local pending = tonumber(s[3]) or 0
  local new_tat = math.max(tat, now_us) + interval
  redis.call('HSET', KEYS[2], 'tat', string.format('%.0f', new_tat), 'last', string.format('%.0f', start))
  if start > now_us or pending > 0 then
    local id = open_hold()
    add(id)
    local due = math.ceil(start / 1000)
    schedule(id, due, 'throttle')
    redis.call('HINCRBY', KEYS[2], 'pending', 1)
    redis.call('PERSIST', KEYS[2])
    answer = {a = 'delay', hold = id, due = due}
  else
    redis.call('PEXPIRE', KEYS[2], math.ceil((new_tat - now_us) / 1000) + 1000)
    answer = {a = 'start'}
  end
else
  local id = redis.call('GET', KEYS[2])
  if id and redis.call('EXISTS', prefix .. id) == 0 then id = false end
  if not id then
    id = open_hold()
    redis.call('SET', KEYS[2], id)
  end
  local n, bytes = add(id)
  local first = tonumber(redis.call('HGET', prefix .. id, 'first_ms'))
  local due, why = first + wait, 'timeout'
  if kind == 'debounce' then
    due, why = now + period, 'quiet'
    if wait > 0 and first + wait <= due then due, why = first + wait, 'max_wait' end
  end
  schedule(id, due, why)
  local cap = tonumber(ARGV[14])
  if kind == 'batch' and limit < cap then cap = limit end
  local released = false
  if n >= cap or bytes >= tonumber(ARGV[15]) then
    local reason = 'bound'
    if kind == 'batch' and n >= limit then reason = 'full' end
    flow_release_hold(prefix, id, KEYS[3], KEYS[5], KEYS[6], reason, now)
    released, due, why = true, now, reason
  end
  answer = {a = 'merge', hold = id, due = due, n = n, why = why, released = released}
end
answer.k, answer.key = kind, ARGV[8]  -- what it was, for an engine whose rule no longer has the control
local text = cjson.encode(answer)
redis.call('SET', KEYS[1], text, 'PX', ARGV[3])
return text
