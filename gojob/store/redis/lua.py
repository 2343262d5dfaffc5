"""The Lua scripts of the Redis store: every write is one of them, atomic on the server.

Each script is :data:`PRELUDE` (shared helpers) followed by its body, and is run with
``EVALSHA`` (loaded again on ``NOSCRIPT``, e.g. after a restart). Arguments:
``ARGV[1]`` is the key namespace (``{prefix}:``), ``ARGV[2]`` the origin of the
calling store object (its notifications are tagged with it), then the script's own.
``KEYS[1]`` is the sequence key: it names the slot for Redis Cluster routing (every
key of a namespace shares its hash tag).

Judgements use the server's clock: ``redis.call('TIME')`` at the start of the script
(``NOW``, epoch microseconds). Numbers written to keys are formatted as integers
(``string.format('%d')``: Lua's ``tostring`` would write ``1.7e+15``).

A writing script returns ``{now, events, ...}``: ``events`` is the JSON it also
PUBLISHed on ``{prefix}:events`` (after the origin and a newline), so the caller
delivers its own notifications in-process at once. An event is
``[type, uuid, kind, state, node, due, schedule_id]`` with ``""`` for none.

Instance rows travel as the values of :data:`FIELDS`, in that order (``HMGET``).
"""

from __future__ import annotations

__all__ = ["FIELDS", "INSERT_WIDTH", "SCHEDULE_FIELDS", "SCRIPTS"]

FIELDS = (
    "id",  # 0 uuid
    "k",  # 1 kind
    "st",  # 2 state
    "pr",  # 3 priority
    "due",  # 4 scheduled_at (µs)
    "cr",  # 5 created_at
    "up",  # 6 updated_at
    "a",  # 7 attempts
    "f",  # 8 failures
    "r",  # 9 rescues
    "dk",  # 10 dedupe key
    "sid",  # 11 schedule id
    "ft",  # 12 fire time
    "d",  # 13 JSON [args, kwargs]
    "pol",  # 14 JSON policy
    "res",  # 15 JSON result
    "err",  # 16 error message
    "et",  # 17 error type
    "tb",  # 18 traceback
    "node",  # 19 node id
    "wk",  # 20 worker
    "tok",  # 21 claim token
    "lease",  # 22 lease expiry
    "cx",  # 23 cancel requested ("1")
    "pd",  # 24 processed_at
    "cd",  # 25 completed_at
    "td",  # 26 terminated_at
    "xd",  # 27 canceled_at
    "od",  # 28 timed_out_at
)
"""The instance hash fields, in the order rows are returned."""

SCHEDULE_FIELDS = (
    "id",
    "k",
    "def",
    "rec",
    "next",
    "paused",
    "lf",
    "li",
    "fired",
    "skipped",
    "cr",
    "up",
)
"""The schedule hash fields, in the order schedule rows are returned (then the skips)."""

INSERT_WIDTH = 12
"""Arguments per instance to insert: uuid, kind, priority, due, created, dedupe key,
schedule id, fire time, JSON [args, kwargs], JSON policy, max rescues, due (ISO)."""

_FIELD_LIST = ", ".join(f"'{f}'" for f in FIELDS)
_SCHEDULE_FIELD_LIST = ", ".join(f"'{f}'" for f in SCHEDULE_FIELDS)

