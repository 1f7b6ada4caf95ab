--[[ read_runs.lua: read the runs of an engine batch, under WATCH, skipping those the engine holds.

KEYS     the run hashes, <p>:run:<id>
ARGV     per run, the version (hash field `v`) the engine's cache holds, or '' for none

Returns, per run, 1 when the held version is current (an HGET instead of an HGETALL), else the whole
hash as a flat list (empty for a missing run).
]]
local out = {}
for i, key in ipairs(KEYS) do
  if ARGV[i] ~= '' and redis.call('HGET', key, 'v') == ARGV[i] then out[i] = 1
  else out[i] = redis.call('HGETALL', key) end
end
return out
