-- wrk: durable starts, each on a fresh account.
local thread_id = 0
local counter = 0

setup = function(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

request = function()
  counter = counter + 1
  local headers = { ["X-ID"] = "start-" .. thread_id .. "-" .. counter, ["Content-Type"] = "application/json" }
  return wrk.format("POST", "/streams", headers, '{"stream_id":"s"}')
end
