-- Set (ARGV[7] = 0…1000) or clear (ARGV[7] = '') the limit override; the
-- excess above a lowered limit is revoked. Mirrors Account::set_limit.
local now = clock()
local s = load()
local expired = expire(s, now)
if ARGV[7] == '' then s.limit = nil else s.limit = tonumber(ARGV[7]) end
local allowed = limit_of(s)
local revoked = {}
while #s.live > allowed do
  local victim
  if ON_LIMIT == 'reject' then victim = newest_index(s) else victim = oldest_index(s) end
  local l = table.remove(s.live, victim)
  revoked[#revoked + 1] = l.id
  bury(s, l.id, 'revoked', now)
end
save(s, now)
return reply({ outcome = 'limit_set', revoked = revoked, expired = expired })
