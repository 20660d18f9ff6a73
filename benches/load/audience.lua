-- wrk: each request heartbeats a uniformly random live stream of the
-- population benches/fill_file_store.py lays out with `audience`:
--   wrk -s benches/load/audience.lua URL -- STREAMS
-- Stream i is `str-%012d` in account `acct-%010d` of 3 * (i // 6) + SLOT[i % 6]
-- (accounts of 1, 2 and 3 streams in turn).
local SLOT = { [0] = 0, 1, 1, 2, 2, 2 }
local streams = 1

init = function(args)
  streams = tonumber(args[1]) or error("usage: wrk -s audience.lua URL -- STREAMS")
  math.randomseed(os.time())
end

request = function()
  local i = math.random(0, streams - 1)
  local account = 3 * math.floor(i / 6) + SLOT[i % 6]
  local path = string.format("/streams/str-%012d/heartbeat", i)
  return wrk.format("POST", path, { ["X-ID"] = string.format("acct-%010d", account) })
end
