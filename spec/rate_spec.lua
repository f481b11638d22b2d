--- The single limiter of conc.rate: rate.inf, rate.every, rate.per, rate.limiter, its
-- reservations and lim:wait: every rule R1-R35 of SEMANTICS.md section 5, with the
-- decisions D1, D3, D4 and D5 as they apply to one limiter. allow and reserve run on an
-- injected fake clock with SEMANTICS' worked examples taken literally (d = 0.1, tK = K*d);
-- waits run on the scheduler's virtual time (the default clock is conc.now), so nothing
-- sleeps. rate.multi and rate.keyed are in rate_compose_spec.lua.
local conc = require "conc"
local support = require "support"
local settle, parked, pack = support.settle, support.parked, support.pack
local errors = conc.errors
local rate = conc.rate

local bg = conc.background()
local huge = math.huge
local unpack = table.unpack or unpack
local EPS = 1e-9
local d = 0.1

--- A limiter on a fake clock, and at(K), which moves that clock to tK = K*d.
local function fake(limit, burst)
  local now = 0
  local lim = rate.limiter(limit, burst, { clock = function() return now end })
  local function at(k) now = k * d end
  return lim, at
end

--- Runs fn inside conc.run on virtual time.
local function virtual(fn)
  return conc.run(function()
    conc.virtual_time(true)
    return fn()
  end)
end

--- The largest of count(a, a+w) - (burst + limit*w) over every window [a, a+w] whose ends
-- are grant times: > 0 means some window got more than the limiter allows. grants is a
-- list of {time, tokens}.
local function worst_window(grants, limit, burst)
  table.sort(grants, function(x, y) return x[1] < y[1] end)
  local worst, where = -huge, nil
  for i = 1, #grants do
    local sum = 0
    for j = i, #grants do
      sum = sum + grants[j][2]
      local excess = sum - (burst + limit * (grants[j][1] - grants[i][1]))
      if excess > worst then
        worst, where = excess, ("%d tokens in [%.6f, %.6f]"):format(sum, grants[i][1], grants[j][1])
      end
    end
  end
  return worst, where
end

