--- select: conc.select, conc.send (send cases) and conc.default, rules S1-S12 of SEMANTICS.md
-- section 2 and decision D8.
-- S12 with ctx:done() is in ctx_spec.lua; here S12 covers conc.after(d), a timer's t:chan()
-- and a ticker's t:chan().
-- The statistical specs (S2, S5, S6/D8, S9) run with a fixed seed given to conc.seed, which
-- drives select's choice among ready cases (and the asan build's run-queue shuffle); each
-- prints its seed, so a failure can be replayed.
local conc = require "conc"
local support = require "support"
local settle, parked, starts_with, pack = support.settle, support.parked, support.starts_with, support.pack

local unpack = table.unpack or unpack

local DEADLOCK = support.DEADLOCK
local CLOSED_SEND = support.CLOSED_SEND
local BAD_CASE = "chan, conc.send(ch, v), conc.default or nil expected, got "

--- Seeds select's random choice, printing the seed so that a failure can be replayed.
local function seed(name, n)
  print(("select_spec %s: conc.seed(%d)"):format(name, n))
  conc.seed(n)
end

--- A channel of capacity 1 holding v.
local function holding(v)
  local ch = conc.chan(1)
  ch:send(v)
  return ch
end

describe("select", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("one case is performed", function()
    it("S1: returns i, v, ok for a receive case, i being the case's position (nil and default count)", function()
      local a, b = holding("a"), conc.chan(1)
      assert.are.same({ n = 3, 2, "a", true }, pack(conc.select(b, a)))
      assert.are.equal(0, a:len())
      assert.are.equal(0, b:len())
      local c = holding("c")
      assert.are.same({ n = 3, 3, "c", true }, pack(conc.select(nil, conc.default, c)))
      local d = holding(false)
      assert.are.same({ n = 3, 1, false, true }, pack(conc.select(d, nil)))
    end)

    it("S1: a send case returns just its position, and its value reaches the channel", function()
      local never, s = conc.chan(), conc.chan(1)
      assert.are.same({ n = 1, 2 }, pack(conc.select(never, conc.send(s, "v"))))
      assert.are.same({ "v", true }, { s:recv() })
      assert.are.same({ n = 1, 1 }, pack(conc.select(conc.send(s, nil), conc.default)))
      assert.are.same({ n = 2, nil, true }, pack(s:recv()))
    end)

    it("S1: with several cases ready, exactly one is performed; the others consume and send nothing", function()
      seed("S1", 11)
      local chosen = { 0, 0, 0 }
      for _ = 1, 300 do
        local a, b, s = holding("a"), holding("b"), conc.chan(1)
        local r = pack(conc.select(a, b, conc.send(s, "s")))
        chosen[r[1]] = chosen[r[1]] + 1
        if r[1] == 1 then
          assert.are.same({ n = 3, 1, "a", true }, r)
          assert.are.same({ 0, 1, 0 }, { a:len(), b:len(), s:len() })
        elseif r[1] == 2 then
          assert.are.same({ n = 3, 2, "b", true }, r)
          assert.are.same({ 1, 0, 0 }, { a:len(), b:len(), s:len() })
        else
          assert.are.same({ n = 1, 3 }, r)
          assert.are.same({ 1, 1, 1 }, { a:len(), b:len(), s:len() })
          assert.are.equal("s", s:recv())
        end
      end
      for i = 1, 3 do assert.is_true(chosen[i] > 0, "case " .. i .. " never chosen") end
    end)

    it("S1: a blocked select at the top level drives the scheduler until one case fires", function()
      local a, b = conc.chan(), conc.chan()
      local t = conc.go(function() return b:send("from task") end)
      assert.are.same({ n = 3, 2, "from task", true }, pack(conc.select(a, b)))
      assert.are.same({ true, true }, { t:wait() })
      assert.is_false(a:try_send(1), "the select left no receiver on a")
    end)

    it("S1: a blocked select's send case is completed by a later receiver; it returns its position only", function()
      conc.run(function()
        local a, b = conc.chan(), conc.chan()
        local t = parked(function() return conc.select(a, conc.send(b, "sent")) end)
        assert.are.equal("blocked", t:status())
        assert.are.same({ "sent", true }, { b:recv() })
        assert.are.same({ n = 2, true, 2 }, pack(t:wait()))
        assert.is_false(a:try_send(1), "the select left no receiver on a")
      end)
    end)

    it("S1: the chosen case can be the last of 1000", function()
      local cases = {}
      for i = 1, 999 do cases[i] = conc.chan() end
      cases[1000] = holding("last")
      assert.are.same({ n = 3, 1000, "last", true }, pack(conc.select(unpack(cases))))
    end)
  end)

  describe("fairness", function()
    -- A layout is a string: "r" is a case that is always ready (a pre-filled channel of
    -- capacity 1, refilled after each select), "n" one that is never ready (receive from an
    -- unbuffered channel nobody sends on, or send on a full channel).
    local N = 10000
    local function band(x) return x >= 4500 and x <= 5500 end

    local function run_layout(layout, send_ready)
      local cases, refill = {}, {}
      local never = 0
      for i = 1, #layout do
        if layout:sub(i, i) == "r" then
          local ch = conc.chan(1)
          if send_ready then
            cases[i] = conc.send(ch, i)
            refill[i] = function()
              local v = ch:recv()
              if v ~= i then error(("send case %d sent %s"):format(i, tostring(v))) end
            end
          else
            ch:send(i)
            cases[i] = ch
            refill[i] = function() ch:send(i) end
          end
        else
          never = never + 1
          cases[i] = never % 2 == 1 and conc.chan() or conc.send(holding("full"), "x")
        end
      end
      local wins = {}
      for i = 1, #layout do wins[i] = 0 end
      for _ = 1, N do
        local i, v = conc.select(unpack(cases, 1, #layout))
        wins[i] = wins[i] + 1
        if refill[i] then
          if not send_ready and v ~= i then error(("case %d received %s"):format(i, tostring(v))) end
          refill[i]()
        end
      end
      return wins
    end

    --- The share of case `pos` under the classic wrong implementation: a random start index,
    -- then a cyclic scan for the first ready case (crossbeam-rs/crossbeam-channel#1).
    local function cyclic_scan_share(layout, pos)
      local n, hits = #layout, 0
      for start = 1, n do
        for k = 0, n - 1 do
          local i = (start - 1 + k) % n + 1
          if layout:sub(i, i) == "r" then
            if i == pos then hits = hits + 1 end
            break
          end
        end
      end
      return hits / n
    end

    it("S2: 2 ready cases of 4, 10 000 selects: each ready case wins 5000 +- 500, never-ready ones never", function()
      -- "nnrr" and "rnnr" are the layouts a cyclic scan from a random start gets wrong (the
      -- ready case after the never-ready ones wins 3/4 of the time); a scan in source order
      -- fails every layout. Only a real uniform choice among the ready cases passes all four.
      assert.is_false(band(N * cyclic_scan_share("nnrr", 3)), "the layouts below catch a cyclic scan")
      assert.is_false(band(N * cyclic_scan_share("rnnr", 1)), "the layouts below catch a cyclic scan")
      for k, layout in ipairs { "rrnn", "nnrr", "nrnr", "rnnr" } do
        seed("S2 " .. layout, 20240600 + k)
        local wins = run_layout(layout, false)
        for i = 1, #layout do
          if layout:sub(i, i) == "r" then
            assert.is_true(band(wins[i]), ("layout %s: case %d won %d of %d"):format(layout, i, wins[i], N))
          else
            assert.are.equal(0, wins[i], ("layout %s: never-ready case %d won"):format(layout, i))
          end
        end
      end
    end)

    it("S2: ready send cases are chosen uniformly too (10 000 selects, 5000 +- 500 each)", function()
      for k, layout in ipairs { "nnrr", "rnnr" } do
        seed("S2 send " .. layout, 20240700 + k)
        local wins = run_layout(layout, true)
        for i = 1, #layout do
          if layout:sub(i, i) == "r" then
            assert.is_true(band(wins[i]), ("layout %s: send case %d won %d of %d"):format(layout, i, wins[i], N))
          else
            assert.are.equal(0, wins[i])
          end
        end
      end
    end)
  end)

  describe("conc.default", function()
    it("S3: default is chosen only when no other case is ready; select then returns just its position", function()
      local empty, full = conc.chan(), holding("full")
      assert.are.same({ n = 1, 2 }, pack(conc.select(empty, conc.default)))
      assert.are.same({ n = 1, 1 }, pack(conc.select(conc.default, empty, conc.send(full, "x"))))
      assert.are.same({ n = 1, 1 }, pack(conc.select(conc.default)))
      assert.are.same({ n = 1, 3 }, pack(conc.select(nil, nil, conc.default)))
      assert.are.equal(1, full:len(), "the send case on the full channel did nothing")
      assert.are.equal("full", full:recv())
    end)

    it("S3: a ready case always beats default, wherever default is placed", function()
      seed("S3", 3)
      for k = 1, 100 do
        local a = holding(k)
        assert.are.same({ n = 3, 2, k, true }, pack(conc.select(conc.default, a)))
        a:send(k)
        assert.are.same({ n = 3, 1, k, true }, pack(conc.select(a, conc.default)))
        local s = conc.chan(1)
        assert.are.same({ n = 1, 2 }, pack(conc.select(conc.default, conc.send(s, k), conc.chan())))
        assert.are.equal(k, s:recv())
      end
    end)

    it("S3: a select with default never blocks, inside a task too", function()
      conc.run(function()
        local ch = conc.chan()
        local sender = conc.go(function() return ch:send("later") end)
        -- the sender has not run yet (conc.go only schedules), so nothing is ready
        assert.are.same({ n = 1, 2 }, pack(conc.select(ch, conc.default)))
        settle(sender)
        assert.are.same({ n = 3, 1, "later", true }, pack(conc.select(ch, conc.default)))
        assert.are.same({ true, true }, { sender:wait() })
      end)
    end)

    it("S3: more than one conc.default raises and performs nothing", function()
      local a = holding("kept")
      assert.are.equal("conc: select: more than one conc.default (arguments #1 and #3)",
        support.error_of(conc.select, conc.default, a, conc.default))
      assert.are.equal("conc: select: more than one conc.default (arguments #2 and #4)",
        support.error_of(conc.select, a, conc.default, nil, conc.default))
      assert.are.equal(1, a:len())
    end)

    it("S3: tostring(conc.default) is conc.default", function()
      assert.are.equal("conc.default", tostring(conc.default))
    end)
  end)

  describe("nil cases", function()
    it("S4: a nil case is never ready and is skipped: select(nil, ch) behaves as select(ch)", function()
      local a = holding("v")
      assert.are.same({ n = 3, 2, "v", true }, pack(conc.select(nil, a)))
      conc.run(function()
        local u = conc.chan()
        local t = parked(function() return conc.select(nil, u, nil) end)
        assert.are.equal("blocked", t:status())
        assert.is_true(u:send("x"))
        assert.are.same({ n = 4, true, 2, "x", true }, pack(t:wait()))
      end)
    end)

    it("S4: only nil cases and no default blocks forever: the deadlock error when nothing else can run", function()
      assert.is_true(starts_with(support.error_of(conc.select, nil), DEADLOCK))
      assert.is_true(starts_with(support.error_of(conc.select, nil, nil, nil), DEADLOCK))
      local err = support.error_of(conc.run, function() conc.select(nil) end)
      assert.is_true(starts_with(err, DEADLOCK), err)
      assert.is_truthy(err:find("blocked: select", 1, true), "the dump says the task waits in select")
    end)

    it("S4/C27: conc.select() with no cases blocks forever, like Go's select {}: deadlock when alone", function()
      assert.is_true(starts_with(support.error_of(conc.select), DEADLOCK))
      assert.is_true(starts_with(support.error_of(conc.run, function() conc.select() end), DEADLOCK))
    end)

    it("S4: a task in conc.select() stays blocked while the others run, and is abandoned when main returns", function()
      local reached = false
      conc.run(function()
        local t = parked(function() conc.select(); reached = true end)
        local ch = conc.chan()
        local other = conc.go(function() return ch:send("still running") end)
        assert.are.same({ "still running", true }, { ch:recv() })
        assert.are.same({ true, true }, { other:wait() })
        assert.are.equal("blocked", t:status())
      end)
      assert.is_false(reached)
    end)
  end)

  describe("closed channels", function()
    it("S5: a receive case on a closed channel is ready: buffered values first (v, true), then nil, false each time", function()
      local ch = conc.chan(2)
      ch:send(1); ch:send(2); ch:close()
      local never = conc.chan()
      assert.are.same({ n = 3, 2, 1, true }, pack(conc.select(never, ch)))
      assert.are.same({ n = 3, 2, 2, true }, pack(conc.select(never, ch, conc.default)))
      for _ = 1, 3 do
        assert.are.same({ n = 3, 2, nil, false }, pack(conc.select(never, ch)))
      end
      local u = conc.chan()
      u:close()
      assert.are.same({ n = 3, 1, nil, false }, pack(conc.select(u, conc.default)))
    end)

    it("S5: a closed receive case competes at random with another ready case", function()
      seed("S5", 5)
      local closed, a = conc.chan(), holding("a")
      closed:close()
      local wins = { 0, 0 }
      for _ = 1, 200 do
        local r = pack(conc.select(closed, a))
        wins[r[1]] = wins[r[1]] + 1
        if r[1] == 1 then
          assert.are.same({ n = 3, 1, nil, false }, r)
        else
          assert.are.same({ n = 3, 2, "a", true }, r)
          a:send("a")
        end
      end
      assert.is_true(wins[1] >= 50 and wins[2] >= 50, ("wins %d/%d"):format(wins[1], wins[2]))
    end)

    it("S6/D8: a send case on a closed channel is ready, and raises conc: send on closed channel when chosen", function()
      local closed, buffered = conc.chan(), conc.chan(3)
      closed:close()
      buffered:close()
      assert.are.equal(CLOSED_SEND, support.error_of(conc.select, conc.send(closed, 1)))
      assert.are.equal(CLOSED_SEND, support.error_of(conc.select, conc.send(buffered, 1)))
      assert.are.equal(CLOSED_SEND, support.error_of(conc.select, conc.send(closed, 1), conc.default))
      assert.are.equal(CLOSED_SEND, support.error_of(conc.select, conc.default, conc.chan(), conc.send(closed, 1)))
      -- in a task, it is that task's error
      local ok, err = pcall(conc.run, function() return conc.select(conc.chan(), conc.send(closed, nil)) end)
      assert.is_false(ok)
      assert.are.equal(CLOSED_SEND, err.cause)
      assert.are.same({ n = 2, nil, false }, pack(buffered:recv()), "nothing was buffered")
    end)

    it("S6/D8: with another ready case, a closed send case is chosen (and raises) in about half the runs", function()
      seed("S6/D8", 8)
      local closed = conc.chan()
      closed:close()
      local raised, received = 0, 0
      for k = 1, 200 do
        local a = holding("a")
        local cases = k % 2 == 0 and { conc.send(closed, k), a } or { a, conc.send(closed, k) }
        local r = pack(pcall(conc.select, cases[1], cases[2]))
        if r[1] then
          received = received + 1
          assert.are.same({ n = 4, true, k % 2 == 0 and 2 or 1, "a", true }, r)
        else
          raised = raised + 1
          assert.are.equal(CLOSED_SEND, r[2])
          assert.are.equal(1, a:len(), "a select that raised consumed nothing")
        end
      end
      assert.is_true(raised >= 50 and received >= 50, ("raised %d, received %d of 200"):format(raised, received))
    end)

    it("S7: a blocked select is woken by close() of a channel it receives from: that case, nil, false", function()
      conc.run(function()
        local a, b, c = conc.chan(), conc.chan(), conc.chan(4)
        local t = parked(function() return conc.select(a, b, c) end)
        b:close()
        assert.are.same({ n = 4, true, 2, nil, false }, pack(t:wait()))
        assert.is_false(a:try_send(1), "no receiver left on a")
        assert.is_true(c:try_send(1))
        assert.are.equal(1, c:len(), "the value went into the buffer, to no stale receiver")
        local u = parked(function() return conc.select(a, c, b) end)
        assert.are.equal("done", u:status(), "c has a value and b is closed: both ready")
        local r = pack(u:wait())
        assert.is_true(r[2] == 2 and r[3] == 1 and r[4] == true or r[2] == 3 and r[3] == nil and r[4] == false)
      end)
    end)

    it("S7: a select blocked on a send case raises conc: send on closed channel when that channel is closed", function()
      conc.run(function()
        local a, other = conc.chan(), conc.chan()
        local t = parked(function() return conc.select(other, conc.send(a, "never delivered")) end)
        a:close()
        local ok, err = t:wait()
        assert.is_nil(ok)
        assert.are.equal(CLOSED_SEND, err.cause)
        assert.are.same({ n = 2, nil, false }, pack(a:recv()))
        assert.is_false(other:try_send(1), "no receiver left on the other channel")
        -- conc.pcall catches it in the task, on every interpreter
        local b = conc.chan()
        local u = parked(function() return conc.pcall(conc.select, other, conc.send(b, "x")) end)
        b:close()
        assert.are.same({ n = 3, true, false, CLOSED_SEND }, pack(u:wait()))
      end)
    end)
  end)

  describe("registrations", function()
    it("S8: once a select completed, its other registrations are dead: a later send goes to another receiver or none", function()
      conc.run(function()
        local a, b = conc.chan(), conc.chan()
        local t1 = parked(function() return conc.select(a, b) end)
        local t2 = parked(function() return conc.select(a, b) end)
        assert.is_true(a:try_send("first"), "a select waits on a")
        assert.is_true(b:try_send("second"), "the other select still waits on b")
        assert.is_false(a:try_send("x"), "no receiver left on a")
        assert.is_false(b:try_send("x"), "no receiver left on b")
        local r1, r2 = pack(t1:wait()), pack(t2:wait())
        if r1[2] == 2 then r1, r2 = r2, r1 end
        assert.are.same({ n = 4, true, 1, "first", true }, r1)
        assert.are.same({ n = 4, true, 2, "second", true }, r2)
      end)
    end)

    it("S8: 10^4 selects on a quiet channel leave its wait queue empty; no select completes twice", function()
      local N = 10000
      conc.run(function()
        local quiet, busy = conc.chan(), conc.chan()
        local got = {}
        local sel = conc.go(function()
          for k = 1, N do
            local i, v, ok = conc.select(quiet, busy)
            got[k] = { i, v, ok }
          end
          return "done"
        end)
        for k = 1, N do
          settle(sel)
          -- try_send on an unbuffered channel succeeds only with a receiver waiting: the
          -- select was parked, so registered on both channels
          assert(busy:try_send(k), "the select was not waiting on busy")
        end
        assert.are.same({ true, "done" }, { sel:wait() })
        assert.are.equal(N, #got)
        for k = 1, N do
          local g = got[k]
          if g[1] ~= 2 or g[2] ~= k or g[3] ~= true then
            error(("select %d returned %s, %s, %s"):format(k, tostring(g[1]), tostring(g[2]), tostring(g[3])))
          end
        end
        assert.is_false(quiet:try_send("late"), "a stale registration took a value on the quiet channel")
        local r = parked(function() return quiet:recv() end)
        assert.is_true(quiet:send("live"))
        assert.are.same({ true, "live", true }, { r:wait() })
        assert.is_false(quiet:try_send("after"))
      end)
    end)

    it("S8: a select on 1000 channels woken by one of them leaves no registration on the 999 others", function()
      conc.run(function()
        local chans = {}
        for i = 1, 1000 do chans[i] = conc.chan() end
        local t = parked(function() return conc.select(unpack(chans)) end)
        assert.is_true(chans[500]:try_send("hit"))
        assert.are.same({ n = 4, true, 500, "hit", true }, pack(t:wait()))
        for i = 1, 1000 do
          if chans[i]:try_send(i) then error("a stale registration on channel " .. i) end
        end
      end)
    end)

    it("S8: a select that lists one channel twice is completed once", function()
      conc.run(function()
        local ch = conc.chan()
        local t = parked(function() return conc.select(ch, ch) end)
        assert.is_true(ch:try_send("x"))
        assert.is_false(ch:try_send("y"))
        local r = pack(t:wait())
        assert.is_true(r[2] == 1 or r[2] == 2)
        assert.are.same({ "x", true }, { r[3], r[4] })
        local u = parked(function() return conc.select(conc.send(ch, 1), conc.send(ch, 2)) end)
        local v, ok = ch:recv()
        assert.is_true(ok)
        assert.are.same({ nil, false, "empty" }, { ch:try_recv() })
        assert.are.same({ true, v }, { u:wait() })
      end)
    end)
  end)

  describe("self and partners", function()
    it("S9: a select cannot rendezvous with itself: select(conc.send(ch, 1), ch) alone is a deadlock", function()
      local ch = conc.chan()
      assert.is_true(starts_with(support.error_of(conc.select, conc.send(ch, 1), ch), DEADLOCK))
      assert.are.same({ nil, false, "empty" }, { ch:try_recv() })
      assert.is_false(ch:try_send(2), "the failed select left no registration")
      local err = support.error_of(conc.run, function() return conc.select(ch, conc.send(ch, 1)) end)
      assert.is_true(starts_with(err, DEADLOCK), err)
    end)

    it("S9: two such selects in two tasks meet each other: one sends, the other receives", function()
      seed("S9", 9)
      local outcomes = {}
      for _ = 1, 40 do
        conc.run(function()
          local ch = conc.chan()
          local t1 = parked(function() return conc.select(conc.send(ch, "one"), ch) end)
          local t2 = conc.go(function() return conc.select(conc.send(ch, "two"), ch) end)
          local r1, r2 = pack(t1:wait()), pack(t2:wait())
          if r1[2] == 1 then -- t1 sent "one" to t2
            assert.are.same({ n = 2, true, 1 }, r1)
            assert.are.same({ n = 4, true, 2, "one", true }, r2)
            outcomes.t1_sent = true
          else
            assert.are.same({ n = 4, true, 2, "two", true }, r1)
            assert.are.same({ n = 2, true, 1 }, r2)
            outcomes.t2_sent = true
          end
          assert.is_false(ch:try_send("x"), "no registration left")
          assert.are.same({ nil, false, "empty" }, { ch:try_recv() })
        end)
      end
      assert.is_true(outcomes.t1_sent and outcomes.t2_sent, "both directions happen")
    end)

    it("S10: a receive case rendezvouses with a sender already blocked on an unbuffered channel", function()
      conc.run(function()
        local ch = conc.chan()
        local s = parked(function() return ch:send("v") end)
        assert.are.same({ n = 3, 2, "v", true }, pack(conc.select(conc.chan(), ch)))
        assert.are.same({ true, true }, { s:wait() })
        s = parked(function() return ch:send("w") end)
        assert.are.same({ n = 3, 1, "w", true }, pack(conc.select(ch, conc.default)))
        assert.are.same({ true, true }, { s:wait() })
      end)
    end)

    it("S10: a send case rendezvouses with a receiver already blocked on an unbuffered channel", function()
      conc.run(function()
        local ch = conc.chan()
        local r = parked(function() return ch:recv() end)
        assert.are.same({ n = 1, 1 }, pack(conc.select(conc.send(ch, "w"), conc.chan())))
        assert.are.same({ true, "w", true }, { r:wait() })
        r = parked(function() return ch:recv() end)
        assert.are.same({ n = 1, 2 }, pack(conc.select(conc.default, conc.send(ch, nil))))
        assert.are.same({ n = 3, true, nil, true }, pack(r:wait()))
      end)
    end)

    it("S10/C7: a receive case on a full channel with a blocked sender takes the head and moves the sender's value in", function()
      conc.run(function()
        local ch = holding("a")
        local s = parked(function() return ch:send("b") end)
        assert.are.same({ n = 3, 1, "a", true }, pack(conc.select(ch, conc.default)))
        assert.are.equal(1, ch:len())
        assert.are.same({ true, true }, { s:wait() })
        assert.are.same({ "b", true }, { ch:recv() })
      end)
    end)
  end)

  describe("evaluation", function()
    it("S11: channels and send values are evaluated once, in order, when select is called, never on wake-up", function()
      conc.run(function()
        local calls = {}
        local function ev(name, x)
          calls[#calls + 1] = name
          return x
        end
        local a, b, val = conc.chan(), conc.chan(), {}
        local t = parked(function()
          return conc.select(ev("a", a), ev("case", conc.send(ev("b", b), ev("v", val))))
        end)
        assert.are.same({ "a", "b", "v", "case" }, calls)
        local v, ok = b:recv()
        assert.is_true(rawequal(val, v), "the value travels by reference")
        assert.is_true(ok)
        assert.are.same({ n = 2, true, 2 }, pack(t:wait()))
        assert.are.same({ "a", "b", "v", "case" }, calls)
      end)
    end)

    it("S11: a send case holds the value given to conc.send; it can be used again", function()
      local ch = conc.chan(2)
      local x = "before"
      local case = conc.send(ch, x)
      x = "after"
      assert.are.equal(1, conc.select(case))
      assert.are.equal(1, conc.select(case, conc.default))
      assert.are.equal(2, conc.select(case, conc.default), "full: the case is not ready")
      assert.are.equal("before", (ch:recv()))
      assert.are.equal("before", (ch:recv()))
      assert.are.equal("after", x)
    end)
  end)

  describe("timer channels", function()
    it("S12: conc.after(d) is an ordinary channel in select: it wins when nothing else is ready by then", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local ch = conc.chan()
      assert.are.same({ n = 3, 2, t0 + 1, true }, pack(conc.select(ch, conc.after(1))))
      assert.are.equal(t0 + 1, conc.now())
    end)

    it("S12: a channel ready before conc.after(d) fires wins", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local ch = conc.chan()
        conc.go(function() conc.sleep(0.5); ch:send("early") end)
        assert.are.same({ n = 3, 1, "early", true }, pack(conc.select(ch, conc.after(1))))
        assert.are.equal(t0 + 0.5, conc.now())
      end)
    end)

    it("S12: a timer's t:chan() and a ticker's t:chan() are ordinary channels in select", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local tm, tk = conc.timer(2.5), conc.ticker(1)
      local ticks = {}
      while true do
        local i, v, ok = conc.select(tk:chan(), tm:chan())
        assert.is_true(ok)
        if i == 2 then
          assert.are.equal(t0 + 2.5, v)
          break
        end
        ticks[#ticks + 1] = v - t0
      end
      assert.are.equal(2, #ticks)
      assert.is_true(math.abs(ticks[1] - 1) < 1e-9 and math.abs(ticks[2] - 2) < 1e-9)
      assert.is_true(tk:stop())
      assert.is_false(tm:stop())
    end)

    it("S12/T6: a conc.after that only a blocked select refers to is not collected before it fires", function()
      conc.virtual_time(true)
      conc.run(function()
        local t0 = conc.now()
        local t = parked(function() return conc.select(conc.chan(), conc.after(1)) end)
        collectgarbage()
        collectgarbage()
        assert.are.equal(1, conc.stats().timers)
        assert.are.same({ n = 4, true, 2, t0 + 1, true }, pack(t:wait()))
      end)
    end)
  end)

  describe("bad arguments", function()
    local ch = conc.chan()
    local closed = conc.chan()
    closed:close()
    local forged = setmetatable({ 5, 1 }, getmetatable(conc.send(ch, 1)))
    local cases = {
      { "DESIGN select: select(5)", function() return conc.select(5) end,
        "conc: select: bad argument #1 (" .. BAD_CASE .. "number)" },
      { "DESIGN select: select(ch, 'x')", function() return conc.select(ch, "x") end,
        "conc: select: bad argument #2 (" .. BAD_CASE .. "string)" },
      { "DESIGN select: select(ch, {})", function() return conc.select(ch, {}) end,
        "conc: select: bad argument #2 (" .. BAD_CASE .. "table)" },
      { "DESIGN select: select(ch, nil, true)", function() return conc.select(ch, nil, true) end,
        "conc: select: bad argument #3 (" .. BAD_CASE .. "boolean)" },
      { "DESIGN select: select(nan)", function() return conc.select(0 / 0) end,
        "conc: select: bad argument #1 (" .. BAD_CASE .. "nan)" },
      { "DESIGN select: select(print)", function() return conc.select(print) end,
        "conc: select: bad argument #1 (" .. BAD_CASE .. "function)" },
      { "DESIGN select: select(a timer)", function() return conc.select(conc.timer(1)) end,
        "conc: select: bad argument #1 (" .. BAD_CASE .. "conc.timer)" },
      { "DESIGN select: select(a task)", function()
        local t = conc.go(function() end)
        t:wait()
        return conc.select(t)
      end,
        "conc: select: bad argument #1 (" .. BAD_CASE .. "conc.task)" },
      { "DESIGN select: select(a coroutine)", function() return conc.select(coroutine.create(function() end)) end,
        "conc: select: bad argument #1 (" .. BAD_CASE .. "thread)" },
      { "DESIGN select: select(ch, a forged send case)", function() return conc.select(ch, forged) end,
        "conc: select: bad argument #2 (" .. BAD_CASE .. "conc.sendcase)" },
      { "S3: select(default, ch, default)", function() return conc.select(conc.default, ch, conc.default) end,
        "conc: select: more than one conc.default (arguments #1 and #3)" },
      { "S6/D8: select(conc.send(closed, 1))", function() return conc.select(conc.send(closed, 1)) end,
        CLOSED_SEND },
      { "DESIGN select: send()", function() return conc.send() end,
        "conc: send: bad argument #1 (chan expected, got no value)" },
      { "DESIGN select: send(5, 1)", function() return conc.send(5, 1) end,
        "conc: send: bad argument #1 (chan expected, got number)" },
      { "DESIGN select: send(conc.default, 1)", function() return conc.send(conc.default, 1) end,
        "conc: send: bad argument #1 (chan expected, got conc.default)" },
      { "DESIGN select: send(a send case, 1)", function() return conc.send(conc.send(ch, 1), 1) end,
        "conc: send: bad argument #1 (chan expected, got conc.sendcase)" },
      { "DESIGN select: send(ch)", function() return conc.send(ch) end,
        "conc: send: bad argument #2 (value expected)" },
      { "DESIGN select: send(ch, 1, 2)", function() return conc.send(ch, 1, 2) end,
        "conc: send: too many arguments (at most 2 expected, got 3)" },
      { "DESIGN select: send(a timer's channel, 1)", function() return conc.send(conc.timer(1):chan(), 1) end,
        "conc: send: send on a receive-only channel" },
      { "DESIGN select: send(conc.after(1), 1)", function() return conc.send(conc.after(1), 1) end,
        "conc: send: send on a receive-only channel" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " raises the exact conc: message", function()
        assert.are.equal(c[3], support.error_of(c[2]))
      end)
    end

    it("S1: a select that raises on a bad argument performs no case", function()
      local a, s = holding("kept"), conc.chan(1)
      assert.is_string(support.error_of(conc.select, a, conc.send(s, "x"), 5))
      assert.is_string(support.error_of(conc.select, conc.send(s, "x"), a, conc.default, conc.default))
      assert.is_string(support.error_of(conc.select, a, forged))
      assert.are.same({ 1, 0 }, { a:len(), s:len() })
      assert.is_nil(support.error_of(conc.send, closed, 1), "making a send case on a closed channel is fine")
    end)
  end)
end)
