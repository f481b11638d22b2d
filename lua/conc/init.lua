--- Go-style concurrency for Lua: tasks, channels and select, timers, contexts, groups,
-- waitgroups, semaphores and mutexes, pipeline stages, heartbeats and stewards, on a
-- scheduler written in C over libuv. Rate limiting is in @{conc.rate}, errors in
-- @{conc.errors}.
--
-- Durations are seconds (fractions allowed); times are readings of `conc.now()`. A call
-- that can fail in an expected way (a ctx that ended, a closed peer) returns `nil, err`;
-- misuse (a wrong argument, a send on a closed channel) raises an error whose message
-- starts with `conc:` and names the function. A ctx argument is optional unless the
-- call says otherwise; a ctx that is already done fails the call at once, and one that
-- ends while the call waits makes it return in the same scheduler turn.
-- @module conc

-- The facade of `require "conc"`: the C core (conc.core) does tasks, channels, select and
-- timers; this file adds what is composition: the error hooks, conc.dump, conc.pcall, and,
-- on interpreters without lua_yieldk (5.1, LuaJIT), the small wrappers that let a woken
-- send or select raise (see core.finish).
local core = require "conc.core"
local errors = require "conc.errors"
local protect = require "conc.protect"
local check = require "conc.check"

local M = {}

for _, name in ipairs {
  "go", "run", "yield", "sleep", "now", "self", "step", "stats", "seed", "virtual_time",
  "chan", "select", "send", "after", "timer", "ticker",
  "background", "with_cancel", "with_deadline", "with_timeout", "with_value", "without_cancel",
  "after_func", "waitgroup", "semaphore", "mutex",
} do
  M[name] = core[name]
end

local sync = require "conc.sync"
M.group, M.first, M.hedge = sync.group, sync.first, sync.hedge
M.rate = require "conc.rate"
local steward = require "conc.steward"
M.heartbeat, M.steward = steward.heartbeat, steward.steward
local pipeline = require "conc.pipeline"
for _, name in ipairs { "any", "or_done", "take", "bridge", "tee", "merge", "generate", "repeat_fn", "map" } do
  M[name] = pipeline[name]
end

-- conc.default (a select case that makes the select non-blocking) is documented in
-- csrc/select.c.
M.default = core.default
M.errors = errors
M.net = require "conc.net"

local function describe(obj)
  local name, site = tostring(obj), core.site(obj)
  if not site then return name end
  return ("%s %s at %s"):format(name, name:match("^task#") and "started" or "made", site)
end

local function indent(text)
  return "    " .. text:gsub("\n", "\n    ")
end

--- Tasks and the runtime.
-- @section runtime

--- A report of every live task, for debugging: one entry per task (and the top level
-- when it is blocked) with its id, name and status, what it is blocked on (the operation
-- and the object, with where that object was made), where it was started, and its
-- traceback. The deadlock error carries the same report.
-- @treturn string the report, one line or more per task
-- @function dump
function M.dump()
  local out = {}
  for _, r in ipairs(core.tasks()) do
    local line = (r.task and tostring(r.task) or "main (top level)") .. " " .. r.status
    if r.reason then
      local on = {}
      for i, obj in ipairs(r.on or {}) do on[i] = describe(obj) end
      line = line .. ": " .. r.reason .. (#on > 0 and " on " .. table.concat(on, ", ") or "")
    end
    out[#out + 1] = line
    if r.site then out[#out + 1] = "    started at " .. r.site end
    if r.co then out[#out + 1] = indent(debug.traceback(r.co)) end
  end
  return table.concat(out, "\n")
end

core.set_hooks {
  make_error = function(raw, task, co)
    return errors.from_task(raw, task, co, core.site(task))
  end,
  -- looked up at each call, so that a replaced errors.report is the one used
  report = function(err) return errors.report(err) end,
  dump = function() return M.dump() end,
  canceled = errors.canceled,
  deadline_exceeded = errors.deadline_exceeded,
}

--- Signals.
-- @section signals

--- A ctx that is cancelled when one of the signals arrives, as Go's
-- `signal.NotifyContext`; its cause is then a conc error of kind "signal" whose `signal`
-- field names the signal. While it watches, the signals do not have their default action
-- (SIGINT no longer kills the process), and the process stays alive: waiting for a
-- signal is not a deadlock. The watch ends when the ctx ends, for any reason.
-- @tparam Context ctx the parent
-- @string ... signal names: "SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", ...
-- @treturn Context the ctx
-- @treturn function stop(): stops watching and cancels the ctx
-- @function signal
function M.signal(ctx, ...)
  check.ctx("signal", ctx, 1)
  local cancel
  local watch = core.signal_watch("signal", 2, function(name)
    local cause = errors.new("received " .. name, { kind = "signal" })
    cause.signal = name
    cancel(cause)
  end, ...)
  local sctx
  sctx, cancel = core.with_cancel(ctx)
  local unregister = core.after_func(sctx, function() watch:stop() end)
  return sctx, function()
    unregister()
    watch:stop()
    cancel()
  end
end

--- A channel that receives the name of each of the signals that arrives, as Go's
-- `signal.Notify`: it holds 8, and a signal that finds it full is dropped. The watch
-- lasts until `stop()`, even if the channel is dropped; meanwhile the signals do not have
-- their default action and the process stays alive.
-- @string ... signal names, as for `signal`
-- @treturn Channel the channel of names
-- @treturn function stop(): stops watching
-- @function signals
function M.signals(...)
  local ch = core.chan(8)
  local watch = core.signal_watch("signals", 1, ch, ...)
  return ch, function() return watch:stop() end
end

--- A pcall through which a task may block, on every interpreter. Lua 5.2+ and LuaJIT can
-- yield across Lua's pcall, so it is that pcall there; on Lua 5.1, whose pcall cannot
-- yield, it runs `fn` so that its blocking calls still work.
-- @tparam function fn the function to call
-- @param ... its arguments
-- @treturn boolean true when `fn` returned, false when it raised
-- @return `fn`'s results, or the value it raised
-- @function pcall

-- Lua 5.2+ and LuaJIT can yield across pcall, so it is pcall itself there. PUC 5.1 cannot:
-- see conc.protect.
if core.puc51 then
  local function raw_error(raw) return raw end
  function M.pcall(fn, ...)
    return protect.xcall(fn, raw_error, ...)
  end
else
  M.pcall = pcall
end

if not core.has_yieldk then
  -- Without lua_yieldk a C function cannot run again after its task is resumed, so the
  -- calls that can be woken to raise (a send on a channel closed meanwhile, a nil reaching
  -- ch:iter) return a mark that core.finish turns into the error.
  local finish = core.finish
  local methods = getmetatable(core.chan()).__index
  local raw_send, raw_iter, raw_select = methods.send, methods.iter, core.select
  methods.send = function(...) return finish(raw_send(...)) end
  methods.iter = function(...)
    local nxt = raw_iter(...)
    return function() return finish(nxt()) end
  end
  M.select = function(...) return finish(raw_select(...)) end
end

return M
