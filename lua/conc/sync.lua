--- conc.group, conc.first and conc.hedge: structure built from tasks, channels, contexts
-- and the C core's waitgroups and semaphores (golang.org/x/sync/errgroup; the book's
-- replicated requests; hedged requests from "The Tail at Scale").
-- @module conc

--- Groups and replicated requests.
-- A function given to a group, `conc.first` or `conc.hedge` fails when it raises or
-- returns nil plus a non-nil error; a raised error keeps its traceback.
-- @section structure

local core = require "conc.core"
local errors = require "conc.errors"
local attempt = require "conc.protect".attempt
local check = require "conc.check"

local M = {}

local unpack = table.unpack or unpack
local fail, typename = check.fail, check.typename
local check_ctx, check_fn, check_whole = check.ctx, check.fn, check.whole

local function pack(...)
  return { n = select("#", ...), ... }
end

-- group -------------------------------------------------------------------------

local Group = { __name = "conc.group" }
Group.__index = Group

--- A group of tasks, as Go's errgroup: start tasks with `Group:go`, wait for all of them
-- and get the first error with `Group:wait`. gctx (when ctx is given) is cancelled by the
-- first error, with that error as its cause, or when `Group:wait` returns (G3).
-- @tparam[opt] Context ctx the parent of gctx
-- @treturn Group g the group
-- @treturn ?Context gctx a child of ctx for the group's tasks, only when ctx is given
-- @function group
function M.group(ctx)
  check_ctx("group", ctx, 1, true)
  local g = setmetatable({ wg = core.waitgroup(), active = 0 }, Group)
  local gctx
  if ctx ~= nil then gctx, g.cancel = core.with_cancel(ctx) end
  return g, gctx
end

local function check_group(g, fname)
  if getmetatable(g) ~= Group then fail("%s: bad self (group expected, got %s)", fname, typename(g)) end
end

-- The body of every group task: fn's failure (a raise counts, D6/G7) is the group's error
-- if it is the first (G1).
local function run(g, fn, ...)
  local ok, err = attempt(fn, ...)
  if not ok and g.err == nil then
    g.err = err
    if g.cancel then g.cancel(err) end
  end
  g.active = g.active - 1
  if g.limit then g.limit:release() end
  g.wg:done()
end

local function start(g, fn, ...)
  g.active = g.active + 1
  g.wg:add(1)
  core.go(run, g, fn, ...)
end

--- A group, made by `conc.group`.
-- @type Group

--- Runs `fn(...)` in a new task of the group; with a limit, blocks the caller until a
-- slot is free (G5). The first failure of a task is the group's error.
-- @tparam function fn the task's body
-- @param ... the arguments of `fn`
-- @function go
function Group:go(fn, ...)
  check_group(self, "g:go")
  check_fn("g:go", fn, 1)
  if self.limit then self.limit:acquire() end
  start(self, fn, ...)
end

--- As `Group:go`, but starts nothing when no slot is free.
-- @tparam function fn the task's body
-- @param ... the arguments of `fn`
-- @treturn boolean whether the task was started
-- @function try_go
function Group:try_go(fn, ...)
  check_group(self, "g:try_go")
  check_fn("g:try_go", fn, 1)
  if self.limit and not self.limit:try_acquire() then return false end
  start(self, fn, ...)
  return true
end

--- At most `n` tasks of the group active at once (G5); with 0, `Group:go` blocks and
-- `Group:try_go` fails.
-- @int n the limit, a whole number; negative removes the limit
-- @raise while tasks of the group are active (G6)
-- @function set_limit
function Group:set_limit(n)
  check_group(self, "g:set_limit")
  if type(n) ~= "number" then
    fail("g:set_limit: bad argument #1 (number expected, got %s)", typename(n))
  elseif n ~= math.floor(n) then
    fail("g:set_limit: bad argument #1 (whole number expected, got %s)", tostring(n))
  end
  if self.active ~= 0 then
    fail("g:set_limit: modify limit while %d tasks in the group are still active", self.active)
  end
  self.limit = n >= 0 and core.semaphore(n) or nil
end

--- Waits for every task of the group (G1, G2).
-- @return nil, or the first error (by completion order), which stays the group's error
-- @function wait
function Group:wait()
  check_group(self, "g:wait")
  self.wg:wait()
  if self.cancel then self.cancel(self.err) end
  return self.err
