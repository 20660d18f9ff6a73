-- Read an account as of now; writes nothing. Mirrors Account::view.
local now = clock()
local s = load()
expire(s, now) -- as the next decision will see it; nothing is written
return reply({ outcome = 'view', limit = limit_of(s), source = limit_source(s), live = sorted_live(s, now) })