PRELUDE = f"""
local P = ARGV[1]
local ORIGIN = ARGV[2]
local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%d', n) end
local NOWS = fmt(NOW)
local EVENTS = {{}}
local function ev(t, u, kd, st, node, due, sid)
  EVENTS[#EVENTS + 1] = {{t, u or '', kd or '', st or '', node or '', due or '', sid or ''}}
end
local function flush()
  if #EVENTS == 0 then return '' end
  local payload = cjson.encode(EVENTS)
  redis.call('PUBLISH', P .. 'events', ORIGIN .. '\\n' .. payload)
  return payload
end
local function seq() return redis.call('INCR', P .. 'seq') end
local F = {{{_FIELD_LIST}}}
local function row(u) return redis.call('HMGET', P .. 'i:' .. u, unpack(F)) end
local SF = {{{_SCHEDULE_FIELD_LIST}}}
local function schedule_row(id)
  local r = redis.call('HMGET', P .. 's:' .. id, unpack(SF))
  r[#SF + 1] = redis.call('LRANGE', P .. 'sk:' .. id, 0, -1)
  return r
end
local FINAL = {{Completed = true, Terminated = true, Canceled = true, TimedOut = true}}
local INSERT_WIDTH = {INSERT_WIDTH}

-- a history record: ordered by (timestamp, seq); the kind last (it may hold a tab)
local function record(u, kd, attempt, state, details)
  local rec = string.format('%016d', seq()) .. '\\t' .. u .. '\\t' .. NOWS .. '\\t'
    .. attempt .. '\\t' .. state .. '\\t' .. details .. '\\t' .. kd
  redis.call('RPUSH', P .. 'h:' .. u, rec)
  redis.call('ZADD', P .. 'hist', NOW, rec)
end

-- move u between states: indexes, counts, history record, event, final bookkeeping
local function transition(u, kd, dk, attempt, old, new, details, node)
  redis.call('SREM', P .. 'st:' .. old, u)
  redis.call('SADD', P .. 'st:' .. new, u)
  redis.call('HINCRBY', P .. 'cnt', kd .. '\\t' .. old, -1)
  redis.call('HINCRBY', P .. 'cnt', kd .. '\\t' .. new, 1)
  redis.call('HSET', P .. 'i:' .. u, 'st', new, 'up', NOWS)
  record(u, kd, attempt, new, details)
  ev('state', u, kd, new, node)
  if FINAL[new] then
    redis.call('ZADD', P .. 'fin', NOW, u)
    if dk and dk ~= '' and redis.call('HGET', P .. 'dd', dk) == u then
      redis.call('HDEL', P .. 'dd', dk)
    end
  elseif new == 'Scheduled' then
    -- a failed or abandoned attempt going back to the queue holds its key again
    redis.call('ZREM', P .. 'fin', u)
    if dk and dk ~= '' then redis.call('HSETNX', P .. 'dd', dk, u) end
  end
end

-- due now: the ready queue of (kind, priority); later: the kind's delayed set
local function enqueue(u, kd, pr, due)
  redis.call('SADD', P .. 'kinds', kd)
  if due <= NOW then
    local m = string.format('%016d', seq()) .. u
    redis.call('ZADD', P .. 'q:' .. pr .. ':' .. kd, due, m)
    redis.call('ZADD', P .. 'pr:' .. kd, pr, pr)
    redis.call('HSET', P .. 'i:' .. u, 'qm', m)
  else
    redis.call('ZADD', P .. 'dl:' .. kd, due, u)
    redis.call('HSET', P .. 'i:' .. u, 'qm', '')
  end
end

local function dequeue(u, kd, pr)
  redis.call('ZREM', P .. 'dl:' .. kd, u)
  local m = redis.call('HGET', P .. 'i:' .. u, 'qm')
  if m and m ~= '' then redis.call('ZREM', P .. 'q:' .. pr .. ':' .. kd, m) end
  redis.call('HSET', P .. 'i:' .. u, 'qm', '')
end

-- insert the instance whose arguments start at ARGV[o]; returns false, or the uuid of
-- the instance returned in its place (the live holder of its dedupe key, or itself
-- when a repeated add finds it stored already)
local function insert(o)
  local u, kd, pr, due, cr = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 4]
  local dk, sid, ft = ARGV[o + 5], ARGV[o + 6], ARGV[o + 7]
  if dk ~= '' then
    local holder = redis.call('HGET', P .. 'dd', dk)
    if holder then return holder end
  end
  local key = P .. 'i:' .. u
  if redis.call('EXISTS', key) == 1 then return u end
  redis.call('HSET', key, 'id', u, 'k', kd, 'st', 'Scheduled', 'pr', pr, 'due', due,
    'cr', cr, 'up', NOWS, 'a', '0', 'f', '0', 'r', '0', 'd', ARGV[o + 8],
    'pol', ARGV[o + 9], 'mr', ARGV[o + 10])
  if dk ~= '' then
    redis.call('HSET', key, 'dk', dk)
    redis.call('HSET', P .. 'dd', dk, u)
    redis.call('SADD', P .. 'ix:dk:' .. dk, u)
  end
  if sid ~= '' then
    redis.call('HSET', key, 'sid', sid)
    redis.call('SADD', P .. 'ix:sid:' .. sid, u)
  end
  if ft ~= '' then redis.call('HSET', key, 'ft', ft) end
  redis.call('ZADD', P .. 'ix:c', cr, u)
  redis.call('ZADD', P .. 'ix:k:' .. kd, cr, u)
  redis.call('SADD', P .. 'st:Scheduled', u)
  redis.call('HINCRBY', P .. 'cnt', kd .. '\\tScheduled', 1)
  record(u, kd, 0, 'Created', '')
  record(u, kd, 0, 'Scheduled', '{{"due":"' .. ARGV[o + 11] .. '"}}')
  enqueue(u, kd, pr, tonumber(due))
  ev('state', u, kd, 'Scheduled', '')
  return false
end

-- insert the instances from ARGV[first] on; returns their rows (1: inserted as given),
-- the earliest due time among them and the uuid of the last
local function insert_all(first)
  local out, earliest, last, kd = {{}}, nil, nil, nil
  for o = first, #ARGV, INSERT_WIDTH do
    local h = insert(o)
    local due
    if h then
      local r = row(h)
      out[#out + 1] = r
      due = tonumber(r[5])
      last = h
      kd = r[2]
    else
      out[#out + 1] = 1
      due = tonumber(ARGV[o + 3])
      last = ARGV[o]
      kd = ARGV[o + 1]
    end
    if not earliest or due < earliest then earliest = due end
  end
  if #out ~= 1 then kd = '' end
  return out, earliest, last, kd
end

local function opt(s)
  if s == '' then return false end
  return string.sub(s, 2)
end
"""

