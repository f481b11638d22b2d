--- Synchronisation and structure: conc.waitgroup, conc.semaphore, conc.mutex (csrc/sync.c)
-- and conc.group, conc.first, conc.hedge (lua/conc/sync.lua): rules G1-G7 and M1-M9 of
-- SEMANTICS.md section 6, with D1, D2, D6 and X25 where these calls take a ctx. Events are
-- ordered with channels, support.settle/parked and the virtual clock; nothing sleeps.
local conc = require "conc"
local support = require "support"
local parked, pack = support.parked, support.pack
local errors = conc.errors

local bg = conc.background()

local here, capture_reports = support.here, support.capture_reports

--- Waits for the n replicas of first/hedge, each of which puts conc.self() in tasks when it
-- runs (a loser may start only after the race is decided).
local function wait_all(tasks, n)
  for _ = 1, 10000 do
    local have = 0
    for _ in pairs(tasks) do have = have + 1 end
    if have == n then break end
    conc.yield()
  end
  for i = 1, n do assert.is_true((tasks[i]:wait())) end
end

--- The messages of a list of errors (strings or conc errors), sorted.
local function messages(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = errors.is_error(e) and e.message or tostring(e) end
  table.sort(out)
  return out
end

--- Yields until pred() is true (bounded: a bug fails rather than hangs).
local function yield_until(pred, what)
  for _ = 1, 10000 do
    if pred() then return end
    conc.yield()
  end
  error("yield_until: never true: " .. what)
end

describe("sync", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("waitgroup", function()
    it("wait returns true at once while the count is 0, at the top level and in a task (DESIGN waitgroup)", function()
      local wg = conc.waitgroup()
      assert.are.same({ n = 1, true }, pack(wg:wait()))
      conc.run(function()
        local switches = conc.stats().switches
        assert.are.same({ n = 1, true }, pack(wg:wait()))
        assert.are.equal(switches, conc.stats().switches, "wait at 0 parked the task")
      end)
    end)

    it("releases every waiter when the count reaches 0, not before (DESIGN waitgroup)", function()
      conc.run(function()
        local wg = conc.waitgroup()
        wg:add(2)
        local waiters = {}
        for i = 1, 3 do waiters[i] = parked(function() return wg:wait() end) end
        wg:done()
        for _ = 1, 10 do conc.yield() end
        for i = 1, 3 do assert.are.equal("blocked", waiters[i]:status()) end
        wg:done()
        for i = 1, 3 do assert.are.equal("ready", waiters[i]:status(), "released in the same turn") end
        for i = 1, 3 do assert.are.same({ true, true }, { waiters[i]:wait() }) end
        assert.are.equal(0, tonumber(tostring(wg):match("count (%-?%d+)")))
      end)
    end)

    it("add(n) with n < 0 lowers the count; reaching 0 that way releases the waiters (DESIGN waitgroup)", function()
      conc.run(function()
        local wg = conc.waitgroup()
        wg:add(3)
        local w = parked(function() return wg:wait() end)
        wg:add(-2)
        assert.matches("%(count 1%)$", tostring(wg))
        for _ = 1, 10 do conc.yield() end
        assert.are.equal("blocked", w:status())
        wg:add(-1)
        assert.are.same({ true, true }, { w:wait() })
      end)
    end)

    it("a waitgroup is reusable once it is back at 0 (DESIGN waitgroup)", function()
      conc.run(function()
        local wg = conc.waitgroup()
        for round = 1, 2 do
          wg:add(1)
          local w = parked(function() return wg:wait() end)
          assert.are.equal("blocked", w:status(), "round " .. round)
          wg:done()
          assert.are.same({ true, true }, { w:wait() })
        end
      end)
    end)

    it("X25: wait(ctx) returns nil, ctx:err() (not the cause) in the turn ctx ends, and leaves", function()
      conc.run(function()
        local wg = conc.waitgroup()
        wg:add(1)
        local ctx, cancel = conc.with_cancel(bg)
        local quitter = parked(function() return wg:wait(ctx) end)
        local stayer = parked(function() return wg:wait() end)
        cancel("a cause")
        assert.are.equal("ready", quitter:status())
        assert.are.equal("blocked", stayer:status())
        assert.are.same({ true, nil, errors.canceled }, { quitter:wait() })
        wg:done()
        assert.are.same({ true, true }, { stayer:wait() })
      end)
    end)

    it("X25: wait(ctx) returns nil, deadline_exceeded when ctx's deadline passes", function()
      conc.virtual_time(true)
      local wg = conc.waitgroup()
      wg:add(1)
      local t0 = conc.now()
      local ctx = conc.with_timeout(bg, 2)
      assert.are.same({ n = 2, nil, errors.deadline_exceeded }, pack(wg:wait(ctx)))
      assert.is.near(2, conc.now() - t0, 1e-9)
      wg:done()
    end)

    it("D1: wait with a ctx already done fails at once, even at count 0", function()
      local ctx, cancel = conc.with_cancel(bg)
      cancel()
      local wg = conc.waitgroup()
      assert.are.same({ n = 2, nil, errors.canceled }, pack(wg:wait(ctx)))
    end)

    it("done below zero and add taking the count below zero raise and change nothing (DESIGN waitgroup, Messages)", function()
      local wg = conc.waitgroup()
      assert.are.equal("conc: wg:done: negative counter (done called more often than add counted)",
        support.error_of(function() wg:done() end))
      wg:add(2)
      assert.are.equal("conc: wg:add: negative counter (add would take it below 0)",
        support.error_of(function() wg:add(-3) end))
      assert.matches("%(count 2%)$", tostring(wg))
      wg:done()
      wg:done()
      assert.are.equal("conc: wg:done: negative counter (done called more often than add counted)",
        support.error_of(function() wg:done() end))
      assert.matches("%(count 0%)$", tostring(wg))
    end)
  end)

  describe("semaphore", function()
    it("M1: try_acquire and acquire take units only while they are free", function()
      local s = conc.semaphore(2)
      assert.is_true(s:acquire(1))
      assert.is_true(s:try_acquire(1))
      assert.is_false(s:try_acquire(1))
      s:release(2)
      assert.is_true(s:try_acquire(1))
      assert.is_true(s:acquire(1))
      assert.is_false(s:try_acquire(1))
      s:release(2)
      assert.is_true(s:try_acquire(), "the weight defaults to 1")
      assert.is_true(s:acquire())
      assert.is_false(s:try_acquire())
      s:release()
      s:release()
      assert.matches("%(0 of 2 held%)$", tostring(s))
    end)

    it("acquire blocks until units are released, and is granted in the turn of the release (DESIGN semaphore)", function()
      conc.run(function()
        local s = conc.semaphore(3)
        assert.is_true(s:acquire(3))
        local a = parked(function() return s:acquire(2) end)
        assert.are.equal("blocked", a:status())
        s:release(1)
        for _ = 1, 10 do conc.yield() end
        assert.are.equal("blocked", a:status(), "granted with only 1 of 2 units free")
        s:release(1)
        assert.are.equal("ready", a:status())
        assert.are.same({ true, true }, { a:wait() })
        assert.matches("%(3 of 3 held%)$", tostring(s))
        s:release(3)
      end)
    end)

    it("M2: releasing more than is held raises; so does release(1) on a fresh semaphore(1)", function()
      assert.are.equal("conc: s:release: released more than held (releasing 1, held 0)",
        support.error_of(function() conc.semaphore(1):release(1) end))
      local s = conc.semaphore(3)
      s:acquire(2)
      assert.are.equal("conc: s:release: released more than held (releasing 3, held 2)",
        support.error_of(function() s:release(3) end))
      assert.matches("%(2 of 3 held%)$", tostring(s), "a refused release changes nothing")
      s:release(2)
    end)

    it("M3: while anyone waits, try_acquire is false and acquire queues, even with units free", function()
      conc.run(function()
        local s = conc.semaphore(2)
        s:acquire(1)
        local order = {}
        local a = parked(function() local r = s:acquire(2); order[#order + 1] = "a"; return r end)
        assert.are.equal("blocked", a:status())
        assert.is_false(s:try_acquire(1), "barged past a waiter")
        local b = parked(function() local r = s:acquire(1); order[#order + 1] = "b"; return r end)
        assert.are.equal("blocked", b:status(), "acquire(1) barged past a waiter with 1 unit free")
        s:release(1)
        assert.are.same({ true, true }, { a:wait() })
        assert.are.equal("blocked", b:status())
        s:release(2)
        assert.are.same({ true, true }, { b:wait() })
        assert.are.same({ "a", "b" }, order)
        s:release(1)
      end)
    end)

    it("M4: a large acquire is not starved by 10 holders looping release(1)/acquire(1)", function()
      conc.run(function()
        local s = conc.semaphore(10)
        local ROUNDS = 100
        local active, holders = 0, {}
        for i = 1, 10 do
          holders[i] = conc.go(function()
            s:acquire(1)
            active = active + 1
            for _ = 1, ROUNDS do
              s:release(1)
              s:acquire(1)
              conc.yield()
            end
            active = active - 1
            s:release(1)
          end)
        end
        yield_until(function() return active == 10 end, "every holder holds its unit and loops")
        assert.is_true(s:acquire(10))
        local looping = active
        s:release(10)
        for i = 1, 10 do assert.is_true((holders[i]:wait())) end
        assert.are.equal(10, looping, "the large acquire waited until the holders had stopped looping")
      end)
    end)

    it("M5: a request larger than the size never succeeds, waits for its ctx only, and blocks nobody", function()
      conc.run(function()
        local s = conc.semaphore(2)
        local ctx, cancel = conc.with_cancel(bg)
        local big = parked(function() return s:acquire(ctx, 3) end)
        assert.are.equal("blocked", big:status())
        assert.is_false(s:try_acquire(3))
        assert.is_true(s:try_acquire(1), "a doomed request blocked a later try_acquire")
        local small = parked(function() return s:acquire(1) end)
        assert.are.same({ true, true }, { small:wait() })
        s:release(2)
        for _ = 1, 10 do conc.yield() end
        assert.are.equal("blocked", big:status(), "3 units granted on a semaphore of 2")
        cancel()
        assert.are.same({ true, nil, errors.canceled }, { big:wait() })
        assert.matches("%(0 of 2 held%)$", tostring(s))
      end)
    end)

    it("M6: when the front waiter gives up, the next waiter is granted at once", function()
      conc.run(function()
        local s = conc.semaphore(10)
        s:acquire(1)
        local ctx, cancel = conc.with_cancel(bg)
        local a = parked(function() return s:acquire(ctx, 10) end)
        local b = parked(function() return s:acquire(1) end)
        assert.are.equal("blocked", a:status())
        assert.are.equal("blocked", b:status())
        cancel()
        assert.are.equal("ready", b:status(), "B was not granted when A left the front")
        assert.are.same({ true, nil, errors.canceled }, { a:wait() })
        assert.are.same({ true, true }, { b:wait() })
        assert.matches("%(2 of 10 held%)$", tostring(s))
        s:release(2)
      end)
    end)

    it("M7: acquire with a ctx already done fails with ctx:err(), even with units free", function()
      local s = conc.semaphore(2)
      local ctx, cancel = conc.with_cancel(bg)
      cancel("why")
      assert.are.same({ n = 2, nil, errors.canceled }, pack(s:acquire(ctx, 1)))
      assert.are.same({ n = 2, nil, errors.canceled }, pack(s:acquire(ctx)))
      local late = conc.with_deadline(bg, conc.now() - 1)
      assert.are.same({ n = 2, nil, errors.deadline_exceeded }, pack(s:acquire(late, 2)))
      assert.is_true(s:try_acquire(2), "a refused acquire took units")
      s:release(2)
    end)

    it("M8: a cancelled waiter leaks nothing: after cancel then release(1), try_acquire(2) succeeds", function()
      conc.run(function()
        local s = conc.semaphore(2)
        s:acquire(1)
        local ctx, cancel = conc.with_cancel(bg)
        local x = parked(function() return s:acquire(ctx, 2) end)
        cancel()
        s:release(1)
        assert.are.same({ true, nil, errors.canceled }, { x:wait() })
        assert.is_true(s:try_acquire(2))
        s:release(2)
      end)
    end)

    it("M8, D2: units granted before the ctx ends are the waiter's: it returns true, and nothing is held twice", function()
      conc.run(function()
        local s = conc.semaphore(2)
        s:acquire(1)
        local ctx, cancel = conc.with_cancel(bg)
        local x = parked(function() return s:acquire(ctx, 2) end)
        s:release(1) -- grants X its 2 units
        cancel() -- before X runs again
        assert.are.same({ true, true }, { x:wait() })
        assert.is_false(s:try_acquire(1), "X's units were given to someone else too")
        s:release(2)
        assert.is_true(s:try_acquire(2))
        s:release(2)
      end)
    end)

    it("M9: acquire(0) succeeds at once when nobody waits, and otherwise queues", function()
      conc.run(function()
        local s = conc.semaphore(1)
        assert.is_true(s:acquire(0))
        assert.is_true(s:try_acquire(0))
        s:acquire(1)
        assert.is_true(s:acquire(0), "nobody waits: 0 units fit even when all are held")
        local a = parked(function() return s:acquire(1) end)
        assert.is_false(s:try_acquire(0))
        local z = parked(function() return s:acquire(0) end)
        assert.are.equal("blocked", z:status(), "acquire(0) barged past a waiter")
        s:release(1)
        assert.are.same({ true, true }, { a:wait() })
        assert.are.same({ true, true }, { z:wait() })
        s:release(1)
      end)
    end)

    it("X25: acquire(ctx) returns nil, ctx:err() in the turn ctx ends, and leaves the queue", function()
      conc.run(function()
        local s = conc.semaphore(1)
        s:acquire(1)
        local ctx, cancel = conc.with_cancel(bg)
        local a = parked(function() return s:acquire(ctx) end)
        local b = parked(function() return s:acquire() end)
        cancel("a cause")
        assert.are.equal("ready", a:status())
        assert.are.same({ true, nil, errors.canceled }, { a:wait() })
        s:release(1)
        assert.are.same({ true, true }, { b:wait() })
        assert.matches("%(1 of 1 held%)$", tostring(s))
        s:release(1)
      end)
    end)
  end)

  describe("mutex", function()
    it("lock, try_lock and unlock (DESIGN mutex)", function()
      local m = conc.mutex()
      assert.are.same({ n = 1, true }, pack(m:lock()))
      assert.is_false(m:try_lock())
      assert.matches("%(locked%)$", tostring(m))
      m:unlock()
      assert.matches("%(unlocked%)$", tostring(m))
      assert.is_true(m:try_lock())
      assert.is_false(m:try_lock())
      m:unlock()
    end)

    it("unlock hands the lock to the waiters in FIFO order (DESIGN mutex)", function()
      conc.run(function()
        local m = conc.mutex()
        m:lock()
        local order, inside = {}, 0
        local ts = {}
        for i = 1, 3 do
          ts[i] = parked(function()
            assert(m:lock())
            inside = inside + 1
            order[#order + 1] = i
            assert(inside == 1, "two tasks hold the mutex")
            conc.yield()
            inside = inside - 1
            m:unlock()
          end)
        end
        m:unlock()
        assert.is_false(m:try_lock(), "the lock was not handed to the first waiter")
        for i = 1, 3 do assert.is_true((ts[i]:wait())) end
        assert.are.same({ 1, 2, 3 }, order)
        assert.is_true(m:try_lock())
        m:unlock()
      end)
    end)

    it("X25: lock(ctx) cancelled returns nil, ctx:err() and leaves the queue: unlock goes to the next", function()
      conc.run(function()
        local m = conc.mutex()
        m:lock()
        local ctx, cancel = conc.with_cancel(bg)
        local a = parked(function() return m:lock(ctx) end)
        local b = parked(function() local r = m:lock(); m:unlock(); return r end)
        cancel()
        assert.are.same({ true, nil, errors.canceled }, { a:wait() })
        m:unlock()
        assert.are.same({ true, true }, { b:wait() })
        assert.is_true(m:try_lock(), "the cancelled waiter kept the lock")
        m:unlock()
      end)
    end)

    it("D1: lock with a ctx already done fails at once, even when unlocked", function()
      local m = conc.mutex()
      local ctx, cancel = conc.with_cancel(bg)
      cancel()
      assert.are.same({ n = 2, nil, errors.canceled }, pack(m:lock(ctx)))
      assert.is_true(m:try_lock())
      m:unlock()
    end)
  end)

  describe("group", function()
    it("G1: wait waits for every task and returns the first error by completion order", function()
      conc.run(function()
        local g = conc.group()
        local gate_a, gate_b, gate_c = conc.chan(), conc.chan(), conc.chan()
        -- a task sends to ended just before it ends: nothing yields in between, so the
        -- order of ended is the order of completion
        local ended = conc.chan(3)
        g:go(function() gate_a:recv(); ended:send("a"); return nil, "a failed" end)
        g:go(function() gate_b:recv(); ended:send("b"); error("b failed", 0) end)
        g:go(function() gate_c:recv(); ended:send("c"); return "c ok" end)
        local w = parked(function() return g:wait() end)
        assert.are.equal("blocked", w:status())
        gate_a:send(true)
        assert.are.equal("a", (ended:recv()))
        gate_b:send(true)
        assert.are.equal("b", (ended:recv()))
        for _ = 1, 10 do conc.yield() end
        assert.are.equal("blocked", w:status(), "wait returned before every task ended")
        gate_c:send(true)
        local ok, err = w:wait()
        assert.is_true(ok)
        assert.are.equal("a failed", err)
        assert.are.equal("c", (ended:try_recv()))
      end)
    end)

    it("G1: the first error is the first to complete, not the first started; with none, wait returns nil", function()
      conc.run(function()
        local g = conc.group()
        local gate = conc.chan()
        local ended = conc.chan(1)
        g:go(function() gate:recv(); return nil, "started first" end)
        -- nothing yields between this send and the task's end
        g:go(function() ended:send(true); return nil, "ended first" end)
        ended:recv()
        gate:send(true)
        assert.are.equal("ended first", g:wait())
        local clean = conc.group()
        for i = 1, 3 do clean:go(function() return i end) end
        assert.is_nil(clean:wait())
      end)
    end)

    it("G2: the first error sticks when the group is reused after wait", function()
      conc.run(function()
        local g = conc.group()
        g:go(function() return nil, "first" end)
        assert.are.equal("first", g:wait())
        g:go(function() return nil, "second" end)
        assert.are.equal("first", g:wait())
        g:go(function() return "fine" end)
        assert.are.equal("first", g:wait())
      end)
    end)

    it("G3: the first error cancels gctx with that error as its cause; the parent is untouched", function()
      conc.run(function()
        local parent, cancel_parent = conc.with_cancel(bg)
        local g, gctx = conc.group(parent)
        assert.is_nil(gctx:err())
        local seen
        g:go(function()
          conc.select(gctx:done())
          seen = gctx:err()
        end)
        local gate = conc.chan()
        g:go(function() gate:recv(); return nil, "broke" end)
        conc.yield()
        assert.is_nil(gctx:err(), "gctx ended before any error")
        gate:send(true)
        assert.are.equal("broke", g:wait())
        assert.are.equal(errors.canceled, seen)
        assert.are.equal(errors.canceled, gctx:err())
        assert.are.equal("broke", gctx:cause())
        assert.is_nil(parent:err())
        cancel_parent()
      end)
    end)

    it("G3: after a clean wait gctx is cancelled, with cause canceled; not before", function()
      conc.run(function()
        local g, gctx = conc.group(bg)
        local gate = conc.chan()
        local during
        g:go(function() gate:recv(); during = gctx:err(); return "ok" end)
        conc.yield()
        gate:send(true)
        assert.is_nil(g:wait())
        assert.is_nil(during)
        assert.are.equal(errors.canceled, gctx:err())
        assert.are.equal(errors.canceled, gctx:cause())
      end)
    end)

    it("G3: a parent ctx cancelled ends gctx too", function()
      conc.run(function()
        local parent, cancel_parent = conc.with_cancel(bg)
        local g, gctx = conc.group(parent)
        g:go(function() conc.select(gctx:done()); return nil, gctx:err() end)
        conc.yield()
        cancel_parent("stop")
        assert.are.equal(errors.canceled, g:wait())
        assert.are.equal("stop", gctx:cause())
      end)
    end)

    it("G4: a plain group has no ctx, no limit, and an error cancels nothing", function()
      conc.run(function()
        local r = pack(conc.group())
        local g = r[1]
        assert.is_nil(r[2])
        local gate = conc.chan()
        local started, finished = 0, 0
        for _ = 1, 100 do
          g:go(function() started = started + 1; gate:recv(); finished = finished + 1 end)
        end
        g:go(function() return nil, "one failed" end)
        yield_until(function() return started == 100 end, "100 tasks of a plain group running at once")
        gate:close()
        assert.are.equal("one failed", g:wait())
        assert.are.equal(100, finished, "the others did not run to their end")
      end)
    end)

    it("G5: TestTryGo: 42 of 42 succeed, the 43rd fails and starts nothing, all succeed again after wait", function()
      conc.run(function()
        local g = conc.group()
        local LIMIT = 42
        g:set_limit(LIMIT)
        local gate = conc.chan()
        local runs, active, max_active = 0, 0, 0
        local function work()
          runs = runs + 1
          active = active + 1
          if active > max_active then max_active = active end
          gate:recv()
          active = active - 1
        end
        for round = 1, 2 do
          for i = 1, LIMIT do
            assert.is_true(g:try_go(work), "round " .. round .. ": try_go #" .. i)
          end
          assert.is_false(g:try_go(work), "round " .. round .. ": try_go past the limit")
          yield_until(function() return runs == LIMIT * round end, "every task started")
          for _ = 1, 10 do conc.yield() end
          assert.are.equal(LIMIT * round, runs, "the refused try_go started something")
          gate:close()
          assert.is_nil(g:wait())
          gate = conc.chan()
        end
        assert.are.equal(LIMIT, max_active)
      end)
    end)

    it("G5: with a limit, go blocks the caller until a slot frees", function()
      conc.run(function()
        local g = conc.group()
        g:set_limit(2)
        local gates = { conc.chan(), conc.chan(), conc.chan() }
        local ran = {}
        local function work(i) ran[i] = true; gates[i]:recv() end
        g:go(work, 1)
        g:go(work, 2)
        local caller = parked(function() g:go(work, 3); return "started" end)
        assert.are.equal("blocked", caller:status())
        assert.is_nil(ran[3])
        gates[2]:send(true)
        assert.are.same({ true, "started" }, { caller:wait() })
        yield_until(function() return ran[3] end, "the third task ran")
        gates[1]:send(true)
        gates[3]:send(true)
        assert.is_nil(g:wait())
      end)
    end)

    it("G5: set_limit(-1) removes the limit; set_limit(0) makes try_go false and go block", function()
      conc.run(function()
        local g = conc.group()
        g:set_limit(1)
        g:set_limit(-1)
        local gate = conc.chan()
        local started = 0
        for _ = 1, 5 do
          assert.is_true(g:try_go(function() started = started + 1; gate:recv() end))
        end
        yield_until(function() return started == 5 end, "5 tasks running at once")
        gate:close()
        assert.is_nil(g:wait())
        g:set_limit(0)
        local ran = false
        assert.is_false(g:try_go(function() ran = true end))
        -- this caller never gets a slot: it is abandoned when conc.run returns
        local caller = parked(function() g:go(function() ran = true end) end)
        assert.are.equal("blocked", caller:status())
        for _ = 1, 10 do conc.yield() end
        assert.is_false(ran)
      end)
    end)

    it("G6: set_limit while tasks are active raises; after wait it is allowed", function()
      conc.run(function()
        local g = conc.group()
        local gate = conc.chan()
        g:go(function() gate:recv() end)
        g:go(function() gate:recv() end)
        assert.are.equal("conc: g:set_limit: modify limit while 2 tasks in the group are still active",
          support.error_of(function() g:set_limit(1) end))
        gate:close()
        assert.is_nil(g:wait())
        g:set_limit(1)
        assert.is_true(g:try_go(function() gate:recv() end))
        assert.is_false(g:try_go(function() end), "the limit set after wait is not in force")
        assert.is_nil(g:wait())
      end)
    end)

    it("G7, D6: a raised error is the group's first error, a bug whose cause is the raw value, with its traceback", function()
      local seen = capture_reports(function()
        conc.run(function()
          local g, gctx = conc.group(bg)
          local raw = { code = 42 }
          local site
          local function exploder() site = here(); error(raw) end
          g:go(exploder)
          local err = g:wait()
          assert.is_true(errors.is_error(err))
          assert.is_true(err.bug)
          assert.are.equal(raw, err.cause)
          assert.matches("stack traceback", err.stack, 1, true)
          assert.matches(site, err.stack, 1, true)
          assert.is_number(err.task.id)
          assert.are.equal(err, gctx:cause(), "the raised error did not cancel gctx")
          assert.are.equal(errors.canceled, gctx:err())
        end)
      end)
      assert.are.equal(0, #seen, "an error delivered to the group was reported as well")
    end)

    it("G7: a raised string is kept as the cause; an earlier returned error still comes first", function()
      conc.run(function()
        local g = conc.group()
        local gate = conc.chan()
        local ended = conc.chan(1)
        g:go(function() ended:send(true); return nil, "returned first" end)
        g:go(function() gate:recv(); error("raised later", 0) end)
        ended:recv()
        gate:send(true)
        assert.are.equal("returned first", g:wait())
        local g2 = conc.group()
        g2:go(function() error("raised", 0) end)
        local err = g2:wait()
        assert.is_true(err.bug)
        assert.are.equal("raised", err.cause)
        assert.are.equal("raised", err.message)
      end)
    end)
  end)

  describe("first", function()
    it("the first success wins with all its results; the others' rctx are cancelled (DESIGN first)", function()
      conc.run(function()
        local tasks, seen, args = {}, {}, {}
        local r = pack(conc.first(bg, 3, function(rctx, i, a, b)
          tasks[i] = conc.self()
          args[i] = { a, b }
          if i == 2 then return "won", nil, i end
          conc.select(rctx:done())
          seen[i] = rctx:err()
          return nil, rctx:err()
        end, "x", "y"))
        assert.are.same({ n = 3, "won", nil, 2 }, r)
        wait_all(tasks, 3)
        assert.are.same({ [1] = errors.canceled, [3] = errors.canceled }, seen)
        for i = 1, 3 do assert.are.same({ "x", "y" }, args[i]) end
      end)
    end)

    it("all replicas fail: nil plus a joined error whose errors lists each (DESIGN first)", function()
      conc.run(function()
        local tasks = {}
        local r = pack(conc.first(bg, 3, function(_, i)
          tasks[i] = conc.self()
          if i == 1 then error("raised 1", 0) end
          return nil, "returned " .. i
        end))
        wait_all(tasks, 3)
        assert.are.equal(2, r.n)
        assert.is_nil(r[1])
        local err = r[2]
        assert.is_true(errors.is_error(err))
        assert.are.equal(3, #err.errors)
        assert.are.same({ "raised 1", "returned 2", "returned 3" }, messages(err.errors))
        for _, e in ipairs(err.errors) do
          if errors.is_error(e) then assert.are.equal("raised 1", e.cause) end
        end
        local lines = {}
        for line in tostring(err.message):gmatch("[^\n]+") do lines[#lines + 1] = line end
        table.sort(lines)
        assert.are.same({ "raised 1", "returned 2", "returned 3" }, lines)
      end)
    end)

    it("fn fails by raising or by returning nil plus an error; false plus a value succeeds (DESIGN Failure of a user function)", function()
      conc.run(function()
        local r = pack(conc.first(bg, 1, function() return false, "a value" end))
        assert.are.same({ n = 2, false, "a value" }, r)
        local r2 = pack(conc.first(bg, 1, function() return nil, "soft" end))
        assert.is_nil(r2[1])
        assert.are.same({ "soft" }, r2[2].errors)
      end)
    end)

    it("D1: with a ctx already done it returns nil, ctx:err() and starts nothing", function()
      local calls = 0
      local ctx, cancel = conc.with_cancel(bg)
      cancel("a cause")
      local tasks = conc.stats().tasks
      assert.are.same({ n = 2, nil, errors.canceled },
        pack(conc.first(ctx, 3, function() calls = calls + 1 end)))
      assert.are.equal(tasks, conc.stats().tasks)
      conc.run(function() conc.yield() end)
      assert.are.equal(0, calls)
      local late = conc.with_deadline(bg, conc.now() - 1)
      assert.are.same({ n = 2, nil, errors.deadline_exceeded },
        pack(conc.first(late, 1, function() calls = calls + 1 end)))
      assert.are.equal(0, calls)
    end)

    it("X25: ctx ending while it waits returns nil, ctx:err(), and cancels the replicas", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local tasks, seen = {}, {}
        local ctx = conc.with_timeout(bg, 3)
        local r = pack(conc.first(ctx, 2, function(rctx, i)
          tasks[i] = conc.self()
          conc.select(rctx:done())
          seen[i] = rctx:err()
          return "too late"
        end))
        assert.are.same({ n = 2, nil, errors.deadline_exceeded }, r)
        assert.is.near(3, conc.now() - t0, 1e-9)
        wait_all(tasks, 2)
        assert.are.same({ errors.deadline_exceeded, errors.deadline_exceeded }, seen)
      end)
    end)
  end)

  describe("hedge", function()
    it("starts a second replica only after opts.delay while none answered; the first success wins (DESIGN hedge)", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local tasks, starts, seen = {}, {}, {}
        local r = pack(conc.hedge(bg, { delay = 1 }, function(rctx, i, extra)
          tasks[i] = conc.self()
          starts[i] = conc.now() - t0
          assert(extra == "arg", "hedge did not pass its extra arguments")
          if i == 1 then
            local ok, err = conc.sleep(10, rctx)
            seen[i] = err
            return ok and "slow" or nil, err
          end
          conc.sleep(0.5)
          return "fast", i
        end, "arg"))
        assert.are.same({ n = 2, "fast", 2 }, r)
        assert.is.near(1.5, conc.now() - t0, 1e-9)
        wait_all(tasks, 2)
        assert.are.equal(2, #starts)
        assert.is.near(0, starts[1], 1e-9)
        assert.is.near(1, starts[2], 1e-9)
        assert.are.equal(errors.canceled, seen[1], "the loser's rctx was not cancelled")
      end)
    end)

    it("an answer before opts.delay starts no other replica (DESIGN hedge)", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local tasks, starts = {}, 0
        local r = pack(conc.hedge(bg, { delay = 1, max = 5 }, function(_, i)
          tasks[i] = conc.self()
          starts = starts + 1
          conc.sleep(0.5)
          return "only", i
        end))
        assert.are.same({ n = 2, "only", 1 }, r)
        assert.is.near(0.5, conc.now() - t0, 1e-9)
        conc.sleep(5)
        assert.are.equal(1, starts)
        wait_all(tasks, 1)
      end)
    end)

    it("opts.max bounds the number of replicas (default 2); ctx ending returns nil, ctx:err() (DESIGN hedge; X25)", function()
      conc.virtual_time(true)
      conc.run(function()
        for _, c in ipairs { { max = nil, want = { 0, 1 } }, { max = 3, want = { 0, 1, 2 } } } do
          local t0 = conc.now()
          local tasks, starts, seen = {}, {}, {}
          local ctx = conc.with_timeout(bg, 10)
          local r = pack(conc.hedge(ctx, { delay = 1, max = c.max }, function(rctx, i)
            tasks[i] = conc.self()
            starts[i] = conc.now() - t0
            conc.select(rctx:done())
            seen[i] = rctx:err()
            return "too late"
          end))
          assert.are.same({ n = 2, nil, errors.deadline_exceeded }, r)
          assert.is.near(10, conc.now() - t0, 1e-9)
          wait_all(tasks, #c.want)
          assert.are.equal(#c.want, #starts)
          for i, want in ipairs(c.want) do
            assert.is.near(want, starts[i], 1e-9)
            assert.are.equal(errors.deadline_exceeded, seen[i])
          end
        end
      end)
    end)

    it("a replica that fails starts the next at once, without waiting for the delay (DESIGN hedge)", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local tasks, starts = {}, {}
        local r = pack(conc.hedge(bg, { delay = 5, max = 3 }, function(_, i)
          tasks[i] = conc.self()
          starts[i] = conc.now() - t0
          if i == 1 then conc.sleep(1); error("replica 1 broke", 0) end
          if i == 2 then conc.sleep(0.5); return nil, "replica 2 refused" end
          conc.sleep(0.25)
          return "third time", i
        end))
        assert.are.same({ n = 2, "third time", 3 }, r)
        wait_all(tasks, 3)
        assert.are.equal(3, #starts)
        assert.is.near(0, starts[1], 1e-9)
        assert.is.near(1, starts[2], 1e-9)
        assert.is.near(1.5, starts[3], 1e-9)
        assert.is.near(1.75, conc.now() - t0, 1e-9)
      end)
    end)

    it("every replica failing gives nil plus a joined error whose errors lists each (DESIGN hedge)", function()
      conc.virtual_time(true)
      conc.run(function()
        local tasks = {}
        local r = pack(conc.hedge(bg, { delay = 1, max = 2 }, function(_, i)
          tasks[i] = conc.self()
          return nil, "failure " .. i
        end))
        wait_all(tasks, 2)
        assert.are.equal(2, r.n)
        assert.is_nil(r[1])
        assert.are.same({ "failure 1", "failure 2" }, r[2].errors)
        assert.are.equal("failure 1\nfailure 2", r[2].message)
      end)
    end)

    it("D1: with a ctx already done it returns nil, ctx:err() and starts nothing", function()
      local calls = 0
      local ctx, cancel = conc.with_cancel(bg)
      cancel()
      local tasks = conc.stats().tasks
      assert.are.same({ n = 2, nil, errors.canceled },
        pack(conc.hedge(ctx, { delay = 0 }, function() calls = calls + 1 end)))
      assert.are.equal(tasks, conc.stats().tasks)
      conc.run(function() conc.yield() end)
      assert.are.equal(0, calls)
    end)
  end)

  describe("bad arguments", function()
    local function fn() end
    local cases = {
      { "semaphore(-1)", function() conc.semaphore(-1) end,
        "conc: semaphore: bad argument #1 (size must be a whole number >= 0, got -1)" },
      { "semaphore(1.5)", function() conc.semaphore(1.5) end,
        "conc: semaphore: bad argument #1 (size must be a whole number >= 0, got 1.5)" },
      { "semaphore('x')", function() conc.semaphore("x") end,
        "conc: semaphore: bad argument #1 (number expected, got string)" },
      { "semaphore()", function() conc.semaphore() end,
        "conc: semaphore: bad argument #1 (number expected, got no value)" },
      { "s:acquire(-1)", function() conc.semaphore(1):acquire(-1) end,
        "conc: s:acquire: bad argument #2 (weight must be a whole number >= 0, got -1)" },
      { "s:acquire('x')", function() conc.semaphore(1):acquire("x") end,
        "conc: s:acquire: bad argument #1 (ctx expected, got string)" },
      { "s:try_acquire(0.5)", function() conc.semaphore(1):try_acquire(0.5) end,
        "conc: s:try_acquire: bad argument #1 (weight must be a whole number >= 0, got 0.5)" },
      { "s:release(-1)", function() conc.semaphore(1):release(-1) end,
        "conc: s:release: bad argument #1 (weight must be a whole number >= 0, got -1)" },
      { "s:release(2) holding 1 (M2)", function() local s = conc.semaphore(2); s:acquire(1); s:release(2) end,
        "conc: s:release: released more than held (releasing 2, held 1)" },
      { "M2: semaphore(1):release(1)", function() conc.semaphore(1):release(1) end,
        "conc: s:release: released more than held (releasing 1, held 0)" },
      { "semaphore(1).acquire(mutex)", function() conc.semaphore(1).acquire(conc.mutex()) end,
        "conc: s:acquire: bad self (semaphore expected, got conc.mutex)" },
      { "semaphore(1).release(5)", function() conc.semaphore(1).release(5) end,
        "conc: s:release: bad self (semaphore expected, got number)" },
      { "m:unlock() unlocked", function() conc.mutex():unlock() end,
        "conc: m:unlock: unlock of an unlocked mutex" },
      { "mutex().lock(semaphore)", function() conc.mutex().lock(conc.semaphore(1)) end,
        "conc: m:lock: bad self (mutex expected, got conc.semaphore)" },
      { "m:lock(5)", function() conc.mutex():lock(5) end,
        "conc: m:lock: bad argument #1 (ctx expected, got number)" },
      { "wg:done() at 0", function() conc.waitgroup():done() end,
        "conc: wg:done: negative counter (done called more often than add counted)" },
      { "wg:add(1.5)", function() conc.waitgroup():add(1.5) end,
        "conc: wg:add: bad argument #1 (a whole number expected, got 1.5)" },
      { "wg:add()", function() conc.waitgroup():add() end,
        "conc: wg:add: bad argument #1 (number expected, got no value)" },
      { "waitgroup().wait(5)", function() conc.waitgroup().wait(5) end,
        "conc: wg:wait: bad self (waitgroup expected, got number)" },
      { "wg:wait({})", function() conc.waitgroup():wait({}) end,
        "conc: wg:wait: bad argument #1 (ctx expected, got table)" },
      { "waitgroup(1)", function() conc.waitgroup(1) end,
        "conc: waitgroup: too many arguments (at most 0 expected, got 1)" },
      { "group(5)", function() conc.group(5) end,
        "conc: group: bad argument #1 (ctx expected, got number)" },
      { "g:go(5)", function() conc.group():go(5) end,
        "conc: g:go: bad argument #1 (function expected, got number)" },
      { "g:try_go('f')", function() conc.group():try_go("f") end,
        "conc: g:try_go: bad argument #1 (function expected, got string)" },
      { "group().go(semaphore, fn)", function() conc.group().go(conc.semaphore(1), fn) end,
        "conc: g:go: bad self (group expected, got conc.semaphore)" },
      { "group().wait({})", function() conc.group().wait({}) end,
        "conc: g:wait: bad self (group expected, got table)" },
      { "g:set_limit(1.5)", function() conc.group():set_limit(1.5) end,
        "conc: g:set_limit: bad argument #1 (whole number expected, got 1.5)" },
      { "first(nil, 1, fn)", function() conc.first(nil, 1, fn) end,
        "conc: first: bad argument #1 (ctx expected, got nil)" },
      { "first(bg, 0, fn)", function() conc.first(bg, 0, fn) end,
        "conc: first: bad argument #2 (the number of replicas must be a whole number >= 1, got 0)" },
      { "first(bg, 1.5, fn)", function() conc.first(bg, 1.5, fn) end,
        "conc: first: bad argument #2 (the number of replicas must be a whole number >= 1, got 1.5)" },
      { "first(bg, 1, 5)", function() conc.first(bg, 1, 5) end,
        "conc: first: bad argument #3 (function expected, got number)" },
      { "hedge(chan, opts, fn)", function() conc.hedge(conc.chan(), { delay = 1 }, fn) end,
        "conc: hedge: bad argument #1 (ctx expected, got conc.chan)" },
      { "hedge(bg, nil, fn)", function() conc.hedge(bg, nil, fn) end,
        "conc: hedge: bad argument #2 (options table expected, got nil)" },
      { "hedge(bg, {}, fn)", function() conc.hedge(bg, {}, fn) end,
        "conc: hedge: bad argument #2 (opts.delay must be a number of seconds >= 0, got nil)" },
      { "hedge(bg, {delay = -1}, fn)", function() conc.hedge(bg, { delay = -1 }, fn) end,
        "conc: hedge: bad argument #2 (opts.delay must be a number of seconds >= 0, got -1)" },
      { "hedge(bg, {delay = 1, max = 0}, fn)", function() conc.hedge(bg, { delay = 1, max = 0 }, fn) end,
        "conc: hedge: bad argument #2 (opts.max must be a whole number >= 1, got 0)" },
      { "hedge(bg, {delay = 1}, 'f')", function() conc.hedge(bg, { delay = 1 }, "f") end,
        "conc: hedge: bad argument #3 (function expected, got string)" },
      { "hedge(bg, {delay = 1, maxx = 3}, fn)", function() conc.hedge(bg, { delay = 1, maxx = 3 }, fn) end,
        "conc: hedge: unknown option 'maxx'" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.are.equal(c[3], support.error_of(c[2]))
      end)
    end
  end)
end)
