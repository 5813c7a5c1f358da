"""The Lua scripts of the ``redis://`` bus: each bus operation is one atomic script on the server.

Keys (``KEYS``, in this order, all under the bus's ``{prefix}`` hash tag so a cluster keeps them in
one slot): see ``KEY_NAMES``.  Lease times are the server's clock (``TIME``), so workers on hosts
with different clocks agree.  Every script that makes work or events appear bumps ``signal`` and
adds that number as an entry id to the ``wake`` stream, which ``wait`` blocks on with ``XREAD``.
"""

from __future__ import annotations

KEY_NAMES = (
    "ready",     # 1 zset: claimable dispatches; score the rank (enqueued_at - priority * aging_s: the
                 #   effective priority as a fixed key), member "%016d" of the sequence number (plus
                 #   FIRST_OFFSET unless enqueued first) .. id: equal ranks go oldest first
    "leases",    # 2 zset: claimed dispatches; member id, score lease deadline (server ms)
    "data",      # 3 hash: id -> message body (a dispatch exists while it is here)
    "member",    # 4 hash: id -> its member in ``ready``
    "prio",      # 5 hash: id -> priority
    "deliv",     # 6 hash: id -> deliveries so far
    "revoked",   # 7 set: revoked ids
    "seq",       # 8 string: last dispatch sequence number
    "wake",      # 9 stream: one entry "<signal>-0" per change that may wake a waiter
    "signal",    # 10 string: last signal number
    "dead",      # 11 stream: dead letters (fields data, error; a poisoned dispatch's also dispatch, priority)
    "events",    # 12 stream: events, entry ids "<offset>-0"; consumer groups hold committed offsets
    "offset",    # 13 string: last event offset given out
    "done",      # 14 set: dispatches reported done (never claimable again), kept until acked
    "worker",    # 15 hash: id -> the worker that claimed it last
    "rank",      # 16 hash: id -> its score in ``ready``
    "enq",       # 17 hash: id -> when it was enqueued (the enqueuer's clock, seconds)
    "held",      # 18 set: held dispatches (a paused run's): never in ``ready`` until released
    "begun",     # 19 set: dispatches a worker began (``Bus.begin``): a hold no longer stops them
    "site",      # 20 hash: id -> its site, when not "" (its ``ready`` is then "<ready>:<site>", a
                 #   zset of the same form under the same hash tag: one claim order per site)
    "seen",      # 21 hash: consumer group -> when it last read or committed (server ms), for PRUNE
)

_READY_OF = """
local function ready_of(id)
  local site = redis.call('HGET', KEYS[20], id)
  if site then return KEYS[1] .. ':' .. site end
  return KEYS[1]
end
"""


_COMMON = _READY_OF + """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function signal()
  local s = redis.call('INCR', KEYS[10])
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', 64, s .. '-0', 's', 1)
  return s
end
local function release_expired()
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now_ms())
  for _, id in ipairs(expired) do
    redis.call('ZREM', KEYS[2], id)
    local member = redis.call('HGET', KEYS[4], id)
    if member and redis.call('SISMEMBER', KEYS[18], id) == 0 then
      redis.call('ZADD', ready_of(id), redis.call('HGET', KEYS[16], id), member)
    end
  end
end
local function forget(id)
  local member = redis.call('HGET', KEYS[4], id)
  if member then redis.call('ZREM', ready_of(id), member) end
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
  redis.call('SREM', KEYS[7], id)
  redis.call('SREM', KEYS[14], id)
  redis.call('HDEL', KEYS[15], id)
  redis.call('HDEL', KEYS[16], id)
  redis.call('HDEL', KEYS[17], id)
  redis.call('SREM', KEYS[18], id)
  redis.call('SREM', KEYS[19], id)
  redis.call('HDEL', KEYS[20], id)
end
local function claimable(id)  -- on the bus, not done, not under a live lease
  return redis.call('HEXISTS', KEYS[3], id) == 1 and redis.call('SISMEMBER', KEYS[14], id) == 0
    and not redis.call('ZSCORE', KEYS[2], id)
end
local function offset_of(entry_id)
  return tonumber(string.match(entry_id, '^(%d+)'))
end
-- every group of the events stream -> its committed offset (the group's last-delivered-id)
local function groups()
  local out = {}
  local ok, info = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[12])
  if not ok then return out end
  for _, g in ipairs(info) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    out[name] = offset_of(last)
  end
  return out
end
local function ensure_group(known, group)
  if known[group] == nil then
    redis.call('XGROUP', 'CREATE', KEYS[12], group, '0', 'MKSTREAM')
    known[group] = 0
  end
  return known[group]
end
local function seen(group)
  redis.call('HSET', KEYS[21], group, now_ms())
end
"""

