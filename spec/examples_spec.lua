-- The examples, each run as a user runs it (a separate process, under the interpreter
-- running the specs, with the release build) on conc's virtual clock (--virtual), so
-- nothing sleeps, and what it prints is checked: which events happen, when, and in what
-- order where the order is fixed. A few runs use the real clock with a tiny --scale, to
-- check that the option works; those check only the shape of the output.
--   demo.lua: tasks, channels, select and timers together.
--   timeout.lua, replicated.lua: timeouts and cancellation, replicated requests (the
--   book's ch. 4 and 5), against X13, X18 and X19 of SEMANTICS.md section 4 and conc.first.
--   primes.lua: the book's prime finder, a pipeline fanned out over workers (issue 6).
--   fib.lua: fork/join with tasks, the runtime chapter's work-stealing illustration (issue 6).
--   rate_limit.lua: the book's APIConnection (issue 4), against R3, R11, R17 and R29 of
--   SEMANTICS.md section 5 and rate.multi's booking on every limiter at once.
--   errors.lua, heartbeat.lua, steward.lua, steward_stream.lua, steward_tree.lua: the
--   book's error propagation and healing of unhealthy tasks (issue 5).
local conc = require "conc"
local support = require "support"

--- Runs examples/<name>.lua with args; returns its stdout and stderr, asserting it exited 0.
local function run(name, args)
  local out, err, ok = support.run_lua("examples/" .. name .. ".lua " .. (args or ""))
  assert.is_true(ok, name .. " failed:\n" .. err)
  return out, err
end

local function lines_of(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- The times (in the example's seconds) of the lines "%5.2fs text" whose text matches pattern.
local function event_times(out, pattern)
  local t = {}
  for _, line in ipairs(lines_of(out)) do
    local at, text = line:match("^%s*([%d.]+)s (.*)$")
    if at and text:find(pattern) then t[#t + 1] = tonumber(at) end
  end
  return t
end

-- Times are printed with 2 decimals; on virtual time they are exact before rounding.
local EPS = 0.006

-- The lines "[0.10s] text" (demo.lua, timeout.lua) whose text matches pattern, in print
-- order: { {t = seconds, text = text, captures = {...}}, ... }.
local function stamped(out, pattern)
  local found = {}
  for _, line in ipairs(lines_of(out)) do
    local at, text = line:match("^%[%s*([%d.]+)s%] (.*)$")
    if at and text:find(pattern) then
      found[#found + 1] = { t = tonumber(at), text = text, captures = { text:match(pattern) } }
    end
  end
  return found
end

--- What primes.lua printed for args: the primes in print order, the time it says the search
-- took, and its first line.
local function primes_run(args)
  local out = run("primes", args)
  local lines = lines_of(out)
  assert.are.equal("Primes:", lines[2], out)
  local primes = {}
  for k = 3, #lines - 1 do
    local p = lines[k]:match("^\t(%d+)$")
    assert.is_not_nil(p, "unexpected line: " .. lines[k])
    primes[#primes + 1] = tonumber(p)
  end
  local took = lines[#lines]:match("^Search took: (%d+%.%d+) s$")
  assert.is_not_nil(took, "no time on the last line:\n" .. out)
  return primes, tonumber(took), lines[1]
end

local function is_prime(n)
  if n < 2 then return false end
  for d = 2, math.floor(math.sqrt(n)) do
    if n % d == 0 then return false end
  end
  return true
end

local function sorted(list)
  local copy = {}
  for k, v in ipairs(list) do copy[k] = v end
  table.sort(copy)
  return copy
end

--- What fib.lua printed for args: { [n] = {value =, started =, alive =, switches =} }, and
-- the n in print order.
local function fib_run(args)
  local out = run("fib", args)
  local lines = lines_of(out)
  assert.matches("^fork/join Fibonacci: above the cutoff %d+", lines[1])
  local results, order = {}, {}
  for k = 2, #lines do
    local n, v, started, alive, switches = lines[k]:match(
      "^fib%((%d+)%) = (%d+): (%d+) tasks started, at most (%d+) alive at once, (%d+) task switches, %d+%.%d+ s$")
    assert.is_not_nil(n, "unexpected line: " .. lines[k])
    n = tonumber(n)
    order[#order + 1] = n
    results[n] = { value = tonumber(v), started = tonumber(started), alive = tonumber(alive),
      switches = tonumber(switches) }
  end
  return results, order
end

local function fib_of(n)
  local a, b = 0, 1
  for _ = 1, n do a, b = b, a + b end
  return a
end

-- The tasks fib.lua starts for fib(n): above the cutoff, one fork (two with --both) plus
-- those of fib(n-1), which the forked task computes, and of fib(n-2), computed by the
-- parent (or by its second fork).
local function forks(n, cutoff, per_call)
  if n <= cutoff then return 0 end
  return per_call + forks(n - 1, cutoff, per_call) + forks(n - 2, cutoff, per_call)
end

local STOPPED = "^  (%a+)%s+stopped at (%a+): err = (.-), cause = (.*)$"

--- timeout.lua's two runs, split from its output: for each, the consumer's values and their
-- times, the stages' stops {t, err, cause} by stage, the parent's line, and its text.
local function timeout_runs(out)
  local one, two = out:match("^(.-run 1:[^\n]*\n.-)(%[[^\n]*run 2:.*)$")
  assert.is_not_nil(two, out)
  local runs = {}
  for k, text in ipairs { one, two } do
    local got, at = {}, {}
    for _, g in ipairs(stamped(text, "^  consumer got (%d+)$")) do
      got[#got + 1] = tonumber(g.captures[1])
      at[#at + 1] = g.t
    end
    local stops = {}
    for _, st in ipairs(stamped(text, STOPPED)) do
      stops[st.captures[1]] = { t = st.t, err = st.captures[3], cause = st.captures[4] }
    end
    local parent = stamped(text, "^  parent: err = (.-), cause = (.*)$")
    assert.are.equal(1, #parent, text)
    runs[k] = { got = got, at = at, stops = stops, parent = parent[1], text = text }
  end
  return runs[1], runs[2]
end

-- Every stage of a timeout.lua run stopped, at `t` (nil: any time), with that err and cause.
local function all_stopped(run_, t, err, cause)
  for _, stage in ipairs { "generator", "worker", "consumer" } do
    local st = run_.stops[stage]
    assert.is_not_nil(st, stage .. " did not stop:\n" .. run_.text)
    assert.are.same({ err, cause }, { st.err, st.cause })
    if t then assert.is_near(t, st.t, EPS) end
  end
  assert.are.same({ err, cause }, run_.parent.captures)
end

--- What replicated.lua printed for args: the cancelled handlers {h, t, load}, the ones that
-- answered {h, t, late} (the first one first), and the summary line {h, t, cancelled}.
local function replicated_run(args)
  local out = run("replicated", args)
  local cancelled, answered, summary = {}, {}, nil
  for _, line in ipairs(lines_of(out)) do
    local h, after, load = line:match("^handler%s+(%d+) cancelled after (%d+%.%d+) s %(its load was (%d+%.%d+) s%)$")
    local ah, took, late = line:match("^handler%s+(%d+) answered in (%d+%.%d+) s(.*)$")
    local sh, st, sn = line:match("^first answer: handler (%d+) after (%d+%.%d+) s; (%d+) handlers cancelled$")
    if h then
      cancelled[#cancelled + 1] = { h = tonumber(h), t = tonumber(after), load = tonumber(load) }
    elseif ah then
      assert.is_truthy(late == "" or late == ", too late", line)
      answered[#answered + 1] = { h = tonumber(ah), t = tonumber(took), late = late ~= "" }
    elseif sh then
      summary = { h = tonumber(sh), t = tonumber(st), cancelled = tonumber(sn) }
    else
      error("unexpected line: " .. line)
    end
  end
  assert.is_not_nil(summary, "no summary line in:\n" .. out)
  assert.are.equal(10, #cancelled + #answered, out)
  local seen = {}
  for _, list in ipairs { cancelled, answered } do
    for _, r in ipairs(list) do
      assert.is_nil(seen[r.h], "handler " .. r.h .. " printed twice")
      seen[r.h] = true
    end
  end
  assert.are.equal(summary.cancelled, #cancelled)
  assert.are.same({ h = summary.h, t = summary.t, late = false }, answered[1])
  return cancelled, answered, summary
end

--- The calls rate_limit.lua printed, in print order: { {t = seconds, name = call}, ... },
-- and its summary line's numbers.
local function rate_limit_calls(args)
  local out = run("rate_limit", args)
  local calls, summary = {}, nil
  for line in out:gmatch("[^\n]+") do
    local t, name = line:match("^%s*(%d+%.%d+)s (%a+)$")
    if t then
      calls[#calls + 1] = { t = tonumber(t), name = name }
    else
      local rf, ra, total = line:match("^done: (%d+) ReadFile and (%d+) ResolveAddress calls in (%d+%.%d+) s$")
      if rf then
        summary = { ReadFile = tonumber(rf), ResolveAddress = tonumber(ra), total = tonumber(total) }
      else
        assert.is_truthy(line:match("^API 2/s"), "unexpected line: " .. line)
      end
    end
  end
  assert.is_not_nil(summary, "no summary line in:\n" .. out)
  return calls, summary
end

--- The times of the calls named in `names` (a set), in print order.
local function times_of(calls, names)
  local ts = {}
  for _, c in ipairs(calls) do
    if names[c.name] then ts[#ts + 1] = c.t end
  end
  return ts
end

-- The book's limits (simulated seconds), and the calls that take a token from each.
local BOTH = { ReadFile = true, ResolveAddress = true }
local LIMITS = {
  { what = "API 2/s", limit = 2, burst = 2, calls = BOTH },
  { what = "API 10/min", limit = 10 / 60, burst = 10, calls = BOTH },
  { what = "disk 1/s", limit = 1, burst = 1, calls = { ReadFile = true } },
  { what = "network 3/s", limit = 3, burst = 3, calls = { ResolveAddress = true } },
}

describe("examples", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("demo.lua (tasks, channels, select and timers)", function()
    it("T1: six jobs, each finished once, at the times the workers' sleeps give; a tick every 0.25 s; the deadline never comes", function()
      local out = run("demo", "--virtual")
      local queued = stamped(out, "^queued job (%d)$")
      assert.are.equal(6, #queued, out)
      for k, q in ipairs(queued) do assert.are.equal(tostring(k), q.captures[1]) end
      assert.are.equal(1, #stamped(out, "^all jobs queued; jobs channel closed$"), out)
      -- three workers: jobs 1-3 start at 0 and job n takes n/10 s; jobs 4-6 start as 1-3 end
      local want = { 0.1, 0.2, 0.3, 0.5, 0.7, 0.9 }
      local finished = stamped(out, "^worker (%d) finished job (%d) %((%d) of 6%)$")
      assert.are.equal(6, #finished, out)
      for k, f in ipairs(finished) do
        local job, nth = tonumber(f.captures[2]), tonumber(f.captures[3])
        assert.are.equal(k, nth, "results are counted as they come")
        assert.are.equal(k, job, "job k ends k-th")
        assert.is_near(want[job], f.t, EPS)
      end
      local ticks = {}
      for _, tick in ipairs(stamped(out, "^tick: (%d) of 6 done")) do ticks[#ticks + 1] = tick.t end
      assert.are.same({ 0.25, 0.5, 0.75 }, ticks)
      assert.are.same({}, stamped(out, "^deadline passed"))
      local last = stamped(out, "^finished: the deadline timer is simply dropped$")
      assert.are.equal(1, #last, out)
      assert.is_near(0.9, last[1].t, EPS)
    end)

    it("the same shape with --scale 0.05 on the real clock", function()
      local out = run("demo", "--scale 0.05")
      local finished = stamped(out, "finished job %d %((%d) of 6%)$")
      assert.are.equal(6, #finished, out)
      for k, f in ipairs(finished) do assert.are.equal(tostring(k), f.captures[1]) end
      assert.are.same({}, stamped(out, "^deadline passed"))
      assert.matches("finished: the deadline timer is simply dropped\n$", out)
    end)
  end)

  describe("timeout.lua (X13, X18, X19: one ctx stops a whole pipeline)", function()
    it("X19/X18: the parent's deadline stops every stage at 0.1 s with its cause; X13/X15: cancelling the parent at 0.15 s stops them with the owner's cause", function()
      local one, two = timeout_runs(run("timeout", "--virtual"))
      -- a value every 0.03 s from 0: four before the 0.1 s deadline
      assert.are.same({ 1, 4, 9, 16 }, one.got)
      for k, t in ipairs { 0, 0.03, 0.06, 0.09 } do assert.is_near(t, one.at[k], EPS) end
      all_stopped(one, 0.1, "context deadline exceeded", "request budget spent")
      -- run 2 starts at 0.1 s: two values before the owner cancels, 0.05 s later
      assert.are.same({ 1, 4 }, two.got)
      for k, t in ipairs { 0.1, 0.13 } do assert.is_near(t, two.at[k], EPS) end
      local owner = stamped(two.text, "^  owner cancels the parent$")
      assert.are.equal(1, #owner)
      assert.is_near(0.15, owner[1].t, EPS)
      all_stopped(two, 0.15, "context canceled", "shutting down")
    end)

    it("the same stops with --scale 0.1 on the real clock, never before their time", function()
      local one, two = timeout_runs(run("timeout", "--scale 0.1"))
      for _, r in ipairs { one, two } do
        for k, v in ipairs(r.got) do assert.are.equal(k * k, v, "squares of 1, 2, 3, ... in order") end
      end
      all_stopped(one, nil, "context deadline exceeded", "request budget spent")
      all_stopped(two, nil, "context canceled", "shutting down")
      assert.is_true(one.stops.consumer.t >= 0.1 - EPS, "the deadline came early")
    end)
  end)

  describe("replicated.lua (conc.first: the first answer wins, the rest are cancelled)", function()
    it("on virtual time: the fastest of 10 handlers answers, and the 9 others are cancelled at that very time", function()
      for _, seed in ipairs { 1, 2, 3 } do
        local cancelled, answered, summary = replicated_run("--virtual --seed " .. seed)
        assert.are.equal(1, #answered)
        assert.are.equal(9, #cancelled)
        for _, c in ipairs(cancelled) do
          assert.is_near(summary.t, c.t, EPS)
          assert.is_true(c.load >= summary.t - EPS, "a slower handler won")
        end
      end
    end)

    it("the same shape on the real clock at its default --scale 0.01", function()
      -- a handler whose load ends in the winner's turn (a loaded machine can make that
      -- happen to several) answers too late rather than being cancelled
      local _, answered = replicated_run("")
      for k = 2, #answered do assert.is_true(answered[k].late) end
    end)
  end)

  describe("primes.lua (DESIGN Pipelines: the book's prime finder, fanned out over workers)", function()
    -- With seed 1 (the default), the 10th prime drawn is the 55th number and the 11th the
    -- 71st. An unordered map with up to 4 workers moves a result by a few places at most,
    -- so the first 10 primes to come out are the same set as the first 10 drawn.
    it("every number printed is prime, exactly --count of them; ordered: the same list for 1, 2 and 4 workers; unordered: the same set", function()
      local want = primes_run("--workers 1")
      assert.are.equal(10, #want)
      for _, p in ipairs(want) do assert.is_true(is_prime(p), p .. " is not prime") end
      for _, workers in ipairs { 1, 2, 4 } do
        local ordered, _, head = primes_run("--workers " .. workers)
        assert.matches(("with %d workers?, ordered, seed 1$"):format(workers), head)
        assert.are.same(want, ordered)
        local unordered
        unordered, _, head = primes_run("--unordered --workers " .. workers)
        assert.matches(("with %d workers?, unordered, seed 1$"):format(workers), head)
        assert.are.equal(10, #unordered)
        for _, p in ipairs(unordered) do assert.is_true(is_prime(p), p .. " is not prime") end
        assert.are.same(sorted(want), sorted(unordered))
      end
    end)

    it("--count and --seed: the first n primes of the stream the seed gives", function()
      local ten = primes_run("--workers 2")
      assert.are.same({ ten[1], ten[2], ten[3] }, (primes_run("--workers 2 --count 3")))
      local other = primes_run("--seed 7 --count 5")
      assert.are.equal(5, #other)
      for _, p in ipairs(other) do assert.is_true(is_prime(p), p .. " is not prime") end
      assert.are_not.same({ ten[1], ten[2], ten[3], ten[4], ten[5] }, other)
    end)

    -- One worker tests one number per simulated second, so the search takes as many
    -- seconds as numbers were drawn up to the 10th prime, d; w workers test w at a time
    -- and take ceil(d / w) s. --scale changes only how long a simulated second lasts.
    it("--delay on virtual time: w workers wait w at a time, so the search takes ceil(d / w) s", function()
      local want, d = primes_run("--workers 1 --delay 1 --virtual")
      assert.are.equal(d, math.floor(d))
      assert.is_true(d >= 10)
      for _, workers in ipairs { 2, 4 } do
        for _, mode in ipairs { "", " --unordered", " --scale 0.01" } do
          local got, took = primes_run(("--workers %d --delay 1 --virtual%s"):format(workers, mode))
          assert.are.same(sorted(want), sorted(got))
          assert.is_near(math.ceil(d / workers), took, 0.001)
        end
      end
    end)
  end)

  describe("fib.lua (fork/join with tasks, the runtime chapter's work stealing)", function()
    it("fib(n) right for several n; one task forked per call above the cutoff, none at or below it", function()
      local results, order = fib_run("--n 0,1,2,5,6,12,18 --cutoff 5")
      assert.are.same({ 0, 1, 2, 5, 6, 12, 18 }, order)
      for _, n in ipairs(order) do
        local r = results[n]
        assert.are.equal(fib_of(n), r.value, "fib(" .. n .. ")")
        assert.are.equal(forks(n, 5, 1), r.started, "tasks started for fib(" .. n .. ")")
        assert.is_true(r.alive <= r.started and r.switches >= r.started)
      end
      assert.are.equal(0, results[5].started)
      assert.are.equal(1, results[6].started)
      assert.is_true(results[18].started > 1 and results[18].alive > 1)
    end)

    it("--both forks both halves, as the book does: the same values, twice the tasks", function()
      local results = fib_run("--n 8,14 --cutoff 4 --both")
      for _, n in ipairs { 8, 14 } do
        assert.are.equal(fib_of(n), results[n].value)
        assert.are.equal(forks(n, 4, 2), results[n].started)
      end
    end)

    it("its defaults: fib(10), fib(15), fib(20) and fib(25) with the cutoff 10", function()
      local results, order = fib_run("--virtual --scale 0.5")
      assert.are.same({ 10, 15, 20, 25 }, order)
      for _, n in ipairs(order) do
        assert.are.equal(fib_of(n), results[n].value)
        assert.are.equal(forks(n, 10, 1), results[n].started)
      end
      assert.are.equal(75025, results[25].value)
    end)
  end)

  it("the examples refuse an unknown option or a bad value, with a usage line and status 2", function()
    for _, cmd in ipairs { "primes.lua --workers 0", "primes.lua --frobnicate", "fib.lua --n x",
      "fib.lua --cutoff", "timeout.lua --scale -1", "demo.lua --fast", "replicated.lua --virtual --seed" } do
      local out, err, ok = support.run_lua("examples/" .. cmd)
      assert.is_false(ok, cmd .. " was accepted")
      assert.are.equal("", out, cmd)
      assert.matches("^usage: " .. cmd:match("^[%w_]+") .. "%.lua ", err)
    end
  end)

  describe("rate_limit.lua", function()
    it("R17: 20 calls, printed as they happen, and no limit lets more than burst + limit*w calls through in any window of w s", function()
      local calls, summary = rate_limit_calls("--virtual")
      assert.are.equal(20, #calls)
      assert.are.equal(10, #times_of(calls, { ReadFile = true }))
      assert.are.equal(10, #times_of(calls, { ResolveAddress = true }))
      for k = 2, #calls do
        assert.is_true(calls[k].t >= calls[k - 1].t, "calls printed out of time order")
      end
      assert.are.same({ ReadFile = 10, ResolveAddress = 10, total = calls[#calls].t }, summary)
      for _, l in ipairs(LIMITS) do
        local ts = times_of(calls, l.calls)
        for i = 1, #ts do
          for j = i, #ts do
            local n, w = j - i + 1, ts[j] - ts[i]
            assert.is_true(n <= l.burst + l.limit * w + 1e-9,
              ("%s: %d calls between %.2f s and %.2f s"):format(l.what, n, ts[i], ts[j]))
          end
        end
      end
    end)

    -- The schedule, worked out by hand. Every caller books its call in its first turn, at
    -- t = 0, in the order the callers start: the 10 ReadFile, then the 10 ResolveAddress.
    -- rate.multi takes a token from each of its limiters at once, for the time the slowest
    -- can grant it (R11: the j-th booking on a bucket of burst b, full at first (R3), can
    -- act at max(0, (j - b) / limit)), and wait returns at that time (R29).
    -- ReadFile k (k = 1..10) is the k-th booking on the disk (1/s, burst 1): k - 1 s; on
    -- the API 2/s it is (k - 2) / 2 s, less; on the API 10/min, within the burst: 0. So
    -- ReadFile comes at 0, 1, ..., 9 s, one a second.
    -- ResolveAddress k is the (10 + k)-th booking on the API 10/min (burst 10): 6k s; on
    -- the API 2/s (10 + k - 2) / 2 s and on the network (k - 3) / 3 s, both less. So
    -- ResolveAddress comes at 6, 12, ..., 60 s: after the first 10 API calls (the minute's
    -- burst), the rest come 6 s apart, 10 a minute.
    it("R3/R11/R29: ReadFile comes at 0, 1, ..., 9 s (disk 1/s); ResolveAddress, booked after the minute's burst is spent, at 6, 12, ..., 60 s (10/min)", function()
      local calls = rate_limit_calls("--virtual")
      local rf, ra = times_of(calls, { ReadFile = true }), times_of(calls, { ResolveAddress = true })
      assert.are.equal(10, #rf)
      assert.are.equal(10, #ra)
      for k = 1, 10 do
        assert.is_near(k - 1, rf[k], EPS)
        assert.is_near(6 * k, ra[k], EPS)
      end
    end)

    it("R29: --scale changes only the real time a simulated second lasts, not the schedule", function()
      local base = rate_limit_calls("--virtual")
      for _, scale in ipairs { "0.001", "3" } do
        local calls = rate_limit_calls("--virtual --scale " .. scale)
        assert.are.equal(#base, #calls)
        -- Per call, not across calls: two calls due at the same simulated time may print
        -- in either order once scaling rounds their times differently.
        for name in pairs(BOTH) do
          local want, got = times_of(base, { [name] = true }), times_of(calls, { [name] = true })
          assert.are.equal(#want, #got)
          for k = 1, #want do assert.is_near(want[k], got[k], EPS) end
        end
      end
    end)
  end)

  describe("errors.lua (E17-E19, the book's error propagation)", function()
    it("a known error: the user reads the intermediate module's message and a log id; stderr has its record", function()
      local out, err = run("errors")
      local id = out:match("%[user%] Job 1 cannot run: its binaries are not available%. %(log id (%S+)%)\n")
      assert.is_not_nil(id, out)
      assert.matches("[top] well-formed error of kind job", out, 1, true)
      local records = lines_of(err)
      assert.are.equal(1, #records, err)
      assert.matches('"id":"' .. id .. '"', records[1], 1, true)
      assert.matches('"kind":"job"', records[1], 1, true)
      assert.matches('"message":"cannot run job \\"1\\": /bad/job/binary:', records[1], 1, true)
      assert.matches('"task":{"id":%d+,"name":"job runner"', records[1])
    end)

    it("a bug: an unwrapped raw error reaches the top, which shows the bug line with the record's log id", function()
      local out, err = run("errors", "--bug")
      local id = out:match("%[user%] An unexpected error occurred %(log id (%S+)%); please report it%.\n")
      assert.is_not_nil(id, out)
      assert.matches("[top] an unwrapped error reached the top: a bug", out, 1, true)
      local records = lines_of(err)
      assert.are.equal(1, #records, err)
      assert.matches('"id":"' .. id .. '"', records[1], 1, true)
      assert.matches('"bug":true', records[1], 1, true)
    end)
  end)

  describe("heartbeat.lua (W1-W3, the book's heartbeats)", function()
    it("an interval heartbeat every second, results every two, a stuck worker noticed, a pulse per unit", function()
      local out = run("heartbeat", "--virtual")
      local one, two, three = out:match("1%. [^\n]*\n(.*)2%. [^\n]*\n(.*)3%. [^\n]*\n(.*)$")
      assert.is_not_nil(three, out)
      local pulses = event_times(one, "^pulse$")
      if pulses[#pulses] == 10 then pulses[#pulses] = nil end -- a tick racing the 10 s stop
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, pulses)
      assert.are.same({ 2, 4, 6, 8 }, event_times(one, "^results"))
      for _, line in ipairs(lines_of(one)) do
        local at, n = line:match("^%s*([%d.]+)s results (%d+)$")
        if at then assert.are.equal(tonumber(at), tonumber(n), "a result carries the time it was made") end
      end
      -- it goes round twice (at 1 s a pulse; at 2 s both tickers fire: a pulse, a result or
      -- both), then falls silent
      local seen = {}
      for _, at in ipairs(event_times(two, "^pulse$")) do seen[at] = true end
      for _, at in ipairs(event_times(two, "^results")) do seen[at] = true end
      assert.are.same({ [1] = true, [2] = true }, seen, two)
      assert.are.same({ 4 }, event_times(two, "worker is not healthy!"), "noticed one timeout after the last beat")
      local kinds = {}
      for _, line in ipairs(lines_of(three)) do kinds[#kinds + 1] = line:match("s (%a+)") end
      assert.are.same({ "pulse", "results", "pulse", "results", "pulse", "results", "pulse", "results",
        "pulse", "results" }, kinds, "one pulse at the start of each unit of work")
    end)
  end)

  describe("steward.lua (W4, the book's irresponsible ward)", function()
    it("the ward starts at 0, 4 and 8 s and halts at 4, 8 and 9 s; the steward is done at 9 s", function()
      local out = run("steward", "--virtual")
      assert.are.same({ 0, 4, 8 }, event_times(out, "ward: Hello, I'm irresponsible!"))
      assert.are.same({ 4, 8, 9 }, event_times(out, "ward: I am halting%."))
      assert.are.same({ 4, 8 }, event_times(out, "steward: ward unhealthy; restarting"))
      assert.are.same({ 9 }, event_times(out, "main: halting steward and ward%."))
      assert.are.same({ 9 }, event_times(out, "^Done$"))
      local lines = lines_of(out)
      assert.matches("Done$", lines[#lines])
    end)

    it("the same with --scale on the real clock, in order", function()
      local out = run("steward", "--scale 0.01")
      local starts = event_times(out, "Hello")
      assert.are.equal(3, #starts, out)
      assert.is_true(starts[1] < starts[2] and starts[2] < starts[3])
      assert.matches("Done\n$", out)
    end)
  end)

  describe("steward_stream.lua (W8, a restarted ward bridged into one stream)", function()
    it("take(6) of the bridged stream reads 1 2 1 2 1 2, the ward dying at -1 each time", function()
      local out = run("steward_stream", "--virtual")
      assert.matches("took: 1 2 1 2 1 2\n$", out)
      local _, deaths = out:gsub("negative value: %-1", "")
      assert.is_true(deaths >= 2, out)
    end)
  end)

  describe("steward_tree.lua (O8, W5, a two-level tree)", function()
    it("the inner steward restarts the worker, gives up, and the outer one restarts it", function()
      local out = run("steward_tree", "--virtual")
      assert.are.same({ 2.5, 5, 7.5, 10 }, event_times(out, "^inner steward: missed worker"))
      assert.are.same({ 2.5, 5, 10 }, event_times(out, "^inner steward: restart worker"))
      assert.are.same({ 7.5 }, event_times(out, "^inner steward: gave_up worker"))
      assert.are.same({ 7.5 }, event_times(out, "^outer steward: failed inner steward"))
      assert.are.same({ 7.5 }, event_times(out, "^outer steward: restart inner steward"))
      assert.are.same({}, event_times(out, "^outer steward: missed"), "the inner steward's pulses keep the outer one content")
      assert.are.same({ 12 }, event_times(out, "main: tree stopped"))
    end)
  end)
end)
