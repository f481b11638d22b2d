--- Errors that say what a person needs, after the book's model (*Concurrency in Go*,
-- chapter 5, "Error Propagation") and Go's errors package: `require "conc.errors"`, also
-- `conc.errors`.
--
-- An error is well-formed (made by errors.new or errors.wrap, at a module's boundary) or
-- raw: any other value, which is a bug. A well-formed error carries what happened
-- (`message`), when and where (`stack`, never part of the message; `time`, `host`, `pid`,
-- `task`), a one-line message for the user (`user`, and whether retrying may help:
-- `transient`), and a log id (`id`) that finds its full record. errors.report writes that
-- record, one JSON line, to the sink and returns the line to show the user.
--
-- `stack_hash` groups reports: it is computed from the source names, lines and function
-- names of the frames where the error began (never addresses, times or ids), so it is the
-- same across runs, tasks and hosts, and a wrap keeps its origin's.
--
-- A conc error is a table with the fields *message*, *cause* (what it wraps), *kind*,
-- *user*, *transient*, *details*, *stack*, *stack_hash*, *id*, *time*, *host*, *pid*,
-- *task* (`{id, name}`), *spawned_at* (where a failed task was started), *bug* (true for a
-- raw value raised) and, for a join, *errors*. `tostring(err)` is its message (for a wrap,
-- "msg: inner message", E8), never the stack.
-- @module conc.errors

local core = require "conc.core"
local check = require "conc.check"

local M = {}

local Error = {}
Error.__index = Error
Error.__name = "conc.error"

-- tostring(err) is its message: for a wrap, "msg: inner message" (E8). Never the stack.
function Error:__tostring()
  return tostring(self.message)
end

local fail = check.fail

local function is_error(v)
  return getmetatable(v) == Error
end

--- Whether `v` is a conc error (well-formed, a bug wrapper or a join).
-- @param v any value
-- @treturn boolean
-- @function is_error
M.is_error = is_error

-- where and when -------------------------------------------------------------------------

local PID, HOST = core.sysinfo()

local function utc_now()
  local _, _, wall = core.sysinfo()
  local secs = math.floor(wall)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. (".%03dZ"):format(math.floor((wall - secs) * 1000))
end

-- A hash of a string, 12 hex digits: two polynomial hashes kept below 2^24, so the
-- arithmetic is exact on every interpreter (5.1 has no integers).
local function hash(s)
  local a, b = 5381, 52711
  for i = 1, #s do
    local c = s:byte(i)
    a = (a * 33 + c) % 16777213
    b = (b * 31 + c) % 16777199
  end
  return ("%06x%06x"):format(a, b)
end

-- Log ids: this run's prefix (from host, pid and start time) and a counter.
local RUN = hash(("%s/%d/%.6f"):format(HOST, PID, select(3, core.sysinfo())))
local last_id = 0
local function new_id()
  last_id = last_id + 1
  return ("%s-%d"):format(RUN, last_id)
end

local function current_task()
  local t = core.self()
  if t == nil then return nil end
  return { id = t:id(), name = t:name() }
end

-- Sets the fields an error records where it is made; stack is the traceback from there.
-- The stack text holds source names, lines and function names; the hash leaves out the
-- addresses LuaJIT prints for C functions, so it is the same for the same code path in
-- every run.
local function stamp(err, stack)
  err.id = new_id()
  err.time = utc_now()
  err.host = HOST
  err.pid = PID
  err.stack = (stack:gsub("^\n", ""))
  err.stack_hash = err.stack_hash or hash((err.stack:gsub("0x%x+", "")))
end

-- making errors -------------------------------------------------------------------------

local FIELDS = { kind = true, user = true, transient = true, details = true }

local function copy_fields(fname, err, fields)
  if fields == nil then return end
  if type(fields) ~= "table" then fail("%s: bad argument #2 (fields table expected, got %s)", fname, type(fields)) end
  for k, v in pairs(fields) do
    if not FIELDS[k] then fail("%s: unknown field '%s'", fname, tostring(k)) end
    err[k] = v
  end
  if err.user ~= nil and type(err.user) ~= "string" then
    fail("%s: bad field user (string expected, got %s)", fname, type(err.user))
  end
end

--- A well-formed error, which records its `stack`, `time` (UTC, ISO-8601 with ms),
-- `host`, `pid`, `task`, `id` (the log id) and `stack_hash`. Each call makes a distinct
-- error, even for the same text (E1).
--
-- `new`, `wrap` and `join` are made by `core.with_stack`, which passes the caller's
-- traceback first, even when they are tail-called (`return errors.new(...)`) on PUC Lua;
-- LuaJIT drops the frame of any tail call: there, write `return nil, errors.new(...)`.
-- @string msg what happened
-- @tparam[opt] table fields *kind*, *user* (one line for the user), *transient* (whether
-- retrying may help), *details* (any table, for the record)
-- @treturn table the error
-- @function new
M.new = core.with_stack(function(stack, msg, fields, ...)
  check.nargs("errors.new", select("#", ...) + 2, 2)
  if type(msg) ~= "string" then fail("errors.new: bad argument #1 (string expected, got %s)", type(msg)) end
  local err = setmetatable({ message = msg }, Error)
  copy_fields("errors.new", err, fields)
  stamp(err, stack)
  err.task = current_task()
  return err
end)

--- A layer of context over `err` (E7). Its message is `msg .. ": " .. tostring(err)`; it
-- keeps the `stack_hash` of err's origin, and a raw `err` wrapped here becomes
-- well-formed (E18).
-- @param err the error to wrap (any value)
-- @string msg what was being done
-- @tparam[opt] table fields as for `errors.new`
-- @treturn ?table the new layer, or nil when `err` is nil
-- @function wrap
M.wrap = core.with_stack(function(stack, err, msg, fields, ...)
  check.nargs("errors.wrap", select("#", ...) + 3, 3)
  if err == nil then return nil end
  if type(msg) ~= "string" then fail("errors.wrap: bad argument #2 (string expected, got %s)", type(msg)) end
  local w = setmetatable({ message = msg .. ": " .. tostring(err), cause = err }, Error)
  copy_fields("errors.wrap", w, fields)
  if is_error(err) then w.stack_hash = err.stack_hash end
  stamp(w, stack)
  w.task = current_task()
  return w
end)

--- The error that a value raised in a task becomes (conc calls it; so can a host that runs
-- tasks' functions itself). A conc error is kept as it is (and told which task it
-- failed, if it does not know); anything else becomes a bug whose cause is the raw value.
-- @param raw the value raised
-- @tparam ?conc.Task task the task that raised it
-- @tparam ?string site where that task was started
-- @tparam ?string stack the traceback (default: the caller's)
-- @treturn table the conc error
-- @function raised
function M.raised(raw, task, site, stack)
  local err = raw
  if not is_error(raw) then
    err = setmetatable({
      message = type(raw) == "string" and raw or tostring(raw),
      cause = raw,
      bug = true,
    }, Error)
    stamp(err, stack or debug.traceback("", 2))
    if task == nil then err.task = current_task() end
  end
  if err == M.canceled or err == M.deadline_exceeded then
    return err -- shared by every ctx: never told about one task
  end
  if err.task == nil and task ~= nil then
    err.task = { id = task:id(), name = task:name() }
    err.spawned_at = site
    err.stack = err.stack or stack
  elseif task ~= nil and err.spawned_at == nil and err.task.id == task:id() then
    err.spawned_at = site
  end
  return err
end

--- `errors.raised` for a task that failed, with the traceback of its coroutine.
-- @param raw the value raised
-- @tparam conc.Task task the task
-- @tparam thread co its coroutine, which keeps the traceback
-- @tparam ?string site where the task was started
-- @treturn table the conc error
-- @function from_task
function M.from_task(raw, task, co, site)
  return M.raised(raw, task, site, debug.traceback(co))
end

--- One error that holds the non-nil errors given (its *errors* list), its message theirs
-- one per line, as Go's `errors.Join` (E4).
-- @param ... errors, nil ones skipped
-- @treturn ?table the join, or nil when no error is given
-- @function join
M.join = core.with_stack(function(stack, ...)
  local list, lines = {}, {}
  for i = 1, select("#", ...) do
    local e = select(i, ...)
    if e ~= nil then
      list[#list + 1] = e
      lines[#lines + 1] = tostring(is_error(e) and e.message or e)
    end
  end
  if #list == 0 then return nil end
  local err = setmetatable({ message = table.concat(lines, "\n"), errors = list }, Error)
  stamp(err, stack)
  err.task = current_task()
  return err
end)

-- looking inside -------------------------------------------------------------------------

-- Calls visit(node) on err and what it wraps, pre-order and depth first (a join's errors
-- in order), until visit returns non-nil; returns that.
local function walk(err, visit)
  local found = visit(err)
  if found ~= nil then return found end
  if is_error(err) then
    if err.errors then
      for _, e in ipairs(err.errors) do
        found = walk(e, visit)
        if found ~= nil then return found end
      end
    elseif err.cause ~= nil then
      return walk(err.cause, visit)
    end
  end
  return nil
end

--- Whether `err` or anything it wraps (through wraps and joins) is `target` (E2, E3).
-- @param err the error
-- @param target the error looked for, e.g. `errors.canceled`
-- @treturn boolean
-- @function is
function M.is(err, target)
  if err == nil or target == nil then return err == target end
  return walk(err, function(e) if e == target then return true end end) == true
end

--- What `err` wraps; a join is not opened (E5).
-- @param err the error
-- @return the wrapped error, or nil
-- @function unwrap
function M.unwrap(err)
  if is_error(err) and not err.errors then return err.cause end
  return nil
end

--- The innermost error, the one that wraps nothing (E10); a join is not opened.
-- @param err the error
-- @return the innermost error (`err` itself when it wraps nothing)
-- @function cause
function M.cause(err)
  while is_error(err) and not err.errors and err.cause ~= nil do err = err.cause end
  return err
end

--- The first kind found in err's tree, depth first (E6).
-- @param err the error
-- @treturn ?string the kind, or nil
-- @function kind
function M.kind(err)
  return walk(err, function(e) if is_error(e) then return e.kind end end)
end

--- Whether `err` is a bug: a raw error (anything `errors.new` or `errors.wrap` did not
-- make), judged by the outermost layer (E18).
-- @param err the error
-- @treturn boolean false for nil and for well-formed errors
-- @function is_bug
function M.is_bug(err)
  if err == nil then return false end
  if not is_error(err) then return true end
  return err.bug == true
end

-- the sentinels -------------------------------------------------------------------------

--- What `ctx:err()` returns for a ctx that was cancelled. Compare with `==` or
-- `errors.is` (E20). Made once, so it carries no stack.
-- @value canceled
M.canceled = setmetatable({ message = "context canceled", kind = "canceled" }, Error)

--- What `ctx:err()` returns for a ctx whose deadline passed (transient). Compare with `==`
-- or `errors.is` (E20). Made once, so it carries no stack.
-- @value deadline_exceeded
M.deadline_exceeded = setmetatable({
  message = "context deadline exceeded", kind = "deadline_exceeded", transient = true,
}, Error)

-- reports -------------------------------------------------------------------------

local function json_string(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', function(c)
    local b = c:byte()
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" elseif c == "\t" then return "\\t"
    elseif b < 32 or b == 127 then return ("\\u%04x"):format(b) end
    return c
  end) .. '"'
end

-- JSON for a record: nil is null, tables are arrays (1..n, nothing else) or objects with
-- sorted keys; functions and the like are strings; a table met again is "<cycle>".
local function json(v, seen)
  local t = type(v)
  if v == nil then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return json_string(tostring(v)) end
    if v == math.floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  elseif t == "string" then return json_string(v)
  elseif t ~= "table" then return json_string(tostring(v))
  end
  if seen[v] then return '"<cycle>"' end
  seen[v] = true
  local out, n = {}, 0
  for _ in pairs(v) do n = n + 1 end
  if n > 0 and n == #v then
    for i = 1, n do out[i] = json(v[i], seen) end
    seen[v] = nil
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local val = v[k]
    if val == nil then val = v[tonumber(k)] end
    out[i] = json_string(k) .. ":" .. json(val, seen)
  end
  seen[v] = nil
  return "{" .. table.concat(out, ",") .. "}"
end

local KEYS = { "id", "time", "host", "pid", "task", "kind", "message", "user", "transient", "details",
  "stack", "stack_hash", "cause" }

-- The record of err (a layer) as JSON, its cause's record nested, down the chain. Keys
-- with no value are null; a join adds `errors`, the records of what it holds.
local function record(err, id, time)
  local parts = {}
  local fields = is_error(err) and err or { message = tostring(err) }
  for i, k in ipairs(KEYS) do
    local v = fields[k]
    if k == "task" and v ~= nil and fields.spawned_at then
      v = { id = v.id, name = v.name, spawned_at = fields.spawned_at }
    end
    if k == "id" and v == nil then v = id end
    if k == "time" and v == nil then v = time end
    if k == "cause" then
      v = v ~= nil and record(v) or "null"
    else
      v = json(v, {})
    end
    parts[i] = json_string(k) .. ":" .. v
  end
  if fields.bug then parts[#parts + 1] = '"bug":true' end
  if is_error(err) and err.errors then
    local list = {}
    for i, e in ipairs(err.errors) do list[i] = record(e) end
    parts[#parts + 1] = '"errors":[' .. table.concat(list, ",") .. "]"
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function default_sink(line)
  io.stderr:write(line, "\n")
end
local sink = default_sink

--- Where `errors.report` writes the records.
-- @tparam ?function fn called as `fn(line)` with each record, one JSON line without its
-- newline; nil restores the default, stderr
-- @function set_sink
function M.set_sink(fn)
  if fn ~= nil and type(fn) ~= "function" then
    fail("errors.set_sink: bad argument #1 (function expected, got %s)", type(fn))
  end
  sink = fn or default_sink
end

--- Writes err's full record (one JSON line: *id*, *time*, *host*, *pid*, *task*, *kind*,
-- *message*, *user*, *transient*, *details*, *stack*, *stack_hash*, and *cause*, the
-- record of the next layer down) to the sink, and returns the line to show the user
-- (E19). A raw value is reported as a bug.
-- @param err the error
-- @treturn string the nearest `user` message down the chain with the log id; "The
-- operation failed (log id X)." without one; for a bug, "An unexpected error occurred
-- (log id X); please report it."
-- @function report
function M.report(err)
  if not is_error(err) then err = M.raised(err, nil, nil, debug.traceback("", 2)) end
  local id = err.id or new_id()
  sink(record(err, id, err.time or utc_now()))
  if err.bug then return ("An unexpected error occurred (log id %s); please report it."):format(id) end
  local user = walk(err, function(e) if is_error(e) then return e.user end end)
  if user == nil then return ("The operation failed (log id %s)."):format(id) end
  return ("%s (log id %s)"):format(user, id)
end

--- The message, the task and the stack of every layer, for a person debugging
-- (`tostring` gives only the message).
-- @param err the error
-- @treturn string the text, several lines
-- @function verbose
function M.verbose(err)
  local out = {}
  local function add(e, depth)
    local pad = ("  "):rep(depth)
    if not is_error(e) then
      out[#out + 1] = pad .. "raw: " .. tostring(e)
      return
    end
    local head = pad .. tostring(e.message)
    if e.id then head = head .. " [log id " .. e.id .. "]" end
    out[#out + 1] = head
    if e.task then
      out[#out + 1] = pad .. ("in task#%d%s%s"):format(e.task.id, e.task.name and (" (" .. e.task.name .. ")") or "",
        e.spawned_at and (" started at " .. e.spawned_at) or "")
    end
    if e.stack then out[#out + 1] = pad .. e.stack:gsub("\n", "\n" .. pad) end
    if e.errors then
      for _, x in ipairs(e.errors) do add(x, depth + 1) end
    elseif e.cause ~= nil and not e.bug then
      out[#out + 1] = pad .. "caused by:"
      add(e.cause, depth + 1)
    end
  end
  add(err, 0)
  return table.concat(out, "\n")
end

return M