ENQUEUE = _COMMON + """
local added = 0
local shift, now, aging_s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local oldest = {}  -- enqueued first (lost work): as old as the oldest of its priority not done
if shift == 0 then
  local prios = redis.call('HGETALL', KEYS[5])
  for k = 1, #prios, 2 do
    if redis.call('SISMEMBER', KEYS[14], prios[k]) == 0 then
      local at = tonumber(redis.call('HGET', KEYS[17], prios[k]))
      local p = prios[k + 1]
      if oldest[p] == nil or at < oldest[p] then oldest[p] = at end
    end
  end
end
local site = ARGV[4]
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[3], id) == 0 then
    local seq = redis.call('INCR', KEYS[8])
    local member = string.format('%016d', seq + shift) .. id
    local priority = tonumber(ARGV[i + 1])
    local at = math.min(oldest[ARGV[i + 1]] or now, now)
    local rank = at - priority * aging_s
    redis.call('HSET', KEYS[3], id, ARGV[i + 2])
    redis.call('HSET', KEYS[4], id, member)
    redis.call('HSET', KEYS[5], id, ARGV[i + 1])
    redis.call('HSET', KEYS[16], id, rank)
    redis.call('HSET', KEYS[17], id, at)
    if site ~= '' then redis.call('HSET', KEYS[20], id, site) end
    redis.call('ZADD', ready_of(id), rank, member)
    added = added + 1
  end
end
if added > 0 then signal() end
return added
"""

CLAIM = _COMMON + """
local max_n, lease_ms, max_deliveries = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
release_expired()
local now = now_ms()
local out = {redis.call('GET', KEYS[10]) or '0'}
local ready = KEYS[1]
if ARGV[5] ~= '' then ready = KEYS[1] .. ':' .. ARGV[5] end
local taken = 0
while taken < max_n do
  local top = redis.call('ZPOPMIN', ready, max_n - taken)  -- member, score, member, score...
  if #top == 0 then break end
  for k = 1, #top, 2 do
    local id = string.sub(top[k], 17)
    local deliveries = redis.call('HINCRBY', KEYS[6], id, 1)
    local data = redis.call('HGET', KEYS[3], id)
    if max_deliveries > 0 and deliveries > max_deliveries then
      redis.call('XADD', KEYS[11], '*', 'data', data, 'error',
        'dispatch ' .. id .. ' was delivered ' .. max_deliveries ..
        ' times without being acknowledged (it may crash or hang every worker that takes it)',
        'dispatch', id, 'priority', redis.call('HGET', KEYS[5], id))
      forget(id)
    else
      redis.call('ZADD', KEYS[2], now + lease_ms, id)
      redis.call('HSET', KEYS[15], id, ARGV[1])
      table.insert(out, id)
      table.insert(out, data)
      table.insert(out, deliveries)
      table.insert(out, top[k + 1])
      taken = taken + 1
    end
  end
end
return out
"""

ACK = _COMMON + """
for _, id in ipairs(ARGV) do forget(id) end
return 0
"""

EXTEND = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[2], 'XX', until_ms, ARGV[i]) end
return 0
"""

WITHDRAW = _COMMON + """
release_expired()
local removed = 0
for _, id in ipairs(ARGV) do
  if claimable(id) then
    forget(id)
    removed = removed + 1
  end
end
return removed
"""

REPRIORITIZE = _COMMON + """
release_expired()
local priority, aging_s = tonumber(ARGV[1]), tonumber(ARGV[2])
local changed = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local old = redis.call('HGET', KEYS[5], id)
  if old and tonumber(old) ~= priority and claimable(id) then
    local rank = tonumber(redis.call('HGET', KEYS[17], id)) - priority * aging_s
    redis.call('HSET', KEYS[5], id, priority)
    redis.call('HSET', KEYS[16], id, rank)
    if redis.call('SISMEMBER', KEYS[18], id) == 0 then
      redis.call('ZADD', ready_of(id), rank, redis.call('HGET', KEYS[4], id))
    end
    changed = changed + 1
  end
end
if changed > 0 then signal() end
return changed
"""

REVOKE = """
for _, id in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[3], id) == 1 then redis.call('SADD', KEYS[7], id) end
end
return 0
"""

PUBLISH = _COMMON + """
for _, data in ipairs(ARGV) do
  local offset = redis.call('INCR', KEYS[13])
  redis.call('XADD', KEYS[12], offset .. '-0', 'd', data)
end
signal()
return 0
"""

READ = _COMMON + """
local group, max_n, controller = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local known = groups()
ensure_group(known, controller)
local committed = ensure_group(known, group)
seen(group)
local out = {redis.call('GET', KEYS[10]) or '0'}
if max_n <= 0 then return out end  -- joining the group only (XRANGE ... COUNT 0 replies nil)
local entries = redis.call('XRANGE', KEYS[12], '(' .. committed .. '-0', '+', 'COUNT', max_n)
for _, entry in ipairs(entries) do
  table.insert(out, entry[1])
  table.insert(out, entry[2][2])
end
return out
"""

COMMIT = _COMMON + """
local group, offset, controller = ARGV[1], tonumber(ARGV[2]), ARGV[3]
for i = 4, #ARGV do forget(ARGV[i]) end
local known = groups()
ensure_group(known, controller)
local committed = ensure_group(known, group)
seen(group)
local target = math.min(offset, tonumber(redis.call('GET', KEYS[13]) or '0'))
if target > committed then
  redis.call('XGROUP', 'SETID', KEYS[12], group, target .. '-0')
  known[group] = target
