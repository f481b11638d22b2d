-- steward_tree.lua: stewards nest into trees (Concurrency in Go, ch. 5: "the steward is
-- itself a ward").
--
-- A worker does a unit of work every 0.5 s and pulses before each, but it hangs for good
-- on its 4th unit. The inner steward watches it with a 1 s heartbeat timeout and restarts
-- it; it may restart it 2 times in 10 s, then it gives up. The outer steward watches the
-- inner one, which pulses it on each healthy beat of the worker; when the inner one gives
-- up, the outer restarts it with a fresh count. Main stops the tree at 12 s.
--   lua5.4 examples/steward_tree.lua [--scale S] [--virtual]
-- --scale multiplies every duration (0.01 runs it 100 times faster); --virtual runs it on
-- conc's virtual clock, so it ends at once with exact times.
local conc = require "conc"

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("steward_tree.lua", { { "scale", 1, options.positive }, { "virtual", false } })
local scale, virtual = opts.scale, opts.virtual
conc.virtual_time(virtual)

local t0 = conc.now()
local function log(fmt, ...)
  print(("%5.2fs " .. fmt):format((conc.now() - t0) / scale, ...))
end

local function worker(ctx, pulse)
  for unit = 1, math.huge do
    pulse()
    if unit == 4 then
      log("worker: stuck on unit 4")
      ctx:done():recv()
      return nil, ctx:err()
    end
    if not conc.sleep(0.5 * scale, ctx) then return nil, ctx:err() end
  end
end

local function on_event(level)
  return function(ev)
    if ev.type ~= "start" then
      log("%s steward: %s %s (restarts so far: %d)", level, ev.type, ev.ward, ev.n)
    end
  end
end

local inner = conc.steward {
  name = "worker", ward = worker, timeout = 1 * scale,
  intensity = 2, period = 10 * scale, on_event = on_event("inner"),
}
local outer = conc.steward {
  name = "inner steward", ward = inner, timeout = 2 * scale,
  on_event = on_event("outer"),
}

conc.run(function()
  local ctx = conc.with_timeout(conc.background(), 12 * scale)
  outer(ctx)
  log("main: tree stopped")
end)
