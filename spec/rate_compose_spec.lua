--- Limiters composed: rate.multi (one limiter over several, the book's MultiLimiter done
-- right) and rate.keyed (a limiter per key). The single limiter's rules are in
-- rate_spec.lua; here they are checked where multi and keyed apply them (R-rules, D1, D3,
-- D5), and the rest is described as "multi: ..." or "keyed: ...". allow and reserve run on
-- a fake clock; waits run on the scheduler's virtual time, so nothing sleeps.
local conc = require "conc"
local support = require "support"
local parked, pack = support.parked, support.pack
local errors = conc.errors
local rate = conc.rate

local bg = conc.background()
local huge = math.huge
local unpack = table.unpack or unpack
local EPS = 1e-9

--- A fake clock: clock.fn reads clock.t; set clock.t to move time.
local function fake_clock()
  local clock = { t = 0 }
  clock.fn = function() return clock.t end
  return clock
end

--- The book's MultiLimiter (Concurrency in Go, ch. 5 "Rate Limiting"), as written there:
-- the limiters sorted by limit, then Wait on each in sequence, returning the first error.
local function book_multi_limiter(...)
  local limiters = { ... }
  table.sort(limiters, function(a, b) return a:limit() < b:limit() end)
  local m = {}
  function m.wait(ctx)
    for _, l in ipairs(limiters) do
      local ok, err = l:wait(ctx)
      if not ok then return nil, err end
    end
    return true
  end
  function m.limit() return limiters[1]:limit() end
  return m
end

--- The tokens() of each limiter given.
local function tokens_of(...)
  local out = {}
  for i, lim in ipairs { ... } do out[i] = lim:tokens() end
  return out
end

