--[[ claim.lua: take up to N jobs from a worker's queues into its claimed list, and return their job hashes.

The reliable-queue pattern: a job id moves (LMOVE) from its queue to the worker's claimed list in one
step, so a worker that dies at any point leaves the id somewhere recover() finds it.

KEYS[1]     the worker's claimed list, <p>:worker:<name>:claimed
KEYS[2..]   the RQ queues to take from, highest priority first (rq:queue:<name>)
ARGV[1]     N, the most jobs to take
ARGV[2]     RQ's job key prefix (rq:job:)
ARGV[3]     optional, '1': first, the claimed list's last id and its hash, {} for an empty list: the job a
            BLMOVE sent just before in the same round trip moved there (Ledger.wait checks the id)

Returns {{id, {field, value, ...}}, ...} in claim order (after the first, with ARGV[3]). An id whose job hash is gone (expired or
deleted) is dropped from the claimed list and not returned, as RQ's own workers skip it. Job hashes are
read by name (rq:job:<id>), not through KEYS: RQ does not support Redis Cluster, so neither does orch.
]]
local want = tonumber(ARGV[1])
local out = {}
local first = nil
if ARGV[3] == '1' then
  first = {}
  local id = redis.call('LINDEX', KEYS[1], -1)
  if id then
    local fields = redis.call('HGETALL', ARGV[2] .. id)
    if #fields == 0 then redis.call('LREM', KEYS[1], -1, id) else first = {id, fields} end
  end
end
for i = 2, #KEYS do
  while #out < want do
    local id = redis.call('LMOVE', KEYS[i], KEYS[1], 'LEFT', 'RIGHT')
    if not id then break end
    local fields = redis.call('HGETALL', ARGV[2] .. id)
    if #fields == 0 then
      redis.call('LREM', KEYS[1], -1, id)
    else
      out[#out + 1] = {id, fields}
    end
  end
  if #out >= want then break end
end
if first then table.insert(out, 1, first) end
return out
