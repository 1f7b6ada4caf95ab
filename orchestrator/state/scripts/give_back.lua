--[[ give_back.lua: a job an idle waiter took goes back to the front of its queue, if the worker still holds it.

A worker of several queues arms one waiter per queue; a job a waiter takes after the worker found other
work is given back at once. The worker may have handed back its whole claimed list meanwhile (a resync,
release.lua), which put the job back already: pushing it again would queue it twice and run it twice.

KEYS[1]  the worker's claimed list, <p>:worker:<name>:claimed
KEYS[2]  the queue the job came from (rq:queue:<name>)
ARGV[1]  the job id

Returns 1 when the job went back to the front of its queue, 0 when the claimed list no longer held it.
]]
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
