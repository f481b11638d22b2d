-- heartbeat.lua: heartbeats, the book's three programs (Concurrency in Go, ch. 5).
--
-- 1. An interval heartbeat: a worker pulses every second and makes a result every two; the
--    reader prints both and gives up on the worker after a 2 s silence. Stopped at 10 s.
-- 2. A misbehaving worker: it pulses twice, then hangs without closing anything; the
--    reader notices the silence at once and says the worker is not healthy.
-- 3. A heartbeat at the start of each unit of work: one pulse before each result.
-- A pulse never blocks: conc.heartbeat() gives a channel that holds one beat, and a pulse
-- nobody has taken yet is dropped.
--   lua5.4 examples/heartbeat.lua [--scale S] [--virtual]
-- --scale multiplies every duration (0.01 runs it 100 times faster); --virtual runs it on
-- conc's virtual clock, so it ends at once with exact times.
local conc = require "conc"

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("heartbeat.lua", { { "scale", 1, options.positive }, { "virtual", false } })
local scale, virtual = opts.scale, opts.virtual
conc.virtual_time(virtual)

local t0
local function say(fmt, ...)
  print(("%5.2fs " .. fmt):format((conc.now() - t0) / scale, ...))
end

-- The worker of programs 1 and 2: pulses every `interval`, sends a result every two
-- intervals; `units` bounds how many times it goes round (nil: until ctx ends), after which
-- it hangs, as a stuck worker does.
local function interval_worker(ctx, interval, units)
  local beat, pulse = conc.heartbeat()
  local results = conc.chan()
  conc.go(function()
    local ticker, work = conc.ticker(interval), conc.ticker(2 * interval)
    local rounds = 0
    while units == nil or rounds < units do
      rounds = rounds + 1
      local i = conc.select(ctx:done(), ticker:chan(), work:chan())
      if i == 1 then break end
      if i == 2 then pulse() end
      if i == 3 then -- send the result, still pulsing while the reader is busy
        local sent = false
        while not sent do
          local j = conc.select(ctx:done(), ticker:chan(), conc.send(results, conc.now()))
          if j == 1 then break end
          if j == 2 then pulse() else sent = true end
        end
      end
      if ctx:err() then break end
    end
    ticker:stop()
    work:stop()
    if ctx:err() == nil then ctx:done():recv() end -- stuck: silent until told to stop
    results:close()
  end)
  return beat, results
end

-- The reader: prints pulses and results; false if the worker went silent for `timeout`.
local function read(ctx, beat, results, timeout)
  while true do
    local silence = conc.timer(timeout)
    local i, v, ok = conc.select(ctx:done(), beat, results, silence:chan())
    silence:stop()
    if i == 1 or (i == 3 and not ok) then return true end
    if i == 2 then say("pulse") end
    if i == 3 then say("results %.0f", (v - t0) / scale) end
    if i == 4 then return false end
  end
end

conc.run(function()
  print("1. interval heartbeat")
  t0 = conc.now()
  local ctx, cancel = conc.with_timeout(conc.background(), 10 * scale)
  local beat, results = interval_worker(ctx, 1 * scale)
  read(ctx, beat, results, 2 * scale)
  cancel()

  print("2. a worker that stops pulsing")
  t0 = conc.now()
  ctx, cancel = conc.with_cancel(conc.background())
  beat, results = interval_worker(ctx, 1 * scale, 2)
  if not read(ctx, beat, results, 2 * scale) then say("worker is not healthy!") end
  cancel()

  print("3. a heartbeat at the start of each unit of work")
  t0 = conc.now()
  ctx, cancel = conc.with_cancel(conc.background())
  local pulse
  beat, pulse = conc.heartbeat()
  local out = conc.chan()
  conc.go(function()
    for _, n in ipairs { 1, 2, 3, 4, 5 } do
      pulse()
      conc.sleep(0.1 * scale, ctx) -- the work of one unit
      if not out:send(n, ctx) then break end
    end
    out:close()
  end)
  while true do
    local i, v, ok = conc.select(beat, out)
    if i == 1 then say("pulse") end
    if i == 2 then
      if not ok then break end
      say("results %d", v)
    end
  end
  cancel()
end)