describe("rate", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  it("DESIGN conc.rate: conc.rate and require 'conc.rate' are the same module", function()
    assert.are.equal(require "conc.rate", conc.rate)
  end)

  describe("limits", function()
    it("R1: rate.inf allows every event, whatever n and the burst (even 0), and never waits", function()
      assert.are.equal(huge, rate.inf)
      for _, burst in ipairs { 0, 1, 3 } do
        local lim, at = fake(rate.inf, burst)
        for _, n in ipairs { 1, 2, 100, 0 } do
          for _ = 1, 3 do assert.is_true(lim:allow(n)) end
          local r = lim:reserve(n)
          assert.is_true(r:ok())
          assert.are.equal(0, r:delay())
        end
        at(1)
        assert.is_true(lim:allow(burst + 5))
        assert.are.equal(huge, lim:limit())
      end
    end)

    it("R1: limiter(inf, 0):wait(3) returns true at once, with or without a ctx", function()
      virtual(function()
        local lim = rate.limiter(rate.inf, 0)
        local t0 = conc.now()
        assert.are.same({ n = 1, true }, pack(lim:wait(3)))
        local ctx, cancel = conc.with_timeout(bg, 0.01)
        assert.are.same({ n = 1, true }, pack(lim:wait(ctx, 1000)))
        assert.are.same({ n = 1, true }, pack(lim:wait()))
        assert.are.equal(t0, conc.now())
        cancel()
      end)
    end)

    it("R2: rate.every(i) is 1/i events per second, and inf for i <= 0", function()
      assert.are.equal(huge, rate.every(0))
      assert.are.equal(huge, rate.every(-1))
      assert.are.equal(rate.inf, rate.every(-0.5))
      assert.is_near(10, rate.every(0.1), EPS)
      assert.is_near(0.4, rate.every(2.5), EPS)
      assert.is_near(1 / 60, rate.every(60), EPS)
    end)

    it("R2: rate.per(n, d) is n events every d seconds", function()
      assert.is_near(10 / 60, rate.per(10, 60), EPS)
      assert.is_near(2, rate.per(2, 1), EPS)
      assert.is_near(3, rate.per(1, 1 / 3), EPS)
      assert.are.equal(0, rate.per(0, 5))
    end)

    it("R2: a limiter made with rate.every(0.1) refills a token each 0.1 s", function()
      local lim, at = fake(rate.every(d), 1)
      assert.is_true(lim:allow())
      assert.is_false(lim:allow())
      assert.is_near(d, lim:reserve():delay(), EPS)
      at(2)
      assert.is_true(lim:allow())
    end)
  end)

  describe("definitions", function()
    it("R3: the bucket starts full", function()
      assert.are.equal(3, rate.limiter(10, 3):tokens())
      local lim = fake(10, 3)
      assert.are.equal(3, lim:tokens())
      assert.is_true(lim:allow(3))
      assert.are.equal(1, fake(0, 1):tokens()) -- a limit of 0 starts full too (golang/go#39984)
    end)

    it("R4: tokens never exceed the burst, however long the limiter is idle", function()
      local lim, at = fake(10, 3)
      at(100) -- 10 s idle
      assert.are.equal(3, lim:tokens())
      assert.is_true(lim:allow(2))
      at(1000)
      assert.are.equal(3, lim:tokens())
      assert.is_true(lim:allow(3))
      assert.is_false(lim:allow(1))
    end)

    it("R5: tokens() goes negative while reservations are outstanding", function()
      local lim, at = fake(10, 2)
      assert.is_true(lim:reserve(2):ok())
      assert.is_true(lim:reserve(2):ok())
      assert.is_near(-2, lim:tokens(), EPS)
      at(1)
      assert.is_near(-1, lim:tokens(), EPS)
      at(2)
      assert.is_near(0, lim:tokens(), EPS)
    end)
  end)

  describe("allow and reserve", function()
    it("R6: a failed allow takes nothing and leaves the state untouched", function()
      local lim, at = fake(10, 2)
      assert.is_false(lim:allow(3))
      assert.are.equal(2, lim:tokens())
      assert.is_true(lim:allow(2))
      -- golang/go#52584: a failed call must not move the refill clock either
      at(0.5)
      assert.is_false(lim:allow(1))
      assert.is_near(0.5, lim:tokens(), EPS)
      at(1)
      assert.is_near(1, lim:tokens(), EPS)
      assert.is_true(lim:allow(1))
    end)

    it("R7: n > burst always fails with a finite limit: allow false, reserve not ok, at any time", function()
      local lim, at = fake(10, 2)
      for _, k in ipairs { 0, 1, 30, 1e6 } do
        at(k)
        assert.is_false(lim:allow(3))
        local r = lim:reserve(3)
        assert.is_false(r:ok())
        assert.are.equal(huge, r:delay())
        assert.are.equal(2, lim:tokens())
      end
    end)

    it("R8: allow(0) is true with 0 tokens, and takes nothing", function()
      local lim = fake(10, 3)
      assert.is_true(lim:allow(3))
      assert.is_near(0, lim:tokens(), EPS)
      assert.is_true(lim:allow(0))
      assert.is_near(0, lim:tokens(), EPS)
      assert.is_false(lim:allow(1))
    end)

    it("R8: wait(0) returns true at once, even with 0 tokens and bookings ahead of it", function()
      virtual(function()
        local lim = rate.limiter(10, 2)
        local t0 = conc.now()
        assert.is_true(lim:allow(2))
        assert.are.same({ n = 1, true }, pack(lim:wait(0)))
        lim:reserve(2)
        assert.are.same({ n = 1, true }, pack(lim:wait(bg, 0)))
        assert.are.equal(t0, conc.now())
        assert.is_near(-2, lim:tokens(), EPS)
      end)
    end)

    it("R9: the burst-1 example (TestLimiterBurst1)", function()
      local lim, at = fake(10, 1)
      local steps = { -- { K, tokens() before, n, result }
        { 0, 1, 1, true }, { 0, 0, 1, false }, { 0, 0, 1, false },
        { 1, 1, 1, true }, { 1, 0, 1, false }, { 1, 0, 1, false },
        { 2, 1, 2, false }, { 2, 1, 1, true }, { 2, 0, 1, false },
      }
      for i, s in ipairs(steps) do
        at(s[1])
        assert.is_near(s[2], lim:tokens(), EPS, "step " .. i)
        assert.are.equal(s[4], lim:allow(s[3]), "step " .. i)
      end
    end)

    it("R10: the burst-3 example (TestLimiterBurst3)", function()
      local lim, at = fake(10, 3)
      local steps = { -- { K, tokens() before, n, result }
        { 0, 3, 2, true }, { 0, 1, 2, false }, { 0, 1, 1, true }, { 0, 0, 1, false },
        { 1, 1, 4, false },
        { 2, 2, 1, true },
        { 3, 2, 1, true },
        { 4, 2, 1, true }, { 4, 1, 1, true }, { 4, 0, 1, false }, { 4, 0, 1, false },
        { 9, 3, 3, true }, { 9, 0, 0, true },
      }
      for i, s in ipairs(steps) do
        at(s[1])
        assert.is_near(s[2], lim:tokens(), EPS, "step " .. i)
        assert.are.equal(s[4], lim:allow(s[3]), "step " .. i)
      end
      assert.is_near(0, lim:tokens(), EPS)
    end)

    it("R11: reserve books ahead, going negative, and delay() says how long (TestSimpleReserve)", function()
      local lim, at = fake(10, 2)
      local r1 = lim:reserve(2)
      assert.is_true(r1:ok())
      assert.are.equal(0, r1:delay())
      local r2 = lim:reserve(2)
      assert.is_true(r2:ok())
      assert.is_near(0.2, r2:delay(), EPS)
      at(3)
      local r3 = lim:reserve(2)
      assert.is_true(r3:ok())
      assert.is_near(0.1, r3:delay(), EPS) -- acts at t4
    end)

    it("R12: delay() is max(0, act - now), and math.huge when not ok", function()
      local lim, at = fake(10, 2)
      lim:reserve(2)
      local r = lim:reserve(2) -- acts at t2
      assert.is_near(0.2, r:delay(), EPS)
      at(1)
      assert.is_near(0.1, r:delay(), EPS)
      at(2)
      assert.is_near(0, r:delay(), EPS)
      at(3)
      assert.are.equal(0, r:delay())
      at(50)
      assert.are.equal(0, r:delay())
      local bad = lim:reserve(3)
      assert.is_false(bad:ok())
      assert.are.equal(huge, bad:delay())
      at(60)
      assert.are.equal(huge, bad:delay())
    end)

    it("R13: a limit of 0 allows exactly burst events, ever", function()
      local lim, at = fake(0, 1)
      assert.is_true(lim:allow())
      assert.is_false(lim:allow())
      at(10)
      assert.is_false(lim:allow())
      at(1e10)
      assert.is_false(lim:allow())
      assert.are.equal(0, lim:tokens())
      local r = lim:reserve()
      assert.are.equal(huge, r:delay()) -- never
      assert.is_false(r:ok()) -- conc: a reservation that can never act is not ok
      local lim2 = fake(0, 3)
      assert.is_true(lim2:allow(2))
      assert.is_true(lim2:allow(1))
      assert.is_false(lim2:allow(1))
    end)

    it("R13: after set_limit(10) a limit-0 limiter gives a token 0.1 s later (TestSetAfterZeroLimit)", function()
      local lim, at = fake(0, 1)
      assert.is_true(lim:allow())
      at(5)
      assert.is_false(lim:allow())
      lim:set_limit(10)
      assert.is_false(lim:allow())
      assert.is_near(0.1, lim:reserve():delay(), EPS)
    end)

    it("R13: after set_limit(10), wait(1) on a spent limit-0 limiter takes 0.1 s", function()
      virtual(function()
        local lim = rate.limiter(0, 1)
        assert.is_true(lim:allow())
        conc.sleep(100)
        assert.is_false(lim:allow())
        lim:set_limit(10)
        local t0 = conc.now()
        assert.are.same({ n = 1, true }, pack(lim:wait(1)))
        assert.is_near(0.1, conc.now() - t0, EPS)
      end)
    end)

    it("R13/R32: wait on a spent limit-0 limiter fails at once, never hangs", function()
      virtual(function()
        local lim = rate.limiter(0, 1)
        assert.is_true(lim:allow())
        local t0 = conc.now()
        local ok, err = lim:wait()
        assert.is_nil(ok)
        assert.are.equal("rate", err.kind)
        assert.are.equal("rate: lim:wait(1) can never get its tokens (the limit is 0)", err.message)
        assert.are.equal(t0, conc.now())
        assert.are.equal(0, lim:tokens())
      end)
    end)

    it("R14: a tiny limit never overflows into 'no wait' (TestTinyLimit)", function()
      local lim, at = fake(1e-10, 1)
      assert.is_true(lim:allow())
      assert.is_false(lim:allow())
      at(1e7) -- 10^6 s mint 10^-4 tokens
      assert.is_false(lim:allow())
      assert.is_true(lim:reserve():delay() > 1e9)
      -- 1/limit is inf in doubles: the wait is infinite, not 0 and not negative
      local lim2 = fake(1e-320, 1)
      assert.is_true(lim2:allow())
      assert.is_false(lim2:allow())
      local r = lim2:reserve()
      assert.is_false(r:ok())
      assert.are.equal(huge, r:delay())
      assert.is_false(lim2:allow())
    end)

    it("R14: wait on a spent tiny-limit limiter with a 1 s deadline fails at once", function()
      virtual(function()
        for _, limit in ipairs { 1e-10, 1e-320 } do
          local lim = rate.limiter(limit, 1)
          assert.is_true(lim:allow())
          local ctx, cancel = conc.with_timeout(bg, 1)
          local t0 = conc.now()
          local ok, err = lim:wait(ctx)
          assert.is_nil(ok)
          assert.are.equal("rate", err.kind)
          assert.are.equal(t0, conc.now())
          assert.is_nil(ctx:err())
          cancel()
        end
      end)
    end)

    it("R15: a full bucket counts as full, whatever the rounding (TestLimiter_noTruncationErrors)", function()
      assert.is_true(rate.limiter(0.7692307692307693, 1):allow())
      -- a bucket emptied, then refilled for exactly burst/limit seconds, is full again
      for _, limit in ipairs { 0.7692307692307693, 1 / 3, 3, 7, 0.1, 1000 / 7, 1e-3 } do
        for _, burst in ipairs { 1, 3 } do
          local now = 1234.5678
          local lim = rate.limiter(limit, burst, { clock = function() return now end })
          assert.is_true(lim:allow(burst))
          now = now + burst / limit
          assert.is_true(lim:allow(burst), ("limit %s burst %d"):format(limit, burst))
          assert.is_true(lim:tokens() <= burst)
        end
      end
    end)

    it("R16: 15 tasks calling allow() at one instant on limiter(1, 5): exactly 5 get true", function()
      virtual(function()
        local lim = rate.limiter(1, 5)
        local start = conc.chan()
        local tasks = {}
        for i = 1, 15 do
          tasks[i] = conc.go(function()
            start:recv()
            return lim:allow(), conc.now()
          end)
        end
        settle(unpack(tasks))
        local t0 = conc.now()
        start:close()
        local granted = 0
        for i = 1, 15 do
          local ok, got, at = tasks[i]:wait()
          assert.is_true(ok)
          assert.are.equal(t0, at)
          if got then granted = granted + 1 end
        end
        assert.are.equal(5, granted)
        assert.is_near(0, lim:tokens(), EPS)
      end)
    end)

    it("R17: limiter(100, 100), one allow() every 0.002 s for 5 s: about burst + limit*5 allowed (TestLongRunningQPS)", function()
      local limit, burst, secs = 100, 100, 5
      local now = 0
      local lim = rate.limiter(limit, burst, { clock = function() return now end })
      local ok = 0
      local i = 0
      while i * 0.002 < secs do
        now = i * 0.002
        if lim:allow() then ok = ok + 1 end
        i = i + 1
      end
      local ideal = burst + limit * secs
      assert.is_true(ok <= ideal + 1, "allowed " .. ok)
      assert.is_true(ok >= math.floor(0.999 * ideal), "allowed " .. ok) -- Go truncates 599.4 to int
    end)

    it("R16/R17 contention: 50 tasks looping on lim:wait get no more than burst + limit*w in any window w, and limit*t + burst in all", function()
      virtual(function()
        local limit, burst, ntasks, each = 100, 5, 50, 10
        local lim = rate.limiter(limit, burst)
        local t0 = conc.now()
        local grants, tasks = {}, {}
        for i = 1, ntasks do
          tasks[i] = conc.go(function()
            for _ = 1, each do
              local ok, err = lim:wait()
              if not ok then error(err) end
              grants[#grants + 1] = { conc.now() - t0, 1 }
            end
          end)
        end
        for i = 1, ntasks do assert.are.same({ n = 1, true }, pack(tasks[i]:wait())) end
        local total = ntasks * each
        assert.are.equal(total, #grants)
        local worst, where = worst_window(grants, limit, burst)
        assert.is_true(worst <= 1e-6, "too many grants: " .. where)
        assert.is_near(0, worst, 1e-6) -- the burst was used: the bound is reached
        local t_last = grants[#grants][1]
        assert.is_near(conc.now() - t0, t_last, EPS)
        assert.is_near((total - burst) / limit, t_last, 1e-6)
        assert.are.equal(total, math.floor(burst + limit * t_last + 1e-6))
        assert.is_near(0, lim:tokens(), 1e-6)
      end)
    end)

    it("R16/R17/R30 contention: tasks waiting for 1-3 tokens, some cancelled mid-wait, still stay within burst + limit*w in every window", function()
      virtual(function()
        local limit, burst, ntasks, each = 50, 5, 30, 8
        local lim = rate.limiter(limit, burst)
        local t0 = conc.now()
        local grants, tasks, cancels, cancelled = {}, {}, {}, 0
        for i = 1, ntasks do
          local ctx, cancel = conc.with_cancel(bg)
          cancels[i] = cancel
          local n = i % 3 + 1
          tasks[i] = conc.go(function()
            for _ = 1, each do
              local ok, err = lim:wait(ctx, n)
              if not ok then
                assert.are.equal(errors.canceled, err)
                cancelled = cancelled + 1
                return
              end
              grants[#grants + 1] = { conc.now() - t0, n }
            end
          end)
        end
        local killer = conc.go(function()
          for i = 1, ntasks, 3 do
            conc.sleep(0.37)
            cancels[i]()
          end
        end)
        for i = 1, ntasks do assert.is_true((tasks[i]:wait())) end
        assert.is_true((killer:wait()))
        for i = 1, ntasks do cancels[i]() end
        assert.is_true(cancelled > 0, "no wait was cancelled")
        local worst, where = worst_window(grants, limit, burst)
        assert.is_true(worst <= 1e-6, "too many tokens: " .. where)
        local sum = 0
        for _, g in ipairs(grants) do sum = sum + g[2] end
        assert.is_true(sum <= burst + limit * grants[#grants][1] + 1e-6)
      end)
    end)
  end)

  describe("cancel", function()
    it("R18: cancelling the last reservation gives its tokens back (TestCancelLast)", function()
      local lim, at = fake(10, 2)
      assert.are.equal(0, lim:reserve(2):delay())
      local r = lim:reserve(2)
      assert.is_near(0.2, r:delay(), EPS) -- acts at t2
      at(1)
      assert.is_near(-1, lim:tokens(), EPS)
      r:cancel()
      assert.is_near(1, lim:tokens(), EPS)
      local r2 = lim:reserve(2)
      assert.is_true(r2:ok())
      assert.is_near(0.1, r2:delay(), EPS) -- acts at t2
    end)

    it("R19: cancelling after the act time does nothing (TestCancelTooLate)", function()
      local lim, at = fake(10, 2)
      lim:reserve(2)
      local r = lim:reserve(2) -- acts at t2
      at(3)
      assert.is_near(1, lim:tokens(), EPS)
      r:cancel()
      assert.is_near(1, lim:tokens(), EPS)
      assert.is_near(0.1, lim:reserve(2):delay(), EPS) -- acts at t4
    end)

    it("R20: later reservations keep the tokens they counted on: cancel restores 0 (TestCancel0Tokens)", function()
      local lim = fake(10, 2)
      lim:reserve(2)
      local r = lim:reserve(1)
      assert.is_near(0.1, r:delay(), EPS)
      assert.is_near(0.2, lim:reserve(1):delay(), EPS)
      r:cancel()
      assert.is_near(-2, lim:tokens(), EPS)
      assert.is_near(0.3, lim:reserve(1):delay(), EPS) -- acts at t3
    end)

    it("R21: a partial restore (TestCancel1Token)", function()
      local lim, at = fake(10, 2)
      lim:reserve(2)
      local r = lim:reserve(2)
      assert.is_near(0.2, r:delay(), EPS)
      assert.is_near(0.3, lim:reserve(1):delay(), EPS)
      at(2)
      assert.is_near(-1, lim:tokens(), EPS)
      r:cancel() -- restores 1
      assert.is_near(0, lim:tokens(), EPS)
      assert.is_near(0.2, lim:reserve(2):delay(), EPS) -- acts at t4
    end)

    it("R22: several cancels (TestCancelMulti)", function()
      local lim, at = fake(10, 4)
      lim:reserve(4)
      local rA = lim:reserve(3)
      assert.is_near(0.3, rA:delay(), EPS)
      assert.is_near(0.4, lim:reserve(1):delay(), EPS)
      local rC = lim:reserve(1)
      assert.is_near(0.5, rC:delay(), EPS)
      at(1)
      assert.is_near(-4, lim:tokens(), EPS)
      rC:cancel() -- +1, the last booking is now t4
      assert.is_near(-3, lim:tokens(), EPS)
      rA:cancel() -- +2
      assert.is_near(-1, lim:tokens(), EPS)
      local r = lim:reserve(3)
      assert.is_true(r:ok())
      assert.is_near(0.4, r:delay(), EPS) -- acts at t5
    end)

    it("R23: cancelling a reservation that is not ok does nothing (TestCancelInvalid)", function()
      local lim = fake(10, 2)
      lim:reserve(2)
      local bad = lim:reserve(3)
      assert.is_false(bad:ok())
      bad:cancel()
      assert.is_near(0, lim:tokens(), EPS)
      assert.is_near(0.2, lim:reserve(2):delay(), EPS) -- acts at t2
    end)

    it("R24: cancel after set_limit restores at the limit the reservation was made with (TestReserveSetLimitCancel)", function()
      local lim, at = fake(5, 2)
      lim:reserve(2)
      local r = lim:reserve(2)
      assert.is_near(0.4, r:delay(), EPS) -- acts at t4
      at(2)
      lim:set_limit(10)
      r:cancel() -- restores 2
      assert.is_near(1, lim:tokens(), EPS)
      assert.is_near(0.1, lim:reserve(2):delay(), EPS) -- acts at t3
    end)

    it("R25/D5: a second cancel restores nothing", function()
      local lim, at = fake(10, 2)
      lim:reserve(2)
      local r = lim:reserve(2)
      at(1)
      r:cancel()
      assert.is_near(1, lim:tokens(), EPS)
      r:cancel()
      assert.is_near(1, lim:tokens(), EPS) -- Go would restore again, to 2
      assert.is_near(0.1, lim:reserve(2):delay(), EPS)
      r:cancel()
      assert.is_near(-1, lim:tokens(), EPS)
    end)

    it("R25/D5: many reservations cancelled twice each leave the bucket as one cancel does", function()
      local a, at_a = fake(10, 5)
      local b, at_b = fake(10, 5)
      local ra, rb = {}, {}
      for i = 1, 5 do ra[i], rb[i] = a:reserve(2), b:reserve(2) end
      at_a(3)
      at_b(3)
      for i = 5, 1, -1 do
        ra[i]:cancel()
        rb[i]:cancel()
        rb[i]:cancel()
      end
      assert.is_near(a:tokens(), b:tokens(), EPS)
    end)
  end)

  describe("wait", function()
    it("R26: wait(n) with n > burst fails at once with a rate error, taking nothing (TestWaitSimple)", function()
      virtual(function()
        local lim = rate.limiter(10, 3)
        local t0 = conc.now()
        local ok, err = lim:wait(4)
        assert.is_nil(ok)
        assert.are.equal("rate", err.kind)
        assert.are.equal(3, lim:tokens())
        local ctx, cancel = conc.with_timeout(bg, 100)
        ok, err = lim:wait(ctx, 4)
        assert.is_nil(ok)
        assert.are.equal("rate", err.kind)
        assert.is_nil(ctx:err())
        assert.are.equal(t0, conc.now())
        assert.are.equal(3, lim:tokens())
        cancel()
      end)
    end)

    it("R27: a ctx already done gives nil, ctx:err() at once and takes no tokens", function()
      virtual(function()
        local lim = rate.limiter(10, 3)
        local t0 = conc.now()
        local ctx, cancel = conc.with_cancel(bg)
        cancel()
        assert.are.same({ n = 2, nil, errors.canceled }, pack(lim:wait(ctx)))
        assert.are.same({ n = 2, nil, errors.canceled }, pack(lim:wait(ctx, 2)))
        local late, cancel2 = conc.with_deadline(bg, conc.now() - 1)
        assert.are.same({ n = 2, nil, errors.deadline_exceeded }, pack(lim:wait(late, 1)))
        assert.are.equal(3, lim:tokens())
        assert.are.equal(t0, conc.now())
        cancel2()
      end)
    end)

    it("D1: a ctx already done makes wait return nil, ctx:err() even when n > burst, or n = 0", function()
      virtual(function()
        local lim = rate.limiter(10, 3)
        local ctx, cancel = conc.with_cancel(bg)
        cancel("why")
        assert.are.same({ n = 2, nil, errors.canceled }, pack(lim:wait(ctx, 4)))
        assert.are.same({ n = 2, nil, errors.canceled }, pack(lim:wait(ctx, 0)))
        local zero = rate.limiter(1, 0)
        assert.are.same({ n = 2, nil, errors.canceled }, pack(zero:wait(ctx)))
        assert.are.equal(3, lim:tokens())
      end)
    end)

    it("R28/D3: a deadline before the tokens fails at once with a rate error, not deadline_exceeded (TestWaitTimeout)", function()
      virtual(function()
        local lim = rate.limiter(10, 3)
        local t0 = conc.now()
        local ctx, cancel = conc.with_deadline(bg, t0 + d)
        assert.are.same({ n = 1, true }, pack(lim:wait(ctx, 2)))
        assert.are.equal(t0, conc.now())
        local ok, err = lim:wait(ctx, 3) -- needs 0.2 s
        assert.is_nil(ok)
        assert.are.equal(t0, conc.now()) -- at once, not at the deadline
        assert.are.equal("rate", err.kind)
        assert.is_true(err ~= errors.deadline_exceeded)
        assert.is_true(err ~= errors.canceled)
        assert.is_nil(ctx:err()) -- the ctx has not expired yet
        assert.is_near(1, lim:tokens(), EPS) -- took nothing
        assert.are.equal(1, conc.stats().timers) -- only the ctx's deadline: wait left no timer
        cancel()
      end)
    end)

    it("R28: a deadline after the tokens lets the wait sleep and succeed", function()
      virtual(function()
        local lim = rate.limiter(10, 3)
        assert.is_true(lim:allow(3))
        local t0 = conc.now()
        local ctx, cancel = conc.with_deadline(bg, t0 + 0.25)
        assert.are.same({ n = 1, true }, pack(lim:wait(ctx, 2)))
        assert.is_near(0.2, conc.now() - t0, EPS)
        assert.is_nil(ctx:err())
        cancel()
      end)
    end)

    it("R29: wait sleeps exactly the reservation's delay", function()
      virtual(function()
        local lim = rate.limiter(10, 3)
        local t0 = conc.now()
        assert.are.same({ n = 1, true }, pack(lim:wait(2)))
        assert.are.equal(t0, conc.now())
        assert.are.same({ n = 1, true }, pack(lim:wait(3)))
        assert.is_near(0.2, conc.now() - t0, EPS)
        assert.is_near(0, lim:tokens(), EPS)
        local t1 = conc.now()
        assert.are.same({ n = 1, true }, pack(lim:wait(bg, 1)))
        assert.is_near(0.1, conc.now() - t1, EPS)
      end)
    end)

    it("R30: a ctx cancelled mid-wait fails the wait in that turn and gives its tokens back (TestWaitCancel)", function()
      virtual(function()
        local lim = rate.limiter(10, 3)
        local t0 = conc.now()
        assert.is_true((lim:wait(2)))
        local ctx, cancel = conc.with_cancel(bg)
        local canceller = conc.go(function()
          conc.sleep(d)
          cancel()
        end)
        assert.are.same({ n = 2, nil, errors.canceled }, pack(lim:wait(ctx, 3)))
        assert.is_near(d, conc.now() - t0, EPS) -- at t1, not at t2 when the tokens were due
        assert.is_true((canceller:wait()))
        -- at t1 the bucket holds 1 + 1 - 3 = -1; the 3 tokens come back: 2
        assert.is_near(2, lim:tokens(), EPS)
        local t1 = conc.now()
        assert.are.same({ n = 1, true }, pack(lim:wait(2)))
        assert.are.equal(t1, conc.now())
      end)
    end)

    it("R28: tokens 0.1 s away and a deadline 0.05 s away: refused up front, not after sleeping to the deadline", function()
      virtual(function()
        local lim = rate.limiter(10, 1)
        assert.is_true(lim:allow())
        local t0 = conc.now()
        local ctx, cancel = conc.with_timeout(bg, 0.05)
        local ok, err = lim:wait(ctx)
        assert.is_nil(ok)
        assert.are.equal("rate", err.kind)
        assert.are.equal(t0, conc.now())
        cancel()
      end)
    end)

    it("R31: racing waits under a deadline: A waits to t1 and succeeds, B fails at once taking nothing (tasks)", function()
      virtual(function()
        local lim = rate.limiter(10, 2)
        local t0 = conc.now()
        assert.is_true(lim:allow(2))
        local ctxA, cancelA = conc.with_deadline(bg, t0 + d)
        local ctxB, cancelB = conc.with_deadline(bg, t0 + d)
        local A = parked(function()
          local ok, err = lim:wait(ctxA, 1)
          return ok, err, conc.now()
        end)
        assert.are.equal("blocked", A:status())
        assert.is_near(-1, lim:tokens(), EPS)
        local B = conc.go(function()
          local ok, err = lim:wait(ctxB, 1)
          return ok, err, conc.now(), lim:tokens()
        end)
        local done, okB, errB, atB, tokensB = B:wait()
        assert.is_true(done)
        assert.is_nil(okB)
        assert.are.equal("rate", errB.kind)
        assert.are.equal(t0, atB)
        assert.is_near(-1, tokensB, EPS)
        local doneA, okA, errA, atA = A:wait()
        assert.is_true(doneA)
        assert.is_true(okA, tostring(errA and errA.message))
        assert.is_near(t0 + d, atA, EPS)
        cancelA()
        cancelB()
      end)
    end)

    it("R32: burst 0 with a finite limit: allow is always false, wait always fails at once", function()
      local lim, at = fake(10, 0)
      for _, k in ipairs { 0, 1, 100 } do
        at(k)
        assert.is_false(lim:allow())
        assert.is_false(lim:reserve():ok())
        assert.are.equal(0, lim:tokens())
      end
      virtual(function()
        local zero = rate.limiter(1000, 0)
        local t0 = conc.now()
        for _ = 1, 3 do
          local ok, err = zero:wait()
          assert.is_nil(ok)
          assert.are.equal("rate", err.kind)
          local ctx, cancel = conc.with_timeout(bg, 10)
          ok, err = zero:wait(ctx)
          assert.is_nil(ok)
          assert.are.equal("rate", err.kind)
          cancel()
        end
        assert.are.equal(t0, conc.now())
      end)
    end)
  end)

  describe("set_limit, set_burst and time", function()
    it("R33: set_limit brings the tokens up to now at the old limit; bookings keep their times (TestReserveSetLimit)", function()
      local lim, at = fake(5, 2)
      lim:reserve(2)
      local r = lim:reserve(2)
      assert.is_near(0.4, r:delay(), EPS) -- acts at t4
      at(2)
      lim:set_limit(10)
      assert.are.equal(10, lim:limit())
      assert.is_near(-1, lim:tokens(), EPS)
      assert.is_near(0.2, r:delay(), EPS) -- still t4
      assert.is_near(0.2, lim:reserve(1):delay(), EPS) -- acts at t4
    end)

    it("R33: set_burst brings the tokens up to now first", function()
      local lim, at = fake(5, 2)
      lim:reserve(2)
      lim:reserve(2)
      at(3)
      lim:set_burst(4)
      assert.are.equal(4, lim:burst())
      assert.is_near(-0.5, lim:tokens(), EPS)
      assert.is_near(0.9, lim:reserve(4):delay(), EPS)
    end)

    it("R33: lowering the burst caps the tokens; raising it does not mint any", function()
      local lim, at = fake(10, 5)
      lim:set_burst(2)
      assert.are.equal(2, lim:tokens())
      lim:set_burst(6)
      assert.are.equal(2, lim:tokens())
      at(100)
      assert.are.equal(6, lim:tokens())
    end)

    it("R34: limit(), burst() and tokens() read the current state; tokens() changes nothing", function()
      local a, at_a = fake(10, 2)
      local b, at_b = fake(10, 2)
      assert.are.equal(10, a:limit())
      assert.are.equal(2, a:burst())
      assert.is_true(a:allow(2))
      assert.is_true(b:allow(2))
      at_a(0.5)
      at_b(0.5)
      for _ = 1, 1000 do assert.is_near(0.5, a:tokens(), EPS) end
      assert.are.equal(b:allow(), a:allow())
      at_a(1)
      at_b(1)
      for _ = 1, 1000 do a:tokens() end
      assert.are.equal(b:allow(), a:allow())
      assert.are.equal(b:tokens(), a:tokens())
      a:set_limit(3)
      a:set_burst(7)
      assert.are.equal(3, a:limit())
      assert.are.equal(7, a:burst())
    end)

    it("R35/D4: a clock that goes back mints nothing and is never credited twice", function()
      local now = 10
      local lim = rate.limiter(10, 2, { clock = function() return now end })
      assert.is_true(lim:allow(2))
      now = 9 -- back a second
      assert.is_near(0, lim:tokens(), EPS)
      assert.is_false(lim:allow())
      now = 10 -- Go credits 10 tokens here (golang/go#56287)
      assert.is_near(0, lim:tokens(), EPS)
      assert.is_false(lim:allow())
      now = 10.1
      assert.is_near(1, lim:tokens(), EPS)
      assert.is_true(lim:allow())
      assert.is_false(lim:allow())
      now = 0 -- far back: set_limit and set_burst mint nothing either
      lim:set_limit(100)
      lim:set_burst(5)
      now = 10.1
      assert.is_near(0, lim:tokens(), EPS)
      now = 10.11
      assert.is_near(1, lim:tokens(), EPS)
    end)

    it("R35/D4: a reservation made while the clock is back acts no sooner than the latest time seen", function()
      local now = 10
      local lim = rate.limiter(10, 1, { clock = function() return now end })
      assert.is_true(lim:allow())
      now = 5
      local r = lim:reserve()
      assert.is_true(r:ok())
      now = 10
      assert.is_near(0.1, r:delay(), EPS)
      assert.is_near(-1, lim:tokens(), EPS)
    end)
  end)

  describe("bad arguments", function()
    local lim = rate.limiter(10, 2)
    local r = lim:reserve()
    local f = function() return 0 end
    local cases = {
      { "rate.limiter(10, -1)", function() rate.limiter(10, -1) end,
        "conc: rate.limiter: bad argument #2 (burst must be a whole number >= 0, got -1)" },
      { "rate.limiter(10, 1.5)", function() rate.limiter(10, 1.5) end,
        "conc: rate.limiter: bad argument #2 (burst must be a whole number >= 0, got 1.5)" },
      { "rate.limiter(10, 0/0)", function() rate.limiter(10, 0 / 0) end,
        "conc: rate.limiter: bad argument #2 (burst must be a whole number >= 0, got nan)" },
      { "rate.limiter(10)", function() rate.limiter(10) end,
        "conc: rate.limiter: bad argument #2 (burst must be a number, got nil)" },
      { "R13: rate.limiter(0/0, 1)", function() rate.limiter(0 / 0, 1) end,
        "conc: rate.limiter: bad argument #1 (limit must be a number, got nan)" },
      { "R13: rate.limiter(-1, 1)", function() rate.limiter(-1, 1) end,
        "conc: rate.limiter: bad argument #1 (limit must be a number >= 0, got -1)" },
      { "R13: rate.limiter(-inf, 1)", function() rate.limiter(-huge, 1) end,
        "conc: rate.limiter: bad argument #1 (limit must be a number >= 0, got -inf)" },
      { "rate.limiter('10', 1)", function() rate.limiter("10", 1) end,
        "conc: rate.limiter: bad argument #1 (limit must be a number, got string)" },
      { "rate.limiter(1, 1, {clok = f})", function() rate.limiter(1, 1, { clok = f }) end,
        "conc: rate.limiter: unknown option 'clok'" },
      { "rate.limiter(1, 1, 5)", function() rate.limiter(1, 1, 5) end,
        "conc: rate.limiter: bad argument #3 (options table expected, got number)" },
      { "rate.limiter(1, 1, {clock = 5})", function() rate.limiter(1, 1, { clock = 5 }) end,
        "conc: rate.limiter: bad option clock (function expected, got number)" },
      { "rate.limiter(1, 1, {clock = 'now'})", function() rate.limiter(1, 1, { clock = "now" }) end,
        "conc: rate.limiter: bad option clock (function expected, got string)" },
      { "rate.limiter(1, 1, nil, 4)", function() rate.limiter(1, 1, nil, 4) end,
        "conc: rate.limiter: too many arguments (at most 3 expected, got 4)" },
      { "lim:set_limit(-1)", function() lim:set_limit(-1) end,
        "conc: lim:set_limit: bad argument #1 (limit must be a number >= 0, got -1)" },
      { "lim:set_limit(0/0)", function() lim:set_limit(0 / 0) end,
        "conc: lim:set_limit: bad argument #1 (limit must be a number >= 0, got nan)" },
      { "lim:set_burst(-1)", function() lim:set_burst(-1) end,
        "conc: lim:set_burst: bad argument #1 (burst must be a whole number >= 0, got -1)" },
      { "lim:set_burst(1.5)", function() lim:set_burst(1.5) end,
        "conc: lim:set_burst: bad argument #1 (burst must be a whole number >= 0, got 1.5)" },
      { "R8: lim:allow(-1)", function() lim:allow(-1) end,
        "conc: lim:allow: bad argument #1 (n must be a whole number >= 0, got -1)" },
      { "lim:allow(1.5)", function() lim:allow(1.5) end,
        "conc: lim:allow: bad argument #1 (n must be a whole number >= 0, got 1.5)" },
      { "lim:allow(0/0)", function() lim:allow(0 / 0) end,
        "conc: lim:allow: bad argument #1 (n must be a whole number >= 0, got nan)" },
      { "lim:allow(inf)", function() lim:allow(huge) end,
        "conc: lim:allow: bad argument #1 (n must be a whole number >= 0, got inf)" },
      { "lim:allow('1')", function() lim:allow("1") end,
        "conc: lim:allow: bad argument #1 (number expected, got string)" },
      { "R8: lim:reserve(-1)", function() lim:reserve(-1) end,
        "conc: lim:reserve: bad argument #1 (n must be a whole number >= 0, got -1)" },
      { "lim:reserve(0.5)", function() lim:reserve(0.5) end,
        "conc: lim:reserve: bad argument #1 (n must be a whole number >= 0, got 0.5)" },
      { "R8: lim:wait(-1)", function() lim:wait(-1) end,
        "conc: lim:wait: bad argument #1 (n must be a whole number >= 0, got -1)" },
      { "lim:wait(ctx, -1)", function() lim:wait(bg, -1) end,
        "conc: lim:wait: bad argument #2 (n must be a whole number >= 0, got -1)" },
      { "lim:wait(ctx, 2.5)", function() lim:wait(bg, 2.5) end,
        "conc: lim:wait: bad argument #2 (n must be a whole number >= 0, got 2.5)" },
      { "lim:wait(ctx, '2')", function() lim:wait(bg, "2") end,
        "conc: lim:wait: bad argument #2 (n must be a number, got string)" },
      { "lim:wait('x')", function() lim:wait("x") end,
        "conc: lim:wait: bad argument #1 (ctx expected, got string)" },
      { "lim:wait(1, 2)", function() lim:wait(1, 2) end,
        "conc: lim:wait: bad argument #2 (nothing expected after n, got number)" },
      { "lim.allow(42)", function() lim.allow(42) end,
        "conc: lim:allow: bad self (rate limiter expected, got number)" },
      { "lim.reserve({})", function() lim.reserve({}) end,
        "conc: lim:reserve: bad self (rate limiter expected, got table)" },
      { "lim.wait(42)", function() lim.wait(42) end,
        "conc: lim:wait: bad self (rate limiter expected, got number)" },
      { "lim.wait(r)", function() lim.wait(r) end,
        "conc: lim:wait: bad self (rate limiter expected, got conc.rate.reservation)" },
      { "lim.allow(r)", function() lim.allow(r) end,
        "conc: lim:allow: bad self (rate limiter expected, got conc.rate.reservation)" },
      { "lim.set_limit(42, 1)", function() lim.set_limit(42, 1) end,
        "conc: lim:set_limit: bad self (rate limiter expected, got number)" },
      { "lim.tokens(nil)", function() lim.tokens(nil) end,
        "conc: lim:tokens: bad self (rate limiter expected, got nil)" },
      { "r.delay(lim)", function() r.delay(lim) end,
        "conc: r:delay: bad self (rate reservation expected, got conc.rate.limiter)" },
      { "r.cancel(42)", function() r.cancel(42) end,
        "conc: r:cancel: bad self (rate reservation expected, got number)" },
      { "lim:allow(1, 2)", function() lim:allow(1, 2) end,
        "conc: lim:allow: too many arguments (at most 1 expected, got 2)" },
      { "lim:reserve(1, 2)", function() lim:reserve(1, 2) end,
        "conc: lim:reserve: too many arguments (at most 1 expected, got 2)" },
      { "lim:wait(ctx, 1, 2)", function() lim:wait(bg, 1, 2) end,
        "conc: lim:wait: too many arguments (at most 2 expected, got 3)" },
      { "lim:tokens(1)", function() lim:tokens(1) end,
        "conc: lim:tokens: too many arguments (at most 0 expected, got 1)" },
      { "lim:set_limit(1, 2)", function() lim:set_limit(1, 2) end,
        "conc: lim:set_limit: too many arguments (at most 1 expected, got 2)" },
      { "r:cancel(1)", function() r:cancel(1) end,
        "conc: r:cancel: too many arguments (at most 0 expected, got 1)" },
      { "r:ok(1)", function() r:ok(1) end,
        "conc: r:ok: too many arguments (at most 0 expected, got 1)" },
      { "rate.every('x')", function() rate.every("x") end,
        "conc: rate.every: bad argument #1 (interval must be a number, got string)" },
      { "rate.every(0/0)", function() rate.every(0 / 0) end,
        "conc: rate.every: bad argument #1 (interval must be a number, got nan)" },
      { "rate.every(10, 1)", function() rate.every(10, 1) end,
        "conc: rate.every: too many arguments (at most 1 expected, got 2)" },
      { "rate.per(-1, 1)", function() rate.per(-1, 1) end,
        "conc: rate.per: bad argument #1 (events must be >= 0, got -1)" },
      { "rate.per(1, 0)", function() rate.per(1, 0) end,
        "conc: rate.per: bad argument #2 (period must be > 0 seconds, got 0)" },
      { "rate.per(1, -1)", function() rate.per(1, -1) end,
        "conc: rate.per: bad argument #2 (period must be > 0 seconds, got -1)" },
      { "rate.per(1)", function() rate.per(1) end,
        "conc: rate.per: bad argument #2 (period must be a number, got nil)" },
      { "rate.per(1, 2, 3)", function() rate.per(1, 2, 3) end,
        "conc: rate.per: too many arguments (at most 2 expected, got 3)" },
    }
    for _, c in ipairs(cases) do
      it("misuse (CONVENTIONS Errors): " .. c[1], function()
        assert.are.equal(c[3], support.error_of(c[2]))
      end)
    end

    it("misuse (CONVENTIONS Errors): a clock that returns a non-number raises a conc: error naming rate.limiter and its clock", function()
      for _, bad in ipairs { "x", false, {}, 0 / 0 } do
        local err = support.error_of(rate.limiter, 1, 1, { clock = function() return bad end })
        assert.is_truthy(support.starts_with(err, "conc: rate.limiter: "), err)
        assert.matches("clock", err, 1, true)
      end
      local err = support.error_of(rate.limiter, 1, 1, { clock = function() end })
      assert.is_truthy(support.starts_with(err, "conc: rate.limiter: "), err)
      assert.matches("clock", err, 1, true)
      assert.matches("nil", err, 1, true)
    end)

    it("misuse (CONVENTIONS Errors): a clock that later returns a non-number raises a conc: error naming the call and the clock", function()
      local now = 0
      local l = rate.limiter(1, 1, { clock = function() return now end })
      local r2 = l:reserve()
      now = "soon"
      for _, c in ipairs {
        { "lim:allow", function() l:allow() end },
        { "lim:reserve", function() l:reserve() end },
        { "lim:tokens", function() l:tokens() end },
        { "lim:set_limit", function() l:set_limit(2) end },
        { "r:delay", function() r2:delay() end },
        { "r:cancel", function() r2:cancel() end },
      } do
        local err = support.error_of(c[2])
        assert.is_truthy(support.starts_with(err, "conc: " .. c[1] .. ": "), err)
        assert.matches("clock", err, 1, true)
        assert.matches("string", err, 1, true)
      end
      now = 0
      assert.is_false(l:allow()) -- the failed calls changed nothing
    end)
  end)
end)