_ADD = """
local out, earliest, _, kd = insert_all(3)
if earliest then ev('due', '', kd, '', '', fmt(earliest)) end
return {NOWS, flush(), out}
"""

_CLAIM = """
local node, limit = ARGV[3], tonumber(ARGV[4])
local lease_until = NOW + tonumber(ARGV[5])
local kinds
if #ARGV >= 6 then
  kinds = {}
  for i = 6, #ARGV do kinds[#kinds + 1] = ARGV[i] end
else
  kinds = redis.call('SMEMBERS', P .. 'kinds')
end
local queues = {}
for _, kd in ipairs(kinds) do
  -- promote the delayed instances now due
  local dl = P .. 'dl:' .. kd
  local due = redis.call('ZRANGEBYSCORE', dl, '-inf', NOW, 'WITHSCORES')
  if #due > 0 then
    for j = 1, #due, 2 do
      local u = due[j]
      local pr = redis.call('HGET', P .. 'i:' .. u, 'pr')
      if pr then
        local m = string.format('%016d', seq()) .. u
        redis.call('ZADD', P .. 'q:' .. pr .. ':' .. kd, due[j + 1], m)
        redis.call('ZADD', P .. 'pr:' .. kd, pr, pr)
        redis.call('HSET', P .. 'i:' .. u, 'qm', m)
      end
    end
    redis.call('ZREMRANGEBYSCORE', dl, '-inf', NOW)
  end
  for _, pr in ipairs(redis.call('ZRANGE', P .. 'pr:' .. kd, 0, -1)) do
    local q = P .. 'q:' .. pr .. ':' .. kd
    if redis.call('EXISTS', q) == 1 then
      queues[#queues + 1] = {tonumber(pr), q, kd}
    else
      redis.call('ZREM', P .. 'pr:' .. kd, pr)
    end
  end
end
table.sort(queues, function(a, b) return a[1] < b[1] end)
-- take the best: by priority, then due time, then insertion (the member's sequence)
local taken = {}
local i = 1
while i <= #queues and #taken < limit do
  local j = i
  while j < #queues and queues[j + 1][1] == queues[i][1] do j = j + 1 end
  local need = limit - #taken
  if i == j then
    local got = redis.call('ZPOPMIN', queues[i][2], need)
    for t = 1, #got, 2 do taken[#taken + 1] = {got[t], queues[i][3]} end
  else
    local pool = {}
    for q = i, j do
      local got = redis.call('ZRANGE', queues[q][2], 0, need - 1, 'WITHSCORES')
      for t = 1, #got, 2 do
        pool[#pool + 1] = {tonumber(got[t + 1]), got[t], queues[q][2], queues[q][3]}
      end
    end
    table.sort(pool, function(a, b)
      if a[1] ~= b[1] then return a[1] < b[1] end
      return a[2] < b[2]
    end)
    for t = 1, math.min(need, #pool) do
      redis.call('ZREM', pool[t][3], pool[t][2])
      taken[#taken + 1] = {pool[t][2], pool[t][4]}
    end
  end
  i = j + 1
end
local rows = {}
local info = '{"node":' .. cjson.encode(node) .. '}'
local until_s = fmt(lease_until)
for _, item in ipairs(taken) do
  local u, kd = string.sub(item[1], 17), item[2]
  local key = P .. 'i:' .. u
  local a = redis.call('HINCRBY', key, 'a', 1)
  redis.call('HSET', key, 'tok', u .. '/' .. fmt(seq()), 'node', node, 'lease', until_s,
    'pd', NOWS, 'qm', '')
  redis.call('ZADD', P .. 'lease', lease_until, u)
  transition(u, kd, false, a, 'Scheduled', 'Processing', info, node)
  rows[#rows + 1] = row(u)
end
return {NOWS, flush(), rows}
"""

