"""The Lua scripts of the Redis budget store, and the layout of its keys.

Every script touches a fixed set of keys, however many lines a call holds, so its cost on the
server barely grows with the number of cap levels:

- ``KEYS[1]`` the generation marker (a string; every script checks it: lost state is seen);
- ``KEYS[2]`` the line table, one hash for every line of the namespace, with fields
  ``s:<line>`` spend, ``r:<line>`` reserved by live holds (a running total, never a scan),
  ``n:<line>`` live holds, ``u:<line>`` the estimated part of spend, ``c:<line>`` the cap last
  reserved against (``-1``: none), and for a rolling line ``w:<line>`` its window and
  ``p:<line>`` the oldest bucket already dropped; a rolling line's buckets are the hash
  ``KEYS[2]:roll:<line>`` (bucket index -> spend), named in the script, in the same slot;
- ``KEYS[3]`` the reservation records: ``h:<id>`` a live hold, ``g:<id>`` an expired (charged)
  one, each ``"<amount> <lines json>"``;
- ``KEYS[4]`` the timers: one sorted set, by due time, of ``h:<id>`` (a hold's expiry),
  ``g:<id>`` (when to forget a charged hold) and ``d:<id>`` (when to forget a settlement);
- ``KEYS[5]`` the cost statistics; ``KEYS[6]`` the account's snapshot (``at``, ``json``, and
  ``x``: ``1`` when it shows the budget exhausted, so a reservation hands it on at once).

``ARGV[1]`` is the expected generation; scope scripts then take ``ARGV[2]``, their lines as one
JSON array of three values per line (key, cap or ``-1``, window seconds or ``0``): built once
per set of lines by the client, and one argument however many lines, since a client packs
every argument of every call. A hold's record keeps that same JSON.
"""

from __future__ import annotations

from nebo_core.caps import ROLLING_BUCKETS
from nebo_core.stores._base import DONE_TTL_S, GONE_TTL_S

_PRELUDE = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('NEBO_STATE_LOST') end
local L, R, T = KEYS[2], KEYS[3], KEYS[4]
local function int(x) return string.format('%d', x) end  -- never "-0" or "1e+15"
local function bucket(w) return math.floor(now / (w / {ROLLING_BUCKETS})) end
local function bump(k, w, amount)
  if w > 0 then redis.call('HINCRBY', L .. ':roll:' .. k, int(bucket(w)), int(amount)) end
end
-- A rolling line's spend: drop the buckets that left its window (once per bucket width).
local function rolled(k, w, s, mark)
  local oldest = bucket(w) - {ROLLING_BUCKETS}
  if mark and tonumber(mark) >= oldest then return s end
  local roll = L .. ':roll:' .. k
  local buckets = redis.call('HGETALL', roll)
  for i = 1, #buckets, 2 do
    if tonumber(buckets[i]) <= oldest then
      s = s - tonumber(buckets[i + 1])
      redis.call('HDEL', roll, buckets[i])
    end
  end
  redis.call('HSET', L, 's:' .. k, int(s), 'p:' .. k, int(oldest))
  return s
