-- Shared by every streamguard script: the account's state and the rules'
-- building blocks, mirroring src/domain/rules.rs line for line.
--
-- KEYS[1]  the account's key (one key per account: cluster-safe)
-- ARGV[1]  now in ms, or '' to read the Redis server's clock (TIME)
-- ARGV[2]  default limit
-- ARGV[3]  lease ttl, ms
-- ARGV[4]  on-limit policy: 'reject' | 'evict-oldest'
-- ARGV[5]  tombstone retention, ms
-- ARGV[6]  most tombstones kept per account
-- ARGV[7…] the operation's own arguments
local KEY = KEYS[1]
local DEFAULT_LIMIT = tonumber(ARGV[2])
local LEASE_TTL = tonumber(ARGV[3])
local ON_LIMIT = ARGV[4]
local TOMBSTONE_TTL = tonumber(ARGV[5])
local MAX_TOMBSTONES = tonumber(ARGV[6])

local function clock()
  if ARGV[1] ~= '' then
    return tonumber(ARGV[1])
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function load()
  local raw = redis.call('GET', KEY)
  if not raw then
    return { live = {}, ended = {}, next_seq = 0 }
  end
  local s = cjson.decode(raw)
  if type(s.live) ~= 'table' then s.live = {} end
  if type(s.ended) ~= 'table' then s.ended = {} end
  if s.limit == cjson.null then s.limit = nil end
  if s.plan == cjson.null then s.plan = nil end
  s.next_seq = s.next_seq or 0
  return s
end

-- Override, then the plan's claim, then the default. Mirrors Account::limit.
local function limit_of(s)
  return s.limit or s.plan or DEFAULT_LIMIT
end

local function limit_source(s)
  if s.limit ~= nil then return 'override' end
  if s.plan ~= nil then return 'claim' end
  return 'default'
end

local function is_idle(s)
  return s.limit == nil and #s.live == 0 and #s.ended == 0
end

-- Writes the account back; its key expires when nothing in it matters any
-- more (never while it holds a limit override), and goes when idle.
local function save(s, now)
  if is_idle(s) then
    redis.call('DEL', KEY)
    return
  end
  local raw = cjson.encode(s)
  if s.limit ~= nil then
    redis.call('SET', KEY, raw)
    return
  end
  local keep_until = now
  for _, l in ipairs(s.live) do keep_until = math.max(keep_until, l.expires_at + TOMBSTONE_TTL) end
  for _, t in ipairs(s.ended) do keep_until = math.max(keep_until, t.ended_at + TOMBSTONE_TTL) end
  redis.call('SET', KEY, raw, 'PX', math.max(keep_until - now, 1))
end

local function bury(s, id, reason, at)
  local kept = {}
  for _, t in ipairs(s.ended) do
    if t.id ~= id then kept[#kept + 1] = t end
  end
  if #kept >= MAX_TOMBSTONES then table.remove(kept, 1) end
  kept[#kept + 1] = { id = id, reason = reason, ended_at = at }
  s.ended = kept
end

local function older(a, b)
  if a.started_at ~= b.started_at then return a.started_at < b.started_at end
  return a.seq < b.seq
end

local function oldest_index(s)
  local best = nil
  for i, l in ipairs(s.live) do
    if best == nil or older(l, s.live[best]) then best = i end
  end
  return best
end

local function newest_index(s)
  local best = nil
  for i, l in ipairs(s.live) do
    if best == nil or older(s.live[best], l) then best = i end
  end
  return best
end

-- Revokes live streams above the limit in force: the newest under
-- 'reject', the oldest under 'evict-oldest'. Mirrors Account::trim.
local function trim(s, now)
  local revoked = {}
  local allowed = limit_of(s)
  while #s.live > allowed do
    local victim
    if ON_LIMIT == 'reject' then victim = newest_index(s) else victim = oldest_index(s) end
    local l = table.remove(s.live, victim)
    revoked[#revoked + 1] = l.id
    bury(s, l.id, 'revoked', now)
  end
  return revoked
end

-- What now and the policy imply: leases that ran out become 'expired'
-- tombstones, old tombstones go, and streams above the limit (a lowered
-- default) are revoked. Returns how many leases expired and whether
-- anything changed. The usual case, nothing to do, allocates nothing.
local function expire(s, now)
  local stale = #s.live > limit_of(s)
  if not stale then
    for _, l in ipairs(s.live) do
      if now >= l.expires_at then stale = true break end
    end
  end
  if not stale then
    for _, t in ipairs(s.ended) do
      if now >= t.ended_at + TOMBSTONE_TTL then stale = true break end
    end
  end
  if not stale then return 0, false end
  local live, expired = {}, {}
  for _, l in ipairs(s.live) do
    if now < l.expires_at then live[#live + 1] = l else expired[#expired + 1] = l end
  end
  s.live = live
  for _, l in ipairs(expired) do bury(s, l.id, 'expired', l.expires_at) end
  local kept = {}
  for _, t in ipairs(s.ended) do
    if now < t.ended_at + TOMBSTONE_TTL then kept[#kept + 1] = t end
  end
  s.ended = kept
  trim(s, now)
  return #expired, true
end

local function sorted_live(s, now)
  local out = {}
  for _, l in ipairs(s.live) do
    if now < l.expires_at then out[#out + 1] = l end
  end
  table.sort(out, older)
  return out
end

local function find(list, id)
  for i, item in ipairs(list) do
    if item.id == id then return i, item end
  end
  return nil, nil
end

local function reply(t)
  return cjson.encode(t)
end
