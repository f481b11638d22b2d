--- Contexts: the context calls (background, with_cancel, with_deadline, with_timeout,
-- with_value, without_cancel, after_func; done, err, cause, deadline, value), rules X1-X25
-- of SEMANTICS.md section 4, and the ctx parts of the blocking calls: C21-C24, D1, D2, D9
-- and S12 with ctx:done(). Timed cases run on virtual time, so nothing sleeps.
local conc = require "conc"
local core = require "conc.core"
local support = require "support"
local settle, parked, pack, capture_reports = support.settle, support.parked, support.pack, support.capture_reports
local errors = conc.errors
local ctx_children = core.ctx_children

local unpack = table.unpack or unpack

--- The Lua heap in KB after full collections.
local function heap()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count")
end

--- A soak: runs cycle() 10^5 times and returns how many KB the Lua heap (after full
-- collections) grew over the second half. Anything kept per cycle shows there as 5 * 10^4
-- times its size, so SOAK_KB catches even a few bytes a cycle (a kept ctx costs hundreds).
-- A weak table keeps its size after a collection empties it, and that size follows the
-- garbage made between two collections; collecting every 2000 cycles makes that the same
-- in both halves, whatever the collector's own pace in this run.
local SOAK_KB = 256
local function soak(cycle)
  local function run(n)
    for i = 1, n do
      cycle()
      if i % 2000 == 0 then collectgarbage() end
    end
  end
  run(50000)
  local half = heap()
  run(50000)
  return heap() - half
end

--- Yields until cond() holds (bounded, so a bug fails rather than hangs).
local function yield_until(cond, what)
  for _ = 1, 1000 do
    if cond() then return end
    conc.yield()
  end
  error("yield_until: never happened: " .. what)
end