end
-- Charge every hold whose time-to-live passed (on all its lines: its call may have been billed),
-- and forget charged holds and settlements past their time.
local function due()
  local items = redis.call('ZRANGEBYSCORE', T, '-inf', now)
  for _, m in ipairs(items) do
    if string.sub(m, 1, 2) == 'h:' then
      local rec = redis.call('HGET', R, m)
      if rec then
        local amount = tonumber(string.match(rec, '^(%S+)'))
        local lines = cjson.decode(string.sub(rec, #string.match(rec, '^%S+ ') + 1))
        for i = 1, #lines, 3 do
          local k, w = lines[i], lines[i + 2]
          redis.call('HINCRBY', L, 'r:' .. k, int(-amount))
          redis.call('HINCRBY', L, 'n:' .. k, -1)
          redis.call('HINCRBY', L, 's:' .. k, int(amount))
          redis.call('HINCRBY', L, 'u:' .. k, int(amount))
          bump(k, w, amount)
        end
        local gone = 'g:' .. string.sub(m, 3)
        redis.call('HDEL', R, m)
        redis.call('HSET', R, gone, rec)
        redis.call('ZADD', T, now + {GONE_TTL_S}, gone)
      end
    else
      redis.call('HDEL', R, m)
    end
  end
  if #items > 0 then redis.call('ZREMRANGEBYSCORE', T, '-inf', now) end
end
-- The state of the call's lines: st[j] = {{s, r, n, u}}, rolling spend already aged.
local spec = cjson.decode(ARGV[2])
local n = #spec / 3
local decoded = {{[ARGV[2]] = spec}}
-- Switch to other lines (a batch of settlements names each one's own).
local function use(json)
  spec = decoded[json]
  if not spec then
    spec = cjson.decode(json)
    decoded[json] = spec
  end
  n = #spec / 3
end
local function key(j) return spec[3 * j - 2] end
local function cap(j) return spec[3 * j - 1] end
local function window(j) return spec[3 * j] end
local function load()
  local fields = {{}}
  for j = 1, n do
    local k = key(j)
    fields[#fields + 1] = 's:' .. k
    fields[#fields + 1] = 'r:' .. k
    fields[#fields + 1] = 'n:' .. k
    fields[#fields + 1] = 'u:' .. k
    fields[#fields + 1] = 'p:' .. k
    fields[#fields + 1] = 'c:' .. k
  end
  local got = redis.call('HMGET', L, unpack(fields))
  local st = {{}}
  for j = 1, n do
    local b = 6 * (j - 1)
    local s = tonumber(got[b + 1] or '0')
    local w = window(j)
    if w > 0 then s = rolled(key(j), w, s, got[b + 5]) end
    st[j] = {{s = s, r = tonumber(got[b + 2] or '0'), n = tonumber(got[b + 3] or '0'),
      u = tonumber(got[b + 4] or '0'), c = got[b + 6]}}
  end
  return st
end
due()
local rest = 2
"""

RESERVE = (
    _PRELUDE
    + """
-- ARGV after the lines: id, amount, ttl, the snapshot 'at' the caller holds.
-- Reply: {granted, spent, reserved, line judged, snapshot at, snapshot json ('': the caller's),
-- room: the least any capped line has left once this is held (-1: no line is capped)}.
local id, amount = ARGV[rest + 1], tonumber(ARGV[rest + 2])
local st, out = load(), {}
for j = 1, n do
  local k, w, c = key(j), window(j), int(cap(j))
  if st[j].c ~= c then  -- a new line, or a new cap: recorded for views such as nebo top
    out[#out + 1] = 'c:' .. k
    out[#out + 1] = c
    if w > 0 then
      out[#out + 1] = 'w:' .. k
      out[#out + 1] = string.format('%.17g', w)
    end
  end
end
-- The stored snapshot comes back only when it tells the caller something: it holds none, or
-- this one is newer by more than the Date header's second, or newer and exhausted.
local snap = redis.call('HMGET', KEYS[6], 'at', 'x')
local at = snap[1] or ''
local json = ''
local mine = tonumber(ARGV[rest + 4])
if at ~= '' and (not mine or tonumber(at) > mine + 1 or (snap[2] == '1' and tonumber(at) > mine)) then
  json = redis.call('HGET', KEYS[6], 'json') or ''
end
for j = 1, n do
  if cap(j) >= 0 and st[j].s + st[j].r + amount > cap(j) then
    if #out > 0 then redis.call('HSET', L, unpack(out)) end
    return {0, int(st[j].s), int(st[j].r), j, at, json, 0}
  end
end
local room = -1
for j = 1, n do
  out[#out + 1] = 'r:' .. key(j)
  out[#out + 1] = int(st[j].r + amount)
  out[#out + 1] = 'n:' .. key(j)
  out[#out + 1] = int(st[j].n + 1)
  if cap(j) >= 0 then
    local left = cap(j) - st[j].s - st[j].r - amount
    if room < 0 or left < room then room = left end
  end
end
redis.call('HSET', L, unpack(out))
redis.call('HSET', R, 'h:' .. id, ARGV[rest + 2] .. ' ' .. ARGV[2])
redis.call('ZADD', T, now + tonumber(ARGV[rest + 3]), 'h:' .. id)
return {1, int(st[1].s), int(st[1].r), 1, at, json, int(room)}
"""
)

SETTLE = (
    _PRELUDE
    + f"""
-- Settlements, 9 arguments each from ARGV[2]: lines (as ARGV[2] always is), id, cost (-1: a
-- release), model, observed, estimated, and a snapshot to publish (at, json, exhausted: 1 or 0;
-- empty: none).
-- Reply: {{applied, spent of its first line, published}} per settlement, flat. Each line is
-- read once and written once however many settlements touch it; a settlement seen before
-- counts once (idempotent).
local cache, order = {{}}, {{}}
local function line(k, w)
  local x = cache[k]
  if not x then
    local got = redis.call('HMGET', L, 's:' .. k, 'r:' .. k, 'n:' .. k, 'u:' .. k, 'p:' .. k)
    local sp = tonumber(got[1] or '0')
    if w > 0 then sp = rolled(k, w, sp, got[5]) end
    x = {{s = sp, r = tonumber(got[2] or '0'), n = tonumber(got[3] or '0'),
      u = tonumber(got[4] or '0'), dirty = false}}
    cache[k] = x
    order[#order + 1] = k
  end
  return x
end
local stats, stat_models = {{}}, {{}}
local newest, newest_at, newest_i = nil, -1, 0
local out = {{}}
for o = 2, #ARGV, 9 do
  use(ARGV[o])
  local i = #out + 1
  if ARGV[o + 7] ~= '' and tonumber(ARGV[o + 6]) > newest_at then
    newest, newest_at, newest_i = o, tonumber(ARGV[o + 6]), i
  end
  local id = ARGV[o + 1]
  local applied = 0
  if redis.call('ZADD', T, 'NX', now + {DONE_TTL_S}, 'd:' .. id) == 1 then
    applied = 1
    local held, charged = 0, 0
    local rec = redis.call('HGET', R, 'h:' .. id)
    if rec then
      held = tonumber(string.match(rec, '^(%S+)'))
      redis.call('HDEL', R, 'h:' .. id)
      redis.call('ZREM', T, 'h:' .. id)
    else
      local gone = redis.call('HGET', R, 'g:' .. id)
      if gone then  -- its expiry was charged: take that back
        charged = tonumber(string.match(gone, '^(%S+)'))
        redis.call('HDEL', R, 'g:' .. id)
        redis.call('ZREM', T, 'g:' .. id)
      end
    end
    local cost = tonumber(ARGV[o + 2])
    local spend = -charged
    if cost >= 0 then spend = spend + cost end
    local unsure = -charged
    if cost >= 0 and ARGV[o + 5] == '1' then unsure = unsure + cost end
    for j = 1, n do
      local x = line(key(j), window(j))
      if rec then
        x.r = x.r - held
        x.n = x.n - 1
      end
      if spend ~= 0 then
        x.s = x.s + spend
        bump(key(j), window(j), spend)
      end
      x.u = x.u + unsure
      x.dirty = true
    end
    if cost >= 0 and ARGV[o + 4] == '1' then
      local model = ARGV[o + 3]
      if not stats[model] then
        stats[model] = {{0, 0}}
        stat_models[#stat_models + 1] = model
      end
      stats[model][1] = stats[model][1] + cost
      stats[model][2] = stats[model][2] + 1
    end
  end
  out[i] = applied
  out[i + 1] = int(line(key(1), window(1)).s)
  out[i + 2] = 0
end
local w = {{}}
for _, k in ipairs(order) do
  local x = cache[k]
  if x.dirty then
    w[#w + 1] = 's:' .. k
    w[#w + 1] = int(x.s)
    w[#w + 1] = 'r:' .. k
    w[#w + 1] = int(x.r)
    w[#w + 1] = 'n:' .. k
    w[#w + 1] = int(x.n)
    w[#w + 1] = 'u:' .. k
    w[#w + 1] = int(x.u)
  end
end
if #w > 0 then redis.call('HSET', L, unpack(w)) end
for _, model in ipairs(stat_models) do
  redis.call('HINCRBY', KEYS[5], model .. '|sum', stats[model][1])
  redis.call('HINCRBY', KEYS[5], model .. '|n', stats[model][2])
end
if newest then
  local at = redis.call('HGET', KEYS[6], 'at')
  if not at or tonumber(at) <= newest_at then
    redis.call('HSET', KEYS[6], 'at', ARGV[newest + 6], 'json', ARGV[newest + 7], 'x', ARGV[newest + 8])
    out[newest_i + 2] = 1
  end
end
return out
"""
)

TOTALS = (
    _PRELUDE
    + """
-- One line: {spent, uncertain, reserved}.
local x = load()[1]
return {int(x.s), int(x.u), int(x.r)}
"""
)

LINES = (
    _PRELUDE
    + """
-- Every line (no lines given): a flat list of key, spent, reserved, in flight, uncertain, cap.
local all = redis.call('HGETALL', L)
local t = {}
for i = 1, #all, 2 do
  local f = all[i]
  local kind, k = string.sub(f, 1, 1), string.sub(f, 3)
  t[k] = t[k] or {}
  t[k][kind] = all[i + 1]
end
local out = {}
for k, x in pairs(t) do
  if x.c then
    local s = tonumber(x.s or '0')
    local w = tonumber(x.w or '0')
    if w > 0 then s = rolled(k, w, s, x.p) end
    out[#out + 1] = k
    out[#out + 1] = int(s)
    out[#out + 1] = x.r or '0'
    out[#out + 1] = x.n or '0'
    out[#out + 1] = x.u or '0'
    out[#out + 1] = x.c
  end
end
return out
"""
)

GENERATION = "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])"
"""KEYS: generation. ARGV: a fresh marker. The marker in force (this one, if there was none)."""

PUBLISH = """
local at = redis.call('HGET', KEYS[1], 'at')
if at and tonumber(at) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'json', ARGV[2], 'x', ARGV[3])
return 1
"""
"""KEYS: snapshot hash. ARGV: observed_at (epoch seconds), json, exhausted (1 or 0)."""

PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local late = slot - now - tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
if tolerance >= 0 and late > tolerance then
  redis.call('HINCRBY', KEYS[2], ARGV[4] .. '|held', 1)
  local wait = late - tolerance
  if wait < 0.01 then wait = 0.01 end
  return {0, string.format('%.6f', wait)}
end
local tat = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now + 3600) * 1000))
redis.call('HINCRBY', KEYS[2], ARGV[4] .. '|booked', 1)
if late < 0 then late = 0 end
return {1, string.format('%.6f', late)}
"""
"""KEYS: the schedule (its next free time, epoch seconds by Redis's clock), lane counts hash.
ARGV: interval seconds, burst seconds, tolerance seconds (-1: none), lane. Books a slot (or holds
the lane) as :func:`nebo_core.pacing.book`: ``{booked, wait seconds}``."""