local function assert_near_all(expected, got, what)
  assert.are.equal(#expected, #got, what)
  for i = 1, #expected do assert.is_near(expected[i], got[i], EPS, (what or "") .. " #" .. i) end
end

describe("rate composition", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("multi", function()
    it("multi: limit() is the strictest limit and burst() the smallest burst, nested multis included", function()
      local a, b, c = rate.limiter(10, 5), rate.limiter(2, 3), rate.limiter(rate.per(10, 60), 10)
      local m = rate.multi(a, b)
      assert.are.equal(2, m:limit())
      assert.are.equal(3, m:burst())
      local nested = rate.multi(m, c)
      assert.is_near(10 / 60, nested:limit(), EPS)
      assert.are.equal(3, nested:burst())
      assert.are.equal(nested:limit(), rate.multi(c, b, a):limit(), "the order of the limiters does not matter")
      assert.are.equal(nested:burst(), rate.multi(b, c, a):burst())
      b:set_limit(20)
      assert.are.equal(10, m:limit(), "limit() reads the limiters' current limits")
      local free = rate.limiter(rate.inf, 0)
      assert.are.equal(3, rate.multi(free, rate.limiter(10, 3)):burst(), "R1: an inf limiter's burst bounds nothing")
      assert.is_true(rate.multi(free, rate.limiter(10, 3)):allow(3))
      assert.are.equal(math.huge, rate.multi(free):burst())
    end)

    it("R6 multi: allow takes a token from every limiter or from none; a refused allow takes nothing", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 2, { clock = clock.fn })
      local b = rate.limiter(1, 1, { clock = clock.fn })
      local m = rate.multi(a, b)
      assert.is_true(m:allow())
      assert_near_all({ 1, 0 }, tokens_of(a, b), "the first allow took one from each")
      assert.is_false(m:allow(), "b is empty")
      assert_near_all({ 1, 0 }, tokens_of(a, b), "the refused allow took nothing from a")
      assert.is_false(m:allow(), "b is still empty")
      assert_near_all({ 1, 0 }, tokens_of(a, b))
      clock.t = 1
      assert.is_true(m:allow())
      assert_near_all({ 1, 0 }, tokens_of(a, b), "a refilled to 2 and gave one; b refilled to 1 and gave it")
    end)

    it("R7 multi: n above any limiter's burst is refused by allow and reserve, taking nothing", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 5, { clock = clock.fn })
      local b = rate.limiter(10, 2, { clock = clock.fn })
      local m = rate.multi(a, b)
      assert.is_false(m:allow(3))
      local r = m:reserve(3)
      assert.is_false(r:ok())
      assert_near_all({ 5, 2 }, tokens_of(a, b))
      clock.t = 100
      assert.is_false(m:allow(3), "however much time passes")
      assert.is_true(m:allow(2))
      assert_near_all({ 3, 0 }, tokens_of(a, b))
    end)

    it("R8 multi: allow(0) and wait(0) succeed at once with every limiter empty", function()
      conc.virtual_time(true)
      conc.run(function()
        local a, b = rate.limiter(10, 1), rate.limiter(1, 1)
        local m = rate.multi(a, b)
        assert.is_true(m:allow())
        assert.is_true(m:allow(0))
        local t0 = conc.now()
        assert.are.same({ n = 1, true }, pack(m:wait(0)))
        assert.are.same({ n = 1, true }, pack(m:wait(bg, 0)))
        assert.are.equal(t0, conc.now())
        assert_near_all({ 0, 0 }, tokens_of(a, b))
      end)
    end)

    it("R11/R12 multi: reserve books every limiter for the time the slowest can grant, and delay() is that time", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 1, { clock = clock.fn })
      local b = rate.limiter(2, 1, { clock = clock.fn })
      local m = rate.multi(a, b)
      local r0 = m:reserve()
      assert.is_true(r0:ok())
      assert.are.equal(0, r0:delay(), "both buckets were full")
      local r = m:reserve()
      assert.is_true(r:ok())
      assert.is_near(0.5, r:delay(), EPS, "b grants in 0.5 s, a in 0.1 s: the slowest decides")
      assert_near_all({ -1, -1 }, tokens_of(a, b), "a token booked on each limiter")
      clock.t = 0.3
      assert.is_near(0.2, r:delay(), EPS)
      clock.t = 0.5
      assert.are.equal(0, r:delay())
      clock.t = 0.9
      assert.are.equal(0, r:delay(), "never negative once the time has passed")
      assert.are.equal(huge, m:reserve(2):delay(), "a reservation that is not ok waits forever")
    end)

    it("R11 multi: successive reservations queue behind the slowest limiter", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 1, { clock = clock.fn })
      local b = rate.limiter(2, 1, { clock = clock.fn })
      local m = rate.multi(b, a)
      local delays = {}
      for i = 1, 4 do delays[i] = m:reserve():delay() end
      assert_near_all({ 0, 0.5, 1.0, 1.5 }, delays)
    end)

    it("R18 multi: cancel() before the act time gives every token back to every limiter", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 1, { clock = clock.fn })
      local b = rate.limiter(2, 1, { clock = clock.fn })
      -- The same limiters and calls without the cancelled reservation.
      local ca = rate.limiter(10, 1, { clock = clock.fn })
      local cb = rate.limiter(2, 1, { clock = clock.fn })
      local m, control = rate.multi(a, b), rate.multi(ca, cb)
      assert.is_true(m:allow())
      assert.is_true(control:allow())
      local r = m:reserve()
      assert.is_near(0.5, r:delay(), EPS)
      clock.t = 0.3
      r:cancel()
      assert_near_all(tokens_of(ca, cb), tokens_of(a, b), "as if the reservation had never been made")
      assert_near_all({ 1, 0.6 }, tokens_of(a, b))
      assert.is_near(control:reserve():delay(), m:reserve():delay(), EPS, "the next reservation is not delayed")
    end)

    it("R19 multi: cancel() after the act time gives nothing back", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 1, { clock = clock.fn })
      local b = rate.limiter(2, 1, { clock = clock.fn })
      local m = rate.multi(a, b)
      assert.is_true(m:allow())
      local r = m:reserve()
      clock.t = 0.6
      local before = tokens_of(a, b)
      r:cancel()
      assert_near_all(before, tokens_of(a, b))
      assert_near_all({ 1, 0.2 }, before, "the reservation's tokens were used at t=0.5")
    end)

    it("R25/D5 multi: a second cancel() gives nothing more back", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 2, { clock = clock.fn })
      local b = rate.limiter(2, 2, { clock = clock.fn })
      local m = rate.multi(a, b)
      assert.is_true(m:allow(2))
      local r = m:reserve(2)
      assert.is_true(m:reserve(2):ok(), "a later reservation, after r")
      clock.t = 0.1
      r:cancel()
      local after_one = tokens_of(a, b)
      r:cancel()
      assert_near_all(after_one, tokens_of(a, b))
    end)

    it("R23/R12 multi: a reservation that is not ok has delay() math.huge and its cancel() does nothing", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 4, { clock = clock.fn })
      local b = rate.limiter(10, 2, { clock = clock.fn })
      local m = rate.multi(a, b)
      assert.is_true(m:reserve(2):ok())
      local bad = m:reserve(3)
      assert.is_false(bad:ok())
      assert.are.equal(huge, bad:delay())
      bad:cancel()
      assert_near_all({ 2, 0 }, tokens_of(a, b))
      assert.is_near(0.2, m:reserve(2):delay(), EPS)
    end)

    it("R13 multi: a limiter with limit 0 and an empty bucket makes reserve not ok and wait fail at once", function()
      conc.virtual_time(true)
      conc.run(function()
        local zero, other = rate.limiter(0, 1), rate.limiter(10, 3)
        local m = rate.multi(zero, other)
        assert.is_true(m:allow(), "the one token the zero limiter will ever give")
        local r = m:reserve()
        assert.is_false(r:ok())
        assert.are.equal(huge, r:delay())
        local t0 = conc.now()
        local ok, err = m:wait()
        assert.is_nil(ok)
        assert.are.equal("rate", err.kind)
        assert.are.equal(t0, conc.now())
        assert_near_all({ 0, 2 }, tokens_of(zero, other), "nothing taken from the other limiter")
      end)
    end)

    it("R1 multi: a rate.inf limiter never holds the others back, whatever its burst", function()
      local clock = fake_clock()
      local inf = rate.limiter(rate.inf, 0, { clock = clock.fn })
      local b = rate.limiter(10, 3, { clock = clock.fn })
      local m = rate.multi(inf, b)
      assert.are.equal(10, m:limit())
      assert.is_true(m:allow(3))
      assert.is_near(0.1, m:reserve():delay(), EPS, "b alone decides")
    end)

    it("R29 multi: wait waits for the slowest limiter, and no longer", function()
      conc.virtual_time(true)
      conc.run(function()
        for _, order in ipairs { "fast first", "slow first" } do
          local fast, slow = rate.limiter(10, 1), rate.limiter(2, 1)
          local m = order == "fast first" and rate.multi(fast, slow) or rate.multi(slow, fast)
          local t0 = conc.now()
          assert.are.same({ n = 1, true }, pack(m:wait()))
          assert.are.equal(t0, conc.now(), order .. ": the buckets were full")
          assert.are.same({ n = 1, true }, pack(m:wait(bg)))
          assert.is_near(0.5, conc.now() - t0, EPS, order)
          assert.are.same({ n = 1, true }, pack(m:wait(bg, 1)))
          assert.is_near(1.0, conc.now() - t0, EPS, order)
        end
      end)
    end)

    it("R29 multi: tasks waiting together pass at the slowest limiter's pace", function()
      conc.virtual_time(true)
      conc.run(function()
        local m = rate.multi(rate.limiter(10, 1), rate.limiter(2, 1))
        local t0 = conc.now()
        local tasks = {}
        for i = 1, 4 do
          tasks[i] = conc.go(function()
            assert(m:wait())
            return conc.now() - t0
          end)
        end
        local times = {}
        for i = 1, 4 do
          local ok, dt = tasks[i]:wait()
          assert.is_true(ok)
          times[i] = dt
        end
        table.sort(times)
        assert_near_all({ 0, 0.5, 1.0, 1.5 }, times)
      end)
    end)

    it("R26 multi: wait with n above some limiter's burst fails at once with a kind 'rate' error, taking nothing", function()
      conc.virtual_time(true)
      conc.run(function()
        local a, b = rate.limiter(10, 5), rate.limiter(10, 2)
        local m = rate.multi(a, b)
        local t0 = conc.now()
        for _, call in ipairs {
          function() return m:wait(3) end,
          function() return m:wait(bg, 3) end,
        } do
          local res = pack(call())
          assert.are.equal(2, res.n)
          assert.is_nil(res[1])
          assert.is_true(errors.is_error(res[2]))
          assert.are.equal("rate", res[2].kind)
          assert.matches("burst", res[2].message, 1, true)
          assert.are_not.equal(errors.deadline_exceeded, res[2])
        end
        assert.are.equal(t0, conc.now(), "no time passed")
        assert_near_all({ 5, 2 }, tokens_of(a, b))
      end)
    end)

    it("R28/D3 multi: a deadline too close for the slowest limiter fails at once, taking nothing; one far enough is met", function()
      conc.virtual_time(true)
      conc.run(function()
        local a, b = rate.limiter(10, 1), rate.limiter(1, 1)
        local m = rate.multi(a, b)
        assert.is_true(m:allow())
        local t0 = conc.now()
        local ctx, cancel = conc.with_timeout(bg, 0.5)
        local ok, err = m:wait(ctx)
        assert.is_nil(ok)
        assert.are.equal("rate", err.kind)
        assert.are_not.equal(errors.deadline_exceeded, err, "D3: the ctx is not done")
        assert.is_false(errors.is(err, errors.deadline_exceeded))
        assert.are.equal("rate", errors.kind(err))
        assert.is_nil(ctx:err())
        assert.are.equal(t0, conc.now(), "refused at once, not at the deadline")
        assert_near_all({ 0, 0 }, tokens_of(a, b), "nothing booked on either limiter")
        cancel()
        local ctx2, cancel2 = conc.with_timeout(bg, 1.5)
        assert.are.same({ n = 1, true }, pack(m:wait(ctx2)))
        assert.is_near(1, conc.now() - t0, EPS)
        cancel2()
      end)
    end)

    it("D1 multi: wait with a ctx already done returns nil, ctx:err() before any other check, taking nothing", function()
      conc.virtual_time(true)
      conc.run(function()
        local a, b = rate.limiter(10, 3), rate.limiter(10, 2)
        local m = rate.multi(a, b)
        local ctx, cancel = conc.with_cancel(bg)
        cancel()
        local t0 = conc.now()
        assert.are.same({ n = 2, nil, ctx:err() }, pack(m:wait(ctx)))
        assert.are.same({ n = 2, nil, ctx:err() }, pack(m:wait(ctx, 5)), "even with n above the bursts")
        assert.are.same({ n = 2, nil, ctx:err() }, pack(m:wait(ctx, 0)), "even with n = 0")
        assert.are.equal(errors.canceled, ctx:err())
        assert.are.equal(t0, conc.now())
        assert_near_all({ 3, 2 }, tokens_of(a, b))
        local dctx, dcancel = conc.with_timeout(bg, 0)
        assert.are.same({ n = 2, nil, errors.deadline_exceeded }, pack(m:wait(dctx)))
        dcancel()
      end)
    end)

    it("R30 multi: a ctx cancelled during the wait returns nil, err in that turn and gives every token back", function()
      conc.virtual_time(true)
      conc.run(function()
        local a, b = rate.limiter(10, 1), rate.limiter(1, 1)
        local ca, cb = rate.limiter(10, 1), rate.limiter(1, 1)
        local m = rate.multi(a, b)
        assert.is_true(m:allow())
        assert.is_true(rate.multi(ca, cb):allow())
        local t0 = conc.now()
        local ctx, cancel = conc.with_cancel(bg)
        local waiter = parked(function() return m:wait(ctx) end)
        assert.are.equal("blocked", waiter:status())
        conc.sleep(0.3)
        cancel()
        assert.are.equal("ready", waiter:status())
        assert.are.same({ true, nil, errors.canceled }, { waiter:wait() })
        assert.is_near(0.3, conc.now() - t0, EPS)
        assert_near_all(tokens_of(ca, cb), tokens_of(a, b), "every limiter as if the wait had never been")
        assert_near_all({ 1, 0.3 }, tokens_of(a, b))
      end)
    end)

    it("multi: unlike the book's sequential MultiLimiter, a cancelled wait burns no limiter's token", function()
      conc.virtual_time(true)
      conc.run(function()
        -- The book's APIConnection limits: 10 a minute (burst 10) and 2 a second (burst 1).
        -- The book sorts by limit, so it waits on the per-minute limiter first: that one
        -- grants at once, then the per-second one (emptied just before) blocks for 0.5 s.
        -- The ctx is cancelled 0.2 s into that block.
        local function scenario(make_multi)
          local per_minute, per_second = rate.limiter(rate.per(10, 60), 10), rate.limiter(2, 1)
          assert.is_true(per_second:allow())
          local m = make_multi(per_minute, per_second)
          local ctx, cancel = conc.with_cancel(bg)
          local waiter = parked(function() return m.wait(m, ctx) end)
          assert.are.equal("blocked", waiter:status())
          conc.sleep(0.2)
          cancel()
          assert.are.same({ true, nil, errors.canceled }, { waiter:wait() })
          return per_minute, per_second
        end
        local control_minute, control_second = rate.limiter(rate.per(10, 60), 10), rate.limiter(2, 1)
        assert.is_true(control_second:allow())

        local book_minute, book_second = scenario(function(...)
          local m = book_multi_limiter(...)
          return { wait = function(_, ctx) return m.wait(ctx) end }
        end)
        assert.are.equal(10 / 60, book_multi_limiter(book_minute, book_second).limit())
        assert.is_near(control_second:tokens(), book_second:tokens(), EPS, "the blocked limiter got its token back")
        assert.is_near(10, control_minute:tokens(), EPS)
        assert.is_near(9 + 0.2 / 6, book_minute:tokens(), EPS, "the book burnt a per-minute token")
        conc.sleep(1)
        assert.is_near(9 + 1.2 / 6, book_minute:tokens(), EPS, "and never gives it back: it only refills at 1/6 a second")
        assert.is_true(book_minute:tokens() < control_minute:tokens() - 0.75)

        local t0 = conc.now()
        local ours_minute, ours_second = scenario(function(...)
          local m = rate.multi(...)
          return { wait = function(_, ctx) return m:wait(ctx) end }
        end)
        assert.is_near(0.2, conc.now() - t0, EPS)
        assert.is_near(control_minute:tokens(), ours_minute:tokens(), EPS)
        assert.is_near(10, ours_minute:tokens(), EPS, "rate.multi burnt no per-minute token")
        -- ours_second was emptied at t0 and read 0.2 s later: the same as a bucket emptied
        -- then that nobody waited on.
        assert.is_near(0.4, ours_second:tokens(), EPS)
        conc.sleep(1)
        assert.is_near(10, ours_minute:tokens(), EPS)
      end)
    end)

    it("R34 multi: tokens() is the fewest tokens any limiter has, and reading it changes nothing", function()
      local clock = fake_clock()
      local a = rate.limiter(10, 5, { clock = clock.fn })
      local b = rate.limiter(10, 3, { clock = clock.fn })
      local m = rate.multi(a, b)
      assert.are.equal(3, m:tokens())
      assert.is_true(b:allow(2))
      assert.is_near(1, m:tokens(), EPS)
      for _ = 1, 1000 do m:tokens() end
      assert.is_true(m:allow())
      assert.is_false(m:allow())
      assert_near_all({ 4, 0 }, tokens_of(a, b))
    end)
  end)

  describe("keyed", function()
    it("R3 keyed: each key gets its own limiter on first use, with a full bucket; keys are independent", function()
      local clock = fake_clock()
      local k = rate.keyed(10, 3, { clock = clock.fn })
      assert.are.equal(0, k:len())
      assert.is_true(k:allow("a", 3))
      assert.is_false(k:allow("a"))
      assert.are.equal(1, k:len())
      assert.is_true(k:allow("b", 3), "b's bucket is full whatever a did")
      assert.is_true(k:allow(1, 3))
      assert.is_true(k:allow("1", 3), "1 and '1' are different keys")
      local tkey = {}
      assert.is_true(k:allow(tkey, 3))
      assert.are.equal(5, k:len())
      assert.are.equal(3, k:get("c"):tokens(), "get makes the limiter too, full")
      assert.are.equal(6, k:len())
      local lim = k:get("a")
      assert.are.equal(10, lim:limit())
      assert.are.equal(3, lim:burst())
      assert.is_near(0, lim:tokens(), EPS)
    end)

    it("keyed: get(key) returns the same limiter while the key lives, and the calls act on it", function()
      local clock = fake_clock()
      local k = rate.keyed(10, 2, { clock = clock.fn })
      local lim = k:get("a")
      assert.are.equal(lim, k:get("a"))
      assert.are_not.equal(lim, k:get("b"))
      assert.is_true(k:allow("a"))
      assert.is_near(1, lim:tokens(), EPS)
      assert.is_true(lim:allow())
      assert.is_false(k:allow("a"), "the token taken through get is gone for k:allow too")
      clock.t = 0.05
      assert.are.equal(lim, k:get("a"))
      assert.is_near(0.5, lim:tokens(), EPS)
    end)

    it("R11 keyed: reserve(key, n) books on that key's limiter only", function()
      local clock = fake_clock()
      local k = rate.keyed(10, 2, { clock = clock.fn })
      assert.are.equal(0, k:reserve("a", 2):delay())
      assert.is_near(0.2, k:reserve("a", 2):delay(), EPS)
      assert.are.equal(0, k:reserve("b", 2):delay())
      local r = k:reserve("a")
      assert.is_near(0.3, r:delay(), EPS)
      r:cancel()
      assert.is_near(-2, k:get("a"):tokens(), EPS)
      assert.is_false(k:reserve("a", 3):ok(), "R7: n above the burst")
    end)

    it("keyed: opts.idle drops a key unused for idle seconds, never sooner; it comes back with a full bucket", function()
      local clock = fake_clock()
      -- 1 token every 10 s, so a drained key stays below full through the whole test.
      local k = rate.keyed(0.1, 5, { idle = 10, clock = clock.fn })
      assert.is_true(k:allow("a", 5))
      assert.is_true(k:allow("b", 5))
      local old_a, old_b = k:get("a"), k:get("b")
      clock.t = 9
      assert.is_false(k:allow("b", 5), "b used at t=9")
      clock.t = 9.99
      assert.are.equal(2, k:len(), "nobody has been idle for 10 s yet")
      clock.t = 15
      assert.is_false(k:allow("b", 5), "b used at t=15")
      clock.t = 20
      -- Dropping is lazy (at most once every idle seconds), so by t=20 a sweep has seen a
      -- idle for 10 s or more; b was used 5 s ago.
      assert.are.equal(1, k:len(), "a was dropped")
      assert.are.equal(old_b, k:get("b"), "b lives on")
      assert.is_near(2, old_b:tokens(), EPS, "with its tokens")
      local new_a = k:get("a")
      assert.are_not.equal(old_a, new_a)
      assert.are.equal(5, new_a:tokens(), "a came back with a full bucket")
      assert.are.equal(2, k:len())
    end)

    it("keyed: without idle, a key whose bucket is full again is dropped at the next sweep; a drained one is kept", function()
      local clock = fake_clock()
      local k = rate.keyed(0.1, 2, { clock = clock.fn })
      assert.is_true(k:allow("refilled"))  -- full again at t=10
      assert.is_true(k:allow("throttled", 2)) -- full again at t=20
      local throttled = k:get("throttled")
      assert.are.equal(2, k:len())
      clock.t = 12
      k:len() -- a sweep is due by now
      clock.t = 15
      assert.are.equal(1, k:len(), "the refilled key was dropped")
      assert.are.equal(throttled, k:get("throttled"), "the throttled key was not")
      -- A throttled client cannot escape its limit by waiting out a sweep: 1.5 tokens.
      assert.is_false(k:allow("throttled", 2))
      assert.is_near(1.5, throttled:tokens(), EPS)
      assert.is_true(k:allow("throttled", 1))
      clock.t = 100
      k:len()
      clock.t = 105
      assert.are.equal(0, k:len(), "full again, so dropped: a new limiter would be the same")
      assert.are_not.equal(throttled, k:get("throttled"))
    end)

    it("keyed: opts.max_keys bounds len(), dropping the least recently used keys first", function()
      local clock = fake_clock()
      local max = 8
      local k = rate.keyed(1, 1, { max_keys = max, clock = clock.fn })
      for i = 1, 100 do
        clock.t = i * 0.001
        assert.is_true(k:allow(i), "key " .. i .. " is new")
        assert.is_true(k:len() <= max, "len " .. k:len() .. " after key " .. i)
        assert.is_near(0, k:get(i):tokens(), 1e-6, "the key just added kept its state")
      end
      assert.are.equal(max, k:len())
      -- Keys 93..100 are there; touch 93, then add one: 94, the least recently used, goes.
      clock.t = 0.2
      assert.is_false(k:allow(93), "93 is there, still drained")
      clock.t = 0.201
      assert.is_true(k:allow("new"))
      assert.is_true(k:len() <= max)
      assert.is_false(k:allow(93), "93 was used recently: kept")
      for i = 95, 100 do assert.is_false(k:allow(i), "key " .. i .. " kept") end
      assert.is_true(k:allow(94), "94 was dropped, and comes back full")
    end)

    it("keyed: at max_keys only about the least recently used eighth is dropped, even for keys used at the same instant", function()
      local clock = fake_clock()
      local max = 16
      local k = rate.keyed(1, 1, { max_keys = max, clock = clock.fn })
      for i = 1, max do assert.is_true(k:allow(i)) end
      assert.are.equal(max, k:len())
      assert.is_true(k:allow("one more"))
      -- One eighth of 16 is 2: at least 14 of the throttled keys must still be there, or
      -- a crowd of new clients frees every throttled one.
      local len = k:len()
      assert.is_true(len >= max - max / 8 + 1, "len " .. len .. " after one more key")
    end)

    it("keyed: wait(key [, ctx] [, n]) works in tasks: one key's waiters are spaced, other keys do not wait", function()
      conc.virtual_time(true)
      conc.run(function()
        local k = rate.keyed(2, 1)
        local t0 = conc.now()
        local function waiter(...)
          local args = pack(...)
          return conc.go(function()
            local res = pack(k:wait(unpack(args, 1, args.n)))
            return res, conc.now() - t0
          end)
        end
        local a1 = waiter("a")
        local a2 = waiter("a", bg)
        local a3 = waiter("a", bg, 1)
        local b1 = waiter("b", 1)
        local function result(t)
          local ok, res, dt = t:wait()
          assert.is_true(ok)
          assert.are.same({ n = 1, true }, res)
          return dt
        end
        local times = { result(a1), result(a2), result(a3) }
        table.sort(times)
        assert_near_all({ 0, 0.5, 1.0 }, times)
        assert.are.equal(0, result(b1), "b waited for nobody")
      end)
    end)

    it("D1/R26/R30 keyed: wait fails at once on a done ctx or n above the burst, and gives the tokens back when ctx ends", function()
      conc.virtual_time(true)
      conc.run(function()
        local k = rate.keyed(2, 2)
        local t0 = conc.now()
        local done, cancel_done = conc.with_cancel(bg)
        cancel_done()
        assert.are.same({ n = 2, nil, errors.canceled }, pack(k:wait("a", done)))
        assert.are.same({ n = 2, nil, errors.canceled }, pack(k:wait("a", done, 5)))
        local ok, err = k:wait("a", 3)
        assert.is_nil(ok)
        assert.are.equal("rate", err.kind)
        assert.are.equal(t0, conc.now())
        assert.are.equal(2, k:get("a"):tokens(), "nothing taken")
        assert.is_true(k:wait("a", 2))
        local ctx, cancel = conc.with_cancel(bg)
        local w = parked(function() return k:wait("a", ctx, 2) end)
        assert.are.equal("blocked", w:status())
        conc.sleep(0.25)
        cancel()
        assert.are.same({ true, nil, errors.canceled }, { w:wait() })
        assert.is_near(0.5, k:get("a"):tokens(), EPS, "the 2 booked tokens came back")
      end)
    end)

    it("R8 keyed: a bad n or ctx raises a conc: error naming k's method and the argument, taking nothing", function()
      local k = rate.keyed(1, 2)
      for _, case in ipairs {
        { function() k:allow("a", -1) end, "conc: k:allow: bad argument #2 (n must be a whole number >= 0, got -1)" },
        { function() k:allow("a", 1.5) end, "conc: k:allow: bad argument #2 (n must be a whole number >= 0, got 1.5)" },
        { function() k:allow("a", 1, 2) end, "conc: k:allow: too many arguments (at most 2 expected, got 3)" },
        { function() k:reserve("a", -1) end, "conc: k:reserve: bad argument #2 (n must be a whole number >= 0, got -1)" },
        { function() k:wait("a", "x") end, "conc: k:wait: bad argument #2 (ctx expected, got string)" },
        { function() k:wait("a", bg, -1) end, "conc: k:wait: bad argument #3 (n must be a whole number >= 0, got -1)" },
        { function() k:wait("a", nil, -1) end, "conc: k:wait: bad argument #3 (n must be a whole number >= 0, got -1)" },
        { function() k:wait("a", 1, 2) end, "conc: k:wait: bad argument #3 (nothing expected after n, got number)" },
      } do
        assert.are.equal(case[2], support.error_of(case[1]))
      end
      assert.are.equal(2, k:get("a"):tokens())
    end)

    it("keyed: a nil or NaN key raises", function()
      local k = rate.keyed(1, 1)
      for _, case in ipairs {
        { "allow", function() k:allow(nil) end, "nil" },
        { "allow", function() k:allow(0 / 0) end, "nan" },
        { "reserve", function() k:reserve(nil) end, "nil" },
        { "wait", function() k:wait(0 / 0) end, "nan" },
        { "get", function() k:get() end, "nil" },
        { "get", function() k:get(0 / 0) end, "nan" },
      } do
        assert.are.equal(("conc: k:%s: bad argument #1 (key expected, got %s)"):format(case[1], case[3]),
          support.error_of(case[2]))
      end
      assert.are.equal(0, k:len())
    end)
  end)

  describe("bad arguments", function()
    local lim = rate.limiter(1, 1)
    local m = rate.multi(lim)
    local k = rate.keyed(1, 1)
    local cases = {
      { "rate.multi()", function() rate.multi() end,
        "conc: rate.multi: bad argument #1 (rate limiter expected, got no value)" },
      { "rate.multi(lim, 5)", function() rate.multi(lim, 5) end,
        "conc: rate.multi: bad argument #2 (rate limiter expected, got number)" },
      { "rate.multi(lim, nil, lim)", function() rate.multi(lim, nil, lim) end,
        "conc: rate.multi: bad argument #2 (rate limiter expected, got nil)" },
      { "rate.multi({})", function() rate.multi({}) end,
        "conc: rate.multi: bad argument #1 (rate limiter expected, got table)" },
      { "m.allow(lim)", function() m.allow(lim) end,
        "conc: m:allow: bad self (rate.multi expected, got conc.rate.limiter)" },
      { "m.reserve(5)", function() m.reserve(5) end,
        "conc: m:reserve: bad self (rate.multi expected, got number)" },
      { "m.wait(k)", function() m.wait(k) end,
        "conc: m:wait: bad self (rate.multi expected, got conc.rate.keyed)" },
      { "m.limit({})", function() m.limit({}) end,
        "conc: m:limit: bad self (rate.multi expected, got table)" },
      { "m.burst()", function() m.burst() end,
        "conc: m:burst: bad self (rate.multi expected, got nil)" },
      { "m.tokens(lim)", function() m.tokens(lim) end,
        "conc: m:tokens: bad self (rate.multi expected, got conc.rate.limiter)" },
      { "R8: m:allow(-1)", function() m:allow(-1) end,
        "conc: m:allow: bad argument #1 (n must be a whole number >= 0, got -1)" },
      { "m:allow(1.5)", function() m:allow(1.5) end,
        "conc: m:allow: bad argument #1 (n must be a whole number >= 0, got 1.5)" },
      { "R8: m:reserve(-1)", function() m:reserve(-1) end,
        "conc: m:reserve: bad argument #1 (n must be a whole number >= 0, got -1)" },
      { "m:wait('x')", function() m:wait("x") end,
        "conc: m:wait: bad argument #1 (ctx expected, got string)" },
      { "m:wait(1, 2)", function() m:wait(1, 2) end,
        "conc: m:wait: bad argument #2 (nothing expected after n, got number)" },
      { "m:wait(bg, 1, 2)", function() m:wait(bg, 1, 2) end,
        "conc: m:wait: too many arguments (at most 2 expected, got 3)" },
      { "R8: m:wait(bg, -1)", function() m:wait(bg, -1) end,
        "conc: m:wait: bad argument #2 (n must be a whole number >= 0, got -1)" },
      { "rate.keyed(-1, 1)", function() rate.keyed(-1, 1) end,
        "conc: rate.keyed: bad argument #1 (limit must be a number >= 0, got -1)" },
      { "rate.keyed(1, 1.5)", function() rate.keyed(1, 1.5) end,
        "conc: rate.keyed: bad argument #2 (burst must be a whole number >= 0, got 1.5)" },
      { "rate.keyed(1, 1, 5)", function() rate.keyed(1, 1, 5) end,
        "conc: rate.keyed: bad argument #3 (options table expected, got number)" },
      { "rate.keyed unknown option", function() rate.keyed(1, 1, { idel = 5 }) end,
        "conc: rate.keyed: unknown option 'idel'" },
      { "rate.keyed idle = 0", function() rate.keyed(1, 1, { idle = 0 }) end,
        "conc: rate.keyed: bad argument #3 (opts.idle must be > 0 seconds, got 0)" },
      { "rate.keyed idle = -1", function() rate.keyed(1, 1, { idle = -1 }) end,
        "conc: rate.keyed: bad argument #3 (opts.idle must be > 0 seconds, got -1)" },
      { "rate.keyed idle = 'x'", function() rate.keyed(1, 1, { idle = "x" }) end,
        "conc: rate.keyed: bad argument #3 (opts.idle must be a number, got string)" },
      { "rate.keyed idle = NaN", function() rate.keyed(1, 1, { idle = 0 / 0 }) end,
        "conc: rate.keyed: bad argument #3 (opts.idle must be a number, got nan)" },
      { "rate.keyed max_keys = 0", function() rate.keyed(1, 1, { max_keys = 0 }) end,
        "conc: rate.keyed: bad argument #3 (opts.max_keys must be a whole number >= 1, got 0)" },
      { "rate.keyed max_keys = 2.5", function() rate.keyed(1, 1, { max_keys = 2.5 }) end,
        "conc: rate.keyed: bad argument #3 (opts.max_keys must be a whole number >= 1, got 2.5)" },
      { "rate.keyed max_keys = 'x'", function() rate.keyed(1, 1, { max_keys = "x" }) end,
        "conc: rate.keyed: bad argument #3 (opts.max_keys must be a number, got string)" },
      { "rate.keyed clock = 5", function() rate.keyed(1, 1, { clock = 5 }) end,
        "conc: rate.keyed: bad option clock (function expected, got number)" },
      { "k.allow(m)", function() k.allow(m, "a") end,
        "conc: k:allow: bad self (rate.keyed expected, got conc.rate.multi)" },
      { "k.reserve(5)", function() k.reserve(5, "a") end,
        "conc: k:reserve: bad self (rate.keyed expected, got number)" },
      { "k.wait(lim)", function() k.wait(lim, "a") end,
        "conc: k:wait: bad self (rate.keyed expected, got conc.rate.limiter)" },
      { "k.get({})", function() k.get({}, "a") end,
        "conc: k:get: bad self (rate.keyed expected, got table)" },
      { "k.len()", function() k.len() end,
        "conc: k:len: bad self (rate.keyed expected, got nil)" },
    }
    for _, case in ipairs(cases) do
      it(("raises for %s (Messages)"):format(case[1]), function()
        assert.are.equal(case[3], support.error_of(case[2]))
      end)
    end
  end)
end)
