-- The rules of src/domain/rules.rs in Lua, on one Redis hash per account.
-- Loaded once as a Redis Function library (FCALL) on Redis >= 7, or sent
-- as one EVALSHA script per operation on older servers (see scripts.rs).
--
-- Every operation takes:
-- keys[1]  the account's key, `<prefix>:{<account>}` (one key: cluster-safe)
-- argv[1]  now in ms, or '' to read the Redis server's clock (TIME)
-- argv[2]  the policy, packed: 'default limit|lease ttl ms|reject or
--          evict-oldest|tombstone retention ms|most tombstones kept'
-- argv[3]  the plans (`--plans`), packed, or '' without plans:
--          '<default plan>\n' then one line per plan, each ending in '\n':
--          'name|limit|rule|rule…', a rule being 'name;max;required 0/1;p;attr'
--          (per) or 'name;max;required;m;attr=v,v/attr=v' (match)
-- argv[4…] the operation's own arguments
--
-- The account's hash and what each field holds: DESIGN.md, "Redis and
-- Redis Cluster", "Data model" (l:<id> leases, t:<id> tombstones, n/tn
-- counts, x/tx deadlines, o/p limits, pa/pc plan names, q/to counters,
-- gv and g: the rule groups' counts).
-- A heartbeat reads n, x, tx, o, p, its own lease (and pa, pc with plans);
-- while nothing is due (no lease ran out, no tombstone is past retention,
-- not over the limit) it rewrites only its own field, as a string, and
-- answers with it as stored. Every other write goes through `save`,
-- which writes the fields that changed and recomputes n, x, tn and tx.
-- Ids never contain '|' (ids are [A-Za-z0-9._:@-]).

-- now in ms: argv[1], or the Redis server's clock when argv[1] is ''.
local function clock(given)
  if given ~= '' then
    local now = tonumber(given)
    if now ~= nil then return now end
  end
  local t = redis.call('TIME')
  -- Arithmetic reads TIME's strings as numbers; tonumber() took longer.
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- The packed policy (argv[2]) as numbers. A Function library keeps the
-- last one between calls (an EVALSHA script starts afresh each time), and
-- an instance sends the same string every time: matching it and turning
-- its fields into numbers was a tenth of a heartbeat.
local policy_of, policy = nil, nil

local function parse_policy(packed)
  if packed ~= policy_of then
    local limit, ttl, on_limit, tombstone_ttl, max_tombstones =
      string.match(packed, '^(%d+)|(%d+)|([%a-]+)|(%d+)|(%d+)$')
    policy_of, policy = packed, {
      default_limit = tonumber(limit), lease_ttl = tonumber(ttl), on_limit = on_limit,
      tombstone_ttl = tonumber(tombstone_ttl), max_tombstones = tonumber(max_tombstones),
    }
  end
  return policy
end

-- What every operation needs of its arguments; `now` when already read.
local function context(keys, argv, now)
  local p = parse_policy(argv[2])
  return {
    key = keys[1], now = now or clock(argv[1]), args = argv,
    default_limit = p.default_limit, lease_ttl = p.lease_ttl,
    on_limit = p.on_limit, tombstone_ttl = p.tombstone_ttl,
    max_tombstones = p.max_tombstones, plans = argv[3] or '',
  }
end

-- The line of the plan `name` in the packed plans, or nil when the file
-- does not define it.
local function plan_line(plans, name)
  if name == nil then return nil end
  local i = string.find(plans, '\n' .. name .. '|', 1, true)
  if i == nil then return nil end
  local j = string.find(plans, '\n', i + 1, true)
  return string.sub(plans, i + 1, j - 1)
end

-- The plan in force: the admin's, else the claimed one, else the default;
-- a name the plans no longer define is passed over. Mirrors Plans::resolve.
-- Returns its line and its source.
local function resolve_plan(plans, assigned, claimed)
  local line = plan_line(plans, assigned)
  if line then return line, 'override' end
  line = plan_line(plans, claimed)
  if line then return line, 'claim' end
  return plan_line(plans, string.match(plans, '^([^\n]*)\n')), 'default'
end

local function plan_limit(line)
  return tonumber(string.match(line, '^[^|]*|(%d+)'))
end

