-- The examples, each run as a user runs it (a separate process, under the interpreter
-- running the specs, with the release build) on conc's virtual clock (--virtual), so
-- nothing sleeps, and what it prints is checked: which events happen, when, and in what
-- order where the order is fixed.
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

-- Times are printed with 2 decimals; on virtual time they are exact before rounding.
local EPS = 0.006

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
