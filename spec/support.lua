--- Shared by the specs: what every spec file checks after each test.
local conc = require "conc"
local assert = require "luassert"

local M = {}

--- after_each: collects garbage and asserts that no task and no timer is left alive.
function M.nothing_left()
  collectgarbage()
  collectgarbage()
  local st = conc.stats()
  assert.are.equal(0, st.tasks, "tasks left alive")
  assert.are.equal(0, st.timers, "timers left pending")
end

--- This process's resident set size in KiB (Linux: /proc/self/status).
function M.rss_kb()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s*(%d+)")
    if kb then return tonumber(kb) end
  end
end

--- The message of an error raised by fn(...), or nil if it did not raise.
function M.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  return type(err) == "string" and err or tostring(err)
end

--- Messages several spec files assert.
M.DEADLOCK = "conc: all tasks are asleep - deadlock!"
M.CLOSED_SEND = "conc: send on closed channel"

function M.pack(...)
  return { n = select("#", ...), ... }
end

function M.starts_with(s, prefix)
  return type(s) == "string" and s:sub(1, #prefix) == prefix
end

--- Yields until every task given is blocked or finished (bounded, so a bug fails rather
-- than hangs). Orders events without sleeping.
function M.settle(...)
  local tasks = { ... }
  for _ = 1, 10000 do
    local all = true
    for _, t in ipairs(tasks) do
      local st = t:status()
      if st == "ready" or st == "running" then all = false end
    end
    if all then return end
    conc.yield()
  end
  error("settle: the tasks never blocked")
end

--- Starts fn(...) as a task and returns it once it is blocked (or done).
function M.parked(fn, ...)
  local t = conc.go(fn, ...)
  M.settle(t)
  return t
end

--- "source:line" of the line that calls here(), as conc records a call site and a
-- traceback prints it.
function M.here()
  local info = debug.getinfo(2, "Sl")
  return info.short_src .. ":" .. info.currentline
end

--- Runs fn(seen) with conc.errors.report replaced by a function that appends each reported
-- error to `seen`; restores report whatever happens. Returns seen.
function M.capture_reports(fn)
  local errors = conc.errors
  local seen = {}
  local old = errors.report
  errors.report = function(err) seen[#seen + 1] = err end
  local ok, err = pcall(fn, seen)
  errors.report = old
  if not ok then error(err, 0) end
  return seen
end

--- The interpreter: "Lua 5.4", "Lua 5.1", "LuaJIT", ...
M.interpreter = (jit and "LuaJIT") or _VERSION
M.puc51 = _VERSION == "Lua 5.1" and not jit

--- The command of the interpreter running the specs, and the repository (the parent of spec/).
M.EXE = ({ ["Lua 5.4"] = "lua5.4", ["Lua 5.3"] = "lua5.3", ["Lua 5.1"] = "lua5.1", LuaJIT = "luajit" })[M.interpreter]
M.ROOT = debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "") .. ".."

--- Runs `<this interpreter> <args>` in the repository, with conc from lua/ and
-- build/<lua>/release; env is extra "NAME=value" text. Returns its stdout, its stderr and
-- whether it exited with status 0.
function M.run_lua(args, env)
  local errfile = os.tmpname()
  local cmd = ("cd '%s' && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_PATH_5_3 -u LUA_CPATH_5_3 "
    .. "LUA_PATH='lua/?.lua;lua/?/init.lua' LUA_CPATH='build/%s/release/?.so' %s %s %s 2>'%s'; echo \"exit=$?\"")
    :format(M.ROOT, M.EXE, env or "", M.EXE, args, errfile)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local f = assert(io.open(errfile))
  local err = f:read("*a")
  f:close()
  os.remove(errfile)
  local status = out:match("exit=(%d+)\n$")
  return (out:gsub("exit=%d+\n$", "")), err, status == "0"
end

return M