end

function Group:__tostring()
  return ("conc.group (%d active)"):format(self.active)
end

-- first, hedge -------------------------------------------------------------------------

--- Groups and replicated requests.
-- @section structure

-- The body of a replica: its outcome goes to the results channel, which has room for
-- every replica, so a replica never blocks after the race is decided.
local function replica(results, fn, ...)
  results:send(pack(attempt(fn, ...)))
end

--- Replicated requests: runs `fn(rctx, i, ...)` for i = 1..n, each in its own task, and
-- returns the results of the first that succeeds, cancelling the others (their rctx). It
-- returns once the race is decided, without waiting for the cancelled replicas.
-- @tparam Context ctx required (pass `conc.background()` for none); rctx is its child
-- @int n the number of replicas, >= 1
-- @tparam function fn a replica: `fn(rctx, i, ...)`
-- @param ... more arguments of `fn`
-- @return[1] ... the first success's results
-- @return[2] nil when every replica failed, or ctx ended
-- @return[2] the replicas' errors joined (`conc.errors.join`), or `ctx:err()`
-- @function first
function M.first(ctx, n, fn, ...)
  check_ctx("first", ctx, 1)
  check_whole("first", n, 2, 1, "the number of replicas")
  check_fn("first", fn, 3)
  local err = ctx:err()
  if err then return nil, err end -- D1
  local rctx, cancel = core.with_cancel(ctx)
  local results, errs = core.chan(n), {}
  for i = 1, n do core.go(replica, results, fn, rctx, i, ...) end
  for _ = 1, n do
    local r, _, cerr = results:recv(ctx)
    if cerr then cancel(); return nil, cerr end
    if r[1] then cancel(); return unpack(r, 2, r.n) end
    errs[#errs + 1] = r[2]
  end
  cancel()
  return nil, errors.join(unpack(errs))
end

--- Hedged requests: runs `fn(rctx, 1, ...)`, and another replica `fn(rctx, i, ...)` every
-- `opts.delay` seconds while none has succeeded, up to `opts.max` replicas in all. A
-- replica that fails starts the next one at once, without waiting for the delay. Returns
-- as `conc.first` does.
-- @tparam Context ctx required (pass `conc.background()` for none); rctx is its child
-- @tparam table opts `delay` (seconds >= 0, required), `max` (replicas in all, the first
-- included; default 2: one hedge)
-- @tparam function fn a replica: `fn(rctx, i, ...)`
-- @param ... more arguments of `fn`
-- @return[1] ... the first success's results
-- @return[2] nil when every replica failed, or ctx ended
-- @return[2] the replicas' errors joined (`conc.errors.join`), or `ctx:err()`
-- @function hedge
function M.hedge(ctx, opts, fn, ...)
  check_ctx("hedge", ctx, 1)
  check.options("hedge", opts, 2, { delay = true, max = true })
  local delay, max = opts.delay, opts.max == nil and 2 or opts.max
  if type(delay) ~= "number" or not (delay >= 0) then
    fail("hedge: bad argument #2 (opts.delay must be a number of seconds >= 0, got %s)", tostring(delay))
  end
  check_whole("hedge", max, 2, 1, "opts.max")
  check_fn("hedge", fn, 3)
  local err = ctx:err()
  if err then return nil, err end -- D1
  local rctx, cancel = core.with_cancel(ctx)
  local results, errs, started, running = core.chan(max), {}, 0, 0
  local timer = core.timer(delay)
  local args = pack(...)
  local function launch()
    started, running = started + 1, running + 1
    core.go(replica, results, fn, rctx, started, unpack(args, 1, args.n))
    if started < max then timer:reset(delay) else timer:stop() end
  end
  local function finish(...)
    cancel()
    timer:stop()
    return ...
  end
  launch()
  while true do
    local i, r = core.select(results, ctx:done(), started < max and timer:chan() or nil)
    if i == 1 then
      running = running - 1
      if r[1] then return finish(unpack(r, 2, r.n)) end
      errs[#errs + 1] = r[2]
      if started < max then
        launch()
      elseif running == 0 then
        return finish(nil, errors.join(unpack(errs)))
      end
    elseif i == 2 then
      return finish(nil, ctx:err())
    else
      launch()
    end
  end
end

return M
