--- Pipeline stages: conc.take and conc.bridge (lua/conc/pipeline.lua), DESIGN.md's
-- "Pipelines" table and fine point, and rule W8 of SEMANTICS.md section 7 (a restarted
-- ward's output read as one stream through bridge and take). Each stage takes a ctx: when it
-- ends, the stage closes its output and leaves no task behind (support.nothing_left checks
-- that after each test). Events are ordered through channels; nothing sleeps.
local conc = require "conc"
local errors = require "conc.errors"
local support = require "support"

local pack, parked, capture_reports = support.pack, support.parked, support.capture_reports

local bg = conc.background()

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
