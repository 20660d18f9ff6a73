-- Renew a live lease. ARGV[7] stream id. Mirrors Account::heartbeat.
local now = clock()
local s = load()
local expired, changed = expire(s, now)
local id = ARGV[7]
local _, live = find(s.live, id)
if live then
  live.expires_at = now + LEASE_TTL
  save(s, now)
  return reply({ outcome = 'renewed', stream = live, expired = expired })
end
if changed then save(s, now) end
local _, tombstone = find(s.ended, id)
if tombstone then
  return reply({ outcome = 'ended', reason = tombstone.reason, expired = expired })
end
return reply({ outcome = 'unknown', expired = expired })