_NEXT_DUE = """
local kinds
if #ARGV >= 3 then
  kinds = {}
  for i = 3, #ARGV do kinds[#kinds + 1] = ARGV[i] end
else
  kinds = redis.call('SMEMBERS', P .. 'kinds')
end
local best = nil
local function consider(s)
  if s then
    local v = tonumber(s)
    if not best or v < best then best = v end
  end
end
for _, kd in ipairs(kinds) do
  consider(redis.call('ZRANGE', P .. 'dl:' .. kd, 0, 0, 'WITHSCORES')[2])
  for _, pr in ipairs(redis.call('ZRANGE', P .. 'pr:' .. kd, 0, -1)) do
    consider(redis.call('ZRANGE', P .. 'q:' .. pr .. ':' .. kd, 0, 0, 'WITHSCORES')[2])
  end
end
if best then return fmt(best) end
return false
"""

_FINISH = """
local returning = ARGV[3] == '1'
local out = {}
for o = 4, #ARGV, 10 do
  local token, state = ARGV[o], ARGV[o + 1]
  local u = string.match(token, '^([^/]+)/')
  local ok = false
  if u then
    local key = P .. 'i:' .. u
    local cur = redis.call('HMGET', key, 'st', 'tok', 'lease', 'k', 'a', 'node', 'dk', 'cx', 'pr')
    if cur[1] and cur[2] == token then
      if cur[1] ~= 'Processing' then
        ok = true -- a repeated finish: idempotent
      elseif cur[3] and tonumber(cur[3]) >= NOW then
        ok = true
        local res, err = opt(ARGV[o + 2]), opt(ARGV[o + 3])
        local et, tb = opt(ARGV[o + 4]), opt(ARGV[o + 5])
        local retry = ARGV[o + 6]
        local kd, a, node, dk, pr = cur[4], cur[5], cur[6] or '', cur[7], cur[9]
        if state == 'Completed' then
          if res then redis.call('HSET', key, 'res', res) else redis.call('HDEL', key, 'res') end
          redis.call('HSET', key, 'cd', NOWS)
          redis.call('HDEL', key, 'err', 'et', 'tb')
        elseif state == 'Terminated' then redis.call('HSET', key, 'td', NOWS)
        elseif state == 'TimedOut' then redis.call('HSET', key, 'od', NOWS)
        elseif state == 'Canceled' then redis.call('HSET', key, 'xd', NOWS)
        end
        if err then
          redis.call('HSET', key, 'err', err)
          if et then redis.call('HSET', key, 'et', et) else redis.call('HDEL', key, 'et') end
          if tb then redis.call('HSET', key, 'tb', tb) else redis.call('HDEL', key, 'tb') end
        end
        if ARGV[o + 9] == '1' then redis.call('HINCRBY', key, 'f', 1) end
        redis.call('HDEL', key, 'lease')
        redis.call('ZREM', P .. 'lease', u)
        transition(u, kd, dk, a, 'Processing', state,
          '{"node":' .. cjson.encode(node) .. ARGV[o + 8] .. '}', node)
        if state == 'Scheduled' or retry ~= '' then
          local due = NOW
          if retry ~= '' then due = tonumber(retry) end
          if state ~= 'Scheduled' then
            transition(u, kd, dk, a, state, 'Scheduled',
              '{"reason":"retry","due":"' .. ARGV[o + 7] .. '"}', node)
          end
          redis.call('HSET', key, 'due', fmt(due))
          if cur[8] == '1' then
            -- the attempt did not honour the cancel request: it applies now it is queued
            redis.call('HSET', key, 'xd', NOWS)
            transition(u, kd, dk, a, 'Scheduled', 'Canceled', '{"reason":"canceled"}', node)
          else
            enqueue(u, kd, pr, due)
            ev('due', '', kd, '', '', fmt(due))
          end
        end
      end
    end
  end
  if not ok then
    out[#out + 1] = 0
  elseif returning then
    out[#out + 1] = row(u)
  else
    out[#out + 1] = 1
  end
end
return {NOWS, flush(), out}
"""

