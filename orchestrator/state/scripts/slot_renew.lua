--[[ slot_renew.lua: renew the leases of a pool's holders whose run lives; a lease nobody renewed ran out and
frees its slot for the next runs in line (workflows/pools.py).

KEYS[1]  the pool's holders, <p>:slots:<pool>:held (zset: run -> lease expiry, epoch ms)
KEYS[2]  its line, <p>:slots:<pool>:waiting (zset: run -> place in line, lowest first)
KEYS[3]  the results stream
KEYS[4]  the pool index, <p>:slots (hash: pool id -> the pool as JSON)
ARGV[1]  the pool id
ARGV[2]  the pool's limit
ARGV[3]  the run key prefix, <p>:run:
ARGV[4]  now, epoch ms
ARGV[5]  now, epoch seconds
ARGV[6]  a renewed (or new) lease: until, epoch ms

A holder lives while its run is `running`, or `queued` with its `start` record on its way. A `queued`
holder keeps the lease it got with its slot, unrenewed: when that runs out and the run is still queued,
its `start` record was not applied within a lease (lost, or dead-lettered), so another one is sent and
the lease renewed: the run starts once one is applied (a duplicate is ignored), never stays queued
holding the slot for ever. Returns {renewed, expired, started}: leases renewed, holders whose lease ran
out (their run vanished or ended without freeing its slot), and runs sent a `start` record (runs in line
that got a slot, and queued holders sent another).
]]
--@include promote
local holders = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local renewed, expired, resent = 0, 0, 0
for i = 1, #holders, 2 do
  local run_id, until_ms = holders[i], tonumber(holders[i + 1])
  local ok, run = pcall(cjson.decode, redis.call('HGET', ARGV[3] .. run_id, 'meta') or '')
  local status = ok and type(run) == 'table' and run['status'] or nil
  if status == 'running' then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[6], run_id)
    renewed = renewed + 1
  elseif status == 'queued' then
    if until_ms <= tonumber(ARGV[4]) then
      redis.call('ZADD', KEYS[1], 'XX', ARGV[6], run_id)
      redis.call('XADD', KEYS[3], '*', 'c', cjson.encode({action = 'start', run = run_id, at_s = tonumber(ARGV[5]),
                                                          by = 'engine'}))
      resent = resent + 1
    end
  elseif until_ms <= tonumber(ARGV[4]) then
    redis.call('ZREM', KEYS[1], run_id)
    expired = expired + 1
  end
end
local started = promote(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[5]), ARGV[6])
forget_if_empty(KEYS[1], KEYS[2], KEYS[4], ARGV[1])
return {renewed, expired, started + resent}
