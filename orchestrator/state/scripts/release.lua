--[[ release.lua: hand back the jobs a worker had claimed, in one atomic step per worker.

KEYS[1]  the worker's heartbeat hash, <p>:worker:<name>
KEYS[2]  its claimed list, <p>:worker:<name>:claimed
KEYS[3]  the workers zset, <p>:workers
KEYS[4]  the results stream, <p>:results
ARGV[1]  the worker's name
ARGV[2]  mode:
           'dead'  (recover(): only if the heartbeat is gone) every job not yet started goes back to
                   the front of its queue; a started one is marked failed in RQ and its attempt gets a
                   `failed` record on the results stream (the engine retries it: its worker is lost),
                   in this same step, so no crash can leave the job failed without the record;
                   the worker is forgotten
           'gone'  the same without looking at the heartbeat, which is deleted too: the caller knows
                   the worker is dead (its pool saw it exit) or is the worker itself, leaving
           'own'   the worker is alive and between jobs: everything it holds goes back to the front
                   of its queue (its local buffer is dropped); it stays registered
ARGV[3]  now, epoch seconds (integer)
ARGV[4]  now, in RQ's timestamp format
ARGV[5]  why started jobs failed (their exc_info, and the records' error)
ARGV[6]  RQ's key prefix with its colon (rq:)
ARGV[7]  the records' error_type (WorkerLost)

Returns {requeued ids, failed ids}: the ids handed back to their queues (first claimed first), and the
ids of the started jobs marked failed (each with its record, when its job's `meta` names the attempt).
Job, queue and registry keys are built from ids, not passed in KEYS (no Redis Cluster with RQ).
]]
local mode, name, rq = ARGV[2], ARGV[1], ARGV[6]
if mode == 'dead' and redis.call('EXISTS', KEYS[1]) == 1 then return {{}, {}} end
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
local requeued, failed = {}, {}
for i = #ids, 1, -1 do  -- last claimed first: each LPUSH goes in front, so the queue keeps claim order
  local id = ids[i]
  local job = rq .. 'job:' .. id
  local state = redis.call('HMGET', job, 'status', 'origin', 'failure_ttl', 'meta')
  local status, origin = state[1], state[2]
  if origin and (status == 'queued' or (mode == 'own' and status == 'started')) then
    if status == 'started' then
      redis.call('HSET', job, 'status', 'queued', 'started_at', '', 'worker_name', '')
      redis.call('ZREM', rq .. 'wip:' .. origin, id .. ':' .. name)
    end
    redis.call('LPUSH', rq .. 'queue:' .. origin, id)
    table.insert(requeued, 1, id)
  elseif origin and status == 'started' then
    local ttl = tonumber(state[3] or '') or 31536000
    redis.call('HSET', job, 'status', 'failed', 'ended_at', ARGV[4], 'exc_info', ARGV[5])
    local score = '+inf'
    if ttl >= 0 then
      score = tonumber(ARGV[3]) + ttl
      redis.call('EXPIRE', job, math.max(ttl, 1))
    end
    redis.call('ZADD', rq .. 'failed:' .. origin, score, id)
    redis.call('ZREM', rq .. 'wip:' .. origin, id .. ':' .. name)
    failed[#failed + 1] = id
    local ok, meta = pcall(cjson.decode, state[4] or '')
    if ok and type(meta) == 'table' and meta.run and meta.node and meta.attempt then
      local record = {kind = 'failed', run = meta.run, node = meta.node, attempt = meta.attempt,
                      at_s = tonumber(ARGV[3]), worker = name, error = ARGV[5], error_type = ARGV[7]}
      redis.call('XADD', KEYS[4], '*', 'r', cjson.encode(record))
    end
  end
end
redis.call('DEL', KEYS[2])
if mode ~= 'own' then
  redis.call('ZREM', KEYS[3], name)
  redis.call('SREM', rq .. 'workers', rq .. 'worker:' .. name)
  if mode == 'gone' then
    redis.call('DEL', KEYS[1])
    redis.call('DEL', rq .. 'worker:' .. name)
  end
end
return {requeued, failed}
