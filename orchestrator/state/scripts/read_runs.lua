--[[ read_runs.lua: read the runs of an engine batch, under WATCH, skipping those the engine holds; and,
for a batch with events, the rule-set version they were planned under (in the same round trip).

KEYS     the run hashes, <p>:run:<id>; then, optionally, the rule-set version key, <p>:ruleset
ARGV[1]  how many of KEYS are run hashes (N)
ARGV[2..N+1]  per run, the version (hash field `v`) the engine's cache holds, or '' for none

Returns, per run, 1 when the held version is current (an HGET instead of an HGETALL), else the whole
hash as a flat list (empty for a missing run); then, with the version key, its value ('' when unset).
]]
local runs = tonumber(ARGV[1])
local out = {}
for i = 1, runs do
  local key = KEYS[i]
  if ARGV[i + 1] ~= '' and redis.call('HGET', key, 'v') == ARGV[i + 1] then out[i] = 1
  else out[i] = redis.call('HGETALL', key) end
end
if #KEYS > runs then out[runs + 1] = redis.call('GET', KEYS[runs + 1]) or '' end
return out