end
local low
for _, c in pairs(known) do
  if low == nil or c < low then low = c end
end
if low and low > 0 then redis.call('XTRIM', KEYS[12], 'MINID', (low + 1) .. '-0') end
return 0
"""

REPORT = _COMMON + """
local n_done = tonumber(ARGV[1])
for i = 2, n_done + 1 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[3], id) == 1 and redis.call('SADD', KEYS[14], id) == 1 then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', ready_of(id), redis.call('HGET', KEYS[4], id))
  end
end
if #ARGV > n_done + 1 then
  for i = n_done + 2, #ARGV do
    local offset = redis.call('INCR', KEYS[13])
    redis.call('XADD', KEYS[12], offset .. '-0', 'd', ARGV[i])
  end
  signal()
end
return 0
"""

RECLAIM = _COMMON + """
local taken = {}
local claims = redis.call('HGETALL', KEYS[15])
for i = 1, #claims, 2 do
  if claims[i + 1] == ARGV[1] and redis.call('SISMEMBER', KEYS[14], claims[i]) == 0 then
    table.insert(taken, claims[i])
  end
end
for _, id in ipairs(taken) do forget(id) end
return taken
"""

HOLD = _READY_OF + """
for _, id in ipairs(ARGV) do
  local member = redis.call('HGET', KEYS[4], id)
  if member then
    redis.call('SADD', KEYS[18], id)
    redis.call('ZREM', ready_of(id), member)
  end
end
return 0
"""

RELEASE = _COMMON + """
local released = 0
for _, id in ipairs(ARGV) do
  if redis.call('SREM', KEYS[18], id) == 1 then
    if redis.call('SISMEMBER', KEYS[14], id) == 0 and not redis.call('ZSCORE', KEYS[2], id) then
      redis.call('ZADD', ready_of(id), redis.call('HGET', KEYS[16], id), redis.call('HGET', KEYS[4], id))
    end
    released = released + 1
  end
end
if released > 0 then signal() end
return released
"""

BEGIN = """
local out = {}
for _, id in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[3], id) == 1 and redis.call('SISMEMBER', KEYS[14], id) == 0
      and redis.call('SISMEMBER', KEYS[18], id) == 0 then
    redis.call('SADD', KEYS[19], id)
    table.insert(out, id)
  end
end
return out
"""

HELD = """
local out = {}
for i, id in ipairs(ARGV) do
  out[i] = redis.call('SISMEMBER', KEYS[18], id) == 1 and redis.call('SISMEMBER', KEYS[19], id) == 0
    and 1 or 0
end
return out
"""

PRESENT = """
local out = {}
for i, id in ipairs(ARGV) do out[i] = redis.call('HEXISTS', KEYS[3], id) end
return out
"""

HOLDERS = """
local seen, out = {}, {}
local claims = redis.call('HGETALL', KEYS[15])
for i = 1, #claims, 2 do
  local worker = claims[i + 1]
  if not seen[worker] and redis.call('SISMEMBER', KEYS[14], claims[i]) == 0 then
    seen[worker] = true
    table.insert(out, worker)
  end
end
return out
"""

GROUP = _COMMON + """
ensure_group(groups(), ARGV[1])
return 0
"""

PRUNE = _COMMON + """
-- ARGV: now (ms, the caller's clock), group idle limit (ms, -1: none), dead letters before (ms,
-- -1: none), dry run (1/0), the controller's group.  Returns {events, dead letters, dropped...}.
local now, idle, dead_before = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local dry, controller = ARGV[4] == '1', ARGV[5]
local known = groups()
ensure_group(known, controller)
local dropped, low = {}, nil
for name, committed in pairs(known) do
  local at = tonumber(redis.call('HGET', KEYS[21], name))
  if at == nil then  -- seen before groups were timed: counts as seen now
    at = now
    if not dry then redis.call('HSET', KEYS[21], name, now) end
  end
  if idle >= 0 and name ~= controller and at < now - idle then
    table.insert(dropped, name)
  elseif low == nil or committed < low then
    low = committed
  end
end
local events = 0
local first = redis.call('XRANGE', KEYS[12], '-', '+', 'COUNT', 1)[1]
if first and low and low > 0 then
  events = math.max(0, math.min(low - offset_of(first[1]) + 1, redis.call('XLEN', KEYS[12])))
end
local letters = 0
if dead_before >= 0 then
  letters = #redis.call('XRANGE', KEYS[11], '-', '(' .. dead_before .. '-0')
end
if not dry then
  for _, name in ipairs(dropped) do
    redis.call('XGROUP', 'DESTROY', KEYS[12], name)
    redis.call('HDEL', KEYS[21], name)
  end
  if events > 0 then redis.call('XTRIM', KEYS[12], 'MINID', (low + 1) .. '-0') end
  if letters > 0 then redis.call('XTRIM', KEYS[11], 'MINID', dead_before .. '-0') end
end
local out = {events, letters}
for _, name in ipairs(dropped) do table.insert(out, name) end
return out
"""
