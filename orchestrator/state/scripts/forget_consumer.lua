--[[ forget_consumer.lua: delete a consumer from a stream's group, only if it holds no pending entry.

XGROUP DELCONSUMER drops the consumer's pending entries with it, so they would never be delivered
again; checking and deleting in one step means an engine thought dead that comes back and reads between
the two can never lose what it read.

KEYS[1]  the stream
ARGV[1]  the group
ARGV[2]  the consumer

Returns 1 when the consumer was deleted (or did not exist), 0 when it still holds pending entries.
]]
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
