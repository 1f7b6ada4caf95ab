--[[ read_log.lua: the lines of task attempts' logs after the ones a reader has, with their headers.

A log (append_log.lua) is a JSON header then the lines still kept; line n of an attempt (counting from
0, across drops) is at index 1 + n - dropped. Reading header and lines in one script means a writer
dropping lines in between cannot shift them under the reader.

KEYS[1..n]  attempt logs, <p>:log:<run>:<node>:<attempt>
ARGV[i]     for KEYS[i]: how many of its lines the reader has (0: it has none)

Returns, for each key in order, {header, line, ...}: the lines from number max(ARGV[i], dropped) on;
{} for a log that does not exist.
]]
local out = {}
for i, key in ipairs(KEYS) do
  local header = redis.call('LINDEX', key, 0)
  if not header then
    out[i] = {}
  else
    local dropped = 0
    local ok, found = pcall(cjson.decode, header)
    if ok and type(found) == 'table' then dropped = math.max(0, math.floor(tonumber(found.dropped) or 0)) end
    local after = math.max(0, math.floor(tonumber(ARGV[i]) or 0))
    local lines = redis.call('LRANGE', key, 1 + math.max(0, after - dropped), -1)
    table.insert(lines, 1, header)
    out[i] = lines
  end
end
return out
