--- Contexts on the blocking calls of the core: the ctx parts of C21-C24, decisions D1, D2
-- and D9, S12 with ctx:done(), and the context calls themselves (background, with_cancel,
-- with_deadline, with_timeout; done, err, cause, deadline). Timed cases run on virtual
-- time, so nothing sleeps.
local conc = require "conc"
local support = require "support"
local settle = support.settle
local errors = conc.errors

describe("ctx", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("the context calls", function()
    it("background is never done, has no deadline, and is one object (X1, D9)", function()
      local bg = conc.background()
      assert.are.equal(bg, conc.background())
      assert.is_nil(bg:err())
      assert.is_nil(bg:cause())
      assert.is_nil(bg:deadline())
      local i = conc.select(bg:done(), conc.default)
      assert.are.equal(2, i)
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

    it("cancel closes done once, sets err and cause, and is idempotent", function()
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

    it("cause defaults to err when cancel gets none", function()
      local ctx, cancel = conc.with_cancel(conc.background())
      cancel()
      assert.are.equal(ctx:err(), ctx:cause())
    end)

    it("cancelling a parent cancels its whole subtree with its err and cause, never its parent", function()
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

    it("a child of a done ctx is born done", function()
      local p, cancel = conc.with_cancel(conc.background())
      cancel("gone")
      local c = conc.with_cancel(p)
      assert.are.equal(errors.canceled, c:err())
      assert.are.equal("gone", c:cause())
    end)

    it("a deadline cancels with deadline_exceeded at that time, with its cause", function()
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

    it("the deadline is the earlier of the parent's and the child's", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local p = conc.with_timeout(conc.background(), 1)
      local c = conc.with_deadline(p, t0 + 5)
      assert.are.equal(t0 + 1, c:deadline())
      conc.select(c:done())
      assert.are.equal(t0 + 1, conc.now())
      assert.are.equal(errors.deadline_exceeded, c:err())
    end)

    it("a deadline already past is done at once", function()
      local ctx = conc.with_deadline(conc.background(), conc.now() - 1)
      assert.are.equal(errors.deadline_exceeded, ctx:err())
    end)

    it("cancelling before the deadline removes the timer", function()
      conc.virtual_time(true)
      local ctx, cancel = conc.with_timeout(conc.background(), 10)
      assert.are.equal(1, conc.stats().timers)
      cancel()
      assert.are.equal(0, conc.stats().timers)
      assert.are.equal(errors.canceled, ctx:err())
    end)

    it("100k children cancelled under one long-lived parent leave it empty", function()
      local parent, cancel_parent = conc.with_cancel(conc.background())
      local before = collectgarbage("count")
      for _ = 1, 100000 do
        local _, cancel = conc.with_cancel(parent)
        cancel()
      end
      collectgarbage()
      collectgarbage()
      assert.is_true(collectgarbage("count") - before < 2048, "the parent kept its cancelled children")
      cancel_parent()
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

    it("C24: a waiter whose ctx ends is ready at once, with the ctx's error", function()
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

    it("a ctx ending ends ch:iter's loop", function()
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

    it("sleep(d, ctx) ends at the deadline of its ctx, before d", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local ctx = conc.with_timeout(conc.background(), 1)
      assert.are.same({ nil, errors.deadline_exceeded }, { conc.sleep(5, ctx) })
      assert.are.equal(t0 + 1, conc.now())
      assert.are.equal(0, conc.stats().timers)
    end)

    it("a ctx at the top level works the same", function()
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

  describe("bad arguments", function()
    local ch = conc.chan()
    local cases = {
      { "with_cancel(nil)", function() conc.with_cancel() end,
        "conc: with_cancel: bad argument #1 (ctx expected, got no value)" },
      { "with_cancel(ch)", function() conc.with_cancel(ch) end,
        "conc: with_cancel: bad argument #1 (ctx expected, got conc.chan)" },
      { "with_timeout(bg, 'x')", function() conc.with_timeout(conc.background(), "x") end,
        "conc: with_timeout: bad argument #2 (number expected, got string)" },
      { "with_deadline(bg, nan)", function() conc.with_deadline(conc.background(), 0 / 0) end,
        "conc: with_deadline: bad argument #2 (duration in seconds expected, got nan)" },
      { "ctx.err(5)", function() local bg = conc.background(); bg.err(5) end,
        "conc: ctx:err: bad self (ctx expected, got number)" },
      { "ch:recv({})", function() ch:recv({}) end,
        "conc: ch:recv: bad argument #1 (ctx expected, got table)" },
      { "ch:send(1, 2)", function() ch:send(1, 2) end,
        "conc: ch:send: bad argument #2 (ctx expected, got number)" },
      { "sleep(1, ch)", function() conc.sleep(1, ch) end,
        "conc: sleep: bad argument #2 (ctx expected, got conc.chan)" },
      { "background(1)", function() conc.background(1) end,
        "conc: background: too many arguments (at most 0 expected, got 1)" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.are.equal(c[3], support.error_of(c[2]))
      end)
    end
  end)
end)
