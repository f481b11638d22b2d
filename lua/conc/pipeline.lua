--- conc's pipeline stages (the book's composable stages, Concurrency in Go ch. 4). Each
-- takes a ctx; when it ends, the stage stops and closes its output, leaving no task
-- behind. A stage made with a ctx that is already done returns a closed channel and starts
-- nothing. The exception is conc.any, which takes no ctx: its one task ends when it fires.
--
-- Every task of a stage with a ctx blocks only in calls that take the stage's ctx (or in a select
-- with ctx:done() among its cases), so a ctx that ends wakes all of them in the same
-- scheduler turn. The one place a stage cannot be interrupted is a user function running
-- (repeat_fn's fn, map's fn): a task running it ends when it returns, and sends nothing
-- more.
--
-- A user function fails, as DESIGN's rule for user functions says, when it raises or
-- returns nil plus a non-nil error. Its stage then stops at once: it closes its output (so
-- no reader hangs), its other tasks end, and the task that ran the function fails with
-- that error, which conc reports through conc.errors.report since nobody waits on a
-- stage's tasks. A failure that is just the stage's own ctx ending (the function returned
-- or raised ctx:err() after the ctx ended) is a normal stop, and is not reported.
-- @module conc

--- Pipeline stages.
-- The composable stages of *Concurrency in Go*. Each takes a ctx (all but `conc.any`) and
-- returns a new channel that a task of its own feeds; when the ctx ends, the stage stops,
-- closes its outputs and leaves no task behind. A stage made with a ctx that is already
-- done returns a closed channel and starts nothing. A value a stage has read but not yet
-- sent on when its ctx ends is dropped. A user function (`repeat_fn`'s, `map`'s) fails
-- when it raises or returns nil plus an error: its stage then stops at once, closing its
-- output, and the task that ran it fails with that error, which `conc.errors.report`
-- writes (nobody waits on a stage's tasks); failing with the stage's own `ctx:err()` is a
-- normal stop.
-- @section pipelines

local core = require "conc.core"
local check = require "conc.check"
local errors = require "conc.errors"
local attempt = require "conc.protect".attempt

local M = {}

local CHAN_MT = getmetatable(core.chan())
local unpack = table.unpack or unpack
local go, new_chan, send_case = core.go, core.chan, core.send

-- A select whose send cases may be woken to raise (a send on a channel closed meanwhile):
-- without lua_yieldk the woken call returns a mark that core.finish raises (see init.lua).
local select_ = core.select
if not core.has_yieldk then
  local finish, raw_select = core.finish, core.select
  select_ = function(...) return finish(raw_select(...)) end
end

local function check_chan(fname, ch, arg)
  if getmetatable(ch) ~= CHAN_MT then
    check.fail("%s: bad argument #%d (channel expected, got %s)", fname, arg, check.typename(ch))
  end
end

-- Checks every argument from position `first` on as a channel; returns them as a list
-- with its length.
local function check_chans(fname, first, ...)
  local n = select("#", ...)
  local list = { n = n, ... }
  for i = 1, n do check_chan(fname, list[i], first + i - 1) end
  return list
end

-- A new output channel, and whether the stage should start (false: ctx is already done,
-- and the channel is closed).
local function output(ctx)
  local out = new_chan()
  if ctx:err() then
    out:close()
    return out, false
  end
  return out, true
end

-- A stage with one output: unless ctx is already done, body(out) runs in a new task and
-- out closes when it returns (a body that raises closes out itself first).
local function stage(ctx, body)
  local out, live = output(ctx)
  if live then
    go(function()
      body(out)
      out:close()
    end)
  end
  return out
end

-- Sends on out what arrives on ch, at most n values, until ch closes or ctx ends.
local function forward(ctx, ch, out, n)
  for _ = 1, n do
    local v, ok = ch:recv(ctx)
    if not ok or not out:send(v, ctx) then return end
  end
end

-- Whether err, the failure of a user function, only says that ctx ended: a normal stop.
local function is_stop(ctx, err)
  local why = ctx:err()
  return why ~= nil and errors.is(err, why)
end

--- The first `n` values received from `ch`; reads no more than that.
-- @tparam Context ctx the stage's ctx (required)
-- @tparam Channel ch the input
-- @int n how many values, >= 0
-- @treturn Channel a channel that closes after them, when `ch` closes, or when ctx ends
-- @function take
function M.take(ctx, ch, n, ...)
  check.nargs("take", 3 + select("#", ...), 3)
  check.ctx("take", ctx, 1)
  check_chan("take", ch, 2)
  check.whole("take", n, 3, 0, "n")
  return stage(ctx, function(out) forward(ctx, ch, out, n) end)
end

--- Flattens a stream of streams: the values of every channel received from `chch`, each
-- read until it closes, one after the other.
-- @tparam Context ctx the stage's ctx (required)
-- @tparam Channel chch a channel of channels
-- @treturn Channel a channel that closes when `chch` closes or ctx ends
-- @raise (in the stage's task) when `chch` carries something else than a channel
-- @function bridge
function M.bridge(ctx, chch, ...)
  check.nargs("bridge", 2 + select("#", ...), 2)
  check.ctx("bridge", ctx, 1)
  check_chan("bridge", chch, 2)
  return stage(ctx, function(out)
    while ctx:err() == nil do
      local stream, ok = chch:recv(ctx)
      if not ok then return end
      if getmetatable(stream) ~= CHAN_MT then
        out:close()
        check.fail("bridge: the stream of streams carried %s, not a channel", check.typename(stream))
      end
      forward(ctx, stream, out, math.huge)
    end
  end)
end

--- The or-channel: a channel that closes as soon as any of the inputs gives a value or
-- closes (the value that fires it is consumed, as in the book). It sends nothing. One
-- task waits on all the inputs in one select, however many there are (the book recurses,
-- one goroutine per two inputs), and ends when it fires; with no inputs the channel never
-- closes and no task starts (the book's nil channel). There is no ctx: pass `ctx:done()`
-- as one of the inputs to make the ctx end it too.
-- @tparam Channel ... the inputs
-- @treturn Channel the or-channel
-- @function any
function M.any(...)
  local inputs = check_chans("any", 1, ...)
  local out = new_chan()
  if inputs.n > 0 then
    go(function()
      select_(unpack(inputs, 1, inputs.n))
      out:close()
    end)
  end
  return out
end

--- The values received from `ch`, until `ch` closes or ctx ends; either way the output
-- closes. Lets a reader loop over a channel it does not control and still stop with its
-- ctx.
-- @tparam Context ctx the stage's ctx (required)
-- @tparam Channel ch the input
-- @treturn Channel the output
-- @function or_done
function M.or_done(ctx, ch, ...)
  check.nargs("or_done", 2 + select("#", ...), 2)
  check.ctx("or_done", ctx, 1)
  check_chan("or_done", ch, 2)
  return stage(ctx, function(out) forward(ctx, ch, out, math.huge) end)
end

--- Every value received from `ch` goes to both outputs, to whichever reader is ready
-- first, and the next value is read only once both have it: a slow reader holds the
-- other back, as in the book.
-- @tparam Context ctx the stage's ctx (required)
-- @tparam Channel ch the input
-- @treturn Channel out1, which closes when `ch` closes or ctx ends
-- @treturn Channel out2, likewise
-- @function tee
function M.tee(ctx, ch, ...)
  check.nargs("tee", 2 + select("#", ...), 2)
  check.ctx("tee", ctx, 1)
  check_chan("tee", ch, 2)
  local out1, live = output(ctx)
  local out2 = output(ctx)
  if live then
    go(function()
      local done = ctx:done()
      local going = true
      while going do
        local v, ok = ch:recv(ctx)
        if not ok then break end
        local a, b = send_case(out1, v), send_case(out2, v)
        while a or b do -- a nil case is never ready: each output gets v once
          local i = select_(done, a, b)
          if i == 1 then
            going = false
            break
          elseif i == 2 then
            a = nil
          else
            b = nil
          end
        end
      end
      out1:close()
      out2:close()
    end)
  end
  return out1, out2
end

--- Fan-in: one channel of the values of every input, each input's in its order,
-- interleaved as they come. One task per input, as in the book.
-- @tparam Context ctx the stage's ctx (required)
-- @tparam Channel ... the inputs
-- @treturn Channel a channel that closes once every input has closed (at once with no
-- input), or when ctx ends
-- @function merge
function M.merge(ctx, ...)
  check.ctx("merge", ctx, 1)
  local inputs = check_chans("merge", 2, ...)
  local out, live = output(ctx)
  if not live then return out end
  if inputs.n == 0 then
    out:close()
    return out
  end
  local running, closed = inputs.n, false
  local function drain(ch)
    forward(ctx, ch, out, math.huge)
    running = running - 1
    -- the first task to see ctx end closes at once: the others' sends, taking the ended
    -- ctx, then fail without raising (D1)
    if not closed and (running == 0 or ctx:err()) then
      closed = true
      out:close()
    end
  end
  for i = 1, inputs.n do go(drain, inputs[i]) end
  return out
end

--- A channel that receives each argument once, in order (nil included), then closes; it
-- closes early when ctx ends.
-- @tparam Context ctx the stage's ctx (required)
-- @param ... the values
-- @treturn Channel the channel
-- @function generate
function M.generate(ctx, ...)
  check.ctx("generate", ctx, 1)
  local values = { n = select("#", ...), ... }
  return stage(ctx, function(out)
    for i = 1, values.n do
      if not out:send(values[i], ctx) then return end
    end
  end)
end

--- A channel of the results of calling `fn` again and again, until ctx ends; then it
-- closes. Each call gets no arguments, and its first result is sent. `fn` is called
-- before a reader is there, as in the book, so one call more than was read is made. If
-- `fn` fails (raises, or returns nil plus an error), the output closes and the stage's
-- task fails with that error (reported through `conc.errors.report`).
-- @tparam Context ctx the stage's ctx (required)
-- @tparam function fn the function
-- @treturn Channel the channel
-- @function repeat_fn
function M.repeat_fn(ctx, fn, ...)
  check.nargs("repeat_fn", 2 + select("#", ...), 2)
  check.ctx("repeat_fn", ctx, 1)
  check.fn("repeat_fn", fn, 2)
  return stage(ctx, function(out)
    while ctx:err() == nil do
      local ok, v = attempt(fn)
      if not ok then
        if is_stop(ctx, v) then return end
        out:close()
        error(v, 0)
      end
      if not out:send(v, ctx) then return end
    end
  end)
end

-- map -----------------------------------------------------------------------------

local MAP_OPTIONS = { workers = true, unordered = true }

-- The workers and ordering map's opts ask for.
local function map_options(opts)
  if opts == nil then return 1, false end
  local workers, unordered = opts, false
  if type(opts) == "table" then
    check.options("map", opts, 4, MAP_OPTIONS)
    workers, unordered = opts.workers, opts.unordered
    if workers == nil then workers = 1 end
    if unordered ~= nil and type(unordered) ~= "boolean" then
      check.fail("map: bad option unordered (boolean expected, got %s)", check.typename(unordered))
    end
    if type(workers) ~= "number" or workers ~= math.floor(workers) or workers < 1 or workers == math.huge then
      check.fail("map: bad option workers (a whole number >= 1 expected, got %s)",
        type(workers) == "number" and tostring(workers) or check.typename(workers))
    end
  elseif type(opts) == "number" then
    if opts ~= math.floor(opts) or opts < 1 or opts == math.huge then
      check.fail("map: bad argument #4 (workers must be a whole number >= 1, got %s)", tostring(opts))
    end
  else
    check.fail("map: bad argument #4 (number of workers or options table expected, got %s)",
      check.typename(opts))
  end
  return workers, unordered == true
end

-- A worker of an unordered map (or of a map with one worker, where order is kept
-- anyway): reads the input, calls fn, sends to the output. `st` is shared by the
-- workers: `running` of them still run; `closed` once the output is.
local function direct_worker(ctx, sctx, stop, ch, fn, out, st)
  local err
  while true do
    local v, ok = ch:recv(sctx)
    if not ok then break end
    local good, r = attempt(fn, v)
    if not good then
      if not is_stop(ctx, r) then err = r end
      stop()
      break
    end
    if not out:send(r, sctx) then break end
  end
  st.running = st.running - 1
  -- the input closed and every worker is done, or the stage was stopped: the first to
  -- see it closes the output, and the others' sends, taking the ended ctx, fail (D1)
  if not st.closed and (st.running == 0 or sctx:err()) then
    st.closed = true
    out:close()
  end
  if st.running == 0 then stop() end -- releases sctx from ctx
  if err ~= nil then error(err, 0) end
end

-- A worker of an ordered map: takes sequence numbers from `jobs`, calls fn on the input
-- the coordinator left in st.inputs, leaves the result in st.results and tells the
-- coordinator through `finished`. Neither channel ever holds more than `workers` values
-- (the window), so the send never blocks.
local function ordered_worker(ctx, sctx, stop, jobs, finished, fn, st)
  while true do
    local seq, ok = jobs:recv(sctx)
    if not ok then return end
    local v = st.inputs[seq]
    st.inputs[seq] = nil
    local good, r = attempt(fn, v)
    if not good then
      stop()
      if is_stop(ctx, r) then return end
      error(r, 0)
    end
    st.results[seq] = r
    finished:try_send(seq)
  end
end

-- The coordinator of an ordered map: numbers the inputs as it reads them, hands them to
-- the workers, and sends the results on in that order. At most `workers` values are read
-- and not yet sent on, so the reorder buffer (st.results) holds at most that many: a slow
-- value holds the others back rather than letting memory grow.
local function coordinator(sctx, stop, ch, out, workers, jobs, finished, st)
  local done = sctx:done()
  local results, ready = st.results, {}
  local next_in, next_out = 1, 1 -- the sequence numbers of the next value read and sent
  local open, emit = true, nil
  while open or next_out < next_in do
    local src = (open and next_in - next_out < workers) and ch or nil
    if emit == nil and ready[next_out] then emit = send_case(out, results[next_out]) end
    local i, v, ok = select_(done, src, emit, finished)
    if i == 1 then
      break
    elseif i == 2 then
      if ok then
        st.inputs[next_in] = v
        jobs:try_send(next_in) -- room: fewer than `workers` values are in flight
        next_in = next_in + 1
      else
        open = false
      end
    elseif i == 3 then
      results[next_out], ready[next_out] = nil, nil
      next_out, emit = next_out + 1, nil
    else
      ready[v] = true
    end
  end
  out:close()
  jobs:close()
  stop() -- ends the workers, and releases sctx from ctx
end

--- Fan-out/fan-in: a channel of `fn(v)` (its first result) for every `v` received from
-- `ch`, computed by `workers` tasks at once. The results come in the order of the inputs
-- unless `unordered` (then as they are ready); to keep the order, at most `workers`
-- values are in hand at once, so a slow one holds back the rest. If `fn` fails (raises,
-- or returns nil plus an error), the stage stops at once: the output closes and the
-- worker's task fails with that error (reported through `conc.errors.report`).
-- @tparam Context ctx the stage's ctx (required)
-- @tparam Channel ch the input
-- @tparam function fn called as `fn(v)`
-- @tparam[opt=1] int|table opts the number of workers, or `{workers = n, unordered = true}`
-- @treturn Channel a channel that closes once `ch` has closed and every result is sent
-- on, or when ctx ends
-- @function map
function M.map(ctx, ch, fn, opts, ...)
  check.nargs("map", 4 + select("#", ...), 4)
  check.ctx("map", ctx, 1)
  check_chan("map", ch, 2)
  check.fn("map", fn, 3)
  local workers, unordered = map_options(opts)
  local out, live = output(ctx)
  if not live then return out end
  -- the stage's own ctx, so that a failure of fn stops every task of the stage
  local sctx, stop = core.with_cancel(ctx)
  if workers == 1 or unordered then
    local st = { running = workers, closed = false }
    for _ = 1, workers do go(direct_worker, ctx, sctx, stop, ch, fn, out, st) end
  else
    local jobs, finished = new_chan(workers), new_chan(workers)
    local st = { inputs = {}, results = {} }
    for _ = 1, workers do go(ordered_worker, ctx, sctx, stop, jobs, finished, fn, st) end
    go(coordinator, sctx, stop, ch, out, workers, jobs, finished, st)
  end
  return out
end

return M
