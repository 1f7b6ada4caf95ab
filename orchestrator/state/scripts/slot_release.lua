--[[ slot_release.lua: a run with a slot pool (workflows/pools.py) ended; if it held a slot, the slot goes to
the next runs in line, as many as the pool's limit allows.

KEYS[1]  the pool's holders, <p>:slots:<pool>:held (zset: run -> lease expiry, epoch ms)
KEYS[2]  its line, <p>:slots:<pool>:waiting (zset: run -> place in line, lowest first)
KEYS[3]  the results stream
KEYS[4]  the pool index, <p>:slots (hash: pool id -> the pool as JSON)
ARGV[1]  the run that ended
ARGV[2]  the pool id
ARGV[3]  the pool's limit
ARGV[4]  the run key prefix, <p>:run:
ARGV[5]  now, epoch seconds
ARGV[6]  the lease of a run that gets a slot: until, epoch ms

Returns the number of waiting runs that got a slot (each joins the holders with a lease, and a `start`
control record for it goes on the results stream, for the engine to start it); 0 when the run held no
slot (it was waiting: it just leaves the line). The pool leaves the index once nobody holds or waits.
]]
--@include promote
redis.call('ZREM', KEYS[2], ARGV[1])
local started = 0
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  started = promote(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6])
end
forget_if_empty(KEYS[1], KEYS[2], KEYS[4], ARGV[2])
return started
