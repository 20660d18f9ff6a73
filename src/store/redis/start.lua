-- Start a stream. ARGV[7] stream id, ARGV[8] device id or '', ARGV[9]
-- content id or '', ARGV[10] the plan's limit or '', ARGV[11…] ids to
-- terminate. Mirrors Account::start.
local now = clock()
local s = load()
local changed = false
local plan = tonumber(ARGV[10] or "")
if plan ~= nil and s.plan ~= plan then
  s.plan = plan
  changed = true
end
local expired, cleaned = expire(s, now)
changed = changed or cleaned
local limit = limit_of(s)
local id, device, content = ARGV[7], ARGV[8], ARGV[9]
local terminate = {}
for i = 11, #ARGV do terminate[ARGV[i]] = true end

local _, live = find(s.live, id)
if live then
  if changed then save(s, now) end
  if (live.device_id or '') ~= device then
    return reply({ outcome = 'stream_id_conflict', expired = expired })
  end
  return reply({ outcome = 'already_live', stream = live, active = #s.live, limit = limit, expired = expired })
end

local function terminated(l) return terminate[l.id] == true end
local function same_device(l) return device ~= '' and l.device_id == device and not terminated(l) end

local freed = 0
for _, l in ipairs(s.live) do
  if terminated(l) or same_device(l) then freed = freed + 1 end
end
local remaining = #s.live - freed
local overflow = 0
if remaining >= limit then
  if ON_LIMIT == 'reject' or limit == 0 then
    if changed then save(s, now) end
    return reply({ outcome = 'limit_reached', limit = limit, live = sorted_live(s, now), expired = expired })
  end
  overflow = remaining + 1 - limit
end

local evicted, replaced, kept = {}, {}, {}
local previous = s.live
s.live = kept
for _, l in ipairs(previous) do
  if terminated(l) then
    evicted[#evicted + 1] = l.id
    bury(s, l.id, 'evicted', now)
  elseif same_device(l) then
    replaced[#replaced + 1] = l.id
    bury(s, l.id, 'replaced', now)
  else
    kept[#kept + 1] = l
  end
end
for _ = 1, overflow do
  local l = table.remove(s.live, oldest_index(s))
  evicted[#evicted + 1] = l.id
  bury(s, l.id, 'evicted', now)
end

local i = find(s.ended, id)
if i then table.remove(s.ended, i) end
local lease = { id = id, started_at = now, expires_at = now + LEASE_TTL, seq = s.next_seq }
if device ~= '' then lease.device_id = device end
if content ~= '' then lease.content_id = content end
s.next_seq = s.next_seq + 1
s.live[#s.live + 1] = lease
save(s, now)
return reply({
  outcome = 'granted', stream = lease, evicted = evicted, replaced = replaced,
  active = #s.live, limit = limit, expired = expired,
})