_EXTEND = """
local lease_until = NOW + tonumber(ARGV[3])
local until_s = fmt(lease_until)
local extended, lost, cancel = {}, {}, {}
for i = 4, #ARGV do
  local token = ARGV[i]
  local u = string.match(token, '^([^/]+)/')
  local held = false
  if u then
    local key = P .. 'i:' .. u
    local cur = redis.call('HMGET', key, 'st', 'tok', 'lease', 'cx')
    if cur[1] == 'Processing' and cur[2] == token and cur[3] and tonumber(cur[3]) >= NOW then
      held = true
      redis.call('HSET', key, 'lease', until_s)
      redis.call('ZADD', P .. 'lease', lease_until, u)
      extended[#extended + 1] = token
      if cur[4] == '1' then cancel[#cancel + 1] = token end
    end
  end
  if not held then lost[#lost + 1] = token end
end
return {extended, lost, cancel}
"""

_CANCEL = """
local filter = ARGV[3]
local out = {}
for i = 4, #ARGV do
  local u = ARGV[i]
  local key = P .. 'i:' .. u
  local cur = redis.call('HMGET', key, 'st', 'k', 'node', 'dk', 'pr', 'a')
  local st = cur[1]
  if st and not FINAL[st] and (filter == '' or string.find(filter, '|' .. st .. '|', 1, true)) then
    if st == 'Created' or st == 'Scheduled' then
      dequeue(u, cur[2], cur[5])
      redis.call('HSET', key, 'xd', NOWS)
      transition(u, cur[2], cur[4], cur[6], st, 'Canceled', '{"reason":"canceled"}', cur[3] or '')
    else
      redis.call('HSET', key, 'cx', '1', 'up', NOWS)
      ev('cancel', u, cur[2], '', cur[3] or '')
    end
    out[#out + 1] = row(u)
  end
end
return {NOWS, flush(), out}
"""

_REAP = """
local out = {}
for _, u in ipairs(redis.call('ZRANGEBYSCORE', P .. 'lease', '-inf', '(' .. NOWS)) do
  local key = P .. 'i:' .. u
  local cur = redis.call('HMGET', key, 'st', 'lease', 'k', 'a', 'node', 'dk', 'cx', 'pr', 'r', 'mr')
  if cur[1] ~= 'Processing' or not cur[2] then
    redis.call('ZREM', P .. 'lease', u) -- stale entry
  elseif tonumber(cur[2]) < NOW then
    redis.call('ZREM', P .. 'lease', u)
    local kd, a, node, dk, pr = cur[3], cur[4], cur[5] or '', cur[6], cur[8]
    local nj = cjson.encode(node)
    redis.call('HDEL', key, 'tok', 'lease')
    if cur[7] == '1' then
      redis.call('HSET', key, 'xd', NOWS)
      transition(u, kd, dk, a, 'Processing', 'Canceled',
        '{"reason":"abandoned","node":' .. nj .. '}', node)
    elseif tonumber(cur[9] or '0') >= tonumber(cur[10] or '3') then
      local msg = 'abandoned by node ' .. node .. '; rescue limit reached'
      redis.call('HSET', key, 'td', NOWS, 'err', msg, 'et', 'Abandoned')
      redis.call('HDEL', key, 'tb')
      transition(u, kd, dk, a, 'Processing', 'Terminated',
        '{"reason":"abandoned","node":' .. nj .. ',"error":' .. cjson.encode(msg) .. '}', node)
    else
      redis.call('HINCRBY', key, 'r', 1)
      transition(u, kd, dk, a, 'Processing', 'Terminated',
        '{"reason":"abandoned","node":' .. nj .. '}', node)
      redis.call('HSET', key, 'due', NOWS)
      transition(u, kd, dk, a, 'Terminated', 'Scheduled', '{"reason":"rescue"}', node)
      enqueue(u, kd, pr, NOW)
      ev('due', '', kd, '', '', NOWS)
    end
    out[#out + 1] = row(u)
  else
    redis.call('ZADD', P .. 'lease', cur[2], u) -- extended: put it back in order
  end
end
return {NOWS, flush(), out}
"""

