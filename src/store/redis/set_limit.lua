-- Set (ARGV[7] = 0…1000) or clear (ARGV[7] = '') the limit override; the
-- excess above a lowered limit is revoked. Mirrors Account::set_limit.
local now = clock()
local s = load()
local expired = expire(s, now)
if ARGV[7] == '' then s.limit = nil else s.limit = tonumber(ARGV[7]) end
local revoked = trim(s, now)
save(s, now)
return reply({ outcome = 'limit_set', revoked = revoked, expired = expired })
