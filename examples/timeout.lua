-- timeout.lua: timeouts and cancellation flowing down a pipeline (Go's context).
--
-- A generator task sends 1, 2, 3, ... one every 30 ms; a worker squares them; a consumer
-- prints them. Each stage takes the same ctx, passes it to every blocking call, and stops
-- when that ctx ends, so one ctx stops the whole pipeline, with no extra channel.
--   Run 1: the parent has a deadline (conc.with_timeout with a cause): it expires.
--   Run 2: the parent is cancelled explicitly, with a cause, by its owner.
-- The pipeline runs under a child of the parent (conc.with_cancel): the parent's err and
-- cause flow down to it. Each stage prints the call it stopped at, ctx:err() and ctx:cause().
-- --scale multiplies every duration (0.1 runs it 10 times faster; the times printed stay
-- in the program's seconds); --virtual runs it on conc's virtual clock, so it ends at once
-- with exact times. Run it with `make demo`, or once conc is installed:
--   lua5.4 examples/timeout.lua [--scale S] [--virtual]
local conc = require "conc"

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("timeout.lua", { { "scale", 1, options.positive }, { "virtual", false } })
local scale, virtual = opts.scale, opts.virtual
conc.virtual_time(virtual)

local t0 = conc.now()
local function say(fmt, ...)
  print(("[%.2fs] " .. fmt):format((conc.now() - t0) / scale, ...))
end

-- Starts the three stages under ctx; returns a waitgroup that is done once all stopped.
local function pipeline(ctx)
  local wg = conc.waitgroup()
  wg:add(3)
  -- call is the blocking call that failed; the err it returned is ctx:err()
  local function stopped(stage, call)
    say("  %-9s stopped at %-5s err = %s, cause = %s", stage, call .. ":", tostring(ctx:err()),
      tostring(ctx:cause()))
    wg:done()
  end
  local numbers, squares = conc.chan(), conc.chan()

  conc.go(function() -- generator
    local n = 0
    while true do
      n = n + 1
      local ok = numbers:send(n, ctx)
      if not ok then return stopped("generator", "send") end
      ok = conc.sleep(0.03 * scale, ctx)
      if not ok then return stopped("generator", "sleep") end
    end
  end)

  conc.go(function() -- worker
    while true do
      local n, ok = numbers:recv(ctx)
      if not ok then return stopped("worker", "recv") end
      ok = squares:send(n * n, ctx)
      if not ok then return stopped("worker", "send") end
    end
  end)

  conc.go(function() -- consumer
    while true do
      local sq, ok = squares:recv(ctx)
      if not ok then return stopped("consumer", "recv") end
      say("  consumer got %d", sq)
    end
  end)

  return wg
end

conc.run(function()
  say("run 1: a parent with a 100 ms timeout")
  local parent, cancel_parent = conc.with_timeout(conc.background(), 0.1 * scale, "request budget spent")
  local ctx, cancel = conc.with_cancel(parent)
  pipeline(ctx):wait()
  cancel()        -- always call cancel: it releases the ctx (here it is already done)
  cancel_parent() -- changes nothing now: err and cause stay those of the deadline
  say("  parent: err = %s, cause = %s", tostring(parent:err()), tostring(parent:cause()))

  say("run 2: the parent's owner cancels it after 50 ms")
  parent, cancel_parent = conc.with_cancel(conc.background())
  ctx, cancel = conc.with_cancel(parent)
  local wg = pipeline(ctx)
  conc.sleep(0.05 * scale)
  say("  owner cancels the parent")
  cancel_parent("shutting down")
  wg:wait()
  cancel()
  say("  parent: err = %s, cause = %s", tostring(parent:err()), tostring(parent:cause()))
end)