_REQUEUE = """
local u, due = ARGV[3], tonumber(ARGV[4])
local key = P .. 'i:' .. u
local cur = redis.call('HMGET', key, 'st', 'k', 'dk', 'pr', 'a')
if not cur[1] then return {'missing'} end
if not FINAL[cur[1]] then return {'active', cur[1]} end
local dk = cur[3]
if dk and dk ~= '' then
  local holder = redis.call('HGET', P .. 'dd', dk)
  if holder and holder ~= u then return {'held', holder, dk} end
  redis.call('HSET', P .. 'dd', dk, u)
end
local kd, old = cur[2], cur[1]
-- an operator may requeue whatever the final state: a new Scheduled entry
redis.call('SREM', P .. 'st:' .. old, u)
redis.call('SADD', P .. 'st:Scheduled', u)
redis.call('HINCRBY', P .. 'cnt', kd .. '\\t' .. old, -1)
redis.call('HINCRBY', P .. 'cnt', kd .. '\\tScheduled', 1)
redis.call('HSET', key, 'st', 'Scheduled', 'f', '0', 'r', '0', 'due', fmt(due), 'up', NOWS)
redis.call('HDEL', key, 'cx')
redis.call('ZREM', P .. 'fin', u)
record(u, kd, cur[5], 'Scheduled', '{"reason":"requeued","due":"' .. ARGV[5] .. '"}')
ev('state', u, kd, 'Scheduled', '')
enqueue(u, kd, cur[4], due)
ev('due', '', kd, '', '', fmt(due))
return {NOWS, flush(), row(u)}
"""

_APPEND_LOGS = """
local seen = {}
for o = 3, #ARGV, 4 do
  local u, kd = ARGV[o], ARGV[o + 1]
  local rec = string.format('%016d', seq()) .. '\\t' .. ARGV[o + 3]
  redis.call('RPUSH', P .. 'l:' .. u, rec)
  redis.call('ZADD', P .. 'logs', ARGV[o + 2], rec)
  if not seen[u] then
    seen[u] = true
    ev('log', u, kd)
  end
end
return {NOWS, flush()}
"""

_PUT_SCHEDULE = """
local id = ARGV[3]
local sk = P .. 's:' .. id
local old = redis.call('HGET', sk, 'def')
if old == ARGV[4] then return {NOWS, '', schedule_row(id)} end
if not old then
  redis.call('HSET', sk, 'cr', NOWS, 'paused', '0', 'fired', '0', 'skipped', '0')
end
redis.call('HSET', sk, 'id', id, 'def', ARGV[4], 'rec', ARGV[5], 'k', ARGV[6], 'up', NOWS)
if ARGV[7] ~= '' then
  redis.call('HSET', sk, 'next', ARGV[7])
else
  redis.call('HDEL', sk, 'next')
end
redis.call('ZADD', P .. 'sch', 0, id)
ev('schedule', '', '', '', '', ARGV[7], id)
return {NOWS, flush(), schedule_row(id)}
"""

_PAUSE_SCHEDULE = """
local id = ARGV[3]
local sk = P .. 's:' .. id
if redis.call('EXISTS', sk) == 0 then return {NOWS, '', false} end
redis.call('HSET', sk, 'paused', ARGV[4], 'up', NOWS)
if ARGV[5] ~= '' then redis.call('HSET', sk, 'next', ARGV[5]) end
ev('schedule', '', '', '', '', redis.call('HGET', sk, 'next'), id)
return {NOWS, flush(), schedule_row(id)}
"""

_DELETE_SCHEDULE = """
local id = ARGV[3]
local existed = redis.call('DEL', P .. 's:' .. id)
redis.call('DEL', P .. 'sk:' .. id)
redis.call('ZREM', P .. 'sch', id)
if existed == 1 then ev('schedule', '', '', '', '', '', id) end
return {NOWS, flush(), existed}
"""

