-- steward.lua: healing an unhealthy task, the book's program (Concurrency in Go, ch. 5).
--
-- The ward is irresponsible: it starts, says hello and then does nothing, not even pulse,
-- until it is told to halt. Its steward expects a pulse every 4 s; at each silence it
-- halts the ward (cancels its ctx) and starts a new one. Main halts the steward, and with
-- it the ward, at 9 s. So the ward starts at 0, 4 and 8 s and halts at 4, 8 and 9 s.
--   lua5.4 examples/steward.lua [--scale S] [--virtual]
-- --scale multiplies every duration (0.01 runs it 100 times faster); --virtual runs it on
-- conc's virtual clock, so it ends at once with exact times.
local conc = require "conc"

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("steward.lua", { { "scale", 1, options.positive }, { "virtual", false } })
local scale, virtual = opts.scale, opts.virtual
conc.virtual_time(virtual)

local t0 = conc.now()
local function log(fmt, ...)
  print(("%5.2fs " .. fmt):format((conc.now() - t0) / scale, ...))
end

local function irresponsible(ctx)
  log("ward: Hello, I'm irresponsible!")
  ctx:done():recv()
  log("ward: I am halting.")
end

local steward = conc.steward {
  name = "irresponsible",
  ward = irresponsible,
  timeout = 4 * scale,
  on_event = function(ev)
    if ev.type == "missed" then log("steward: ward unhealthy; restarting") end
  end,
}

conc.run(function()
  local ctx = conc.with_timeout(conc.background(), 9 * scale)
  conc.after_func(ctx, function() log("main: halting steward and ward.") end)
  steward(ctx)
  log("Done")
end)
