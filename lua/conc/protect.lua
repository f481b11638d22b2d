--- conc.protect (internal): running a user's function protected, inside a task.
-- `xcall` is pcall that keeps the traceback of the raise and lets the task block on every
-- interpreter; `attempt` applies DESIGN's rule for a user function handed to a group,
-- `first`, `hedge` or a steward: it fails when it raises or returns nil plus an error.
local core = require "conc.core"
local errors = require "conc.errors"

local M = {}

local unpack = table.unpack or unpack

local function pack(...)
  return { n = select("#", ...), ... }
end

--- xcall(fn, on_error, ...): runs fn(...); returns true and its results, or false and
-- on_error(raw, stack) where stack is the traceback where the error was raised.
if core.puc51 then
  -- PUC 5.1 cannot yield across pcall: fn runs in a coroutine of its own, whose yields
  -- (its blocking calls) are passed on to the scheduler and their results back. A
  -- coroutine that died keeps its stack, so the traceback is read after the fact.
  function M.xcall(fn, on_error, ...)
    if core.self() == nil then -- the top level blocks without yielding: xpcall will do
      local args = pack(...)
      return xpcall(function() return fn(unpack(args, 1, args.n)) end,
                    function(raw) return on_error(raw, debug.traceback("", 2)) end)
    end
    -- a Lua function around fn: 5.1's coroutine.create takes no C function or callable
    local co = coroutine.create(function(...) return fn(...) end)
    local prev = core.exec(co)
    local r = pack(coroutine.resume(co, ...))
    while r[1] and coroutine.status(co) == "suspended" do
      r = pack(coroutine.resume(co, coroutine.yield(unpack(r, 2, r.n))))
    end
    core.exec(prev)
    if not r[1] then return false, on_error(r[2], debug.traceback(co)) end
    return unpack(r, 1, r.n)
  end
else
  function M.xcall(fn, on_error, ...)
    return xpcall(fn, function(raw) return on_error(raw, debug.traceback("", 2)) end, ...)
  end
end

local function as_error(raw, stack)
  local task = core.self()
  return errors.raised(raw, task, task and core.site(task), stack)
end

local function settle(ok, ...)
  if not ok then return false, (...) end
  if select("#", ...) >= 2 and (...) == nil and select(2, ...) ~= nil then
    return false, (select(2, ...))
  end
  return true, ...
end

--- attempt(fn, ...): true and fn's results when it succeeded; false and the error when it
-- raised (a conc error with the traceback; a bug when a raw value was raised) or returned
-- nil plus a non-nil error (that error, unchanged).
if core.puc51 then
  function M.attempt(fn, ...)
    return settle(M.xcall(fn, as_error, ...))
  end
else
  -- the same without a closure per call: groups start many tasks
  local function on_raise(raw) return as_error(raw, debug.traceback("", 2)) end
  function M.attempt(fn, ...)
    return settle(xpcall(fn, on_raise, ...))
  end
end

return M