_GET_SCHEDULES = """
local ids = {}
if #ARGV >= 3 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', P .. 'sch', 0, -1)
end
local out = {}
for _, id in ipairs(ids) do
  if redis.call('EXISTS', P .. 's:' .. id) == 1 then out[#out + 1] = schedule_row(id) end
end
return out
"""

_FIRE_SCHEDULE = """
local id = ARGV[3]
local sk = P .. 's:' .. id
local cur = redis.call('HMGET', sk, 'next', 'paused', 'k')
if not cur[1] or cur[2] == '1' or cur[1] ~= ARGV[4] then return false end
local nskips = tonumber(ARGV[7])
local out, earliest, last, _ = insert_all(8 + nskips)
redis.call('HSET', sk, 'next', ARGV[5], 'up', NOWS)
if last then
  local ft = redis.call('HGET', P .. 'i:' .. last, 'ft')
  if ft then redis.call('HSET', sk, 'lf', ft) else redis.call('HDEL', sk, 'lf') end
  redis.call('HSET', sk, 'li', last)
  redis.call('HINCRBY', sk, 'fired', #out)
end
redis.call('HINCRBY', sk, 'skipped', ARGV[6])
if nskips > 0 then
  for i = 8, 7 + nskips do redis.call('RPUSH', P .. 'sk:' .. id, ARGV[i]) end
  redis.call('LTRIM', P .. 'sk:' .. id, -100, -1)
end
if earliest then ev('due', '', cur[3], '', '', fmt(earliest)) end
return {NOWS, flush(), out}
"""

_HEARTBEAT = """
local id = ARGV[3]
local expires = NOW + tonumber(ARGV[4])
local value = NOWS .. '|' .. fmt(expires) .. '|' .. ARGV[5]
redis.call('HSET', P .. 'nodes', id, value)
redis.call('ZADD', P .. 'nodex', expires, id)
return value
"""

_NODES = """
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'nodex', '-inf', NOW)) do
  redis.call('HDEL', P .. 'nodes', id)
  redis.call('ZREM', P .. 'nodex', id)
end
return redis.call('HGETALL', P .. 'nodes')
"""

_REMOVE_NODE = """
redis.call('ZREM', P .. 'nodex', ARGV[3])
return redis.call('HDEL', P .. 'nodes', ARGV[3])
"""

_SELECT = """
-- ARGV[3] order field, [4] kind, [5] states ('|A|B|' or ''), [6] schedule id,
-- [7] dedupe key, [8] created after, [9] created before, [10] source, then its arguments:
-- 'u' uuids... | 'z' zset key, min, max | 's' set keys...
local order, kind, states, sid, dk = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local after, before = tonumber(ARGV[8]), tonumber(ARGV[9])
local source = ARGV[10]
local candidates
if source == 'u' then
  candidates = {}
  for i = 11, #ARGV do candidates[#candidates + 1] = ARGV[i] end
elseif source == 'z' then
  candidates = redis.call('ZRANGEBYSCORE', P .. ARGV[11], ARGV[12], ARGV[13])
else
  candidates = {}
  for i = 11, #ARGV do
    for _, u in ipairs(redis.call('SMEMBERS', P .. ARGV[i])) do candidates[#candidates + 1] = u end
  end
end
local out = {}
for _, u in ipairs(candidates) do
  local r = redis.call('HMGET', P .. 'i:' .. u, 'k', 'st', 'sid', 'dk', 'cr', order)
  local keep = r[1] ~= false
  if keep and kind ~= '' and r[1] ~= kind then keep = false end
  if keep and states ~= '' and not string.find(states, '|' .. r[2] .. '|', 1, true) then
    keep = false
  end
  if keep and sid ~= '' and r[3] ~= sid then keep = false end
  if keep and dk ~= '' and r[4] ~= dk then keep = false end
  if keep and after and tonumber(r[5]) < after then keep = false end
  if keep and before and tonumber(r[5]) >= before then keep = false end
  if keep then
    out[#out + 1] = u
    out[#out + 1] = r[6] or '0'
  end
end
return out
"""

_GET_MANY = """
local out = {}
for i = 3, #ARGV do out[#out + 1] = row(ARGV[i]) end
return out
"""

