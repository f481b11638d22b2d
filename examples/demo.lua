-- demo.lua: tasks, channels, select and timers working together.
--
-- Three workers take jobs from a buffered channel; the main task collects their results
-- with select, beside a ticker that reports progress and a deadline it never reaches.
-- --scale multiplies every duration (0.1 runs it 10 times faster; the times printed stay
-- in the program's seconds); --virtual runs it on conc's virtual clock, so it ends at once
-- with exact times. Run it with `make demo`, or once conc is installed:
--   lua5.4 examples/demo.lua [--scale S] [--virtual]
local conc = require "conc"

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("demo.lua", { { "scale", 1, options.positive }, { "virtual", false } })
local scale, virtual = opts.scale, opts.virtual
conc.virtual_time(virtual)

local t0 = conc.now()
local function say(fmt, ...)
  print(("[%5.2fs] " .. fmt):format((conc.now() - t0) / scale, ...))
end

conc.run(function()
  local jobs = conc.chan(2)     -- a buffer of two: the producer runs a little ahead
  local results = conc.chan()   -- unbuffered: a worker waits until main takes its result

  for w = 1, 3 do
    conc.go(function()
      while true do
        local job, ok = jobs:recv()
        if not ok then return end           -- closed and drained: no more work
        conc.sleep(0.1 * job * scale)       -- the "work": job n takes n/10 s
        results:send(("worker %d finished job %d"):format(w, job))
      end
    end)
  end

  conc.go(function()
    for job = 1, 6 do
      jobs:send(job)
      say("queued job %d", job)
    end
    jobs:close()
    say("all jobs queued; jobs channel closed")
  end)

  local progress = conc.ticker(0.25 * scale)
  local deadline = conc.after(5 * scale)
  local done = 0
  while done < 6 do
    local i, msg = conc.select(results, progress:chan(), deadline)
    if i == 1 then
      done = done + 1
      say("%s (%d of 6)", msg, done)
    elseif i == 2 then
      say("tick: %d of 6 done, %d tasks alive", done, conc.stats().tasks)
    else
      say("deadline passed before all jobs were done")
      break
    end
  end
  progress:stop()
  say("finished: the deadline timer is simply dropped")
end)
