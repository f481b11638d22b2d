-- fib.lua: fork and join with tasks, the runtime chapter's illustration of work stealing
-- (Concurrency in Go, ch. 6, "Work Stealing").
--
-- The book computes Fibonacci numbers with a goroutine per call: fib(n) forks fib(n-1)
-- and fib(n-2) and joins on their results. Here, above --cutoff, fib(n) forks one task for
-- fib(n-1), computes fib(n-2) itself meanwhile (the continuation, the work the parent has
-- left), and then joins with task:wait. At the cutoff and below, a call computes directly,
-- with no task: forking costs far more than a small fib, so fork/join programs stop
-- forking below some size. --both forks both halves as the book does, and the parent only
-- waits.
--
-- conc.go queues the new task and the parent carries on, so the run queue fills with
-- children (what the book calls stealing tasks); Go's runtime instead runs the child at
-- once and queues the parent's continuation (stealing continuations). Run in queue order,
-- the children pile up: "at most N alive at once" grows with the tree, where running the
-- child first keeps it near the tree's depth, the book's reason to prefer continuations.
-- Every join waits only for work forked before it, so nothing deadlocks. All these tasks
-- share one OS thread; the point is the shape of the work and what it costs: the tasks
-- started and the most alive at once (counted here) and the task switches (conc.stats()).
--
-- Nothing here sleeps, so the time printed is CPU time on the real clock (0 with --virtual,
-- whose clock moves only while tasks wait), divided by --scale as in the other examples.
--   lua5.4 examples/fib.lua [--n 10,15,20,25] [--cutoff 10] [--both] [--scale 1] [--virtual]
local conc = require "conc"

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local function whole(v) return v >= 0 and v == math.floor(v) end
local function whole_list(s) return s:match("^%d+[%d,]*$") ~= nil end
local opts = options.parse("fib.lua", {
  { "n", "10,15,20,25", whole_list }, { "cutoff", 10, whole }, { "both", false },
  { "scale", 1, options.positive }, { "virtual", false },
})
local ns = {}
for item in opts.n:gmatch("%d+") do ns[#ns + 1] = tonumber(item) end
local cutoff, both, scale, virtual = opts.cutoff, opts.both, opts.scale, opts.virtual

-- The direct computation below the cutoff: the naive recursion, as work to share out.
local function fib_direct(n)
  if n < 2 then return n end
  return fib_direct(n - 1) + fib_direct(n - 2)
end

local started, alive, most_alive = 0, 0, 0 -- forked tasks: started, alive now, most alive at once

local fib

-- The body of a forked task.
local function forked(n)
  local v = fib(n)
  alive = alive - 1
  return v
end

-- Forks fib(n) as a task.
local function fork(n)
  started, alive = started + 1, alive + 1
  if alive > most_alive then most_alive = alive end
  return conc.go(forked, n)
end

-- Joins: the result of a task forked by fork.
local function join(task)
  local ok, v = task:wait()
  if not ok then error(v, 0) end
  return v
end

function fib(n)
  if n <= cutoff then return fib_direct(n) end
  if both then
    local a, b = fork(n - 1), fork(n - 2)
    return join(a) + join(b)
  end
  local child = fork(n - 1)
  local rest = fib(n - 2) -- the continuation: the parent's own share, while the child waits its turn
  return join(child) + rest
end

conc.virtual_time(virtual)

conc.run(function()
  print(("fork/join Fibonacci: above the cutoff %d, fib(n) forks %s"):format(cutoff,
    both and "fib(n-1) and fib(n-2), then joins both" or "fib(n-1), computes fib(n-2), then joins"))
  for _, n in ipairs(ns) do
    started, alive, most_alive = 0, 0, 0
    local switches, t0 = conc.stats().switches, conc.now()
    local v = fib(n)
    local elapsed = (conc.now() - t0) / scale
    print(("fib(%d) = %d: %d tasks started, at most %d alive at once, %d task switches, %.3f s"):format(
      n, v, started, most_alive, conc.stats().switches - switches, elapsed))
  end
end)