describe("ctx", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("roots and values", function()
    it("X1/D9: background is never done, has no deadline, and is one object", function()
      local bg = conc.background()
      assert.are.equal(bg, conc.background())
      assert.is_nil(bg:err())
      assert.is_nil(bg:cause())
      assert.is_nil(bg:deadline())
      local i = conc.select(bg:done(), conc.default)
      assert.are.equal(2, i)
    end)

    it("X1: background has no value for any key, and its done() never wins a select", function()
      conc.virtual_time(true)
      local bg = conc.background()
      for _, k in ipairs { "k", 1, true, false, bg, {}, print } do
        assert.is_nil(bg:value(k))
      end
      local tm = conc.after(1)
      assert.are.equal(2, (conc.select(bg:done(), tm)))
      assert.is_nil(bg:err())
    end)

    it("D9: done() is receive-only: closing or sending on it raises", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      assert.are.equal("conc: ch:close: close of a receive-only channel",
        support.error_of(function() ctx:done():close() end))
      assert.are.equal("conc: ch:send: send on a receive-only channel",
        support.error_of(function() ctx:done():send(1) end))
      assert.are.equal("conc: ch:close: close of a receive-only channel",
        support.error_of(function() conc.background():done():close() end))
      cancel()
    end)

    it("X2: value(k) finds the nearest ancestor's value; a missing key gives nil", function()
      local key = {}
      local a = conc.with_value(conc.background(), key, "outer")
      local b = conc.with_value(a, "other", 2)
      local c = conc.with_value(b, key, "inner") -- shadows a's value
      assert.are.equal("outer", a:value(key))
      assert.are.equal("outer", b:value(key))
      assert.are.equal(2, b:value("other"))
      assert.are.equal("inner", c:value(key))
      assert.are.equal(2, c:value("other"))
      assert.is_nil(c:value("missing"))
      assert.is_nil(c:value({})) -- keys are compared by identity
      assert.is_nil(c:value(1))
    end)

    it("X2: keys of every non-nil type work, and are raw-compared ('1' is not 1)", function()
      local fkey = function() end
      local ctx = conc.background()
      ctx = conc.with_value(ctx, 1, "number")
      ctx = conc.with_value(ctx, "1", "string")
      ctx = conc.with_value(ctx, false, "false")
      ctx = conc.with_value(ctx, fkey, "function")
      ctx = conc.with_value(ctx, 0.5, "float")
      assert.are.equal("number", ctx:value(1))
      assert.are.equal("string", ctx:value("1"))
      assert.are.equal("false", ctx:value(false))
      assert.are.equal("function", ctx:value(fkey))
      assert.are.equal("float", ctx:value(0.5))
      assert.is_nil(ctx:value(true))
    end)

    it("X2: values pass through cancel, timeout, deadline and without_cancel layers, before and after cancel", function()
      local root = conc.with_value(conc.background(), "user", "ann")
      local c1, cancel1 = conc.with_cancel(root)
      local c2, cancel2 = conc.with_timeout(c1, 3600)
      local c3, cancel3 = conc.with_deadline(c2, conc.now() + 3600)
      local c4 = conc.without_cancel(c3)
      local c5, cancel5 = conc.with_cancel(c4)
      for _, ctx in ipairs { c1, c2, c3, c4, c5 } do
        assert.are.equal("ann", ctx:value("user"))
      end
      cancel1()
      for _, ctx in ipairs { c1, c2, c3, c4, c5 } do
        assert.are.equal("ann", ctx:value("user"))
      end
      cancel2()
      cancel3()
      cancel5()
    end)

    it("X2: a nil value is stored like any other and shadows an outer one", function()
      local a = conc.with_value(conc.background(), "k", "outer")
      local b = conc.with_value(a, "k", nil)
      assert.is_nil(b:value("k"))
      assert.are.equal("outer", a:value("k"))
    end)

    it("X3: a value set on a child is invisible from its parent and its siblings", function()
      local parent, cancel = conc.with_cancel(conc.background())
      local child = conc.with_value(parent, "k", "child's")
      local sibling = conc.with_value(parent, "j", "sibling's")
      local grandchild, cancel_gc = conc.with_cancel(child)
      assert.are.equal("child's", grandchild:value("k"))
      assert.is_nil(parent:value("k"))
      assert.is_nil(sibling:value("k"))
      assert.is_nil(child:value("j"))
      assert.is_nil(conc.background():value("k"))
      cancel_gc()
      cancel()
    end)
  end)

  describe("cancellation", function()
    it("X4/X6/X7/X15: cancel closes done once, sets err and cause, and is idempotent", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      local done = ctx:done()
      assert.are.equal(done, ctx:done())
      assert.is_nil(ctx:err())
      cancel("first")
      cancel("second")
      assert.are.equal(errors.canceled, ctx:err())
      assert.are.equal("first", ctx:cause())
      assert.are.same({ nil, false }, { done:recv() })
    end)

    it("X16: cause defaults to err when cancel gets none", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      cancel()
      assert.are.equal(ctx:err(), ctx:cause())
    end)

    it("X4/X5/X18: cancelling a parent cancels its whole subtree with its err and cause, never its parent", function()
      local root, cancel_root = conc.with_cancel(conc.background())
      local mid, cancel_mid = conc.with_cancel(root)
      local leaf = conc.with_cancel(mid)
      local other = conc.with_cancel(root)
      cancel_mid("stop")
      assert.is_nil(root:err())
      assert.is_nil(other:err())
      assert.are.equal(errors.canceled, leaf:err())
      assert.are.equal("stop", leaf:cause())
      cancel_root()
      assert.are.equal(errors.canceled, other:err())
    end)

    it("X4: when cancel returns, every descendant of every kind is done, its done() ready", function()
      local root, cancel = conc.with_cancel(conc.background())
      local dones = {}
      local c1 = conc.with_cancel(root)
      local v1 = conc.with_value(c1, "k", 1)
      local c2 = conc.with_timeout(v1, 3600)
      local c3 = conc.with_deadline(c2, conc.now() + 1800) -- earlier: a timer of its own
      local v2 = conc.with_value(c3, "j", 2)
      local c4 = conc.with_cancel(v2)
      local all = { c1, v1, c2, c3, v2, c4 }
      for i, ctx in ipairs(all) do dones[i] = ctx:done() end -- made before, closed by cancel
      local late = conc.with_cancel(c4) -- its done() is made only after the cancel
      assert.are.equal(2, conc.stats().timers)
      cancel()
      all[#all + 1] = late
      for i, ctx in ipairs(all) do
        assert.are.equal(errors.canceled, ctx:err(), "descendant " .. i)
        assert.are.same({ nil, false }, { ctx:done():try_recv() })
      end
      for _, done in ipairs(dones) do
        assert.are.same({ nil, false }, { done:try_recv() })
      end
      assert.are.equal(0, conc.stats().timers, "the descendants' deadlines are gone")
    end)

    it("X4: a descendant that was already done keeps its own err and cause", function()
      conc.virtual_time(true)
      local root, cancel = conc.with_cancel(conc.background())
      local early = conc.with_timeout(root, 1, "early deadline")
      local mine, cancel_mine = conc.with_cancel(root)
      local below_early = conc.with_cancel(early)
      cancel_mine("mine")
      conc.select(early:done())
      cancel("root")
      assert.are.equal(errors.deadline_exceeded, early:err())
      assert.are.equal("early deadline", early:cause())
      assert.are.equal(errors.deadline_exceeded, below_early:err())
      assert.are.equal("early deadline", below_early:cause())
      assert.are.equal(errors.canceled, mine:err())
      assert.are.equal("mine", mine:cause())
    end)

    it("X4: tasks waiting on a descendant's done() are all ready in the turn cancel returns", function()
      conc.run(function()
        local root, cancel = conc.with_cancel(conc.background())
        local a = conc.with_cancel(root)
        local b = conc.with_value(conc.with_cancel(a), "k", "v")
        local waiters = {}
        for i, ctx in ipairs { root, a, b, a } do
          waiters[i] = conc.go(function() return conc.select(ctx:done()) end)
        end
        settle(unpack(waiters))
        cancel()
        for i, w in ipairs(waiters) do
          assert.are.equal("ready", w:status(), "waiter " .. i)
        end
        for _, w in ipairs(waiters) do
          assert.are.same({ true, 1, nil, false }, { w:wait() })
        end
      end)
    end)

    it("X5: cancelling a child leaves its parent and its siblings running", function()
      local parent, cancel_parent = conc.with_cancel(conc.background())
      local a, cancel_a = conc.with_cancel(parent)
      local b, cancel_b = conc.with_cancel(parent)
      local below_b = conc.with_cancel(b)
      local va = conc.with_value(a, "k", "v")
      cancel_a("a only")
      assert.are.equal(errors.canceled, a:err())
      assert.are.equal(errors.canceled, va:err())
      assert.is_nil(parent:err())
      assert.is_nil(parent:cause())
      assert.are.equal(2, (conc.select(parent:done(), conc.default)))
      assert.is_nil(b:err())
      assert.is_nil(below_b:err())
      cancel_b()
      cancel_parent()
    end)

    it("X6: cancel after the deadline fired changes nothing: err and cause keep their first values", function()
      conc.virtual_time(true)
      local ctx, cancel = conc.with_timeout(conc.background(), 1, "slow")
      conc.select(ctx:done())
      cancel()
      cancel("late")
      assert.are.equal(errors.deadline_exceeded, ctx:err())
      assert.are.equal("slow", ctx:cause())
      for _ = 1, 3 do
        assert.are.equal(errors.deadline_exceeded, ctx:err()) -- stable
      end
    end)

    it("X7: done() is the same channel on every call; a value ctx shares its source's", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      local v = conc.with_value(ctx, "k", 1)
      local d = ctx:done()
      assert.are.equal(d, ctx:done())
      assert.are.equal(d, v:done())
      cancel()
      assert.are.equal(d, ctx:done())
      assert.are.equal(d, v:done())
      local wc = conc.without_cancel(ctx)
      assert.are.equal(wc:done(), wc:done())
    end)

    it("X7: a done() first asked for after cancel is already closed, and stays closed", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      cancel()
      local d = ctx:done()
      for _ = 1, 3 do
        assert.are.same({ nil, false }, { d:try_recv() })
      end
      cancel() -- no second close: a second close would raise
      assert.are.same({ nil, false }, { d:recv() })
    end)

    it("X8: a child of a done ctx is born done", function()
      local p, cancel = conc.with_cancel(conc.background())
      cancel("gone")
      local c = conc.with_cancel(p)
      assert.are.equal(errors.canceled, c:err())
      assert.are.equal("gone", c:cause())
    end)

    it("X8: every kind of child of a cancelled ctx is born with its err and cause, and is not registered", function()
      local p, cancel = conc.with_cancel(conc.background())
      cancel("gone")
      local kids = {
        (conc.with_cancel(p)),
        (conc.with_timeout(p, 10, "own cause")),
        (conc.with_deadline(p, conc.now() + 10)),
        (conc.with_value(p, "k", 1)),
        (conc.with_cancel(conc.with_value(p, "k", 1))),
      }
      for i, c in ipairs(kids) do
        assert.are.equal(errors.canceled, c:err(), "child " .. i)
        assert.are.equal("gone", c:cause(), "child " .. i)
        assert.are.same({ nil, false }, { c:done():try_recv() })
      end
      assert.are.equal(0, conc.stats().timers, "a born-done deadline ctx has no timer")
      assert.are.equal(0, ctx_children(p))
    end)

    it("X8: a child of a ctx whose deadline passed is born with deadline_exceeded and that cause", function()
      conc.virtual_time(true)
      local p = conc.with_timeout(conc.background(), 1, "too late")
      conc.select(p:done())
      local c, cancel = conc.with_cancel(p)
      local t = conc.with_timeout(p, 5)
      assert.are.equal(errors.deadline_exceeded, c:err())
      assert.are.equal("too late", c:cause())
      assert.are.equal(errors.deadline_exceeded, t:err())
      assert.are.equal("too late", t:cause())
      cancel("mine") -- born done: nothing changes
      assert.are.equal("too late", c:cause())
    end)

    it("X9: the parent holds exactly its live cancellable children; cancelling one unlinks it", function()
      local parent, cancel_parent = conc.with_cancel(conc.background())
      assert.are.equal(0, ctx_children(parent))
      local _, c1 = conc.with_cancel(parent)
      local _, c2 = conc.with_timeout(parent, 3600)
      local _, c3 = conc.with_cancel(conc.with_value(parent, "k", 1)) -- through a value layer
      conc.with_value(parent, "j", 2) -- value and without_cancel children hold nothing
      conc.without_cancel(parent)
      assert.are.equal(3, ctx_children(parent))
      c2()
      assert.are.equal(2, ctx_children(parent))
      c2()
      assert.are.equal(2, ctx_children(parent))
      c1()
      c3()
      assert.are.equal(0, ctx_children(parent))
      cancel_parent()
    end)

    it("X9: 10^5 children created and cancelled under one long-lived parent: it holds none and memory stays flat", function()
      local parent, cancel_parent = conc.with_cancel(conc.background())
      local vparent = conc.with_value(parent, "k", "v")
      local _, keep = conc.with_cancel(parent)
      local i, held = 0, {}
      local grown = soak(function()
        i = i + 1
        local _, cancel = conc.with_cancel(i % 2 == 0 and parent or vparent)
        if i % 10000 == 0 then held[#held + 1] = ctx_children(parent) end
        cancel()
      end)
      assert.are.same({ 2, 2, 2, 2, 2, 2, 2, 2, 2, 2 }, held, "the child just made, besides the one kept")
      assert.are.equal(1, ctx_children(parent))
      assert.is_true(grown < SOAK_KB, ("the parent grew by %.0f KB over 10^5 children"):format(grown))
      keep()
      assert.are.equal(0, ctx_children(parent))
      cancel_parent()
    end)

    it("X10: a cascade over 1000 children whose after_funcs cancel siblings, make children and register more completes", function()
      local reports = capture_reports(function()
        conc.run(function()
          local parent, cancel = conc.with_cancel(conc.background())
          local kids, cancels = {}, {}
          local ran, born, late = 0, {}, 0
          for i = 1, 1000 do
            kids[i], cancels[i] = conc.with_cancel(i % 3 == 0 and conc.with_value(parent, "i", i) or parent)
            if i % 10 == 0 then
              conc.after_func(kids[i], function()
                for j = 1, 1000 do cancels[j]("from an after_func") end -- all already cancelled
                local c, cc = conc.with_cancel(parent)
                born[#born + 1] = c
                cc()
                conc.after_func(parent, function() late = late + 1 end)
                ran = ran + 1
              end)
            end
            if i % 100 == 0 then
              conc.with_timeout(kids[i], 3600) -- a grandchild with a timer
            end
          end
          assert.are.equal(1000, ctx_children(parent))
          local late_after = 0
          conc.after_func(parent, function() late_after = late_after + 1 end)
          cancel("cascade")
          assert.are.equal(0, ctx_children(parent))
          assert.are.equal(0, conc.stats().timers)
          for i = 1, 1000 do
            assert.are.equal(errors.canceled, kids[i]:err())
            assert.are.equal("cascade", kids[i]:cause())
            assert.are.equal(0, ctx_children(kids[i]))
          end
          yield_until(function() return ran == 100 and late == 100 and late_after == 1 end, "every after_func ran")
          for _, c in ipairs(born) do -- children made during the cascade are born cancelled (X8)
            assert.are.equal(errors.canceled, c:err())
            assert.are.equal("cascade", c:cause())
          end
          assert.are.equal(0, ctx_children(parent))
        end)
      end)
      assert.are.same({}, reports)
    end)

    it("X10: an after_func that cancels the very ctx tree it runs for, and makes its children, ends cleanly", function()
      conc.run(function()
        local root, cancel_root = conc.with_cancel(conc.background())
        local a, cancel_a = conc.with_cancel(root)
        local b = conc.with_cancel(a)
        local got = conc.chan(4)
        conc.after_func(b, function()
          cancel_a("again")
          cancel_root("root")
          local c = conc.with_timeout(b, 10)
          got:send({ c:err(), c:cause(), conc.stats().timers })
        end)
        cancel_a("a")
        local r = got:recv()
        assert.are.same({ errors.canceled, "a", 0 }, r)
        assert.are.equal("root", root:cause())
        assert.are.equal("a", a:cause())
      end)
    end)

    -- A recursive cancel ran out of C-function stack on LuaJIT and PUC 5.1 at a depth of a
    -- few thousand (and out of C stack on 5.4 past 10^5), leaving the chain half cancelled.
    it("X4: cancelling the root of a chain of 10^4 nested contexts cancels every one of them", function()
      local root, cancel = conc.with_cancel(conc.background())
      local chain = { root }
      for i = 2, 10000 do chain[i] = (conc.with_cancel(chain[i - 1])) end
      local ok, err = pcall(cancel, "deep")
      assert.is_true(ok, tostring(err))
      for i = 1, #chain, 999 do
        assert.are.equal(errors.canceled, chain[i]:err(), "level " .. i)
      end
      assert.are.equal("deep", chain[#chain]:cause())
    end)
  end)

  describe("deadlines", function()
    it("X11/X12/X19: a deadline cancels with deadline_exceeded at that time, with its cause", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local ctx = conc.with_timeout(conc.background(), 2, "too slow")
      assert.are.equal(t0 + 2, ctx:deadline())
      local i = conc.select(ctx:done())
      assert.are.equal(1, i)
      assert.are.equal(t0 + 2, conc.now())
      assert.are.equal(errors.deadline_exceeded, ctx:err())
      assert.are.equal("too slow", ctx:cause())
    end)

    it("X12: the deadline is the earlier of the parent's and the child's", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local p = conc.with_timeout(conc.background(), 1)
      local c = conc.with_deadline(p, t0 + 5)
      assert.are.equal(t0 + 1, c:deadline())
      conc.select(c:done())
      assert.are.equal(t0 + 1, conc.now())
      assert.are.equal(errors.deadline_exceeded, c:err())
    end)

    it("X11: a deadline already past is done at once", function()
      local ctx = conc.with_deadline(conc.background(), conc.now() - 1)
      assert.are.equal(errors.deadline_exceeded, ctx:err())
    end)

    it("X14: cancelling before the deadline removes the timer", function()
      conc.virtual_time(true)
      local ctx, cancel = conc.with_timeout(conc.background(), 10)
      assert.are.equal(1, conc.stats().timers)
      cancel()
      assert.are.equal(0, conc.stats().timers)
      assert.are.equal(errors.canceled, ctx:err())
    end)

    it("X11: with_timeout(p, d) is with_deadline(p, now + d)", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local a, ca = conc.with_timeout(conc.background(), 2.5)
      local b, cb = conc.with_deadline(conc.background(), t0 + 2.5)
      assert.are.equal(t0 + 2.5, a:deadline())
      assert.are.equal(b:deadline(), a:deadline())
      local i = conc.select(a:done(), b:done())
      assert.is_true(i == 1 or i == 2)
      assert.are.equal(t0 + 2.5, conc.now())
      -- the same instant: both are done by the time anything runs again
      assert.are.equal(errors.deadline_exceeded, a:err())
      assert.are.equal(errors.deadline_exceeded, b:err())
      ca()
      cb()
    end)

    it("X11: with_timeout(p, 0) is done on creation with deadline_exceeded; its cancel changes nothing", function()
      local ctx, cancel = conc.with_timeout(conc.background(), 0)
      assert.are.equal(errors.deadline_exceeded, ctx:err())
      assert.are.equal(errors.deadline_exceeded, ctx:cause())
      assert.are.same({ nil, false }, { ctx:done():try_recv() })
      assert.are.equal(0, conc.stats().timers)
      cancel("late")
      assert.are.equal(errors.deadline_exceeded, ctx:err())
      assert.are.equal(errors.deadline_exceeded, ctx:cause())
      local c2 = conc.with_timeout(conc.background(), 0, "given")
      assert.are.equal("given", c2:cause())
    end)

    it("X12: a child with the earlier deadline has its own, and firing it leaves the parent running", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local p, cancel_p = conc.with_timeout(conc.background(), 5, "parent's")
      local c = conc.with_deadline(p, t0 + 1, "child's")
      local v = conc.with_value(p, "k", 1)
      assert.are.equal(t0 + 1, c:deadline())
      assert.are.equal(t0 + 5, p:deadline())
      assert.are.equal(t0 + 5, v:deadline())
      conc.select(c:done())
      assert.are.equal(t0 + 1, conc.now())
      assert.are.equal(errors.deadline_exceeded, c:err())
      assert.are.equal("child's", c:cause())
      assert.is_nil(p:err())
      cancel_p()
    end)

    it("X12: a child whose later deadline gives way to its parent's ends with the parent's err and cause", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local p = conc.with_timeout(conc.background(), 1, "parent's")
      local c = conc.with_timeout(p, 10, "child's")
      local g = conc.with_cancel(conc.with_value(c, "k", 1))
      assert.are.equal(t0 + 1, c:deadline())
      assert.are.equal(t0 + 1, g:deadline())
      assert.are.equal(1, conc.stats().timers, "only the parent's deadline is pending")
      conc.select(g:done())
      assert.are.equal(t0 + 1, conc.now())
      for _, ctx in ipairs { p, c, g } do
        assert.are.equal(errors.deadline_exceeded, ctx:err())
        assert.are.equal("parent's", ctx:cause())
      end
    end)

    it("X13: cancel before the deadline wins for good: err stays canceled after the deadline passes", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local ctx, cancel = conc.with_timeout(conc.background(), 1, "slow")
      conc.sleep(0.5)
      cancel()
      assert.are.equal(errors.canceled, ctx:err())
      conc.sleep(2)
      assert.is_true(conc.now() > t0 + 1, "past the deadline")
      assert.are.equal(errors.canceled, ctx:err())
      assert.are.equal(errors.canceled, ctx:cause())
    end)

    it("X13: the deadline firing first wins for good: a later cancel leaves deadline_exceeded", function()
      conc.virtual_time(true)
      local ctx, cancel = conc.with_deadline(conc.background(), conc.now() + 1)
      conc.sleep(1.5)
      assert.are.equal(errors.deadline_exceeded, ctx:err())
      cancel("manual")
      assert.are.equal(errors.deadline_exceeded, ctx:err())
      assert.are.equal(errors.deadline_exceeded, ctx:cause())
    end)

    it("X14: a deadline that fired leaves no timer", function()
      conc.virtual_time(true)
      local ctx = conc.with_timeout(conc.background(), 1)
      local child = conc.with_timeout(ctx, 0.5)
      assert.are.equal(2, conc.stats().timers)
      conc.select(child:done())
      assert.are.equal(1, conc.stats().timers)
      conc.select(ctx:done())
      assert.are.equal(0, conc.stats().timers)
    end)

    it("X14: 10^5 with_timeout(bg, 3600) + cancel() leave no pending timer and no memory behind", function()
      local bg = conc.background()
      local ctx, cancel = conc.with_timeout(bg, 3600)
      assert.are.equal(1, conc.stats().timers)
      cancel()
      assert.are.equal(0, conc.stats().timers)
      local grown = soak(function()
        local _, c = conc.with_timeout(bg, 3600)
        c()
      end)
      assert.are.equal(0, conc.stats().timers)
      assert.is_true(grown < SOAK_KB, ("grew by %.0f KB over 10^5 timeouts"):format(grown))
      assert.are.equal(errors.canceled, ctx:err())
    end)
  end)

  describe("causes", function()
    it("X15: cancel(cause) sets cause(); err() is only ever nil, canceled or deadline_exceeded", function()
      conc.virtual_time(true)
      local cause = { why = "shutdown" }
      local ctx, cancel = conc.with_cancel(conc.background())
      local d, cancel_d = conc.with_timeout(conc.background(), 1, cause)
      assert.is_nil(ctx:err())
      cancel(cause)
      assert.are.equal(cause, ctx:cause())
      assert.are.equal(errors.canceled, ctx:err())
      conc.select(d:done())
      assert.are.equal(cause, d:cause())
      assert.are.equal(errors.deadline_exceeded, d:err())
      cancel_d()
      for _, c in ipairs { "text", 42, false, errors.deadline_exceeded } do
        local x, cx = conc.with_cancel(conc.background())
        cx(c)
        assert.are.equal(c, x:cause())
        assert.are.equal(errors.canceled, x:err())
      end
    end)

    it("X16: cancel(nil) and cancel() give cause() == canceled, for the ctx and its children", function()
      local a, cancel_a = conc.with_cancel(conc.background())
      local b, cancel_b = conc.with_cancel(conc.background())
      local below = conc.with_value(conc.with_cancel(a), "k", 1)
      cancel_a(nil)
      cancel_b()
      assert.are.equal(errors.canceled, a:cause())
      assert.are.equal(errors.canceled, b:cause())
      assert.are.equal(errors.canceled, below:cause())
    end)

    it("X17: cause() is nil until the ctx is done, even when a deadline cause was given; then the first cause", function()
      conc.virtual_time(true)
      local ctx, cancel = conc.with_cancel(conc.background())
      local d, cancel_d = conc.with_timeout(conc.background(), 1, "deadline cause")
      local v = conc.with_value(ctx, "k", 1)
      assert.is_nil(ctx:cause())
      assert.is_nil(d:cause())
      assert.is_nil(v:cause())
      assert.is_nil(conc.without_cancel(ctx):cause())
      cancel("first")
      cancel("second")
      assert.are.equal("first", ctx:cause())
      assert.are.equal("first", v:cause())
      assert.is_nil(d:cause())
      cancel_d()
    end)

    it("X18: parent cancelled with cause1 first: parent, children and grandchildren all have cause1", function()
      local cause1 = { "cause1" }
      local p, cancel_p = conc.with_cancel(conc.background())
      local c = conc.with_cancel(p)
      local g = conc.with_timeout(c, 3600)
      local v = conc.with_value(g, "k", 1)
      cancel_p(cause1)
      for _, ctx in ipairs { p, c, g, v } do
        assert.are.equal(cause1, ctx:cause())
        assert.are.equal(errors.canceled, ctx:err())
      end
      local born = conc.with_cancel(c) -- made after: born with it too (X8)
      assert.are.equal(cause1, born:cause())
    end)

    it("X18: child cancelled with cause2 first, then parent with cause1: child keeps cause2, parent has cause1", function()
      local cause1, cause2 = { "cause1" }, { "cause2" }
      local p, cancel_p = conc.with_cancel(conc.background())
      local c, cancel_c = conc.with_cancel(p)
      local below_c = conc.with_cancel(c)
      local sibling = conc.with_cancel(p)
      cancel_c(cause2)
      assert.is_nil(p:cause())
      cancel_p(cause1)
      assert.are.equal(cause1, p:cause())
      assert.are.equal(cause2, c:cause())
      assert.are.equal(cause2, below_c:cause())
      assert.are.equal(cause1, sibling:cause())
      for _, ctx in ipairs { p, c, below_c, sibling } do
        assert.are.equal(errors.canceled, ctx:err())
      end
    end)

    it("X19: with_deadline(p, t, cause) and with_timeout(p, d, cause) end with that cause and deadline_exceeded", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local a = conc.with_deadline(conc.background(), t0 + 1, "deadline cause")
      local b = conc.with_timeout(conc.background(), 2, "timeout cause")
      local below = conc.with_value(conc.with_cancel(a), "k", 1)
      conc.select(b:done())
      assert.are.equal(t0 + 2, conc.now())
      assert.are.equal(errors.deadline_exceeded, a:err())
      assert.are.equal("deadline cause", a:cause())
      assert.are.equal(errors.deadline_exceeded, b:err())
      assert.are.equal("timeout cause", b:cause())
      assert.are.equal(errors.deadline_exceeded, below:err())
      assert.are.equal("deadline cause", below:cause())
    end)

    it("X19: the cancel function of a deadline ctx does not set its deadline cause", function()
      conc.virtual_time(true)
      local a, cancel_a = conc.with_deadline(conc.background(), conc.now() + 1, "deadline cause")
      local b, cancel_b = conc.with_timeout(conc.background(), 1, "timeout cause")
      local below = conc.with_cancel(b)
      cancel_a()
      cancel_b()
      assert.are.equal(errors.canceled, a:err())
      assert.are.equal(errors.canceled, a:cause())
      assert.are.equal(errors.canceled, b:cause())
      assert.are.equal(errors.canceled, below:cause())
      conc.sleep(2) -- past the deadline: nothing changes
      assert.are.equal(errors.canceled, a:cause())
      assert.are.equal(errors.canceled, b:err())
    end)

    it("X20: cause() of a with_value child is its nearest cancellable ancestor's cause", function()
      conc.virtual_time(true)
      local p, cancel = conc.with_cancel(conc.background())
      local v1 = conc.with_value(p, "a", 1)
      local v2 = conc.with_value(v1, "b", 2)
      assert.is_nil(v2:cause())
      cancel("the reason")
      assert.are.equal("the reason", v1:cause())
      assert.are.equal("the reason", v2:cause())
      assert.are.equal(errors.canceled, v2:err())
      local d = conc.with_timeout(conc.background(), 1, "deadline reason")
      local dv = conc.with_value(conc.with_value(d, "a", 1), "b", 2)
      conc.select(dv:done())
      assert.are.equal("deadline reason", dv:cause())
      assert.are.equal(errors.deadline_exceeded, dv:err())
    end)
  end)

  describe("without_cancel and after_func", function()
    it("X21: without_cancel(p) keeps p's values and has no deadline, err or cause, even after p is cancelled", function()
      local p, cancel = conc.with_cancel(conc.with_value(conc.background(), "k", "v"))
      local wc = conc.without_cancel(p)
      local wv = conc.with_value(wc, "j", 2)
      assert.are.equal("v", wc:value("k"))
      assert.are.equal("v", wv:value("k"))
      cancel("gone")
      for _, ctx in ipairs { wc, wv } do
        assert.is_nil(ctx:err())
        assert.is_nil(ctx:cause())
        assert.is_nil(ctx:deadline())
        assert.are.equal(2, (conc.select(ctx:done(), conc.default)))
        assert.are.equal("v", ctx:value("k"))
      end
      assert.are.equal(0, ctx_children(p))
    end)

    it("X21: without_cancel's done() never fires when the parent's deadline passes", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local p = conc.with_timeout(conc.background(), 1, "p's deadline")
      local wc = conc.without_cancel(p)
      local below, cancel_below = conc.with_timeout(wc, 5)
      assert.is_nil(wc:deadline())
      assert.are.equal(t0 + 5, below:deadline(), "the parent's deadline does not pass through")
      local i = conc.select(wc:done(), p:done())
      assert.are.equal(2, i)
      assert.are.equal(t0 + 1, conc.now())
      assert.is_nil(wc:err())
      assert.is_nil(wc:cause())
      assert.is_nil(below:err())
      assert.are.equal(2, (conc.select(wc:done(), conc.after(1))))
      assert.is_nil(below:err())
      cancel_below()
    end)

    it("X21: a with_cancel child of without_cancel can still be cancelled on its own", function()
      local p, cancel_p = conc.with_cancel(conc.background())
      local wc = conc.without_cancel(p)
      local c, cancel_c = conc.with_cancel(wc)
      local g = conc.with_cancel(c)
      cancel_p()
      assert.is_nil(c:err())
      assert.is_nil(g:err())
      assert.are.equal(1, ctx_children(c))
      cancel_c("own")
      assert.are.equal(errors.canceled, c:err())
      assert.are.equal("own", g:cause())
      assert.are.same({ nil, false }, { c:done():try_recv() })
      assert.are.equal(0, ctx_children(c))
    end)

    it("X22: after_func runs fn once, in its own task, after ctx is done; not during cancel", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local runs, where, nargs = 0, nil, nil
        local ran = conc.chan(2)
        local stop = conc.after_func(ctx, function(...)
          runs = runs + 1
          where, nargs = conc.self(), select("#", ...)
          ran:send(ctx:err())
        end)
        conc.yield()
        assert.are.equal(0, runs)
        cancel()
        assert.are.equal(0, runs, "cancel does not run fn itself")
        cancel()
        assert.are.equal(errors.canceled, (ran:recv()))
        assert.are.equal(1, runs)
        assert.is_not_nil(where)
        assert.are_not.equal(conc.self(), where)
        assert.are.equal(0, nargs)
        for _ = 1, 5 do conc.yield() end
        assert.are.equal(1, runs)
        assert.is_false(stop())
      end)
    end)

    it("X22: after_func on a done ctx schedules fn at once, in its own task: it has not run when after_func returns", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        cancel()
        local ran = conc.chan(1)
        local before = conc.stats().tasks
        local stop = conc.after_func(ctx, function() ran:send(conc.self()) end)
        assert.are.same({ nil, false, "empty" }, { ran:try_recv() })
        assert.are.equal(before + 1, conc.stats().tasks, "fn's task is started")
        assert.is_false(stop(), "fn was started: stop cannot prevent it")
        local t = ran:recv()
        assert.is_not_nil(t)
        assert.are_not.equal(conc.self(), t)
      end)
    end)

    it("X22: after_func runs fn when the ctx's deadline passes, or an ancestor's, through value layers", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local ran = conc.chan(2)
      local d = conc.with_timeout(conc.background(), 1)
      local v = conc.with_value(conc.with_cancel(d), "k", 1)
      conc.after_func(d, function() ran:send("d at t0+1: " .. tostring(conc.now() == t0 + 1)) end)
      conc.after_func(v, function() ran:send("v: " .. tostring(v:err() == errors.deadline_exceeded)) end)
      local got = { (ran:recv()), (ran:recv()) }
      table.sort(got)
      assert.are.same({ "d at t0+1: true", "v: true" }, got)
    end)

    it("X23: stop() before done returns true, fn never runs, and a second stop() returns false", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local runs = 0
        local stop = conc.after_func(ctx, function() runs = runs + 1 end)
        assert.are.equal(1, ctx_children(ctx))
        assert.is_true(stop())
        assert.are.equal(0, ctx_children(ctx), "stop unregisters fn")
        assert.is_false(stop())
        cancel()
        for _ = 1, 5 do conc.yield() end
        assert.are.equal(0, runs)
        assert.is_false(stop())
      end)
    end)

    it("X23: stop() after cancel but before fn ran returns false, and fn still runs", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local ran = conc.chan(1)
        local stop = conc.after_func(ctx, function() ran:send("ran") end)
        cancel()
        assert.are.same({ nil, false, "empty" }, { ran:try_recv() })
        assert.is_false(stop())
        assert.is_false(stop())
        assert.are.equal("ran", (ran:recv()))
      end)
    end)

    it("X23: stop() does not wait for a running fn: it returns false at once while fn is blocked", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local started, gate, finished = conc.chan(1), conc.chan(), conc.chan(1)
        local stop = conc.after_func(ctx, function()
          started:send(true)
          gate:recv()
          finished:send(true)
        end)
        cancel()
        started:recv()
        assert.is_false(stop())
        assert.are.same({ nil, false, "empty" }, { finished:try_recv() }, "stop returned while fn runs")
        gate:send(1)
        assert.is_true((finished:recv()))
        assert.is_false(stop())
      end)
    end)

    it("X23: after_func on a ctx that is never done (background, without_cancel): stop() returns true once", function()
      local runs = 0
      local p, cancel = conc.with_cancel(conc.background())
      local s1 = conc.after_func(conc.background(), function() runs = runs + 1 end)
      local s2 = conc.after_func(conc.without_cancel(p), function() runs = runs + 1 end)
      cancel()
      conc.yield()
      assert.is_true(s1())
      assert.is_true(s2())
      assert.is_false(s1())
      assert.is_false(s2())
      assert.are.equal(0, runs)
    end)

    it("X24: registrations are independent: all run, the same fn twice runs twice, stopping one stops only it", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local log = conc.chan(10)
        local function f() log:send("f") end
        local function g() log:send("g") end
        local s1 = conc.after_func(ctx, f)
        local s2 = conc.after_func(ctx, f)
        local s3 = conc.after_func(ctx, g)
        local s4 = conc.after_func(conc.with_value(ctx, "k", 1), f)
        assert.are.equal(4, ctx_children(ctx))
        assert.is_true(s2())
        assert.are.equal(3, ctx_children(ctx))
        cancel()
        local got = {}
        for i = 1, 3 do got[i] = log:recv() end
        for _ = 1, 5 do conc.yield() end
        assert.are.same({ nil, false, "empty" }, { log:try_recv() }, "the stopped one never ran")
        table.sort(got)
        assert.are.same({ "f", "f", "g" }, got)
        assert.is_false(s1())
        assert.is_false(s3())
        assert.is_false(s4())
      end)
    end)

    it("X24: 10^5 after_func register+stop cycles on a long-lived ctx leave it holding nothing, memory flat", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      local runs = 0
      local function fn() runs = runs + 1 end
      local keep = conc.after_func(ctx, fn)
      local grown = soak(function()
        local stop = conc.after_func(ctx, fn)
        if not stop() then error("stop() of a pending after_func returned false") end
      end)
      assert.are.equal(1, ctx_children(ctx))
      assert.is_true(grown < SOAK_KB, ("grew by %.0f KB over 10^5 registrations"):format(grown))
      assert.is_true(keep())
      assert.are.equal(0, ctx_children(ctx))
      cancel()
      conc.yield()
      assert.are.equal(0, runs)
    end)
  end)

  describe("blocking calls", function()
    it("D1: a done ctx fails every call at once, with no side effect", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      cancel()
      local ch = conc.chan(1)
      assert.are.same({ nil, errors.canceled }, { ch:send(1, ctx) })
      assert.are.equal(0, ch:len())
      ch:send("kept")
      assert.are.same({ nil, false, errors.canceled }, { ch:recv(ctx) })
      assert.are.equal(1, ch:len())
      assert.are.same({ nil, errors.canceled }, { conc.sleep(0, ctx) })
      local t = conc.go(function() return 1 end)
      t:wait()
      assert.are.same({ nil, errors.canceled }, { t:wait(ctx) })
      local n = 0
      for _ in ch:iter(ctx) do n = n + 1 end
      assert.are.equal(0, n)
      assert.are.equal("kept", (ch:recv()))
    end)

    it("D1/M7/X25: wg:wait, s:acquire and m:lock with a done ctx fail at once with ctx:err(), even when they could proceed", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      cancel("not the cause")
      local wg, s, m = conc.waitgroup(), conc.semaphore(2), conc.mutex()
      assert.are.same(pack(nil, errors.canceled), pack(wg:wait(ctx)))
      assert.are.same(pack(nil, errors.canceled), pack(s:acquire(ctx, 1)))
      assert.are.same(pack(nil, errors.canceled), pack(s:acquire(ctx)))
      assert.are.same(pack(nil, errors.canceled), pack(m:lock(ctx)))
      assert.is_true(s:try_acquire(2), "the semaphore gave nothing away")
      assert.is_true(m:try_lock(), "the mutex was not taken")
    end)

    it("C24/X25: a waiter whose ctx ends is ready at once, with the ctx's error", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local a, b = conc.chan(), conc.chan()
        local r = conc.go(function() return a:recv(ctx) end)
        local s = conc.go(function() return b:send("x", ctx) end)
        local z = conc.go(function() return conc.sleep(100, ctx) end)
        local w = conc.go(function() return r:wait(ctx) end)
        settle(r, s, z)
        assert.are.equal("blocked", r:status())
        cancel()
        -- the same turn: every waiter is ready before any other task ran
        assert.are.equal("ready", r:status())
        assert.are.equal("ready", s:status())
        assert.are.equal("ready", z:status())
        assert.are.same({ true, nil, false, errors.canceled }, { r:wait() })
        assert.are.same({ true, nil, errors.canceled }, { s:wait() })
        assert.are.same({ true, nil, errors.canceled }, { z:wait() })
        local ok, res = w:wait()
        assert.is_true(ok)
        assert.is_true(res == true or res == nil)
      end)
    end)

    it("C23: after 1000 recv(ctx) timed out, a send goes to the next live receiver", function()
      conc.virtual_time(true)
      conc.run(function()
        local ch = conc.chan()
        for _ = 1, 1000 do
          local ctx = conc.with_timeout(conc.background(), 0.001)
          assert.are.same({ nil, false, errors.deadline_exceeded }, { ch:recv(ctx) })
        end
        assert.is_false(ch:try_send("nobody"))
        local r = conc.go(function() return ch:recv() end)
        ch:send("live")
        assert.are.same({ true, "live", true }, { r:wait() })
      end)
    end)

    it("C21/D2: a receiver matched before its ctx ends still gets the value", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local ch = conc.chan()
        local r = conc.go(function() return ch:recv(ctx) end)
        settle(r)
        ch:send("mine")
        cancel() -- before r runs again
        assert.are.same({ true, "mine", true }, { r:wait() })
      end)
    end)

    it("C22/D2: a sender matched before its ctx ends completes; its value is delivered once", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local ch = conc.chan(1)
        ch:send("first")
        local s = conc.go(function() return ch:send("second", ctx) end)
        settle(s)
        assert.are.equal("first", (ch:recv())) -- moves "second" into the buffer
        cancel()
        assert.are.same({ true, true }, { s:wait() })
        assert.are.equal("second", (ch:recv()))
        assert.are.same({ nil, false, "empty" }, { ch:try_recv() })
      end)
    end)

    it("X25: a ctx ending ends ch:iter's loop", function()
      if support.puc51 then return end -- 5.1 cannot block in a for-in iterator (see chan_spec)
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local ch = conc.chan()
        local got = {}
        local t = conc.go(function()
          for v in ch:iter(ctx) do got[#got + 1] = v end
          return "ended"
        end)
        ch:send(1)
        ch:send(2)
        settle(t)
        cancel()
        assert.are.same({ true, "ended" }, { t:wait() })
        assert.are.same({ 1, 2 }, got)
      end)
    end)

    it("X25/X12: sleep(d, ctx) ends at the deadline of its ctx, before d", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local ctx = conc.with_timeout(conc.background(), 1)
      assert.are.same({ nil, errors.deadline_exceeded }, { conc.sleep(5, ctx) })
      assert.are.equal(t0 + 1, conc.now())
      assert.are.equal(0, conc.stats().timers)
    end)

    it("X25: a ctx at the top level works the same", function()
      conc.virtual_time(true)
      local ch = conc.chan()
      local ctx = conc.with_timeout(conc.background(), 0.5)
      assert.are.same({ nil, false, errors.deadline_exceeded }, { ch:recv(ctx) })
    end)

    it("S12: ctx:done() is an ordinary case in select", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(conc.background())
        local ch = conc.chan()
        conc.go(function() cancel() end)
        local i, v, ok = conc.select(ch, ctx:done())
        assert.are.same({ 2, nil, false }, { i, v, ok })
      end)
    end)
  end)

  -- X25, call by call: the call is made in a task with a ctx that has a cause; cancelling
  -- the ctx makes that task ready in the same turn; the call returns nil plus ctx:err()
  -- (never the cause); the waiter has left the call's queue, which the next waiter shows;
  -- and the task, parked elsewhere afterwards, is not woken by what happens to the queue
  -- it left (a stale waiter would wake it with the wrong results).
  describe("X25: each ctx-taking blocking call, its ctx cancelled while it waits", function()
    local CAUSE = "the cause, not the error"

    --- Starts call(ctx) in a task and returns once it is parked. When the call returns, the
    -- task keeps its results and parks again, on w.after.
    local function blocked_call(call)
      local w = { after = conc.chan() }
      w.ctx, w.cancel = conc.with_cancel(conc.background())
      w.task = parked(function()
        local r = pack(call(w.ctx))
        return r, pack(w.after:recv())
      end)
      assert.are.equal("blocked", w.task:status())
      return w
    end

    --- Cancels w's ctx: w's task, and each task of `also`, is ready in that same turn.
    -- Returns once w's task has parked on w.after.
    local function end_call(w, also)
      w.cancel(CAUSE)
      assert.are.equal("ready", w.task:status(), "woken in the turn its ctx ended")
      for _, t in ipairs(also or {}) do
        assert.are.equal("ready", t:status(), "the next waiter is served in that turn")
      end
      settle(w.task)
      assert.are.equal("blocked", w.task:status())
    end

    --- w's task must still be parked on w.after (nothing stale woke it); then it is let go,
    -- and its call's results must be `expected`, whose last value is ctx:err().
    local function check_call(w, expected)
      assert.are.equal("blocked", w.task:status(), "woken again through the queue it left")
      w.after:send("next")
      local ok, r, later = w.task:wait()
      assert.is_true(ok)
      assert.are.same(expected, r)
      assert.are.same(pack("next", true), later)
      return r
    end

    local function check_err(w, expected)
      local r = check_call(w, expected)
      assert.are.equal(w.ctx:err(), r[r.n])
      assert.are_not.equal(w.ctx:cause(), r[r.n])
    end

    it("X25: conc.sleep(d, ctx) returns nil, canceled, and its timer is gone", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local w = blocked_call(function(ctx) return conc.sleep(100, ctx) end)
        local b = parked(function() return conc.sleep(100) end)
        assert.are.equal(2, conc.stats().timers)
        end_call(w)
        assert.are.equal(1, conc.stats().timers, "the cancelled sleep's timer was removed")
        assert.are.same({ true, true }, { b:wait() })
        assert.are.equal(t0 + 100, conc.now())
        check_err(w, pack(nil, errors.canceled))
      end)
    end)

    it("X25: ch:send(v, ctx) returns nil, canceled; a receive then takes the next live sender's value", function()
      conc.run(function()
        local ch = conc.chan()
        local w = blocked_call(function(ctx) return ch:send("cancelled", ctx) end)
        local b = parked(function() return ch:send("live") end)
        end_call(w)
        assert.are.same({ "live", true }, { ch:recv() })
        assert.are.same({ true, true }, { b:wait() })
        assert.are.same({ nil, false, "empty" }, { ch:try_recv() })
        check_err(w, pack(nil, errors.canceled))
      end)
    end)

    it("X25: ch:recv(ctx) returns nil, false, canceled; a send then goes to the next live receiver", function()
      conc.run(function()
        local ch = conc.chan()
        local w = blocked_call(function(ctx) return ch:recv(ctx) end)
        local b = parked(function() return ch:recv() end)
        end_call(w)
        ch:send("value")
        assert.are.same({ true, "value", true }, { b:wait() })
        assert.is_false(ch:try_send("nobody"))
        check_err(w, pack(nil, false, errors.canceled))
      end)
    end)

    it("X25: ch:iter(ctx) in a task ends its loop; a send then goes to the next live receiver", function()
      if support.puc51 then return end -- 5.1 cannot block in a for-in iterator inside a task
      conc.run(function()
        local ch = conc.chan()
        local w = blocked_call(function(ctx)
          local n = 0
          for _ in ch:iter(ctx) do n = n + 1 end
          return "ended", n
        end)
        local b = parked(function() return ch:recv() end)
        end_call(w)
        ch:send("value")
        assert.are.same({ true, "value", true }, { b:wait() })
        check_call(w, pack("ended", 0))
      end)
    end)

    it("X25: ch:iter(ctx) at the top level (every interpreter) ends its loop; a send goes to the next receiver", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      local ch = conc.chan()
      local got, b, sent = {}, nil, nil
      conc.go(function() -- runs once the top level is parked in the loop
        b = conc.go(function() return ch:recv() end)
        settle(b)
        cancel(CAUSE)
        sent = ch:try_send("value") -- true only if a live receiver waits
      end)
      for v in ch:iter(ctx) do got[#got + 1] = v end
      assert.are.same({}, got)
      assert.are.same({ true, "value", true }, { b:wait() })
      assert.is_true(sent)
    end)

    it("X25: task:wait(ctx) returns nil, canceled; the task's end wakes only the waiters still there", function()
      conc.run(function()
        local gate = conc.chan()
        local target = parked(function() return gate:recv() end)
        local w = blocked_call(function(ctx) return target:wait(ctx) end)
        local b = parked(function() return target:wait() end)
        end_call(w)
        gate:send("result")
        assert.are.same({ true, true, "result", true }, { b:wait() })
        check_err(w, pack(nil, errors.canceled))
      end)
    end)

    it("X25: wg:wait(ctx) returns nil, canceled; the count reaching 0 releases only the waiters still there", function()
      conc.run(function()
        local wg = conc.waitgroup()
        wg:add(1)
        local w = blocked_call(function(ctx) return wg:wait(ctx) end)
        local b = parked(function() return wg:wait() end)
        end_call(w)
        assert.are.equal("blocked", b:status())
        wg:done()
        assert.are.equal("ready", b:status())
        assert.are.same({ true, true }, { b:wait() })
        check_err(w, pack(nil, errors.canceled))
      end)
    end)

    it("X25: s:acquire(ctx, w) returns nil, canceled; the released unit goes to the next waiter", function()
      conc.run(function()
        local s = conc.semaphore(1)
        s:acquire()
        local w = blocked_call(function(ctx) return s:acquire(ctx, 1) end)
        local b = parked(function() return s:acquire(1) end)
        end_call(w)
        assert.are.equal("blocked", b:status())
        s:release(1)
        assert.are.equal("ready", b:status(), "the unit went to the next waiter")
        assert.are.same({ true, true }, { b:wait() })
        assert.is_false(s:try_acquire(1), "b holds the unit")
        check_err(w, pack(nil, errors.canceled))
        s:release(1)
        assert.is_true(s:try_acquire(1), "nothing is held twice or lost")
      end)
    end)

    it("X25/M6: s:acquire(ctx, 2) at the front gives up: the waiter behind it is granted the free unit in that turn", function()
      conc.run(function()
        local s = conc.semaphore(2)
        s:acquire(1)
        local w = blocked_call(function(ctx) return s:acquire(ctx, 2) end)
        local b = parked(function() return s:acquire(1) end) -- queued though a unit is free (M3)
        assert.are.equal("blocked", b:status())
        end_call(w, { b })
        assert.are.same({ true, true }, { b:wait() })
        assert.is_false(s:try_acquire(1))
        check_err(w, pack(nil, errors.canceled))
        s:release(2)
        assert.is_true(s:try_acquire(2))
      end)
    end)

    it("X25: m:lock(ctx) returns nil, canceled; unlock hands the lock to the next waiter", function()
      conc.run(function()
        local m = conc.mutex()
        m:lock()
        local w = blocked_call(function(ctx) return m:lock(ctx) end)
        local b = parked(function() return m:lock() end)
        end_call(w)
        m:unlock()
        assert.are.equal("ready", b:status(), "the lock went to the next waiter")
        assert.are.same({ true, true }, { b:wait() })
        assert.is_false(m:try_lock(), "b holds the lock")
        check_err(w, pack(nil, errors.canceled))
        m:unlock()
        assert.is_true(m:try_lock())
      end)
    end)

    it("X25/X4: a call waiting with a descendant ctx (a value over a child) ends in the turn an ancestor is cancelled", function()
      conc.run(function()
        local root, cancel = conc.with_cancel(conc.background())
        local ctx = conc.with_value(conc.with_cancel(root), "k", 1)
        local ch, m = conc.chan(), conc.mutex()
        m:lock()
        local r = parked(function() return ch:recv(ctx) end)
        local l = parked(function() return m:lock(ctx) end)
        cancel(CAUSE)
        assert.are.equal("ready", r:status())
        assert.are.equal("ready", l:status())
        assert.are.same({ true, nil, false, errors.canceled }, { r:wait() })
        assert.are.same({ true, nil, errors.canceled }, { l:wait() })
        m:unlock()
        assert.is_true(m:try_lock())
      end)
    end)

    it("X25: every call with a ctx whose deadline passes returns deadline_exceeded (not the cause), all at that instant", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local ctx = conc.with_timeout(conc.background(), 1, CAUSE)
        local sch, rch, ich = conc.chan(), conc.chan(), conc.chan()
        local wg, s, m, gate = conc.waitgroup(), conc.semaphore(1), conc.mutex(), conc.chan()
        wg:add(1)
        s:acquire()
        m:lock()
        local target = conc.go(function() return gate:recv() end)
        local calls = {
          sleep = function() return conc.sleep(5, ctx) end,
          send = function() return sch:send("x", ctx) end,
          recv = function() return rch:recv(ctx) end,
          wait = function() return target:wait(ctx) end,
          wg = function() return wg:wait(ctx) end,
          acquire = function() return s:acquire(ctx, 1) end,
          lock = function() return m:lock(ctx) end,
        }
        if not support.puc51 then -- 5.1 cannot block in a for-in iterator inside a task
          calls.iter = function()
            for _ in ich:iter(ctx) do error("nothing is sent") end
            return "ended"
          end
        end
        local tasks = {}
        for name, f in pairs(calls) do tasks[name] = conc.go(f) end
        conc.select(ctx:done())
        assert.are.equal(t0 + 1, conc.now())
        for name, t in pairs(tasks) do
          assert.are_not.equal("blocked", t:status(), name .. " was woken in the same turn")
        end
        for name, t in pairs(tasks) do
          local want = pack(true, nil, errors.deadline_exceeded)
          if name == "recv" then want = pack(true, nil, false, errors.deadline_exceeded) end
          if name == "iter" then want = pack(true, "ended") end
          assert.are.same(want, pack(t:wait()), name)
        end
        gate:send(1)
        target:wait()
        wg:done()
        s:release()
        m:unlock()
      end)
    end)
  end)

  describe("bad arguments", function()
    local ch = conc.chan()
    local bg = conc.background()
    local fn = function() end
    local cases = {
      { "with_cancel(nil)", function() conc.with_cancel() end,
        "conc: with_cancel: bad argument #1 (ctx expected, got no value)" },
      { "with_cancel(ch)", function() conc.with_cancel(ch) end,
        "conc: with_cancel: bad argument #1 (ctx expected, got conc.chan)" },
      { "with_timeout(bg, 'x')", function() conc.with_timeout(conc.background(), "x") end,
        "conc: with_timeout: bad argument #2 (number expected, got string)" },
      { "with_deadline(bg, nan)", function() conc.with_deadline(conc.background(), 0 / 0) end,
        "conc: with_deadline: bad argument #2 (duration in seconds expected, got nan)" },
      { "ctx.err(5)", function() local b = conc.background(); b.err(5) end,
        "conc: ctx:err: bad self (ctx expected, got number)" },
      { "ch:recv({})", function() ch:recv({}) end,
        "conc: ch:recv: bad argument #1 (ctx expected, got table)" },
      { "ch:send(1, 2)", function() ch:send(1, 2) end,
        "conc: ch:send: bad argument #2 (ctx expected, got number)" },
      { "sleep(1, ch)", function() conc.sleep(1, ch) end,
        "conc: sleep: bad argument #2 (ctx expected, got conc.chan)" },
      { "background(1)", function() conc.background(1) end,
        "conc: background: too many arguments (at most 0 expected, got 1)" },
      -- a nil parent, for every constructor
      { "with_cancel(nil) explicit", function() conc.with_cancel(nil) end,
        "conc: with_cancel: bad argument #1 (ctx expected, got nil)", "misuse" },
      { "with_timeout(nil, 1)", function() conc.with_timeout(nil, 1) end,
        "conc: with_timeout: bad argument #1 (ctx expected, got nil)", "misuse" },
      { "with_deadline(nil, t)", function() conc.with_deadline(nil, conc.now() + 1) end,
        "conc: with_deadline: bad argument #1 (ctx expected, got nil)", "misuse" },
      { "with_value(nil, k, v)", function() conc.with_value(nil, "k", 1) end,
        "conc: with_value: bad argument #1 (ctx expected, got nil)", "misuse" },
      { "without_cancel(nil)", function() conc.without_cancel(nil) end,
        "conc: without_cancel: bad argument #1 (ctx expected, got nil)", "misuse" },
      { "without_cancel()", function() conc.without_cancel() end,
        "conc: without_cancel: bad argument #1 (ctx expected, got no value)", "misuse" },
      { "after_func(nil, fn)", function() conc.after_func(nil, fn) end,
        "conc: after_func: bad argument #1 (ctx expected, got nil)", "misuse" },
      { "with_value('k', 'v')", function() conc.with_value("k", "v") end,
        "conc: with_value: bad argument #1 (ctx expected, got string)", "misuse" },
      -- X11: a negative timeout is a mistake
      { "with_timeout(bg, -0.5)", function() conc.with_timeout(bg, -0.5) end,
        "conc: with_timeout: bad argument #2 (timeout must not be negative, got -0.5)", "X11" },
      { "with_timeout(bg, -inf)", function() conc.with_timeout(bg, -math.huge) end,
        "conc: with_timeout: bad argument #2 (timeout must not be negative, got -inf)", "X11" },
      { "with_timeout(bg, nan)", function() conc.with_timeout(bg, 0 / 0) end,
        "conc: with_timeout: bad argument #2 (duration in seconds expected, got nan)", "X11" },
      -- X2: keys that could never be found
      { "with_value(bg, nil, v)", function() conc.with_value(bg, nil, 1) end,
        "conc: with_value: bad argument #2 (key must not be nil)", "X2" },
      { "with_value(bg, nan, v)", function() conc.with_value(bg, 0 / 0, 1) end,
        "conc: with_value: bad argument #2 (key must not be NaN: it could never be found)", "X2" },
      -- X22: fn must be a function
      { "after_func(bg, 1)", function() conc.after_func(bg, 1) end,
        "conc: after_func: bad argument #2 (function expected, got number)", "X22" },
      { "after_func(bg)", function() conc.after_func(bg) end,
        "conc: after_func: bad argument #2 (function expected, got no value)", "X22" },
      { "after_func(bg, callable table)", function() conc.after_func(bg, setmetatable({}, { __call = fn })) end,
        "conc: after_func: bad argument #2 (function expected, got table)", "X22" },
      -- other misuse
      { "after_func(ch, fn)", function() conc.after_func(ch, fn) end,
        "conc: after_func: bad argument #1 (ctx expected, got conc.chan)", "misuse" },
      { "with_cancel(bg, 1)", function() conc.with_cancel(bg, 1) end,
        "conc: with_cancel: too many arguments (at most 1 expected, got 2)", "misuse" },
      { "with_timeout(bg, 1, cause, 2)", function() conc.with_timeout(bg, 1, "c", 2) end,
        "conc: with_timeout: too many arguments (at most 3 expected, got 4)", "misuse" },
    }
    for _, c in ipairs(cases) do
      it((c[4] and c[4] .. ": " or "") .. c[1], function()
        assert.are.equal(c[3], support.error_of(c[2]))
      end)
    end

    it("X11: with_timeout with a negative timeout raises on every interpreter, and makes nothing", function()
      local before = conc.stats().timers
      for _, d in ipairs { -1, -0.001, -1e-300 } do
        local msg = support.error_of(conc.with_timeout, bg, d)
        assert.is_true(support.starts_with(msg,
          "conc: with_timeout: bad argument #2 (timeout must not be negative, got -"), msg)
      end
      assert.are.equal(before, conc.stats().timers)
    end)

    it("X2: with_value with the key left out raises like a nil key (an absent key is a nil key)", function()
      assert.are.equal("conc: with_value: bad argument #2 (key must not be nil)",
        support.error_of(conc.with_value, bg))
      assert.are.equal("conc: with_value: bad argument #2 (key must not be nil)",
        support.error_of(conc.with_value, bg, nil))
    end)
  end)
end)
