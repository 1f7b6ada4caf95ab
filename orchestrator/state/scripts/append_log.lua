--[[ append_log.lua: append lines to one task attempt's log, keeping its newest lines within the caps.

The log is a list: element 0 is a JSON header, {"dropped": lines dropped, "dropped_bytes": their bytes,
"bytes": bytes kept (each line counts its length + 1), "max_lines": N, "max_bytes": B, "closed": 1 once the
worker closed it (the attempt ended: no more lines will come)}; then the lines,
oldest first. Lines past either cap go from the front and are counted in the header, so a reader shows
a marker saying how much was dropped, and numbers lines across drops (line n of the attempt is at index
1 + n - dropped). A header that is not valid JSON (read back from Redis: untrusted) counts from zero.

The key keeps the TTL it has (the engine gives an attempt's log its run's TTL when the run finishes);
a new key, or one without a TTL, gets ARGV[3] seconds.

KEYS[1]   the attempt's log, <p>:log:<run>:<node>:<attempt>
ARGV[1]   max_lines
ARGV[2]   max_bytes
ARGV[3]   the TTL (s) of a new log
ARGV[4]   lines the writer dropped before sending these (its own buffer was over the caps)
ARGV[5]   their bytes
ARGV[6]   1: the worker closes the log with these lines (its attempt ended)
ARGV[7..] the lines

Returns {lines kept, lines dropped in all}.
]]
local key = KEYS[1]
local max_lines, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl_ms = redis.call('PTTL', key)
local head = {dropped = 0, dropped_bytes = 0, bytes = 0, closed = 0}
local raw = redis.call('LPOP', key)
if raw then
  local ok, found = pcall(cjson.decode, raw)
  if ok and type(found) == 'table' then
    for name in pairs(head) do head[name] = math.max(0, math.floor(tonumber(found[name]) or 0)) end
  end
end
head.dropped = head.dropped + tonumber(ARGV[4])
head.dropped_bytes = head.dropped_bytes + tonumber(ARGV[5])
if ARGV[6] == '1' then head.closed = 1 end
for i = 7, #ARGV do
  redis.call('RPUSH', key, ARGV[i])
  head.bytes = head.bytes + #ARGV[i] + 1
end
local kept = redis.call('LLEN', key)
while kept > max_lines or (kept > 0 and head.bytes > max_bytes) do
  local line = redis.call('LPOP', key)
  head.bytes = head.bytes - #line - 1
  head.dropped = head.dropped + 1
  head.dropped_bytes = head.dropped_bytes + #line
  kept = kept - 1
end
if kept == 0 then head.bytes = 0 end
head.max_lines, head.max_bytes = max_lines, max_bytes
redis.call('LPUSH', key, cjson.encode(head))
if ttl_ms > 0 then
  redis.call('PEXPIRE', key, ttl_ms)
else
  redis.call('EXPIRE', key, ARGV[3])
end
return {kept, head.dropped}
