-- Read an account as of now; writes nothing. Mirrors Account::view.
local now = clock()
local s = load()
return reply({ outcome = 'view', limit = limit_of(s), overridden = s.limit ~= nil, live = sorted_live(s, now) })
