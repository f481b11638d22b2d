--- Pipeline stages (lua/conc/pipeline.lua): conc.any, or_done, take, bridge, tee, merge,
-- generate, repeat_fn and map, DESIGN.md's "Pipelines" table and fine point, and rule W8 of
-- SEMANTICS.md section 7 (a restarted ward's output read as one stream through bridge and
-- take). Each stage takes a ctx (all but any): when it ends, the stage closes its output and
-- leaves no task behind. The specs check that inside conc.run, where live tasks are counted
-- (only_main), and support.nothing_left checks it again after each test. Every stage has
-- specs for normal flow, close propagation, ctx cancellation and bad arguments. Events are
-- ordered through channels, yields and virtual time; nothing sleeps.
local conc = require "conc"
local errors = require "conc.errors"
local support = require "support"

local pack, parked, capture_reports = support.pack, support.parked, support.capture_reports

local bg = conc.background()
local unpack = table.unpack or unpack

--- Every value received from ch until it closes (a while loop: 5.1 cannot yield in for-in).
local function drain(ch)
  local out = {}
  while true do
    local v, ok = ch:recv()
    if not ok then return out end
    out[#out + 1] = v
  end
end

--- A buffered channel holding the given values, closed.
local function closed_with(...)
  local ch = conc.chan(select("#", ...))
  for i = 1, select("#", ...) do ch:send((select(i, ...))) end
  ch:close()
  return ch
end

--- Whether ch is closed and drained: try_recv gives exactly nil, false (not "empty").
local function is_closed(ch)
  local r = pack(ch:try_recv())
  return r.n == 2 and r[1] == nil and r[2] == false
end

--- Yields until pred() holds (bounded, so a bug fails rather than hangs).
local function yield_until(pred, what)
  for _ = 1, 10000 do
    if pred() then return end
    conc.yield()
  end
  error("yield_until: never true: " .. what)
end

--- Whether the running task is the only one alive: every stage's tasks have ended.
local function only_main()
  return conc.stats().tasks == 1
end

--- Every value received from ch until it closes, counted, so that nil values show.
local function drain_n(ch)
  local out = { n = 0 }
  while true do
    local v, ok = ch:recv()
    if not ok then return out end
    out.n = out.n + 1
    out[out.n] = v
  end
end

--- A ctx that is already done.
local function done_ctx()
  local ctx, cancel = conc.with_cancel(bg)
  cancel()
  return ctx
end

--- Whether every task but the running one is blocked.
local function others_blocked()
  local st = conc.stats()
  return st.blocked == st.tasks - 1
end

describe("pipelines", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("conc.take", function()
    it("gives the first n values in order, then closes, and reads no more from its source (DESIGN Pipelines)", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local src = conc.chan()
        local producer = conc.go(function()
          for i = 1, 5 do
            if not src:send(i, ctx) then return i end
          end
        end)
        assert.are.same({ 1, 2, 3 }, drain(conc.take(ctx, src, 3)))
        assert.are.same({ 4, true }, { src:recv() }, "the 4th value is still the producer's")
        cancel()
        assert.are.same({ true, 5 }, { producer:wait() })
      end)
    end)

    it("passes nil and false values through like any other (DESIGN Channels)", function()
      conc.run(function()
        local src = conc.chan(3)
        src:send(nil)
        src:send(false)
        src:send("x")
        local out = conc.take(bg, src, 3)
        assert.are.same({ n = 2, nil, true }, pack(out:recv()))
        assert.are.same({ n = 2, false, true }, pack(out:recv()))
        assert.are.same({ n = 2, "x", true }, pack(out:recv()))
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
      end)
    end)

    it("closes its output when the source closes before n values (close propagation)", function()
      conc.run(function()
        local out = conc.take(bg, closed_with(1, 2), 5)
        assert.are.same({ 1, 2 }, drain(out))
        assert.are.same({ n = 2, nil, false }, pack(out:recv()), "and stays closed")
      end)
    end)

    it("take(ctx, ch, 0) closes at once and takes nothing", function()
      conc.run(function()
        local src = conc.chan(1)
        src:send("kept")
        assert.are.same({}, drain(conc.take(bg, src, 0)))
        assert.are.equal(1, src:len())
        assert.are.same({ "kept", true }, { src:recv() })
      end)
    end)

    it("ctx ending while it waits on its source closes the output and leaves no task", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local src = conc.chan()
        local out = conc.take(ctx, src, 3)
        local reader = parked(function() return drain(out) end)
        assert.are.equal("blocked", reader:status())
        cancel()
        assert.are.same({ true, {} }, { reader:wait() })
        assert.are.equal(1, conc.stats().tasks, "only the main task is left")
      end)
      support.nothing_left()
    end)

    it("ctx ending while it waits for a reader closes the output and leaves no task", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local src = closed_with("a", "b")
        local out = conc.take(ctx, src, 2)
        yield_until(others_blocked, "take blocks on its output")
        assert.are.equal(1, src:len(), "take holds 'a' and waits for a reader")
        cancel()
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
        assert.are.equal(1, conc.stats().tasks, "only the main task is left")
      end)
    end)

    it("D1: a ctx already done gives a closed channel, starts no task and reads nothing (DESIGN Pipelines)", function()
      local ctx, cancel = conc.with_cancel(bg)
      cancel()
      local src = conc.chan(1)
      src:send("kept")
      local before = conc.stats().tasks
      local out = conc.take(ctx, src, 1)
      assert.are.equal(before, conc.stats().tasks)
      assert.is_true(is_closed(out))
      assert.are.same({ n = 2, nil, false }, pack(out:recv()))
      assert.are.equal(1, src:len())
    end)
  end)

  describe("conc.bridge", function()
    it("gives the values of each stream in turn, and closes when the stream of streams closes (DESIGN Pipelines)", function()
      conc.run(function()
        local chch = conc.chan(3)
        chch:send(closed_with(1, 2))
        chch:send(closed_with())
        chch:send(closed_with(3))
        chch:close()
        assert.are.same({ 1, 2, 3 }, drain(conc.bridge(bg, chch)))
      end)
    end)

    it("reads a stream until it closes before it takes the next, even when the next is ready first", function()
      conc.run(function()
        local slow = conc.chan()
        local chch = closed_with(slow, closed_with("b1", "b2"))
        local out = conc.bridge(bg, chch)
        local producer = conc.go(function()
          slow:send("a1")
          slow:send("a2")
          slow:close()
        end)
        assert.are.same({ "a1", "a2", "b1", "b2" }, drain(out))
        assert.is_true(producer:wait())
      end)
    end)

    it("close propagation: the stream of streams closing while a stream is open closes the output after that stream", function()
      conc.run(function()
        local open = conc.chan()
        local chch = closed_with(open)
        local out = conc.bridge(bg, chch)
        local feeder = conc.go(function() open:send(1); open:send(2) end)
        assert.are.same({ 1, true }, { out:recv() })
        assert.are.same({ 2, true }, { out:recv() })
        assert.is_true(feeder:wait())
        local reader = parked(function() return out:recv() end)
        assert.are.equal("blocked", reader:status(), "the output stays open while the stream is")
        open:close()
        assert.are.same({ true, nil, false }, { reader:wait() })
      end)
    end)

    local where = {
      { "on the stream of streams", function() return conc.chan() end },
      { "on a stream", function() return closed_with(conc.chan()) end },
      { "for a reader", function() return closed_with(closed_with("held")) end },
    }
    for _, w in ipairs(where) do
      it("ctx ending while it waits " .. w[1] .. " closes the output and leaves no task", function()
        conc.run(function()
          local ctx, cancel = conc.with_cancel(bg)
          local out = conc.bridge(ctx, w[2]())
          yield_until(others_blocked, "bridge blocks")
          assert.are.equal(2, conc.stats().tasks, "bridge is waiting")
          cancel()
          assert.are.same({ n = 2, nil, false }, pack(out:recv()))
          assert.are.equal(1, conc.stats().tasks, "only the main task is left")
        end)
        support.nothing_left()
      end)
    end

    it("D1: a ctx already done gives a closed channel and starts no task (DESIGN Pipelines)", function()
      local ctx, cancel = conc.with_cancel(bg)
      cancel()
      local chch = closed_with(closed_with(1))
      local before = conc.stats().tasks
      local out = conc.bridge(ctx, chch)
      assert.are.equal(before, conc.stats().tasks)
      assert.is_true(is_closed(out))
      assert.are.equal(1, chch:len(), "nothing was read")
    end)

    it("a value on the stream of streams that is not a channel is misuse, reported as a conc: error (DESIGN Errors)", function()
      local seen = capture_reports(function()
        conc.run(function()
          local chch = closed_with(42)
          local out = conc.bridge(bg, chch)
          local v, ok = out:recv()
          assert.are.same({ nil, false }, { v, ok }, "the output closes: its reader does not hang")
        end)
      end)
      assert.are.equal(1, #seen)
      assert.are.equal("conc: bridge: the stream of streams carried number, not a channel", tostring(seen[1]))
    end)
  end)

  describe("conc.any", function()
    it("fires when any input gives a value: its output closes, sends nothing, and the value is consumed (DESIGN Pipelines)", function()
      conc.run(function()
        local a, b, c = conc.chan(), conc.chan(), conc.chan()
        local out = conc.any(a, b, c)
        local reader = parked(function() return pack(out:recv()) end)
        assert.are.equal("blocked", reader:status(), "nothing fired yet")
        assert.is_true(b:send("fire"), "any took the value")
        assert.are.same({ true, { n = 2, nil, false } }, { reader:wait() })
        yield_until(only_main, "any's task ends when it fires")
        assert.are.same({ n = 3, nil, false, "empty" }, pack(b:try_recv()))
      end)
    end)

    it("close propagation: fires when any input closes", function()
      conc.run(function()
        local a, b = conc.chan(), conc.chan()
        local out = conc.any(a, b)
        local reader = parked(function() return pack(out:recv()) end)
        assert.are.equal("blocked", reader:status())
        a:close()
        assert.are.same({ true, { n = 2, nil, false } }, { reader:wait() })
        yield_until(only_main, "any's task ends")
      end)
    end)

    it("waits on a thousand inputs with one task, and fires on the last one", function()
      conc.run(function()
        local inputs = {}
        for i = 1, 1000 do inputs[i] = conc.chan() end
        local before = conc.stats().tasks
        local out = conc.any(unpack(inputs, 1, 1000))
        assert.are.equal(before + 1, conc.stats().tasks, "one task, not one per input (no recursion)")
        yield_until(others_blocked, "any waits")
        assert.is_false(is_closed(out))
        inputs[1000]:close()
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
        yield_until(only_main, "any's task ends")
      end)
    end)

    it("the book's example: any of timers of 2 h, 5 min, 1 s, 1 h and 1 min fires after 1 s", function()
      conc.run(function()
        conc.virtual_time(true)
        local timers, chans = {}, {}
        for i, d in ipairs { 2 * 3600, 300, 1, 3600, 60 } do
          timers[i] = conc.timer(d)
          chans[i] = timers[i]:chan()
        end
        local t0 = conc.now()
        local _, ok = conc.any(unpack(chans)):recv()
        assert.is_false(ok)
        assert.are.equal(1, conc.now() - t0)
        for _, t in ipairs(timers) do t:stop() end
      end)
    end)

    it("a ctx's done channel as an input: the ctx ending fires it, and no task is left", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local out = conc.any(conc.chan(), ctx:done())
        yield_until(others_blocked, "any waits")
        assert.are.equal(2, conc.stats().tasks)
        cancel()
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
        yield_until(only_main, "any's task ends")
      end)
      support.nothing_left()
    end)

    it("an input already closed or holding a value fires it at once", function()
      conc.run(function()
        assert.are.same({ n = 2, nil, false }, pack(conc.any(conc.chan(), closed_with()):recv()))
        local full = conc.chan(1)
        full:send("v")
        assert.are.same({ n = 2, nil, false }, pack(conc.any(full):recv()))
        assert.are.equal(0, full:len())
        yield_until(only_main, "any's tasks end")
      end)
    end)

    it("with no input, never closes and starts no task (the book's nil channel)", function()
      local before = conc.stats().tasks
      local out = conc.any()
      assert.are.equal(before, conc.stats().tasks)
      assert.are.same({ n = 3, nil, false, "empty" }, pack(out:try_recv()))
    end)
  end)

  describe("conc.or_done", function()
    it("passes every value in order, nil and false included, and closes when its source closes (close propagation)", function()
      conc.run(function()
        local out = conc.or_done(bg, closed_with(1, nil, false, "x"))
        assert.are.same({ n = 2, 1, true }, pack(out:recv()))
        assert.are.same({ n = 2, nil, true }, pack(out:recv()))
        assert.are.same({ n = 2, false, true }, pack(out:recv()))
        assert.are.same({ n = 2, "x", true }, pack(out:recv()))
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
      end)
    end)

    it("reads a channel it does not control, whose producer knows no ctx, until the ctx ends", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local src = conc.chan()
        local n = 0
        local producer = conc.go(function()
          while true do
            n = n + 1
            if not src:send(n, ctx) then return end
          end
        end)
        local out = conc.or_done(ctx, src)
        for i = 1, 3 do assert.are.same({ i, true }, { out:recv() }) end
        cancel()
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
        assert.is_true(producer:wait())
        yield_until(only_main, "or_done ends")
      end)
    end)

    local where = {
      { "on its source", function() return conc.chan() end },
      { "for a reader", function() return closed_with("held", "next") end },
    }
    for _, w in ipairs(where) do
      it("ctx ending while it waits " .. w[1] .. " closes the output and leaves no task", function()
        conc.run(function()
          local ctx, cancel = conc.with_cancel(bg)
          local out = conc.or_done(ctx, w[2]())
          yield_until(others_blocked, "or_done blocks")
          assert.are.equal(2, conc.stats().tasks)
          cancel()
          assert.are.same({ n = 2, nil, false }, pack(out:recv()))
          yield_until(only_main, "or_done ends")
        end)
        support.nothing_left()
      end)
    end

    it("D1: a ctx already done gives a closed channel, starts no task and reads nothing (DESIGN Pipelines)", function()
      local ctx = done_ctx()
      local src = closed_with("kept")
      local before = conc.stats().tasks
      local out = conc.or_done(ctx, src)
      assert.are.equal(before, conc.stats().tasks)
      assert.is_true(is_closed(out))
      assert.are.equal(1, src:len())
    end)
  end)

  describe("conc.tee", function()
    it("gives every value to both outputs, in order, and closes both when its source closes (close propagation)", function()
      conc.run(function()
        local a, b = conc.tee(bg, closed_with(1, nil, false, "x"))
        local other = conc.go(drain_n, b)
        local got = drain_n(a)
        assert.are.same({ n = 4, 1, nil, false, "x" }, got)
        assert.are.same({ true, got }, { other:wait() })
        assert.is_true(is_closed(a) and is_closed(b))
      end)
    end)

    it("a slow reader holds the other back: the next value is read only once both outputs have the current one (the book)", function()
      conc.run(function()
        local src = conc.chan()
        local sent = 0
        local producer = conc.go(function()
          for i = 1, 3 do
            src:send(i)
            sent = i
          end
          src:close()
        end)
        local a, b = conc.tee(bg, src)
        assert.are.same({ 1, true }, { a:recv() })
        local fast = parked(function() return a:recv() end)
        assert.are.equal("blocked", fast:status(), "a waits for b to take 1")
        yield_until(others_blocked, "tee and the producer settle")
        assert.are.equal(1, sent, "2 is not read yet: the producer still holds it")
        assert.are.same({ 1, true }, { b:recv() })
        assert.are.same({ true, 2, true }, { fast:wait() })
        assert.are.same({ 2, true }, { b:recv() }, "either output may take a value first")
        assert.are.same({ 3, true }, { b:recv() })
        assert.are.same({ 3, true }, { a:recv() })
        assert.are.same({ n = 2, nil, false }, pack(a:recv()))
        assert.are.same({ n = 2, nil, false }, pack(b:recv()))
        assert.is_true(producer:wait())
      end)
    end)

    local where = {
      { "on its source", function() return conc.chan() end, 0 },
      { "with a value neither output took", function() return closed_with("v") end, 0 },
      { "with a value one output took", function() return closed_with("v") end, 1 },
    }
    for _, w in ipairs(where) do
      it("ctx ending while it waits " .. w[1] .. " closes both outputs and leaves no task", function()
        conc.run(function()
          local ctx, cancel = conc.with_cancel(bg)
          local a, b = conc.tee(ctx, w[2]())
          if w[3] == 1 then assert.are.same({ "v", true }, { a:recv() }) end
          yield_until(others_blocked, "tee blocks")
          assert.are.equal(2, conc.stats().tasks)
          cancel()
          assert.are.same({ n = 2, nil, false }, pack(b:recv()))
          assert.are.same({ n = 2, nil, false }, pack(a:recv()))
          yield_until(only_main, "tee ends")
        end)
        support.nothing_left()
      end)
    end

    it("D1: a ctx already done gives two closed channels, starts no task and reads nothing (DESIGN Pipelines)", function()
      local src = closed_with("kept")
      local before = conc.stats().tasks
      local a, b = conc.tee(done_ctx(), src)
      assert.are.equal(before, conc.stats().tasks)
      assert.is_true(is_closed(a))
      assert.is_true(is_closed(b))
      assert.are_not.equal(a, b)
      assert.are.equal(1, src:len())
    end)
  end)

  describe("conc.merge", function()
    it("gives every value of every input, each input's in order (fan-in)", function()
      conc.run(function()
        local x, y = conc.chan(), conc.chan()
        local function produce(ch, prefix)
          for i = 1, 5 do ch:send(prefix .. i) end
          ch:close()
        end
        conc.go(produce, x, "x")
        conc.go(produce, y, "y")
        local got = drain(conc.merge(bg, x, y, closed_with("z1", "z2")))
        assert.are.equal(12, #got)
        local seen = { x = 0, y = 0, z = 0 }
        for _, v in ipairs(got) do
          local p, i = v:match("^(%a)(%d)$")
          assert.are.equal(seen[p] + 1, tonumber(i), "each input's order is kept: " .. v)
          seen[p] = seen[p] + 1
        end
        yield_until(only_main, "merge and the producers end")
      end)
    end)

    it("close propagation: the output stays open while any input is open and closes after the last", function()
      conc.run(function()
        local open = conc.chan()
        local out = conc.merge(bg, closed_with(1), open, closed_with())
        assert.are.same({ 1, true }, { out:recv() })
        local reader = parked(function() return pack(out:recv()) end)
        assert.are.equal("blocked", reader:status())
        open:send(2)
        assert.are.same({ true, { n = 2, 2, true } }, { reader:wait() })
        reader = parked(function() return pack(out:recv()) end)
        assert.are.equal("blocked", reader:status())
        open:close()
        assert.are.same({ true, { n = 2, nil, false } }, { reader:wait() })
        yield_until(only_main, "merge ends")
      end)
    end)

    it("with no input, closes at once and starts no task", function()
      local before = conc.stats().tasks
      local out = conc.merge(bg)
      assert.are.equal(before, conc.stats().tasks)
      assert.is_true(is_closed(out))
    end)

    local where = {
      { "on its inputs", function() return conc.chan(), conc.chan(), conc.chan() end },
      { "for a reader", function() return closed_with(1), closed_with(2), conc.chan() end },
    }
    for _, w in ipairs(where) do
      it("ctx ending while it waits " .. w[1] .. " closes the output and leaves no task", function()
        conc.run(function()
          local ctx, cancel = conc.with_cancel(bg)
          local out = conc.merge(ctx, w[2]())
          yield_until(others_blocked, "merge blocks")
          assert.are.equal(4, conc.stats().tasks, "a task per input")
          cancel()
          assert.are.same({ n = 2, nil, false }, pack(out:recv()))
          yield_until(only_main, "merge ends")
        end)
        support.nothing_left()
      end)
    end

    it("D1: a ctx already done gives a closed channel, starts no task and reads nothing (DESIGN Pipelines)", function()
      local src = closed_with("kept")
      local before = conc.stats().tasks
      local out = conc.merge(done_ctx(), src, conc.chan())
      assert.are.equal(before, conc.stats().tasks)
      assert.is_true(is_closed(out))
      assert.are.equal(1, src:len())
    end)
  end)

  describe("conc.generate", function()
    it("sends each argument once, in order, nil and false included, then closes (DESIGN Pipelines)", function()
      conc.run(function()
        local out = conc.generate(bg, 1, nil, false, "x", nil)
        assert.are.same({ n = 5, 1, nil, false, "x", nil }, drain_n(out))
        assert.are.same({ n = 2, nil, false }, pack(out:recv()), "and stays closed")
      end)
    end)

    it("with no argument, closes at once", function()
      conc.run(function()
        assert.are.same({ n = 0 }, drain_n(conc.generate(bg)))
      end)
    end)

    it("close propagation: a consumer that stops reading ends it through the ctx; it closes its output and leaves no task", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local out = conc.generate(ctx, "a", "b", "c")
        assert.are.same({ "a", true }, { out:recv() })
        yield_until(others_blocked, "generate holds b")
        cancel()
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
        yield_until(only_main, "generate ends")
      end)
      support.nothing_left()
    end)

    it("D1: a ctx already done gives a closed channel and starts no task (DESIGN Pipelines)", function()
      local before = conc.stats().tasks
      local out = conc.generate(done_ctx(), 1, 2)
      assert.are.equal(before, conc.stats().tasks)
      assert.is_true(is_closed(out))
    end)
  end)

  describe("conc.repeat_fn", function()
    it("sends fn(), fn(), ... with no arguments to fn and its first result only, calling fn one time ahead (the book)", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local calls, args = 0, {}
        local out = conc.repeat_fn(ctx, function(...)
          calls = calls + 1
          args[#args + 1] = select("#", ...)
          return calls, "dropped"
        end)
        assert.are.same({ 1, 2, 3, 4, 5 }, drain(conc.take(ctx, out, 5)))
        yield_until(others_blocked, "repeat_fn holds a 6th value")
        assert.are.equal(6, calls)
        cancel()
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
        yield_until(only_main, "repeat_fn ends")
        assert.are.equal(6, calls, "no call after the ctx ended")
        for _, n in ipairs(args) do assert.are.equal(0, n) end
      end)
      support.nothing_left()
    end)

    it("the book's example: take(ctx, repeat_fn(ctx, math.random), 10)", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local got = drain(conc.take(ctx, conc.repeat_fn(ctx, math.random), 10))
        assert.are.equal(10, #got)
        for _, v in ipairs(got) do assert.is_true(v >= 0 and v < 1) end
        cancel()
        yield_until(only_main, "repeat_fn ends")
      end)
    end)

    it("ctx ending while fn blocks: the call finishes, nothing more is sent, the output closes and no task is left", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local gate = conc.chan()
        local out = conc.repeat_fn(ctx, function() return gate:recv() end)
        yield_until(others_blocked, "fn blocks")
        cancel()
        gate:send("late")
        assert.are.same({ n = 2, nil, false }, pack(out:recv()))
        yield_until(only_main, "repeat_fn ends")
      end)
      support.nothing_left()
    end)

    it("fn returning nil, ctx:err() once the ctx ended is a normal stop, not reported", function()
      local seen = capture_reports(function()
        conc.run(function()
          conc.virtual_time(true)
          local ctx, cancel = conc.with_cancel(bg)
          local out = conc.repeat_fn(ctx, function()
            local ok, err = conc.sleep(1, ctx)
            if not ok then return nil, err end
            return "tick"
          end)
          assert.are.same({ "tick", true }, { out:recv() })
          yield_until(others_blocked, "fn sleeps")
          cancel()
          assert.are.same({ n = 2, nil, false }, pack(out:recv()))
          yield_until(only_main, "repeat_fn ends")
        end)
      end)
      assert.are.same({}, seen)
    end)

    local failures = {
      { "raises", function() error("boom", 0) end, "boom", true },
      { "returns nil plus an error", function() return nil, errors.new("no more") end, "no more", false },
    }
    for _, f in ipairs(failures) do
      it("fn that " .. f[1] .. " fails the stage: the output closes and the error is reported once (DESIGN Failure of a user function)", function()
        local seen = capture_reports(function()
          conc.run(function()
            local calls = 0
            local out = conc.repeat_fn(bg, function()
              calls = calls + 1
              if calls == 3 then return f[2]() end
              return calls
            end)
            assert.are.same({ 1, 2 }, drain(out))
            yield_until(only_main, "repeat_fn ends")
          end)
        end)
        assert.are.equal(1, #seen)
        assert.are.equal(f[3], seen[1].message)
        assert.are.equal(f[4], errors.is_bug(seen[1]))
      end)
    end

    it("D1: a ctx already done gives a closed channel, starts no task and never calls fn (DESIGN Pipelines)", function()
      local called = false
      local before = conc.stats().tasks
      local out = conc.repeat_fn(done_ctx(), function() called = true end)
      assert.are.equal(before, conc.stats().tasks)
      assert.is_true(is_closed(out))
      conc.run(function() conc.yield() end)
      assert.is_false(called)
    end)
  end)

  describe("conc.map", function()
    local modes = {
      { "one worker", nil, true },
      { "three ordered workers", 3, true },
      { "three unordered workers", { workers = 3, unordered = true }, false },
    }

    it("gives fn(v) for each value, in order, with one worker by default (DESIGN Pipelines)", function()
      conc.run(function()
        local out = conc.map(bg, closed_with(1, 2, 3, 4), function(v) return v * v, "dropped" end)
        assert.are.same({ n = 4, 1, 4, 9, 16 }, drain_n(out))
        yield_until(only_main, "map ends")
      end)
    end)

    for _, m in ipairs(modes) do
      it(m[1] .. ": passes nil and false results through, and closes after the last result (close propagation)", function()
        conc.run(function()
          local src = conc.chan()
          local out = conc.map(bg, src, function(v) if v == "nil" then return nil end return v end, m[2])
          local producer = conc.go(function()
            for _, v in ipairs { "nil", false, "x" } do src:send(v) end
            src:close()
          end)
          local got = drain_n(out)
          assert.are.equal(3, got.n)
          if m[3] then
            assert.are.same({ n = 3, nil, false, "x" }, got)
          end
          assert.is_true(producer:wait())
          yield_until(only_main, "map ends")
        end)
      end)
    end

    it("fans out: n workers call fn at once", function()
      conc.run(function()
        local gate, inside, most = conc.chan(), 0, 0
        local out = conc.map(bg, closed_with(1, 2, 3, 4, 5, 6), function(v)
          inside = inside + 1
          most = math.max(most, inside)
          gate:recv()
          inside = inside - 1
          return v
        end, 3)
        yield_until(function() return inside == 3 end, "three calls at once")
        yield_until(others_blocked, "map settles")
        assert.are.equal(3, inside)
        gate:close()
        assert.are.same({ n = 6, 1, 2, 3, 4, 5, 6 }, drain_n(out))
        assert.are.equal(3, most)
        yield_until(only_main, "map ends")
      end)
    end)

    it("keeps the order of the inputs when later values are done first", function()
      conc.run(function()
        local gates, finished = { conc.chan(), conc.chan(), conc.chan() }, {}
        local out = conc.map(bg, closed_with(1, 2, 3), function(v)
          gates[v]:recv()
          finished[#finished + 1] = v
          return v * 10
        end, 3)
        for v = 3, 1, -1 do
          yield_until(others_blocked, "map settles")
          gates[v]:close()
          yield_until(function() return #finished == 4 - v end, "value " .. v .. " is done")
        end
        assert.are.same({ 3, 2, 1 }, finished)
        assert.are.same({ n = 3, 10, 20, 30 }, drain_n(out))
        yield_until(only_main, "map ends")
      end)
    end)

    it("unordered: gives the results as they are done", function()
      conc.run(function()
        local gates = { conc.chan(), conc.chan(), conc.chan() }
        local out = conc.map(bg, closed_with(1, 2, 3), function(v)
          gates[v]:recv()
          return v * 10
        end, { workers = 3, unordered = true })
        for v = 3, 1, -1 do
          yield_until(others_blocked, "map settles")
          gates[v]:close()
        end
        assert.are.same({ n = 3, 30, 20, 10 }, drain_n(out))
        yield_until(only_main, "map ends")
      end)
    end)

    it("ordered: a slow value holds the rest back, with at most `workers` values in hand (bounded memory)", function()
      conc.run(function()
        local gate, calls = conc.chan(), 0
        local src = closed_with(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
        local out = conc.map(bg, src, function(v)
          calls = calls + 1
          if v == 1 then gate:recv() end
          return v
        end, 2)
        yield_until(others_blocked, "map settles")
        assert.are.equal(8, src:len(), "only 1 and 2 are read")
        assert.are.equal(2, calls)
        gate:close()
        assert.are.same({ n = 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, drain_n(out))
        yield_until(only_main, "map ends")
      end)
    end)

    for _, m in ipairs(modes) do
      local where = {
        { "on its input", function() return conc.chan() end },
        { "for a reader", function() return closed_with(1, 2, 3, 4, 5, 6, 7) end },
      }
      for _, w in ipairs(where) do
        it(m[1] .. ": ctx ending while it waits " .. w[1] .. " closes the output and leaves no task", function()
          conc.run(function()
            local ctx, cancel = conc.with_cancel(bg)
            local out = conc.map(ctx, w[2](), function(v) return v end, m[2])
            yield_until(others_blocked, "map blocks")
            cancel()
            assert.are.same({ n = 2, nil, false }, pack(out:recv()))
            yield_until(only_main, "map ends")
          end)
          support.nothing_left()
        end)
      end

      it(m[1] .. ": ctx ending while fn blocks: the call finishes, its result is dropped, the output closes and no task is left", function()
        conc.run(function()
          local ctx, cancel = conc.with_cancel(bg)
          local gate = conc.chan()
          local out = conc.map(ctx, closed_with(1, 2, 3), function(v) gate:recv() return v end, m[2])
          yield_until(others_blocked, "fn blocks")
          cancel()
          gate:close()
          assert.are.same({ n = 2, nil, false }, pack(out:recv()))
          yield_until(only_main, "map ends")
        end)
        support.nothing_left()
      end)

      it(m[1] .. ": fn raising stops the stage: the output closes, no task is left and the error is reported once", function()
        local got
        local seen = capture_reports(function()
          conc.run(function()
            local out = conc.map(bg, closed_with(1, 2, 3, 4), function(v)
              if v == 2 then error("boom", 0) end
              return v * 10
            end, m[2])
            got = drain(out)
            yield_until(only_main, "map ends")
          end)
        end)
        assert.are.equal(1, #seen)
        assert.are.equal("boom", seen[1].message)
        assert.is_true(errors.is_bug(seen[1]))
        assert.is_true(#got <= 3)
        for _, v in ipairs(got) do assert.is_true(v == 10 or v == 30 or v == 40, tostring(v)) end
        if m[3] then
          assert.is_true(#got == 0 or (#got == 1 and got[1] == 10), "in order, nothing after the failure")
        end
      end)
    end

    it("fn returning nil plus an error fails the stage like a raise (DESIGN Failure of a user function)", function()
      local seen = capture_reports(function()
        conc.run(function()
          local out = conc.map(bg, closed_with("a.txt", "b.txt"), function(name)
            if name == "b.txt" then return nil, errors.new("cannot read " .. name) end
            return #name
          end)
          assert.are.same({ 5 }, drain(out))
          yield_until(only_main, "map ends")
        end)
      end)
      assert.are.equal(1, #seen)
      assert.are.equal("cannot read b.txt", seen[1].message)
    end)

    it("D1: a ctx already done gives a closed channel, starts no task and reads nothing (DESIGN Pipelines)", function()
      for _, m in ipairs(modes) do
        local src = closed_with("kept")
        local before = conc.stats().tasks
        local out = conc.map(done_ctx(), src, function(v) return v end, m[2])
        assert.are.equal(before, conc.stats().tasks)
        assert.is_true(is_closed(out))
        assert.are.equal(1, src:len())
      end
    end)
  end)

  describe("a pipeline of every stage", function()
    it("cancelled while values flow, leaves no task: conc.stats().tasks returns to the main task, then to 0", function()
      conc.run(function()
        local ctx, cancel = conc.with_cancel(bg)
        local n = 0
        local ints = conc.repeat_fn(ctx, function() n = n + 1 return n end)
        local squares = conc.map(ctx, ints, function(v) conc.yield() return v * v end, 4)
        local odds = conc.map(ctx, conc.or_done(ctx, squares), function(v) return v % 2 == 1 end, { workers = 2, unordered = true })
        local a, b = conc.tee(ctx, odds)
        local merged = conc.merge(ctx, a, b, conc.generate(ctx, "x", "y"))
        local streams = conc.generate(ctx, merged)
        local stop = conc.any(ctx:done(), conc.chan())
        local got = drain(conc.take(ctx, conc.bridge(ctx, streams), 20))
        assert.are.equal(20, #got)
        assert.is_true(conc.stats().tasks > 10)
        cancel()
        assert.are.same({ n = 2, nil, false }, pack(stop:recv()))
        yield_until(only_main, "every stage ends")
        assert.are.equal(1, conc.stats().tasks)
        assert.are.equal(0, conc.stats().ready)
      end)
      support.nothing_left()
    end)
  end)

  describe("a restarted ward's stream", function()
    it("W8: a ward emitting 1, 2, -1, 3 dies at -1 and is restarted from the start; bridge and take(6) give 1 2 1 2 1 2", function()
      conc.run(function()
        conc.virtual_time(true)
        local ctx, cancel = conc.with_cancel(bg)
        local streams = conc.chan()
        local runs = 0
        local function ward(wctx, pulse)
          runs = runs + 1
          local out = conc.chan()
          if not streams:send(out, wctx) then return end
          for _, v in ipairs { 1, 2, -1, 3 } do
            if v < 0 then
              out:close() -- the book's deferred close, so the bridge moves on
              error(errors.new("negative value " .. v), 0)
            end
            pulse()
            if not out:send(v, wctx) then break end
          end
          out:close()
          wctx:done():recv()
        end
        local failures = 0
        local steward = conc.steward { name = "ints", ward = ward, timeout = 1, intensity = 10,
          on_event = function(ev) if ev.type == "failed" then failures = failures + 1 end end }
        local supervised = conc.go(steward, ctx)
        local values = conc.take(ctx, conc.bridge(ctx, streams), 6)
        assert.are.same({ 1, 2, 1, 2, 1, 2 }, drain(values))
        -- the third run may die at -1 before or after the reader is done
        assert.is_true(failures >= 2 and runs >= 3, ("failures %d, runs %d"):format(failures, runs))
        cancel()
        assert.are.same({ true, true }, { supervised:wait() })
      end)
    end)
  end)

  describe("bad arguments", function()
    local ch = conc.chan()
    local cases = {
      { "take(nil, ch, 1)", function() conc.take(nil, ch, 1) end,
        "conc: take: bad argument #1 (ctx expected, got nil)" },
      { "take(ch, ch, 1)", function() conc.take(ch, ch, 1) end,
        "conc: take: bad argument #1 (ctx expected, got conc.chan)" },
      { "take(ctx, 'x', 1)", function() conc.take(bg, "x", 1) end,
        "conc: take: bad argument #2 (channel expected, got string)" },
      { "take(ctx, ch)", function() conc.take(bg, ch) end,
        "conc: take: bad argument #3 (n must be a number, got nil)" },
      { "take(ctx, ch, -1)", function() conc.take(bg, ch, -1) end,
        "conc: take: bad argument #3 (n must be a whole number >= 0, got -1)" },
      { "take(ctx, ch, 1.5)", function() conc.take(bg, ch, 1.5) end,
        "conc: take: bad argument #3 (n must be a whole number >= 0, got 1.5)" },
      { "take(ctx, ch, '3')", function() conc.take(bg, ch, "3") end,
        "conc: take: bad argument #3 (n must be a number, got string)" },
      { "bridge(nil, ch)", function() conc.bridge(nil, ch) end,
        "conc: bridge: bad argument #1 (ctx expected, got nil)" },
      { "bridge(ctx, {})", function() conc.bridge(bg, {}) end,
        "conc: bridge: bad argument #2 (channel expected, got table)" },
      { "bridge(ctx)", function() conc.bridge(bg) end,
        "conc: bridge: bad argument #2 (channel expected, got nil)" },
      { "take(ctx, ch, 1, 2)", function() conc.take(bg, ch, 1, 2) end,
        "conc: take: too many arguments (at most 3 expected, got 4)" },
      { "bridge(ctx, ch, ch)", function() conc.bridge(bg, ch, ch) end,
        "conc: bridge: too many arguments (at most 2 expected, got 3)" },
      { "any(nil)", function() conc.any(nil) end,
        "conc: any: bad argument #1 (channel expected, got nil)" },
      { "any(ctx)", function() conc.any(bg) end,
        "conc: any: bad argument #1 (channel expected, got conc.ctx)" },
      { "any(ch, ch, 'x')", function() conc.any(ch, ch, "x") end,
        "conc: any: bad argument #3 (channel expected, got string)" },
      { "any(ch, nil)", function() conc.any(ch, nil) end,
        "conc: any: bad argument #2 (channel expected, got nil)" },
      { "or_done(nil, ch)", function() conc.or_done(nil, ch) end,
        "conc: or_done: bad argument #1 (ctx expected, got nil)" },
      { "or_done(ctx, 1)", function() conc.or_done(bg, 1) end,
        "conc: or_done: bad argument #2 (channel expected, got number)" },
      { "or_done(ctx)", function() conc.or_done(bg) end,
        "conc: or_done: bad argument #2 (channel expected, got nil)" },
      { "or_done(ctx, ch, ch)", function() conc.or_done(bg, ch, ch) end,
        "conc: or_done: too many arguments (at most 2 expected, got 3)" },
      { "tee(ch, ch)", function() conc.tee(ch, ch) end,
        "conc: tee: bad argument #1 (ctx expected, got conc.chan)" },
      { "tee(ctx, {})", function() conc.tee(bg, {}) end,
        "conc: tee: bad argument #2 (channel expected, got table)" },
      { "tee(ctx, ch, 2)", function() conc.tee(bg, ch, 2) end,
        "conc: tee: too many arguments (at most 2 expected, got 3)" },
      { "merge(nil, ch)", function() conc.merge(nil, ch) end,
        "conc: merge: bad argument #1 (ctx expected, got nil)" },
      { "merge(ch, ch)", function() conc.merge(ch, ch) end,
        "conc: merge: bad argument #1 (ctx expected, got conc.chan)" },
      { "merge(ctx, ch, 'x')", function() conc.merge(bg, ch, "x") end,
        "conc: merge: bad argument #3 (channel expected, got string)" },
      { "merge(ctx, ch, nil)", function() conc.merge(bg, ch, nil) end,
        "conc: merge: bad argument #3 (channel expected, got nil)" },
      { "generate()", function() conc.generate() end,
        "conc: generate: bad argument #1 (ctx expected, got nil)" },
      { "generate(1, 2)", function() conc.generate(1, 2) end,
        "conc: generate: bad argument #1 (ctx expected, got number)" },
      { "repeat_fn(nil, fn)", function() conc.repeat_fn(nil, print) end,
        "conc: repeat_fn: bad argument #1 (ctx expected, got nil)" },
      { "repeat_fn(ctx)", function() conc.repeat_fn(bg) end,
        "conc: repeat_fn: bad argument #2 (function expected, got nil)" },
      { "repeat_fn(ctx, ch)", function() conc.repeat_fn(bg, ch) end,
        "conc: repeat_fn: bad argument #2 (function expected, got conc.chan)" },
      { "repeat_fn(ctx, fn, 1)", function() conc.repeat_fn(bg, print, 1) end,
        "conc: repeat_fn: too many arguments (at most 2 expected, got 3)" },
      { "map(nil, ch, fn)", function() conc.map(nil, ch, print) end,
        "conc: map: bad argument #1 (ctx expected, got nil)" },
      { "map(ctx, fn, fn)", function() conc.map(bg, print, print) end,
        "conc: map: bad argument #2 (channel expected, got function)" },
      { "map(ctx, ch)", function() conc.map(bg, ch) end,
        "conc: map: bad argument #3 (function expected, got nil)" },
      { "map(ctx, ch, 'f')", function() conc.map(bg, ch, "f") end,
        "conc: map: bad argument #3 (function expected, got string)" },
      { "map(ctx, ch, fn, 0)", function() conc.map(bg, ch, print, 0) end,
        "conc: map: bad argument #4 (workers must be a whole number >= 1, got 0)" },
      { "map(ctx, ch, fn, 2.5)", function() conc.map(bg, ch, print, 2.5) end,
        "conc: map: bad argument #4 (workers must be a whole number >= 1, got 2.5)" },
      { "map(ctx, ch, fn, math.huge)", function() conc.map(bg, ch, print, math.huge) end,
        "conc: map: bad argument #4 (workers must be a whole number >= 1, got " .. tostring(math.huge) .. ")" },
      { "map(ctx, ch, fn, '4')", function() conc.map(bg, ch, print, "4") end,
        "conc: map: bad argument #4 (number of workers or options table expected, got string)" },
      { "map(ctx, ch, fn, true)", function() conc.map(bg, ch, print, true) end,
        "conc: map: bad argument #4 (number of workers or options table expected, got boolean)" },
      { "map(ctx, ch, fn, {workers = 0})", function() conc.map(bg, ch, print, { workers = 0 }) end,
        "conc: map: bad option workers (a whole number >= 1 expected, got 0)" },
      { "map(ctx, ch, fn, {workers = '2'})", function() conc.map(bg, ch, print, { workers = "2" }) end,
        "conc: map: bad option workers (a whole number >= 1 expected, got string)" },
      { "map(ctx, ch, fn, {unordered = 'yes'})", function() conc.map(bg, ch, print, { unordered = "yes" }) end,
        "conc: map: bad option unordered (boolean expected, got string)" },
      { "map(ctx, ch, fn, {worker = 2})", function() conc.map(bg, ch, print, { worker = 2 }) end,
        "conc: map: unknown option 'worker'" },
      { "map(ctx, ch, fn, 2, {})", function() conc.map(bg, ch, print, 2, {}) end,
        "conc: map: too many arguments (at most 4 expected, got 5)" },
    }
    for _, c in ipairs(cases) do
      it("misuse raises a conc: error and starts nothing: " .. c[1] .. " (DESIGN Messages)", function()
        local before = conc.stats().tasks
        assert.are.equal(c[3], support.error_of(c[2]))
        assert.are.equal(before, conc.stats().tasks)
      end)
    end
  end)
end)
