--[[ read_log.lua: the lines of task attempts' logs after the ones a reader has, with their headers.

A log (append_log.lua) is a JSON header then the lines still kept; line n of an attempt (counting from
0, across drops) is at index 1 + n - dropped. Reading header and lines in one script means a writer
dropping lines in between cannot shift them under the reader.

KEYS[1..n]  attempt logs, <p>:log:<run>:<node>:<attempt> (the caller sends a few per call)
ARGV[1]     the byte budget of the reply: the lines of the logs returned add up to at most this many bytes
ARGV[2]     1: return the first log even if its lines alone are over the budget (a log is within its cap)
ARGV[1 + i] for KEYS[i]: how many of its lines the reader has (0: it has none)

Returns, for the first keys in order whose lines fit in the budget (stopping at the first that does not),
{header, line, ...}: the lines from number max(ARGV[1 + i], dropped) on; {} for a log that does not exist.
]]
local out = {}
local budget = tonumber(ARGV[1]) or 0
local used = 0
for i, key in ipairs(KEYS) do
  local header = redis.call('LINDEX', key, 0)
  local reply = {}
  if header then
    local dropped = 0
    local ok, found = pcall(cjson.decode, header)
    if ok and type(found) == 'table' then dropped = math.max(0, math.floor(tonumber(found.dropped) or 0)) end
    local after = math.max(0, math.floor(tonumber(ARGV[2 + i]) or 0))
    reply = redis.call('LRANGE', key, 1 + math.max(0, after - dropped), -1)
    for _, line in ipairs(reply) do used = used + #line end
    table.insert(reply, 1, header)
  end
  if used > budget and not (i == 1 and ARGV[2] == '1') then break end
  out[i] = reply
end
return out