_PRUNE = """
-- one batch: final instances finished before ARGV[3] (with their records), then old
-- records of the instances kept; returns {instances, history, logs, more}
local before, batch = tonumber(ARGV[3]), tonumber(ARGV[4])
local n_inst, n_hist, n_logs = 0, 0, 0
local function drop_records(list_key, zset_key)
  local recs = redis.call('LRANGE', list_key, 0, -1)
  for _, rec in ipairs(recs) do redis.call('ZREM', zset_key, rec) end
  redis.call('DEL', list_key)
  return #recs
end
local done = redis.call('ZRANGEBYSCORE', P .. 'fin', '-inf', '(' .. ARGV[3], 'LIMIT', 0, batch)
for _, u in ipairs(done) do
  local key = P .. 'i:' .. u
  local r = redis.call('HMGET', key, 'k', 'st', 'dk', 'sid')
  if r[1] then
    redis.call('DEL', key)
    redis.call('ZREM', P .. 'ix:c', u)
    redis.call('ZREM', P .. 'ix:k:' .. r[1], u)
    redis.call('SREM', P .. 'st:' .. r[2], u)
    local field = r[1] .. '\\t' .. r[2]
    if redis.call('HINCRBY', P .. 'cnt', field, -1) <= 0 then
      redis.call('HDEL', P .. 'cnt', field)
    end
    if r[3] then
      redis.call('SREM', P .. 'ix:dk:' .. r[3], u)
      if redis.call('HGET', P .. 'dd', r[3]) == u then redis.call('HDEL', P .. 'dd', r[3]) end
    end
    if r[4] then redis.call('SREM', P .. 'ix:sid:' .. r[4], u) end
    n_inst = n_inst + 1
  end
  n_hist = n_hist + drop_records(P .. 'h:' .. u, P .. 'hist')
  n_logs = n_logs + drop_records(P .. 'l:' .. u, P .. 'logs')
  redis.call('ZREM', P .. 'fin', u)
end
if #done >= batch then return {n_inst, n_hist, n_logs, 1} end
local function drop_old(zset_key, list_prefix, uuid_of)
  local recs = redis.call('ZRANGEBYSCORE', zset_key, '-inf', '(' .. ARGV[3], 'LIMIT', 0, batch)
  for _, rec in ipairs(recs) do
    redis.call('LREM', P .. list_prefix .. uuid_of(rec), 1, rec)
    redis.call('ZREM', zset_key, rec)
  end
  return #recs
end
n_hist = n_hist + drop_old(P .. 'hist', 'h:', function(rec)
  return string.match(rec, '^[^\\t]*\\t([^\\t]*)\\t')
end)
n_logs = n_logs + drop_old(P .. 'logs', 'l:', function(rec)
  return cjson.decode(string.match(rec, '^[^\\t]*\\t(.*)$'))[1]
end)
local more = 0
if #redis.call('ZRANGEBYSCORE', P .. 'hist', '-inf', '(' .. ARGV[3], 'LIMIT', 0, 1) > 0
  or #redis.call('ZRANGEBYSCORE', P .. 'logs', '-inf', '(' .. ARGV[3], 'LIMIT', 0, 1) > 0 then
  more = 1
end
return {n_inst, n_hist, n_logs, more}
"""

_NOW = """
return NOWS
"""

_BODIES = {
    "now": _NOW,
    "add": _ADD,
    "claim": _CLAIM,
    "next_due": _NEXT_DUE,
    "finish": _FINISH,
    "extend": _EXTEND,
    "cancel": _CANCEL,
    "reap": _REAP,
    "requeue": _REQUEUE,
    "append_logs": _APPEND_LOGS,
    "put_schedule": _PUT_SCHEDULE,
    "pause_schedule": _PAUSE_SCHEDULE,
    "delete_schedule": _DELETE_SCHEDULE,
    "get_schedules": _GET_SCHEDULES,
    "fire_schedule": _FIRE_SCHEDULE,
    "heartbeat": _HEARTBEAT,
    "nodes": _NODES,
    "remove_node": _REMOVE_NODE,
    "select": _SELECT,
    "get_many": _GET_MANY,
    "prune": _PRUNE,
}

SCRIPTS: dict[str, str] = {name: PRELUDE + body for name, body in _BODIES.items()}
"""Every script by name: the prelude, then its body."""
