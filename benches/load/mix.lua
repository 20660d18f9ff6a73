-- wrk: start, heartbeat, stop in turn, each account of many used once per turn.
local thread_id = 0
local counter = 0

setup = function(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

request = function()
  counter = counter + 1
  local round = math.floor(counter / 3)
  local user = "mix-" .. thread_id .. "-" .. (round % 100000)
  local headers = { ["X-ID"] = user, ["Content-Type"] = "application/json" }
  local op = counter % 3
  if op == 0 then
    return wrk.format("POST", "/streams", headers, '{"stream_id":"s"}')
  elseif op == 1 then
    return wrk.format("POST", "/streams/s/heartbeat", headers)
  else
    return wrk.format("DELETE", "/streams/s", headers)
  end
end
