--[[ read_slots.lua: read a batch's slot pools (workflows/pools.py), under WATCH, before the engine's MULTI:
one round trip however many pools (keys) the batch claims.

KEYS     per pool, its holders then its line (<p>:slots:<pool>:held, <p>:slots:<pool>:waiting)
ARGV     per pool, what to read: 'count' (how many hold a slot), 'holders' (also who: a singleton names the
         run it skips for), 'all' (also who waits: cancel_previous cancels them)

Returns, per pool, {slots held, {holder run ids}, {waiting run ids}} (the lists empty unless asked for).
]]
local out = {}
for i = 1, #ARGV do
  local held, waiting, what = KEYS[2 * i - 1], KEYS[2 * i], ARGV[i]
  local holders, waiters = {}, {}
  if what ~= 'count' then holders = redis.call('ZRANGE', held, 0, -1) end
  if what == 'all' then waiters = redis.call('ZRANGE', waiting, 0, -1) end
  out[i] = {redis.call('ZCARD', held), holders, waiters}
end
return out
