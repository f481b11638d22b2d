--- Timers: conc.after, conc.timer and conc.ticker (t:chan, t:stop, t:reset, tostring), and
-- conc.sleep's edge cases: rules T1-T6 of SEMANTICS.md section 3, with Go 1.23 semantics
-- (DESIGN.md "Timers follow Go 1.23").
-- Most specs run on the virtual clock (conc.virtual_time(true)): time moves only when every
-- task waits, jumping to the next deadline, so the times asserted are exact and nothing
-- sleeps. The real-clock spec (T1) asserts lower bounds only, with tiny durations.
local conc = require "conc"
local support = require "support"
local settle, parked, pack = support.settle, support.parked, support.pack

local EMPTY = { n = 3, nil, false, "empty" }

--- Asserts that a and b are the same time, up to float rounding of sums like t0 + k * d.
-- (`what` is a label; a non-string, such as recv's ok, is ignored.)
local function near(expected, actual, what)
  if type(what) ~= "string" then what = nil end
  assert(type(actual) == "number", (what or "time") .. " is not a number: " .. tostring(actual))
  if math.abs(expected - actual) > 1e-6 then
    error(("%s: expected %.9f, got %.9f"):format(what or "time", expected, actual), 2)
  end
end

--- Runs Lua code in a child process of the same interpreter, with this package.path and
-- package.cpath and a 3 s time limit; returns its output followed by "rc=<exit status>"
-- (124 when the limit was hit).
local function isolated(code)
  local interp = assert(arg and arg[-1], "no interpreter in arg[-1]")
  local script = ("package.path = %q; package.cpath = %q\n%s"):format(package.path, package.cpath, code)
  local p = io.popen(("timeout 3 %s -e '%s' 2>&1; echo \"rc=$?\""):format(interp, script:gsub("'", "'\\''")))
  local out = p:read("*a")
  p:close()
  return out
end

--- Sleeps on the virtual clock until t0 + at.
local function sleep_until(t0, at)
  conc.sleep(t0 + at - conc.now())
  near(t0 + at, conc.now(), "clock after sleep")
end

describe("timers", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("conc.after", function()
    it("T1: conc.after(d) delivers exactly one value, conc.now() at firing, at start + d, never earlier (virtual clock)", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local c = conc.after(1)
      conc.sleep(0.999)
      assert.are.same(EMPTY, pack(c:try_recv()), "not before start + d")
      assert.are.same({ n = 2, t0 + 1, true }, pack(c:recv()))
      assert.are.equal(t0 + 1, conc.now())
      conc.sleep(100)
      assert.are.same(EMPTY, pack(c:try_recv()), "only one value, ever")
    end)

    it("T1: conc.after(d), a timer and conc.sleep(d) never return early on the real clock (lower bounds only)", function()
      local t0 = conc.now()
      local v, ok = conc.after(0.02):recv()
      assert.is_true(ok)
      assert.is_true(v >= t0 + 0.02, "the value is the time it fired")
      assert.is_true(conc.now() >= t0 + 0.02)
      local t1 = conc.now()
      v = conc.timer(0.02):chan():recv()
      assert.is_true(v >= t1 + 0.02 and conc.now() >= t1 + 0.02)
      local t2 = conc.now()
      assert.is_true(conc.sleep(0.02))
      assert.is_true(conc.now() >= t2 + 0.02)
      conc.run(function()
        local t3 = conc.now()
        local w = conc.after(0.02):recv()
        assert.is_true(w >= t3 + 0.02 and conc.now() >= t3 + 0.02)
      end)
    end)

    it("T1: timers fire in deadline order, each at its own deadline", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local late, early = conc.after(2), conc.after(1)
      assert.are.same({ n = 3, 2, t0 + 1, true }, pack(conc.select(late, early)))
      assert.are.equal(t0 + 1, conc.now())
      assert.are.same({ n = 2, t0 + 2, true }, pack(late:recv()))
    end)

    it("T1: timers with the same deadline all fire, each exactly once", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local cs = {}
      for i = 1, 100 do cs[i] = conc.after(1) end
      conc.sleep(1)
      for i = 1, 100 do
        assert.are.same({ n = 2, t0 + 1, true }, pack(cs[i]:try_recv()))
        assert.are.same(EMPTY, pack(cs[i]:try_recv()))
      end
    end)

    it("T1: conc.after(0) and a negative duration fire at once, with the current time", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      assert.are.same({ n = 2, t0, true }, pack(conc.after(0):recv()))
      assert.are.same({ n = 2, t0, true }, pack(conc.after(-5):recv()))
      assert.are.same({ n = 2, t0, true }, pack(conc.timer(-1):chan():recv()))
      assert.are.equal(t0, conc.now())
    end)

    it("T1: a task blocked on conc.after(d) is woken at start + d", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local t = parked(function() return conc.after(1.5):recv() end)
        assert.are.same({ true, t0 + 1.5, true }, { t:wait() })
        assert.are.equal(t0 + 1.5, conc.now())
      end)
    end)
  end)

  describe("t:stop", function()
    it("T2: stop() before firing returns true, and no value is ever delivered", function()
      conc.virtual_time(true)
      local t = conc.timer(1)
      assert.are.equal(1, conc.stats().timers)
      assert.is_true(t:stop())
      assert.are.equal(0, conc.stats().timers, "a stopped timer is no longer pending")
      conc.sleep(5)
      assert.are.same(EMPTY, pack(t:chan():try_recv()))
      assert.is_false(t:stop(), "a second stop stops nothing")
    end)

    it("T2: stop() after firing, before the value was received, returns true and drops the value (no stale value)", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local t = conc.timer(1)
      conc.sleep(2)
      assert.are.equal(t0 + 2, conc.now())
      assert.is_true(t:stop())
      assert.are.same(EMPTY, pack(t:chan():try_recv()))
      local now = conc.now()
      assert.are.same({ n = 3, 2, now + 5, true }, pack(conc.select(t:chan(), conc.after(5))))
      assert.is_false(t:stop())
    end)

    it("T2: stop() after the value was received returns false, and so does every later stop()", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local t = conc.timer(1)
      assert.are.same({ n = 2, t0 + 1, true }, pack(t:chan():recv()))
      assert.is_false(t:stop())
      assert.is_false(t:stop())
      assert.are.same(EMPTY, pack(t:chan():try_recv()))
    end)

    it("T2: a task blocked on t:chan() stays blocked after stop(), past the old deadline", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local tm = conc.timer(1)
        local r = parked(function() return tm:chan():recv() end)
        assert.is_true(tm:stop())
        sleep_until(t0, 3)
        assert.are.equal("blocked", r:status(), "no value reached the waiting task")
        local tr = conc.now()
        assert.is_false(tm:reset(1), "reset of a stopped timer: it was not pending")
        assert.are.same({ true, tr + 1, true }, { r:wait() })
      end)
    end)
    it("T2/C26: a receive on a stopped timer's channel, with nothing else pending, is the deadlock error", function()
      local t = conc.timer(1)
      assert.is_true(t:stop())
      local err = support.error_of(function() return t:chan():recv() end)
      assert.are.equal("conc: all tasks are asleep - deadlock!", err and err:match("^[^\n]*"))
    end)
  end)

  describe("t:reset", function()
    it("T3: reset(d2) of a pending timer returns true; nothing comes from the old schedule; the value comes at reset time + d2", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local t = conc.timer(1)
      sleep_until(t0, 0.5)
      local tr = conc.now()
      assert.is_true(t:reset(2))
      sleep_until(t0, 1.5)
      assert.are.same(EMPTY, pack(t:chan():try_recv()), "the old deadline passed without a value")
      assert.are.same({ n = 2, tr + 2, true }, pack(t:chan():recv()))
      assert.are.equal(tr + 2, conc.now())
    end)

    it("T3: reset() after firing drops the unreceived value and returns true", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local t = conc.timer(1)
      sleep_until(t0, 2)
      local tr = conc.now()
      assert.is_true(t:reset(1))
      assert.are.same(EMPTY, pack(t:chan():try_recv()), "no stale value after reset")
      assert.are.same({ n = 2, tr + 1, true }, pack(t:chan():recv()))
    end)

    it("T3: reset() after the value was received, or after stop(), returns false and arms the timer again", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local t = conc.timer(1)
      assert.are.equal(t0 + 1, t:chan():recv())
      local tr = conc.now()
      assert.is_false(t:reset(1))
      assert.are.same({ n = 2, tr + 1, true }, pack(t:chan():recv()))
      tr = conc.now()
      assert.is_false(t:reset(5), "received: not pending")
      assert.is_true(t:stop(), "pending again after reset")
      assert.is_false(t:reset(0.5))
      assert.are.same({ n = 2, tr + 0.5, true }, pack(t:chan():recv()))
    end)

    it("T3: reset() to a shorter duration fires earlier; reset(0) fires at once", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local t = conc.timer(100)
      assert.is_true(t:reset(1))
      assert.are.same({ n = 2, t0 + 1, true }, pack(t:chan():recv()))
      assert.is_false(t:reset(0))
      assert.are.same({ n = 2, t0 + 1, true }, pack(t:chan():recv()))
      assert.are.equal(t0 + 1, conc.now())
    end)

    it("T3: a task blocked on t:chan() during reset() gets the value at reset time + d2", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local tm = conc.timer(1)
        local r = parked(function() return tm:chan():recv() end)
        sleep_until(t0, 0.5)
        local tr = conc.now()
        assert.is_true(tm:reset(3))
        assert.are.same({ true, tr + 3, true }, { r:wait() })
        assert.are.equal(tr + 3, conc.now())
      end)
    end)
  end)

  describe("conc.ticker", function()
    it("T4: a ticker delivers conc.now() every d seconds, on multiples of d from its start", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local tk = conc.ticker(0.5)
      for k = 1, 6 do
        local v, ok = tk:chan():recv()
        assert.is_true(ok)
        near(t0 + k * 0.5, v, "tick " .. k)
        assert.are.equal(v, conc.now())
      end
      assert.is_true(tk:stop())
    end)

    it("T4: a reader stalled for 3.5 d finds at most one tick ready; the next ticks stay on the start's phase", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local tk = conc.ticker(1)
      local c = tk:chan()
      sleep_until(t0, 3.5)
      assert.is_true(c:len() <= 1, "no backlog")
      local v, ok = c:recv()
      assert.is_true(ok)
      local k = v - t0
      assert.is_true(math.abs(k - math.floor(k + 0.5)) < 1e-6 and k > 0.5 and k < 3.5, "the value is a tick time")
      assert.are.same(EMPTY, pack(c:try_recv()), "at most one tick was ready")
      near(t0 + 3.5, conc.now(), "reading the ready tick did not wait")
      near(t0 + 4, c:recv(), "next tick on the phase of the start, not 1 s after the read")
      near(t0 + 4, conc.now())
      near(t0 + 5, c:recv())
      -- a much longer stall: still at most one tick, still on phase
      sleep_until(t0, 105.25)
      assert.is_true(c:len() <= 1, "no backlog after 100 periods")
      local w = c:try_recv()
      assert.is_true(w == nil or w > t0 + 5.5, "a tick from the stall, if any")
      assert.are.same(EMPTY, pack(c:try_recv()))
      near(t0 + 106, c:recv())
      assert.is_true(tk:stop())
    end)

    it("T4: stop() ends the ticks and drops a tick not yet received", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local tk = conc.ticker(1)
      near(t0 + 1, tk:chan():recv())
      sleep_until(t0, 2.5)
      assert.is_true(tk:stop(), "a ticker is pending until stopped")
      assert.are.equal(0, conc.stats().timers)
      assert.are.same(EMPTY, pack(tk:chan():try_recv()), "the tick of t0 + 2 was dropped")
      sleep_until(t0, 10)
      assert.are.same(EMPTY, pack(tk:chan():try_recv()), "no tick after stop")
      assert.is_false(tk:stop())
    end)

    it("T4/T3: reset(d2) restarts the ticks d2 apart from the reset, dropping a tick not yet received", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local tk = conc.ticker(1)
      sleep_until(t0, 1.5)
      assert.is_true(tk:reset(2))
      assert.are.same(EMPTY, pack(tk:chan():try_recv()), "the tick of t0 + 1 was dropped")
      near(t0 + 3.5, tk:chan():recv())
      near(t0 + 5.5, tk:chan():recv())
      assert.is_true(tk:stop())
      assert.is_false(tk:reset(1), "a stopped ticker was not pending")
      near(t0 + 6.5, tk:chan():recv())
      near(t0 + 7.5, tk:chan():recv())
      assert.is_true(tk:stop())
    end)

    it("T4: a task looping on a ticker sees every tick when it keeps up", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local ticks = conc.chan(10)
        local tk = conc.ticker(0.25)
        local reader = conc.go(function()
          for _ = 1, 8 do ticks:send((tk:chan():recv())) end
          return tk:stop()
        end)
        assert.are.same({ true, true }, { reader:wait() })
        for k = 1, 8 do near(t0 + k * 0.25, ticks:recv(), "tick " .. k) end
      end)
    end)
  end)

  describe("non-positive durations", function()
    it("T5: conc.ticker(d) with d <= 0 raises", function()
      for _, d in ipairs { 0, -1, -0.5, -math.huge } do
        assert.are.equal("conc: ticker: bad argument #1 (positive duration expected, got " .. tostring(d) .. ")",
          support.error_of(conc.ticker, d))
      end
      local tk = conc.ticker(1)
      assert.are.equal("conc: t:reset: bad argument #1 (positive duration expected, got 0)",
        support.error_of(tk.reset, tk, 0))
      assert.is_true(tk:stop())
    end)

    it("T5: a positive period below the clock's resolution (1e-300 s) raises or ticks; it never hangs the process", function()
      -- run in a child process with a time limit, so that a hang fails this spec instead of
      -- hanging the suite
      local out = isolated [[
        local conc = require "conc"
        conc.virtual_time(true)
        local ok, tk = pcall(conc.ticker, 1e-300)
        if not ok then print("raised: " .. tostring(tk)) return end
        local a = tk:chan():recv()
        local b = tk:chan():recv()
        print(b >= a and "ticked" or "time went backwards")
      ]]
      assert.is_truthy(out:match("^raised: conc: ticker: [^\n]*\nrc=0\n$") or out:match("^ticked\nrc=0\n$"), out)
    end)

    it("T5: conc.sleep(d) with d <= 0 returns true at once: the clock does not move and no other task runs", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      assert.are.same({ n = 1, true }, pack(conc.sleep(0)))
      assert.are.same({ n = 1, true }, pack(conc.sleep(-1)))
      assert.are.equal(t0, conc.now())
      conc.run(function()
        local other = conc.go(function() end)
        assert.are.same({ n = 1, true }, pack(conc.sleep(0)))
        assert.are.same({ n = 1, true }, pack(conc.sleep(-0.5)))
        assert.are.equal("ready", other:status(), "sleep(0) did not give the other task a turn")
        assert.are.equal(t0, conc.now())
        other:wait()
      end)
    end)
  end)

  describe("collection", function()
    local N = 100000

    --- Runs make() N times, dropping each result, and returns the growth of the Lua heap (KB)
    -- over the baseline once collected.
    local function growth(make)
      collectgarbage()
      collectgarbage()
      local base = collectgarbage("count")
      for _ = 1, N do make() end
      collectgarbage()
      collectgarbage()
      return collectgarbage("count") - base
    end

    -- A kept timer costs about 300 bytes of Lua heap, so 10^5 uncollected timers would grow it
    -- by about 30 MB; the bounds below are far under that and far over the noise.
    it("T6: 10^5 unreferenced, unfired conc.after timers are collected: none stays pending, memory is bounded", function()
      local g1 = growth(function() return conc.after(10) end)
      assert.are.equal(0, conc.stats().timers)
      local g2 = growth(function() return conc.after(10) end)
      assert.are.equal(0, conc.stats().timers)
      assert.is_true(g1 < 4096, ("10^5 timers left %.0f KB"):format(g1))
      assert.is_true(g2 < 4096, ("10^5 more timers left %.0f KB"):format(g2))
    end)

    it("T6: 10^5 unstopped, unreferenced tickers (and timers) are collected: none stays pending, memory is bounded", function()
      local g1 = growth(function() return conc.ticker(1) end)
      assert.are.equal(0, conc.stats().timers)
      local g2 = growth(function() return conc.timer(1) end)
      assert.are.equal(0, conc.stats().timers)
      assert.is_true(g1 < 4096, ("10^5 tickers left %.0f KB"):format(g1))
      assert.is_true(g2 < 4096, ("10^5 timers left %.0f KB"):format(g2))
    end)

    it("T6: fired, unreceived timers and firing tickers nobody refers to are collected too", function()
      conc.virtual_time(true)
      collectgarbage()
      collectgarbage()
      local base = collectgarbage("count")
      for _ = 1, 20 do
        for i = 1, 1000 do
          if i % 2 == 0 then conc.after(0.25) else conc.ticker(0.25) end
        end
        conc.step(1) -- the clock jumps to the deadline: the timers fire, the tickers tick
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(0, conc.stats().timers)
      local g = collectgarbage("count") - base
      assert.is_true(g < 4096, ("2 x 10^4 fired timers and tickers left %.0f KB"):format(g))
    end)

    it("T6: a timer whose handle was dropped still fires for a task waiting on its channel", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      assert.are.same({ true, t0 + 1, true }, { conc.run(function()
        local w = conc.go(function(ch) return ch:recv() end, conc.timer(1):chan())
        collectgarbage()
        collectgarbage()
        return w:wait()
      end) })
      assert.are.equal(t0 + 1, conc.now())
    end)

    it("T6: a ticker reachable only through its channel keeps ticking (the channel keeps it alive)", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local c = conc.ticker(1):chan()
      collectgarbage()
      collectgarbage()
      assert.are.equal(1, conc.stats().timers)
      near(t0 + 1, c:recv())
      collectgarbage()
      near(t0 + 2, c:recv())
    end)
  end)

  describe("timer objects", function()
    it("DESIGN Timers: t:chan() returns the same channel every time: capacity 1, receive-only", function()
      local tm, tk = conc.timer(1), conc.ticker(1)
      assert.is_true(rawequal(tm:chan(), tm:chan()))
      assert.is_true(rawequal(tk:chan(), tk:chan()))
      assert.are.equal(1, tm:chan():cap())
      assert.are.equal(1, conc.after(1):cap())
      assert.are.equal(0, tm:chan():len())
      assert.are.equal("conc: ch:send: send on a receive-only channel", support.error_of(tm:chan().send, tm:chan(), 1))
      assert.are.equal("conc: ch:close: close of a receive-only channel", support.error_of(tk:chan().close, tk:chan()))
      assert.is_true(tm:stop())
      assert.is_true(tk:stop())
    end)

    it("DESIGN Timers: tostring names the kind and the channel: timer on chan#N, ticker on chan#N", function()
      local tm, tk = conc.timer(1), conc.ticker(1)
      local tid = tostring(tm:chan()):match("^(chan#%d+) %(cap 1%)$")
      local kid = tostring(tk:chan()):match("^(chan#%d+) %(cap 1%)$")
      assert.is_string(tid)
      assert.is_string(kid)
      assert.are.equal("timer on " .. tid, tostring(tm))
      assert.are.equal("ticker on " .. kid, tostring(tk))
      assert.is_truthy(tostring(conc.after(1)):match("^chan#%d+ %(cap 1%)$"))
      tm:stop()
      assert.are.equal("timer on " .. tid, tostring(tm), "unchanged by stop")
      tk:stop()
    end)
  end)

  describe("bad arguments", function()
    local nan = 0 / 0
    local mt
    do
      local t = conc.timer(1)
      t:stop()
      mt = getmetatable(t)
    end
    local function timer() return conc.timer(1) end
    local function ticker() return conc.ticker(1) end
    local D = "DESIGN Timers: "
    local cases = {}
    local function add(label, fn, msg) cases[#cases + 1] = { label, fn, msg } end
    for _, name in ipairs { "after", "timer" } do
      local f = conc[name]
      local bad = "conc: " .. name .. ": bad argument #1 "
      add(D .. name .. "()", function() return f() end, bad .. "(number expected, got no value)")
      add(D .. name .. "('1')", function() return f("1") end, bad .. "(number expected, got string)")
      add(D .. name .. "({})", function() return f({}) end, bad .. "(number expected, got table)")
      add(D .. name .. "(nan)", function() return f(nan) end, bad .. "(duration in seconds expected, got nan)")
      add(D .. name .. "(1, 2)", function() return f(1, 2) end,
        "conc: " .. name .. ": too many arguments (at most 1 expected, got 2)")
    end
    local TICKER = "conc: ticker: bad argument #1 "
    add("T5: ticker()", function() return conc.ticker() end, TICKER .. "(number expected, got no value)")
    add("T5: ticker('1')", function() return conc.ticker("1") end, TICKER .. "(number expected, got string)")
    add("T5: ticker(0)", function() return conc.ticker(0) end, TICKER .. "(positive duration expected, got 0)")
    add("T5: ticker(-2)", function() return conc.ticker(-2) end, TICKER .. "(positive duration expected, got -2)")
    add("T5: ticker(nan)", function() return conc.ticker(nan) end, TICKER .. "(duration in seconds expected, got nan)")
    add("T5: ticker(1, 2)", function() return conc.ticker(1, 2) end,
      "conc: ticker: too many arguments (at most 1 expected, got 2)")
    local RESET = "conc: t:reset: bad argument #1 "
    add(D .. "t:reset()", function() return timer():reset() end, RESET .. "(number expected, got no value)")
    add(D .. "t:reset('1')", function() return timer():reset("1") end, RESET .. "(number expected, got string)")
    add(D .. "t:reset(nan)", function() return timer():reset(nan) end, RESET .. "(duration in seconds expected, got nan)")
    add(D .. "t:reset(1, 2)", function() return timer():reset(1, 2) end,
      "conc: t:reset: too many arguments (at most 1 expected, got 2)")
    add("T5: ticker:reset(0)", function() return ticker():reset(0) end, RESET .. "(positive duration expected, got 0)")
    add("T5: ticker:reset(-1)", function() return ticker():reset(-1) end, RESET .. "(positive duration expected, got -1)")
    add("T5: ticker:reset(nan)", function() return ticker():reset(nan) end,
      RESET .. "(duration in seconds expected, got nan)")
    add(D .. "t.reset(5, 1)", function() return timer().reset(5, 1) end,
      "conc: t:reset: bad self (timer expected, got number)")
    add(D .. "t.stop(a channel)", function() return timer().stop(conc.chan()) end,
      "conc: t:stop: bad self (timer expected, got conc.chan)")
    add(D .. "t.stop()", function() return timer().stop() end, "conc: t:stop: bad self (timer expected, got no value)")
    add(D .. "t:stop(1)", function() return timer():stop(1) end,
      "conc: t:stop: too many arguments (at most 0 expected, got 1)")
    add(D .. "t.chan({})", function() return timer().chan({}) end, "conc: t:chan: bad self (timer expected, got table)")
    add(D .. "t:chan(1)", function() return ticker():chan(1) end,
      "conc: t:chan: too many arguments (at most 0 expected, got 1)")
    add(D .. "t.__tostring(5)", function() return mt.__tostring(5) end,
      "conc: t:__tostring: bad self (timer expected, got number)")
    add(D .. "a timer's channel: send", function() local c = timer():chan(); return c:send(1) end,
      "conc: ch:send: send on a receive-only channel")
    add(D .. "a timer's channel: try_send", function() local c = conc.after(1); return c:try_send(1) end,
      "conc: ch:try_send: send on a receive-only channel")
    add(D .. "a ticker's channel: close", function() local c = ticker():chan(); return c:close() end,
      "conc: ch:close: close of a receive-only channel")
    add(D .. "a timer's channel: conc.send", function() return conc.send(conc.after(1), 1) end,
      "conc: send: send on a receive-only channel")
    add(D .. "sleep('1')", function() return conc.sleep("1") end, "conc: sleep: bad argument #1 (number expected, got string)")
    add(D .. "sleep(nan)", function() return conc.sleep(nan) end,
      "conc: sleep: bad argument #1 (duration in seconds expected, got nan)")
    for _, c in ipairs(cases) do
      it(c[1] .. " raises the exact conc: message", function()
        assert.are.equal(c[3], support.error_of(c[2]))
      end)
    end

    it("T3: bad calls leave a timer and a ticker unchanged", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local tm, tk = conc.timer(1), conc.ticker(0.5)
      for _, f in ipairs {
        function() return tm:reset("x") end,
        function() return tm:reset(nan) end,
        function() return tm:stop(1) end,
        function() return tk:reset(0) end,
        function() return tk:reset(-1) end,
        function() return tk:chan():send(1) end,
        function() return tm:chan():close() end,
      } do
        assert.is_string(support.error_of(f))
      end
      near(t0 + 0.5, tk:chan():recv())
      assert.are.same({ n = 2, t0 + 1, true }, pack(tm:chan():recv()))
      near(t0 + 1, tk:chan():recv())
      near(t0 + 1.5, tk:chan():recv())
      assert.is_false(tm:stop())
      assert.is_true(tk:stop())
    end)
  end)
end)