-- A plan line's rules.
local function parse_rules(line)
  local rules, first = {}, true
  for field in string.gmatch(line, '[^|]+') do
    local name, max, required, kind, body = string.match(field, '^([^;]+);(%d+);([01]);([pm]);(.*)$')
    if name then
      local rule = { name = name, max = tonumber(max), required = required == '1', kind = kind }
      if kind == 'p' then
        rule.attr = body
      else
        rule.conds = {}
        for cond in string.gmatch(body, '[^/]+') do
          local attr, values = string.match(cond, '^([^=]+)=(.*)$')
          local set = {}
          for v in string.gmatch(values, '[^,]+') do set[v] = true end
          rule.conds[#rule.conds + 1] = { attr = attr, values = set }
        end
      end
      rules[#rules + 1] = rule
    end
  end
  return rules
end

-- Parsed rules by plan line, and the fingerprint of the packed plans:
-- a Function library keeps them between calls (an EVALSHA script starts
-- afresh each time), and plans change rarely.
local rules_cache, rules_cached = {}, 0
local fingerprint_of, fingerprint = nil, nil

local function rules_of(line)
  local rules = rules_cache[line]
  if rules == nil then
    if rules_cached >= 64 then rules_cache, rules_cached = {}, 0 end
    rules = parse_rules(line)
    rules_cache[line], rules_cached = rules, rules_cached + 1
  end
  return rules
end

local function plans_fingerprint(plans)
  if plans ~= fingerprint_of then
    fingerprint_of, fingerprint = plans, string.sub(redis.sha1hex(plans), 1, 16)
  end
  return fingerprint
end

-- A stream's attribute: its content id, or one of its tags.
local function value_of(l, attr)
  if attr == 'content_id' then return l.content_id end
  if l.tags == nil then return nil end
  return string.match(',' .. l.tags .. ',', ',' .. attr .. '=([^,]*),')
end

-- The group `rule` counts `l` in (a value for a per rule, true for a
-- match rule), or nil when the rule does not apply. Mirrors Rule::group_of.
local function group_of(rule, l)
  if rule.kind == 'p' then return value_of(l, rule.attr) end
  for _, cond in ipairs(rule.conds) do
    local v = value_of(l, cond.attr)
    if v == nil or not cond.values[v] then return nil end
  end
  return true
end

-- The hash field counting the group `rule` counts `l` in, or nil.
local function group_field(rule, l)
  local key = group_of(rule, l)
  if key == nil then return nil end
  if key == true then return 'g:' .. rule.name end
  return 'g:' .. rule.name .. '=' .. key
end

-- The first attribute a required rule needs and `l` lacks.
-- Mirrors Rule::missing_attribute.
local function missing_attribute(rule, l)
  if not rule.required then return nil end
  if rule.kind == 'p' then
    if value_of(l, rule.attr) == nil then return rule.attr end
    return nil
  end
  for _, cond in ipairs(rule.conds) do
    if value_of(l, cond.attr) == nil then return cond.attr end
  end
  return nil
end

-- The first group of `rule` over its max, as indices into `live`, groups
-- ordered by their first member. Mirrors Rule::overfull_group.
local function overfull_group(rule, live)
  local order, members = {}, {}
  for i, l in ipairs(live) do
    local key = group_of(rule, l)
    if key ~= nil then
      if members[key] == nil then
        members[key] = {}
        order[#order + 1] = key
      end
      table.insert(members[key], i)
    end
  end
  for _, key in ipairs(order) do
    if #members[key] > rule.max then return members[key] end
  end
  return nil
end

local function decode_lease(id, raw)
  local e, s, q, d, c, g, k = string.match(raw, '^(-?%d+)|(-?%d+)|(%d+)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if e == nil then
    e, s, q, d, c, g = string.match(raw, '^(-?%d+)|(-?%d+)|(%d+)|([^|]*)|([^|]*)|(.*)$')
  end
  if e == nil then
    e, s, q, d, c = string.match(raw, '^(-?%d+)|(-?%d+)|(%d+)|([^|]*)|(.*)$')
  end
  local l = { id = id, expires_at = tonumber(e), started_at = tonumber(s), seq = tonumber(q) }
  if d ~= '' then l.device_id = d end
  if c ~= '' then l.content_id = c end
  if g ~= nil and g ~= '' then l.tags = g end
  if k ~= nil and k ~= '' then l.secret = k end
  return l
end

local function encode_lease(l)
  local out = l.expires_at .. '|' .. l.started_at .. '|' .. l.seq .. '|'
    .. (l.device_id or '') .. '|' .. (l.content_id or '')
  if l.tags or l.secret then out = out .. '|' .. (l.tags or '') end
  if l.secret then out = out .. '|' .. l.secret end
  return out
end

-- Whether the secret hash `presented` ('' for none) opens the stored lease
-- `raw` without decoding it: a lease with a secret (a non-empty 7th field,
-- always its last) opens only to that hash; one without opens to any.
local function opens(raw, presented)
  if presented ~= '' and string.sub(raw, -#presented - 1) == '|' .. presented then return true end
  return string.find(raw, '^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|.') == nil
end

-- The stored lease `raw` with a new expires_at, its first field: the rest
-- is copied as it is, not decoded and encoded again.
local function renew(raw, expires_at)
  local bar = string.find(raw, '|', 1, true)
  return expires_at .. string.sub(raw, bar)
end

-- A renewal's answer: the lease as stored (encode_lease) for the caller
-- to decode, which knows its id; cheaper here than writing it as JSON.
local function renewed_reply(packed, expired)
  return '{"outcome":"renewed","lease":"' .. packed .. '","expired":' .. expired .. '}'
end

-- 'a=1,b=2' as the JSON object {"a":"1","b":"2"} (names and values need
-- no escaping).
local function tags_json(tags)
  local parts = {}
  for name, value in string.gmatch(tags, '([^=,]+)=([^,]+)') do
    parts[#parts + 1] = '"' .. name .. '":"' .. value .. '"'
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function decode_tombstone(id, raw)
  local o, r, e = string.match(raw, '^(%d+)|(%a+)|(-?%d+)$')
  return { id = id, order = tonumber(o), reason = r, ended_at = tonumber(e) }
end

local function encode_tombstone(t)
  return t.order .. '|' .. t.reason .. '|' .. t.ended_at
end

-- Leases and tombstones as JSON, by hand: ids need no escaping.
local function lease_json(l)
  local out = '{"id":"' .. l.id .. '"'
  if l.device_id then out = out .. ',"device_id":"' .. l.device_id .. '"' end
  if l.content_id then out = out .. ',"content_id":"' .. l.content_id .. '"' end
  if l.tags then out = out .. ',"tags":' .. tags_json(l.tags) end
  if l.secret then out = out .. ',"secret":"' .. l.secret .. '"' end
  return out .. ',"started_at":' .. l.started_at .. ',"expires_at":' .. l.expires_at
    .. ',"seq":' .. l.seq .. '}'
end

local function by_seq(a, b) return a.seq < b.seq end
local function by_order(a, b) return a.order < b.order end

-- An account written by streamguard before the hash layout: one JSON
-- string. It is read as it is and written back as a hash by `save`.
local function load_json(c)
  local s = cjson.decode(redis.call('GET', c.key))
  local account = { live = {}, ended = {}, raw = {}, next_seq = 0, next_order = 0, was_string = true }
  if s.limit ~= nil and s.limit ~= cjson.null then account.limit = s.limit end
  if s.plan ~= nil and s.plan ~= cjson.null then account.plan = s.plan end
  account.next_seq = tonumber(s.next_seq) or 0
  if type(s.live) == 'table' then
    for _, l in ipairs(s.live) do
      local lease = { id = l.id, expires_at = l.expires_at, started_at = l.started_at, seq = l.seq }
      if type(l.device_id) == 'string' then lease.device_id = l.device_id end
      if type(l.content_id) == 'string' then lease.content_id = l.content_id end
      if type(l.tags) == 'table' then
        local names, parts = {}, {}
        for name in pairs(l.tags) do names[#names + 1] = name end
        table.sort(names)
        for _, name in ipairs(names) do parts[#parts + 1] = name .. '=' .. l.tags[name] end
        if #parts > 0 then lease.tags = table.concat(parts, ',') end
      end
      account.live[#account.live + 1] = lease
    end
  end
  if type(s.ended) == 'table' then
    for _, t in ipairs(s.ended) do
      account.ended[#account.ended + 1] =
        { id = t.id, reason = t.reason, ended_at = t.ended_at, order = account.next_order }
      account.next_order = account.next_order + 1
    end
  end
  return account
end

-- The whole account: leases in grant order, tombstones in burial order.
local function load(c)
  local flat = redis.pcall('HGETALL', c.key)
  if flat.err then
    if redis.call('TYPE', c.key).ok == 'string' then return load_json(c) end
    error(flat)
  end
  local s = { live = {}, ended = {}, raw = {}, next_seq = 0, next_order = 0, has = {}, counts = {} }
  for i = 1, #flat, 2 do
    local field, value = flat[i], flat[i + 1]
    local kind = string.sub(field, 1, 2)
    if kind == 'l:' then
      local lease = decode_lease(string.sub(field, 3), value)
      lease.stored = true -- as in Redis; any change clears it
      s.live[#s.live + 1] = lease
      s.raw[field] = true
    elseif kind == 't:' then
      local tombstone = decode_tombstone(string.sub(field, 3), value)
      tombstone.stored = true -- tombstones never change, only come and go
      s.ended[#s.ended + 1] = tombstone
      s.raw[field] = true
    elseif field == 'x' or field == 'tx' then s.has[field] = true
    elseif field == 'o' then s.limit = tonumber(value); s.has.o = true
    elseif field == 'p' then s.plan = tonumber(value); s.has.p = true
    elseif field == 'pa' then s.pa = value; s.has.pa = true
    elseif field == 'pc' then s.pc = value; s.has.pc = true
    elseif field == 'q' then s.next_seq = tonumber(value)
    elseif field == 'to' then s.next_order = tonumber(value)
    elseif field == 'gv' then s.gv, s.counted, s.stored_gv, s.has.gv = value, value, value, true
    elseif kind == 'g:' then s.counts[field] = tonumber(value)
    end
  end
  -- The leases as loaded, for `save` to count what came and went.
  s.loaded = {}
  for _, l in ipairs(s.live) do s.loaded[l.id] = l end
  table.sort(s.live, by_seq)
  table.sort(s.ended, by_order)
  return s
end

-- The plan in force for the account, as its line and source.
local function plan_of(c, s)
  if c.plans == '' then return nil, 'default' end
  return resolve_plan(c.plans, s.pa, s.pc)
end

-- Override, then the token's claim, then the plan's limit (or the
-- default without plans). Mirrors Account::limit.
local function limit_of(c, s)
  if s.limit or s.plan then return s.limit or s.plan end
  local line = plan_of(c, s)
  if line then return plan_limit(line) end
  return c.default_limit
end

local function limit_source(s)
  if s.limit ~= nil then return 'override' end
  if s.plan ~= nil then return 'claim' end
  return 'default'
end

local function hset_chunks(key, pairs_list)
  local chunk = 400
  for i = 1, #pairs_list, chunk do
    redis.call('HSET', key, unpack(pairs_list, i, math.min(i + chunk - 1, #pairs_list)))
  end
end

local function hdel_chunks(key, fields)
  local chunk = 400
  for i = 1, #fields, chunk do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + chunk - 1, #fields)))
  end
end

-- Writes what changed since `load`, and the summary fields. The key
-- expires when nothing in it matters any more (never while it holds a
-- limit override), and goes when the account is idle.
local function save(c, s)
  if s.limit == nil and s.pa == nil and #s.live == 0 and #s.ended == 0 then
    redis.call('DEL', c.key)
    return
  end
  if s.was_string then
    redis.call('DEL', c.key)
    s.was_string = nil
  end
  local has = s.has or {}
  local set, del, want = {}, {}, {}
  local x, tx = nil, nil
  local keep_until = c.now
  for _, l in ipairs(s.live) do
    local field = 'l:' .. l.id
    want[field] = true
    if not l.stored then
      set[#set + 1] = field
      set[#set + 1] = encode_lease(l)
      l.stored = true
    end
    if x == nil or l.expires_at < x then x = l.expires_at end
    keep_until = math.max(keep_until, l.expires_at + c.tombstone_ttl)
  end
  for _, t in ipairs(s.ended) do
    local field = 't:' .. t.id
    want[field] = true
    if not t.stored then
      set[#set + 1] = field
      set[#set + 1] = encode_tombstone(t)
      t.stored = true
    end
    if tx == nil or t.ended_at < tx then tx = t.ended_at end
    keep_until = math.max(keep_until, t.ended_at + c.tombstone_ttl)
  end
  for field in pairs(s.raw) do
    if want[field] == nil then del[#del + 1] = field end
  end
  for _, f in ipairs({ { 'x', x }, { 'tx', tx }, { 'o', s.limit }, { 'p', s.plan }, { 'pa', s.pa }, { 'pc', s.pc } }) do
    if f[2] ~= nil then
      set[#set + 1] = f[1]
      set[#set + 1] = f[2]
    elseif has[f[1]] then
      del[#del + 1] = f[1]
    end
  end
  for _, f in ipairs({ { 'n', #s.live }, { 'tn', #s.ended }, { 'q', s.next_seq }, { 'to', s.next_order } }) do
    set[#set + 1] = f[1]
    set[#set + 1] = f[2]
  end
  -- The rules' group counts, kept while the streams are known to fit the
  -- plan: the stored counts with the streams that came and went, or
  -- counted afresh for newly applied plans.
  local fp = nil
  if c.plans ~= '' then fp = plans_fingerprint(c.plans) end
  local line = plan_of(c, s)
  local rules = {}
  if line and fp and s.gv == fp then rules = rules_of(line) end
  local stored = s.counts or {}
  local counts = {}
  local function count(l, by)
    for _, rule in ipairs(rules) do
      local f = group_field(rule, l)
      if f then counts[f] = (counts[f] or 0) + by end
    end
  end
  if #rules > 0 then
    if s.counted == fp then
      -- By lease, not by id: an id may expire and start again in one call.
      for f, n in pairs(stored) do counts[f] = n end
      local loaded, now_live = s.loaded or {}, {}
      for _, l in ipairs(s.live) do
        now_live[l.id] = l
        if loaded[l.id] ~= l then count(l, 1) end
      end
      for id, l in pairs(loaded) do
        if now_live[id] ~= l then count(l, -1) end
      end
    else
      for _, l in ipairs(s.live) do count(l, 1) end
    end
  end
  for f, n in pairs(counts) do
    if n > 0 and n ~= stored[f] then
      set[#set + 1] = f
      set[#set + 1] = n
    end
  end
  for f, _ in pairs(stored) do
    if (counts[f] or 0) <= 0 then del[#del + 1] = f end
  end
  local gv = nil
  if #rules > 0 then gv = fp end
  if gv ~= nil and gv ~= s.stored_gv then
    set[#set + 1] = 'gv'
    set[#set + 1] = gv
  elseif gv == nil and has.gv then
    del[#del + 1] = 'gv'
  end
  hset_chunks(c.key, set)
  hdel_chunks(c.key, del)
  s.counts, s.counted, s.stored_gv, s.loaded = counts, gv, gv, {}
  for _, l in ipairs(s.live) do s.loaded[l.id] = l end
  s.raw = want
  s.has = { x = x ~= nil, tx = tx ~= nil, o = s.limit ~= nil, p = s.plan ~= nil, pa = s.pa ~= nil, pc = s.pc ~= nil,
    gv = gv ~= nil }
  if s.limit ~= nil or s.pa ~= nil then
    redis.call('PERSIST', c.key)
  else
    -- Heartbeats before x renew without touching the key's expiry; they
    -- end their leases before x + lease ttl, so that plus retention is
    -- when the key may go at the earliest.
    if x ~= nil then keep_until = math.max(keep_until, x + c.lease_ttl + c.tombstone_ttl) end
    redis.call('PEXPIRE', c.key, math.max(keep_until - c.now, 1))
  end
end

local function bury(c, s, id, reason, at)
  local kept = {}
  for _, t in ipairs(s.ended) do
    if t.id ~= id then kept[#kept + 1] = t end
  end
  if #kept >= c.max_tombstones then table.remove(kept, 1) end
  kept[#kept + 1] = { id = id, reason = reason, ended_at = at, order = s.next_order }
  s.next_order = s.next_order + 1
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
local function trim(c, s)
  local revoked = {}
  local allowed = limit_of(c, s)
  while #s.live > allowed do
    local victim
    if c.on_limit == 'reject' then victim = newest_index(s) else victim = oldest_index(s) end
    local l = table.remove(s.live, victim)
    revoked[#revoked + 1] = l.id
    bury(c, s, l.id, 'revoked', c.now)
  end
  return revoked
end

-- Revokes the streams above any rule of the account's plan, in the
-- plan's rule order: the newest of a full group under 'reject', the oldest
-- under 'evict-oldest'. Appends them to `revoked`. Mirrors the rule part
-- of Account::settle.
local function trim_rules(c, s, revoked)
  local line = plan_of(c, s)
  if line == nil then return end
  for _, rule in ipairs(parse_rules(line)) do
    while true do
      local group = overfull_group(rule, s.live)
      if group == nil then break end
      local victim = nil
      for _, i in ipairs(group) do
        if victim == nil then
          victim = i
        elseif c.on_limit == 'reject' then
          if older(s.live[victim], s.live[i]) then victim = i end
        elseif older(s.live[i], s.live[victim]) then
          victim = i
        end
      end
      local l = table.remove(s.live, victim)
      revoked[#revoked + 1] = l.id
      bury(c, s, l.id, 'revoked', c.now)
    end
  end
end

-- The limit, then the plan's rules: what every decision but a heartbeat
-- applies after expiry. Mirrors Account::settle (after Account::expire).
local function settle(c, s)
  local revoked = trim(c, s)
  if c.plans == '' then
    s.gv = nil
    return revoked
  end
  -- Only new plans or new plan names can leave streams above a rule.
  local fp = plans_fingerprint(c.plans)
  if s.gv ~= fp then
    trim_rules(c, s, revoked)
    s.gv = fp
  end
  return revoked
end

-- The account's plan names changed: its streams must be checked against
-- its plan's rules again, and their groups counted again.
local function plan_changed(s)
  s.gv, s.counted = nil, nil
end

-- An account left with nothing forgets its claims. Mirrors
-- Account::forget_claims_if_idle.
local function forget_plan_if_idle(s)
  if s.limit == nil and #s.live == 0 and #s.ended == 0 then
    s.plan = nil
    if s.pc ~= nil then plan_changed(s) end
    s.pc = nil
  end
end

-- What now and the policy imply: leases that ran out become 'expired'
-- tombstones, old tombstones go, and streams above the limit (a lowered
-- default) are revoked. Mirrors Account::expire. Returns how many leases
-- expired and whether anything changed.
local function expire(c, s)
  local now = c.now
  local stale = #s.live > limit_of(c, s)
  if not stale then
    for _, l in ipairs(s.live) do
      if now >= l.expires_at then stale = true break end
    end
  end
  if not stale then
    for _, t in ipairs(s.ended) do
      if now >= t.ended_at + c.tombstone_ttl then stale = true break end
    end
  end
  if not stale then return 0, false end
  local live, expired = {}, {}
  for _, l in ipairs(s.live) do
    if now < l.expires_at then live[#live + 1] = l else expired[#expired + 1] = l end
  end
  s.live = live
  for _, l in ipairs(expired) do bury(c, s, l.id, 'expired', l.expires_at) end
  local kept = {}
  for _, t in ipairs(s.ended) do
    if now < t.ended_at + c.tombstone_ttl then kept[#kept + 1] = t end
  end
  s.ended = kept
  trim(c, s)
  forget_plan_if_idle(s)
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

local function leases_json(list)
  local parts = {}
  for i, l in ipairs(list) do parts[i] = lease_json(l) end
  return '[' .. table.concat(parts, ',') .. ']'
end

local function ids_json(list)
  if #list == 0 then return '[]' end
  return '["' .. table.concat(list, '","') .. '"]'
end

local function leases_json_at(live, indices)
  local chosen = {}
  for _, i in ipairs(indices) do chosen[#chosen + 1] = live[i] end
  table.sort(chosen, older)
  return leases_json(chosen)
end

-- Start a stream. argv[4] stream id, argv[5] device id or '', argv[6]
-- content id or '', argv[7] the token's limit claim or '', argv[8] the tags
-- ('name=value,…' sorted by name) or '', argv[9] the claimed plan or '',
-- argv[10] the lease secret's hash or '', argv[11…] ids to terminate.
-- Mirrors Account::start.
-- The common start, decided from the summary fields like a heartbeat:
-- nothing due, a new id, no device to replace, nothing to terminate, no
-- new claim, and room under the limit and, when the plan has rules, in
-- each of the new stream's groups (from their counts, while the account
-- is known to fit its plan; see gv). Returns nil when the full path must
-- decide.
local function quick_start(c, argv)
  local id, content, tags, secret = argv[4], argv[6] or '', argv[8] or '', argv[10] or ''
  local claim, claimed = argv[7] or '', argv[9] or ''
  if (argv[5] or '') ~= '' or #argv > 10 then return nil end
  local key, now = c.key, c.now
  local h = redis.pcall('HMGET', key, 'n', 'x', 'tx', 'o', 'p', 'q', 'tn', 'l:' .. id, 't:' .. id, 'pa', 'pc', 'gv')
  if h.err or h[8] then return nil end
  -- A claim the account does not hold yet is recorded by the full path.
  if (claim ~= '' and tonumber(claim) ~= tonumber(h[5])) or (claimed ~= '' and claimed ~= h[11]) then
    return nil
  end
  local n, x, tx = tonumber(h[1]) or 0, tonumber(h[2]), tonumber(h[3])
  local limit = tonumber(h[4]) or tonumber(h[5])
  local fields, counts, gv = {}, {}, nil
  if c.plans ~= '' then
    local line = resolve_plan(c.plans, h[10] or nil, h[11] or nil)
    limit = limit or plan_limit(line)
    if string.find(line, ';', 1, true) then
      local fp = plans_fingerprint(c.plans)
      if h[12] ~= fp then
        -- No stream to count: an account without gv has no counts either
        -- (`save` drops them together), so the first start counts alone.
        if n > 0 or h[12] then return nil end
        gv = fp
      end
      local new = { content_id = nil, tags = nil }
      if content ~= '' then new.content_id = content end
      if tags ~= '' then new.tags = tags end
      local rules = rules_of(line)
      for _, rule in ipairs(rules) do
        if missing_attribute(rule, new) then return nil end
        local f = group_field(rule, new)
        if f then
          fields[#fields + 1] = f
          counts[#counts + 1] = rule.max
        end
      end
      if #fields > 0 then
        local held = redis.call('HMGET', key, unpack(fields))
        for i, f in ipairs(fields) do
          local after = (tonumber(held[i]) or 0) + 1
          -- A full group: the full path refuses or evicts, naming it.
          if after > counts[i] then return nil end
          counts[i] = after
        end
      end
    end
  end
  limit = limit or c.default_limit
  if n + 1 > limit or (x ~= nil and now >= x) or (tx ~= nil and now >= tx + c.tombstone_ttl) then
    return nil
  end
  local lease = { id = id, started_at = now, expires_at = now + c.lease_ttl, seq = tonumber(h[6]) or 0 }
  if content ~= '' then lease.content_id = content end
  if tags ~= '' then lease.tags = tags end
  if secret ~= '' then lease.secret = secret end
  local x_now = x or lease.expires_at
  local set = { 'l:' .. id, encode_lease(lease), 'n', n + 1, 'q', lease.seq + 1, 'x', x_now }
  for i, f in ipairs(fields) do
    set[#set + 1] = f
    set[#set + 1] = counts[i]
  end
  if gv then
    set[#set + 1] = 'gv'
    set[#set + 1] = gv
  end
  redis.call('HSET', key, unpack(set))
  if h[9] then
    -- A new start of an ended id forgets its tombstone; tx stays a lower bound.
    redis.call('HDEL', key, 't:' .. id)
    redis.call('HSET', key, 'tn', (tonumber(h[7]) or 1) - 1)
  end
  -- With leases already there, the key's deadline (at least x + lease ttl
  -- + retention, see `save`) outlives this lease's retention, since now < x.
  if x == nil and not h[4] and not h[10] then
    redis.call('PEXPIRE', key, 2 * c.lease_ttl + c.tombstone_ttl)
  end
  return '{"outcome":"granted","stream":' .. lease_json(lease) .. ',"evicted":[],"replaced":[],"active":'
    .. (n + 1) .. ',"limit":' .. limit .. ',"expired":0}'
end

local function start(keys, argv)
  local c = context(keys, argv)
  local now = c.now
  local quick = quick_start(c, argv)
  if quick then return quick end
  local s = load(c)
  local changed = s.was_string or false
  local expired, cleaned = expire(c, s)
  changed = changed or cleaned
  local claim = tonumber(argv[7] or '')
  if claim ~= nil and s.plan ~= claim then
    s.plan = claim
    changed = true
  end
  if (argv[9] or '') ~= '' and s.pc ~= argv[9] then
    s.pc = argv[9]
    plan_changed(s)
    changed = true
  end
  if #settle(c, s) > 0 then changed = true end
  local limit = limit_of(c, s)
  local id, device, content, tags = argv[4], argv[5] or '', argv[6] or '', argv[8] or ''
  local secret = argv[10] or ''
  local terminate = {}
  for i = 11, #argv do terminate[argv[i]] = true end

  local function finish_refusal(answer)
    forget_plan_if_idle(s)
    if changed then save(c, s) end
    return answer
  end

  local _, live = find(s.live, id)
  if live then
    if (live.device_id or '') ~= device or (live.content_id or '') ~= content
      or (live.tags or '') ~= tags or (live.secret or '') ~= secret then
      return finish_refusal('{"outcome":"stream_id_conflict","expired":' .. expired .. '}')
    end
    return finish_refusal('{"outcome":"already_live","stream":' .. lease_json(live) .. ',"active":'
      .. #s.live .. ',"limit":' .. limit .. ',"expired":' .. expired .. '}')
  end

  local line = plan_of(c, s)
  local rules = {}
  if line then rules = parse_rules(line) end
  local new = { content_id = nil, tags = nil }
  if content ~= '' then new.content_id = content end
  if tags ~= '' then new.tags = tags end
  for _, rule in ipairs(rules) do
    local attribute = missing_attribute(rule, new)
    if attribute then
      return finish_refusal('{"outcome":"missing_attribute","rule":"' .. rule.name .. '","attribute":"'
        .. attribute .. '","expired":' .. expired .. '}')
    end
  end

  local function terminated(l) return terminate[l.id] == true end
  local function same_device(l) return device ~= '' and l.device_id == device and not terminated(l) end

  -- The streams that stay, as indices into s.live (grant order), and the
  -- groups of the rules the new stream falls under.
  local kept = {}
  for i, l in ipairs(s.live) do
    if not terminated(l) and not same_device(l) then kept[#kept + 1] = i end
  end
  local groups = {}
  for _, rule in ipairs(rules) do
    local key = group_of(rule, new)
    if key ~= nil then groups[#groups + 1] = { rule = rule, key = key } end
  end
  local overflow = {}
  while true do
    local breaches = {}
    if #kept >= limit then
      local scope = {}
      for k, i in ipairs(kept) do scope[k] = i end
      breaches[#breaches + 1] = { rule = 'account', limit = limit, scope = scope }
    end
    for _, g in ipairs(groups) do
      local scope = {}
      for _, i in ipairs(kept) do
        if group_of(g.rule, s.live[i]) == g.key then scope[#scope + 1] = i end
      end
      if #scope >= g.rule.max then
        breaches[#breaches + 1] = { rule = g.rule.name, limit = g.rule.max, scope = scope }
      end
    end
    if #breaches == 0 then break end
    local hopeless = false
    for _, b in ipairs(breaches) do
      if b.limit == 0 then hopeless = true end
    end
    if c.on_limit == 'reject' or hopeless then
      local parts = {}
      for k, b in ipairs(breaches) do
        parts[k] = '{"rule":"' .. b.rule .. '","limit":' .. b.limit .. ',"live":' .. leases_json_at(s.live, b.scope) .. '}'
      end
      return finish_refusal('{"outcome":"limit_reached","conflicts":[' .. table.concat(parts, ',')
        .. '],"expired":' .. expired .. '}')
    end
    -- Evict the stream that relieves the most breaches, oldest first.
    local victim, best = nil, 0
    for _, i in ipairs(kept) do
      local relieved = 0
      for _, b in ipairs(breaches) do
        for _, j in ipairs(b.scope) do
          if j == i then relieved = relieved + 1 break end
        end
      end
      if relieved > best or (relieved > 0 and relieved == best and older(s.live[i], s.live[victim])) then
        victim, best = i, relieved
      end
    end
    local rest = {}
    for _, i in ipairs(kept) do
      if i ~= victim then rest[#rest + 1] = i end
    end
    kept = rest
    overflow[#overflow + 1] = victim
  end

  local position = {}
  for k, i in ipairs(overflow) do position[i] = k end
  local evicted, replaced, stay, overflowed = {}, {}, {}, {}
  local previous = s.live
  s.live = stay
  for i, l in ipairs(previous) do
    if terminated(l) then
      evicted[#evicted + 1] = l.id
      bury(c, s, l.id, 'evicted', now)
    elseif same_device(l) then
      replaced[#replaced + 1] = l.id
      bury(c, s, l.id, 'replaced', now)
    elseif position[i] then
      overflowed[position[i]] = l
    else
      stay[#stay + 1] = l
    end
  end
  for _, l in ipairs(overflowed) do
    evicted[#evicted + 1] = l.id
    bury(c, s, l.id, 'evicted', now)
  end

  local i = find(s.ended, id)
  if i then table.remove(s.ended, i) end
  local lease = { id = id, started_at = now, expires_at = now + c.lease_ttl, seq = s.next_seq }
  if device ~= '' then lease.device_id = device end
  if content ~= '' then lease.content_id = content end
  if tags ~= '' then lease.tags = tags end
  if secret ~= '' then lease.secret = secret end
  s.next_seq = s.next_seq + 1
  s.live[#s.live + 1] = lease
  save(c, s)
  return '{"outcome":"granted","stream":' .. lease_json(lease) .. ',"evicted":' .. ids_json(evicted)
    .. ',"replaced":' .. ids_json(replaced) .. ',"active":' .. #s.live .. ',"limit":' .. limit
    .. ',"expired":' .. expired .. '}'
end

-- What a heartbeat reads first: n, x, tx, o, p, its lease, and pa, pc
-- only when there are plans to look them up in. Each field read costs
-- about a fifth of a microsecond; the tombstone is read when no lease is.
local function heartbeat_fields(key, lease_field, plans)
  if plans == '' then return redis.pcall('HMGET', key, 'n', 'x', 'tx', 'o', 'p', lease_field) end
  return redis.pcall('HMGET', key, 'n', 'x', 'tx', 'o', 'p', lease_field, 'pa', 'pc')
end

-- Renew a live lease. argv[4] stream id, argv[5] the hash of the lease
-- secret presented, or ''. A lease started with a secret answers
-- 'unknown' to any other. Mirrors Account::heartbeat_with.
-- While nothing is due (see the layout above) this reads a few small
-- fields and rewrites one: its own lease is renewed as a string, not
-- decoded, and the key's expiry needs no change (see `save`). It never
-- evaluates plan rules.
local function heartbeat(keys, argv)
  local key, id, presented = keys[1], argv[4], argv[5] or ''
  local now = clock(argv[1])
  local p = parse_policy(argv[2])
  local lease_field = 'l:' .. id
  local h = heartbeat_fields(key, lease_field, argv[3])
  if not h.err then
    local n, x, tx = tonumber(h[1]) or 0, tonumber(h[2]), tonumber(h[3])
    local limit = tonumber(h[4]) or tonumber(h[5])
    if limit == nil and argv[3] ~= '' then
      limit = plan_limit(resolve_plan(argv[3], h[7] or nil, h[8] or nil))
    end
    limit = limit or p.default_limit
    local due = n > limit or (x ~= nil and now >= x)
      or (tx ~= nil and now >= tx + p.tombstone_ttl)
    if not due then
      local raw = h[6]
      if raw then
        if not opens(raw, presented) then return '{"outcome":"unknown","expired":0}' end
        local renewed = renew(raw, now + p.lease_ttl)
        redis.call('HSET', key, lease_field, renewed)
        return renewed_reply(renewed, 0)
      end
      local tombstone = redis.call('HGET', key, 't:' .. id)
      if tombstone then
        return '{"outcome":"ended","reason":"' .. decode_tombstone(id, tombstone).reason .. '","expired":0}'
      end
      return '{"outcome":"unknown","expired":0}'
    end
  end
  local c = context(keys, argv, now)
  local s = load(c)
  local expired, changed = expire(c, s)
  changed = changed or s.was_string
  local _, live = find(s.live, id)
  if live and live.secret and live.secret ~= presented then
    if changed then save(c, s) end
    return '{"outcome":"unknown","expired":' .. expired .. '}'
  end
  if live then
    live.expires_at = c.now + c.lease_ttl
    live.stored = nil
    save(c, s)
    return renewed_reply(encode_lease(live), expired)
  end
  if changed then save(c, s) end
  local _, tombstone = find(s.ended, id)
  if tombstone then
    return '{"outcome":"ended","reason":"' .. tombstone.reason .. '","expired":' .. expired .. '}'
  end
  return '{"outcome":"unknown","expired":' .. expired .. '}'
end

-- Re-admit a stream the store forgot, in one step, with the arguments of
-- a start (built from the signed grant): a heartbeat if the stream is live
-- after all (with argv[10] as the secret), its end if a tombstone remembers
-- it, else a start. Mirrors Account::resume.
local function resume(keys, argv)
  local c = context(keys, argv)
  local id = argv[4]
  -- What is known of the stream as of now (leases run out, tombstones go).
  local s = load(c)
  expire(c, s)
  if find(s.live, id) or find(s.ended, id) then
    -- The heartbeat decides (and writes) from the stored state again.
    local beat = { argv[1], argv[2], argv[3], id, argv[10] or '' }
    return heartbeat(keys, beat)
  end
  return start(keys, argv)
end

-- End a live stream. argv[4] stream id, argv[5] reason ('stopped' or
-- 'revoked'). Mirrors Account::end.
local function finish(keys, argv)
  local c = context(keys, argv)
  local s = load(c)
  local expired, changed = expire(c, s)
  if #settle(c, s) > 0 then changed = true end
  local i, live = find(s.live, argv[4])
  if live then
    table.remove(s.live, i)
    bury(c, s, live.id, argv[5], c.now)
  end
  forget_plan_if_idle(s)
  if live or changed or s.was_string then save(c, s) end
  local ended = 'false'
  if live then ended = 'true' end
  return '{"outcome":"ended_stream","ended":' .. ended .. ',"expired":' .. expired .. '}'
end

-- Read an account as of now; writes nothing. Mirrors Account::view.
local function view(keys, argv)
  local c = context(keys, argv)
  local s = load(c)
  expire(c, s) -- as the next decision will see it; nothing is written
  local plan = ''
  local line, source = plan_of(c, s)
  if line then plan = ',"plan":"' .. string.match(line, '^([^|]*)') .. '"' end
  local ended = {}
  for i, t in ipairs(s.ended) do
    ended[i] = '{"id":"' .. t.id .. '","reason":"' .. t.reason .. '","ended_at":' .. t.ended_at .. '}'
  end
  return '{"outcome":"view","limit":' .. limit_of(c, s) .. ',"source":"' .. limit_source(s)
    .. '"' .. plan .. ',"plan_source":"' .. source .. '","live":' .. leases_json(sorted_live(s, c.now))
    .. ',"ended":[' .. table.concat(ended, ',') .. ']}'
end

-- Set (argv[4] = 0…1000) or clear (argv[4] = '') the limit override; the
-- excess above a lowered limit is revoked. Mirrors Account::set_limit.
local function set_limit(keys, argv)
  local c = context(keys, argv)
  local s = load(c)
  local expired = expire(c, s)
  if argv[4] == '' then s.limit = nil else s.limit = tonumber(argv[4]) end
  local revoked = settle(c, s)
  forget_plan_if_idle(s)
  save(c, s)
  return '{"outcome":"limit_set","revoked":' .. ids_json(revoked) .. ',"expired":' .. expired .. '}'
end

-- Assign (argv[4] = a plan name) or clear (argv[4] = '') the admin's plan;
-- what the new plan does not allow is revoked. Mirrors Account::set_plan.
local function set_plan(keys, argv)
  local c = context(keys, argv)
  local s = load(c)
  local expired = expire(c, s)
  if argv[4] == '' then s.pa = nil else s.pa = argv[4] end
  plan_changed(s)
  local revoked = settle(c, s)
  forget_plan_if_idle(s)
  save(c, s)
  return '{"outcome":"limit_set","revoked":' .. ids_json(revoked) .. ',"expired":' .. expired .. '}'
end
