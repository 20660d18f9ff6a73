-- wrk: each request heartbeats a uniformly random live stream of the
-- population benches/fill_file_store.py lays out with `audience`:
--   wrk -s benches/load/audience.lua URL -- STREAMS [peer]
-- `peer`: as Eyevinn's stream-limit-api takes it (benches/node_peer.sh),
-- the stream id as its device.
-- Stream i is `str-%012d` in account `acct-%010d` of 3 * (i // 6) + SLOT[i % 6]
-- (accounts of 1, 2 and 3 streams in turn).
local SLOT = { [0] = 0, 1, 1, 2, 2, 2 }
local streams = 1
local peer = false

init = function(args)
  streams = tonumber(args[1]) or error("usage: wrk -s audience.lua URL -- STREAMS")
  peer = args[2] == "peer"
  math.randomseed(os.time())
end

request = function()
  local i = math.random(0, streams - 1)
  local account = 3 * math.floor(i / 6) + SLOT[i % 6]
  if peer then
    return wrk.format("POST", string.format("/sessions/acct-%010d/ping/str-%012d", account, i))
  end
  local path = string.format("/streams/str-%012d/heartbeat", i)
  return wrk.format("POST", path, { ["X-ID"] = string.format("acct-%010d", account) })
end
