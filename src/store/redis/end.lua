-- End a live stream. ARGV[7] stream id, ARGV[8] reason ('stopped' or
-- 'revoked'). Mirrors Account::end.
local now = clock()
local s = load()
local expired, changed = expire(s, now)
local i, live = find(s.live, ARGV[7])
if live then
  table.remove(s.live, i)
  bury(s, live.id, ARGV[8], now)
  save(s, now)
elseif changed then
  save(s, now)
end
return reply({ outcome = 'ended_stream', ended = live ~= nil, expired = expired })
