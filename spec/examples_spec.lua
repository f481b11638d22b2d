--- The examples, run as programs, with their output checked: examples/rate_limit.lua (the
-- book's APIConnection, issue 4 item 4) against R3, R11, R17 and R29 of SEMANTICS.md
-- section 5 and rate.multi's booking on every limiter at once (DESIGN.md, "Rate").
-- Each example runs as a subprocess under Lua 5.4 and the release build, whatever runs the
-- spec, on conc's virtual time (--virtual), so nothing sleeps.
local conc = require "conc"
local support = require "support"

local ENV = "LUA_PATH='lua/?.lua;lua/?/init.lua' LUA_CPATH='build/lua5.4/release/?.so'"

--- Runs examples/<name>.lua with args under lua5.4; returns its output (stdout and
-- stderr) and its exit status (the status is echoed, as 5.1's popen close does not tell).
local function run_example(name, args)
  local p = assert(io.popen(("%s lua5.4 examples/%s.lua %s 2>&1; echo \"exit=$?\""):format(ENV, name, args)))
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.*)exit=(%d+)\n$")
  assert(body, "no exit status in: " .. out)
  return body, tonumber(status)
end

--- The calls rate_limit.lua printed, in print order: { {t = seconds, name = call}, ... },
-- and its summary line's numbers.
local function rate_limit_calls(args)
  local out, status = run_example("rate_limit", args)
  assert.are.equal(0, status, out)
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
end)
