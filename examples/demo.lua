-- demo.lua: tasks, channels, select and timers working together.
--
-- Three workers take jobs from a buffered channel; the main task collects their results
-- with select, beside a ticker that reports progress and a deadline it never reaches.
-- Run it with `make demo`, or `lua5.4 examples/demo.lua` once conc is installed.
local conc = require "conc"

local t0 = conc.now()
local function say(fmt, ...)
  print(("[%5.2fs] " .. fmt):format(conc.now() - t0, ...))
end

conc.run(function()
  local jobs = conc.chan(2)     -- a buffer of two: the producer runs a little ahead
  local results = conc.chan()   -- unbuffered: a worker waits until main takes its result

  for w = 1, 3 do
    conc.go(function()
      while true do
        local job, ok = jobs:recv()
        if not ok then return end           -- closed and drained: no more work
        conc.sleep(0.1 * job)               -- the "work": job n takes n/10 s
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

  local progress = conc.ticker(0.25)
  local deadline = conc.after(5)
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
