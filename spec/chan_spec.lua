--- Channels: conc.chan and the channel methods (send, recv, try_send, try_recv, close, len,
-- cap, #ch, iter, tostring), rules C1-C27 of SEMANTICS.md section 1 and D2.
-- The ctx parts of C21-C24 (and D1, D9) are in ctx_spec.lua.
local conc = require "conc"
local support = require "support"
local settle, parked, starts_with, pack = support.settle, support.parked, support.starts_with, support.pack

local unpack = table.unpack or unpack

local DEADLOCK = support.DEADLOCK
local CLOSED_SEND = support.CLOSED_SEND
local ITER_NIL = "conc: ch:iter: received nil, which would end the for loop "
  .. "(receive with ch:recv() to get nil values)"
local ITER_51 = "conc: ch:iter: cannot block inside a for-in loop on Lua 5.1 "
  .. "(use: while true do local v, ok = ch:recv() if not ok then break end ... end)"

--- Yields until n tasks are blocked (for many tasks, where settle would be quadratic).
local function settle_n(n)
  for _ = 1, 10000 do
    if conc.stats().blocked >= n then return end
    conc.yield()
  end
  error("settle_n: the tasks never blocked")
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("channels", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("making a channel", function()
    it("C1: chan() and chan(0) are unbuffered (cap 0); chan(n) has cap n, which never changes", function()
      assert.are.equal(0, conc.chan():cap())
      assert.are.equal(0, conc.chan(0):cap())
      assert.are.equal(0, conc.chan(nil):cap())
      assert.are.equal(1, conc.chan(1):cap())
      assert.are.equal(1000, conc.chan(1000):cap())
      assert.are.equal(5, conc.chan(5.0):cap(), "an integral float is an integer")
      local ch = conc.chan(3)
      ch:send(1); ch:send(2)
      assert.are.equal(3, ch:cap())
      ch:send(3)
      assert.are.equal(3, ch:cap())
      ch:recv()
      ch:close()
      assert.are.equal(3, ch:cap())
      ch:recv(); ch:recv(); ch:recv()
      assert.are.equal(3, ch:cap())
    end)

    it("tostring(ch) is 'chan#N (cap K)' with a distinct, increasing N (DESIGN Channels)", function()
      local a, b = conc.chan(), conc.chan(7)
      local ida = tostring(a):match("^chan#(%d+) %(cap 0%)$")
      local idb = tostring(b):match("^chan#(%d+) %(cap 7%)$")
      assert.is_not_nil(ida, tostring(a))
      assert.is_not_nil(idb, tostring(b))
      assert.is_true(tonumber(idb) > tonumber(ida))
      assert.are.equal(tostring(a), tostring(a), "the same text every time")
      a:close()
      assert.are.equal("chan#" .. ida .. " (cap 0)", tostring(a), "closing does not change it")
    end)

    it("the channel API: send returns true, recv returns v, true; #ch is len (DESIGN Channels)", function()
      local ch = conc.chan(2)
      assert.are.same({ n = 1, true }, pack(ch:send("a")))
      assert.are.same({ n = 1, true }, pack(ch:try_send("b")))
      assert.are.same({ n = 1, false }, pack(ch:try_send("c")))
      assert.are.equal(2, #ch)
      assert.are.equal(2, ch:len())
      assert.are.same({ n = 2, "a", true }, pack(ch:recv()))
      assert.are.equal(1, #ch)
      assert.are.same({ n = 2, "b", true }, pack(ch:try_recv()))
      assert.are.equal(0, #ch)
      assert.are.same({ n = 0 }, pack(ch:close()))
    end)
  end)

  describe("unbuffered channels", function()
    it("C2: send does not return until a receiver took the value; len stays 0", function()
      conc.run(function()
        local ch = conc.chan()
        local sent = false
        local s = parked(function()
          local r = ch:send("v")
          sent = true
          return r
        end)
        for _ = 1, 10 do conc.yield() end
        assert.are.equal("blocked", s:status())
        assert.is_false(sent)
        assert.are.equal(0, ch:len())
        assert.are.equal(0, #ch)
        assert.are.same({ "v", true }, { ch:recv() })
        assert.are.same({ true, true }, { s:wait() })
        assert.is_true(sent)
        assert.are.equal(0, ch:len())
      end)
    end)

    it("C2, C26: a send that no receiver ever takes, in the only task, is the deadlock error", function()
      local ch = conc.chan()
      local ok, err = pcall(conc.run, function() ch:send(1) end)
      assert.is_false(ok)
      assert.is_true(starts_with(err, DEADLOCK), err)
      assert.matches("blocked: send on " .. tostring(ch), err, 1, true)
      assert.are.same({ nil, false, "empty" }, { ch:try_recv() }, "the value never waited in a slot")
    end)

    it("C3: the receive is synchronized before the matching send completes", function()
      conc.run(function()
        local ch = conc.chan()
        -- the receiver is parked first
        local flag
        local r = parked(function() flag = 1; return ch:recv() end)
        ch:send("a")
        assert.are.equal(1, flag)
        assert.are.same({ true, "a", true }, { r:wait() })
        -- the sender arrives first (the receiver has not run yet when send is called)
        flag = nil
        r = conc.go(function() flag = 2; return ch:recv() end)
        ch:send("b")
        assert.are.equal(2, flag)
        assert.are.same({ true, "b", true }, { r:wait() })
      end)
    end)

    it("C3: for every capacity a send is synchronized before its receive completes, a close before a receive of nil, false", function()
      conc.run(function()
        for _, cap in ipairs { 0, 1, 3 } do
          local ch = conc.chan(cap)
          local data = {}
          local p = conc.go(function()
            for i = 1, 5 do
              data[i] = "x" .. i
              ch:send(i)
            end
            data.closed = true
            ch:close()
          end)
          for i = 1, 5 do
            assert.are.same({ i, true }, { ch:recv() })
            assert.are.equal("x" .. i, data[i], "cap " .. cap)
          end
          assert.are.same({ nil, false }, { ch:recv() })
          assert.is_true(data.closed, "cap " .. cap)
          assert.is_true(p:wait())
        end
      end)
    end)

    it("C8: waiting receivers are served FIFO", function()
      conc.run(function()
        local ch = conc.chan()
        local rs = {}
        for i = 1, 3 do rs[i] = parked(function() return ch:recv() end) end
        ch:send(1); ch:send(2); ch:send(3)
        for i = 1, 3 do assert.are.same({ true, i, true }, { rs[i]:wait() }) end
      end)
    end)

    it("C9: waiting senders are served FIFO", function()
      conc.run(function()
        local ch = conc.chan()
        local ss = {}
        for i, v in ipairs { "a", "b", "c" } do ss[i] = parked(function() return ch:send(v) end) end
        assert.are.same({ "a", true }, { ch:recv() })
        assert.are.same({ "b", true }, { ch:recv() })
        assert.are.same({ "c", true }, { ch:recv() })
        for i = 1, 3 do assert.are.same({ true, true }, { ss[i]:wait() }) end
      end)
    end)

    it("C10: send(nil) on an unbuffered channel hands nil, true to the receiver", function()
      conc.run(function()
        local ch = conc.chan()
        local r = parked(function() return pack(ch:recv()) end)
        assert.is_true(ch:send(nil))
        local _, got = r:wait()
        assert.are.same({ n = 2, nil, true }, got)
        local s = parked(function() return ch:send(false) end)
        assert.are.same({ n = 2, false, true }, pack(ch:recv()))
        s:wait()
        s = parked(function() return ch:send(nil) end)
        assert.are.same({ n = 2, nil, true }, pack(ch:try_recv()))
        s:wait()
      end)
    end)

    it("try_send on an unbuffered channel succeeds only with a receiver waiting, and leaves nothing behind (DESIGN Channels)", function()
      conc.run(function()
        local ch = conc.chan()
        assert.is_false(ch:try_send("x"))
        assert.are.same({ nil, false, "empty" }, { ch:try_recv() })
        local r = parked(function() return ch:recv() end)
        assert.is_true(ch:try_send("y"))
        assert.are.same({ true, "y", true }, { r:wait() })
        assert.is_false(ch:try_send("z"))
      end)
    end)
  end)

  describe("buffered channels", function()
    it("C4: a buffered channel is FIFO; sends up to cap do not block", function()
      conc.run(function()
        local ch = conc.chan(3)
        -- the main task is the only task: a send that blocked would be the deadlock error
        ch:send(1); ch:send(2); ch:send(3)
        assert.are.equal(3, ch:len())
        assert.are.same({ 1, true }, { ch:recv() })
        assert.are.same({ 2, true }, { ch:recv() })
        assert.are.same({ 3, true }, { ch:recv() })
        assert.are.equal(0, ch:len())
        -- around the ring's end several times
        for i = 1, 20 do
          ch:send(i)
          if i % 2 == 0 then
            assert.are.same({ i - 1, true }, { ch:recv() })
            assert.are.same({ i, true }, { ch:recv() })
          end
        end
      end)
    end)

    it("C5: a send on a full channel blocks and completes only after one receive", function()
      conc.run(function()
        local ch = conc.chan(3)
        ch:send(1); ch:send(2); ch:send(3)
        local s = parked(function() return ch:send(4) end)
        for _ = 1, 10 do conc.yield() end
        assert.are.equal("blocked", s:status())
        assert.are.equal(3, ch:len())
        assert.are.same({ 1, true }, { ch:recv() })
        assert.are.same({ true, true }, { s:wait() })
        assert.are.equal(3, ch:len())
        for i = 2, 4 do assert.are.same({ i, true }, { ch:recv() }) end
      end)
    end)

    it("C5: a channel of capacity C is a counting semaphore: the k-th receive comes before the (k+C)-th send completes", function()
      conc.run(function()
        local sem = conc.chan(2)
        local inside, release = {}, conc.chan()
        local workers = {}
        for i = 1, 5 do
          workers[i] = conc.go(function()
            sem:send(true)
            inside[i] = true
            release:recv()
            inside[i] = nil
            sem:recv()
          end)
        end
        settle(unpack(workers))
        for left = 5, 1, -1 do
          assert.are.equal(math.min(2, left), count(inside))
          assert.are.equal(math.min(2, left), sem:len())
          release:send(true)
          settle(unpack(workers))
        end
        assert.are.equal(0, count(inside))
        for i = 1, 5 do assert.is_true(workers[i]:wait()) end
      end)
    end)

    it("C6: a send to a waiting receiver bypasses the buffer", function()
      conc.run(function()
        local ch = conc.chan(1)
        local r = parked(function() return ch:recv() end)
        assert.is_true(ch:send(1))
        assert.are.equal(0, ch:len())
        assert.is_true(ch:try_send(2), "the slot is still free")
        assert.are.equal(1, ch:len())
        assert.are.same({ true, 1, true }, { r:wait() })
        assert.are.same({ 2, true }, { ch:recv() })
      end)
    end)

    it("C7: a full buffer with blocked senders stays FIFO; each sender resumes when its value moves into the buffer", function()
      conc.run(function()
        local ch = conc.chan(2)
        ch:send(1); ch:send(2)
        local s3 = parked(function() return ch:send(3) end)
        local s4 = parked(function() return ch:send(4) end)
        assert.are.same({ 1, true }, { ch:recv() })
        assert.are.equal("ready", s3:status(), "S3's value moved into the freed slot")
        assert.are.equal("blocked", s4:status())
        assert.are.equal(2, ch:len())
        assert.are.same({ 2, true }, { ch:recv() })
        assert.are.equal("ready", s4:status())
        assert.are.equal(2, ch:len())
        assert.are.same({ 3, true }, { ch:recv() })
        assert.are.same({ 4, true }, { ch:recv() })
        assert.are.same({ true, true }, { s3:wait() })
        assert.are.same({ true, true }, { s4:wait() })
      end)
    end)

    it("C10: nil and false are values in a buffer", function()
      conc.run(function()
        local ch = conc.chan(3)
        ch:send(nil); ch:send(false); ch:send(nil)
        assert.are.equal(3, ch:len())
        assert.is_false(ch:try_send(1), "the buffer is full")
        assert.are.same({ n = 2, nil, true }, pack(ch:recv()))
        assert.are.same({ n = 2, false, true }, pack(ch:recv()))
        assert.are.same({ n = 2, nil, true }, pack(ch:recv()))
        assert.are.same({ n = 3, nil, false, "empty" }, pack(ch:try_recv()))
        -- a blocked sender's nil moves into the buffer, and try_send(nil) is a value too
        ch = conc.chan(1)
        assert.is_true(ch:try_send(nil))
        local s = parked(function() return ch:send(nil) end)
        assert.are.same({ n = 2, nil, true }, pack(ch:recv()))
        assert.are.equal(1, ch:len())
        assert.are.same({ n = 2, nil, true }, pack(ch:recv()))
        assert.are.same({ true, true }, { s:wait() })
        ch:close()
        assert.are.same({ n = 2, nil, false }, pack(ch:recv()))
      end)
    end)

    it("C11: len and #ch count only buffered values, never blocked senders; 0 <= len <= cap", function()
      conc.run(function()
        local u = conc.chan()
        local us = {}
        for i = 1, 3 do us[i] = parked(function() return u:send(i) end) end
        assert.are.equal(0, u:len())
        assert.are.equal(0, #u)
        local b = conc.chan(2)
        b:send("a"); b:send("b")
        local bs = {}
        for i = 1, 3 do bs[i] = parked(function() return b:send(i) end) end
        assert.are.equal(2, b:len())
        assert.are.equal(2, #b)
        for i = 1, 3 do assert.are.same({ i, true }, { u:recv() }) end
        for _, v in ipairs { "a", "b", 1, 2, 3 } do
          assert.are.same({ v, true }, { b:recv() })
          assert.is_true(b:len() >= 0 and b:len() <= 2)
        end
        assert.are.equal(0, b:len())
        for i = 1, 3 do us[i]:wait(); bs[i]:wait() end
        -- a fixed pattern of try_send/try_recv keeps 0 <= len <= cap and counts exactly
        local c, expect = conc.chan(3), 0
        for i = 1, 200 do
          if (i * 7) % 5 < 3 then
            if c:try_send(i) then expect = expect + 1 end
          else
            if c:try_recv() ~= nil then expect = expect - 1 end
          end
          assert.are.equal(expect, c:len())
          assert.is_true(c:len() >= 0 and c:len() <= c:cap())
        end
      end)
    end)
  end)

  describe("close", function()
    it("C12: after close, buffered values come out first, then nil, false on every call, without blocking", function()
      conc.run(function()
        -- the main task is alone: a receive that blocked would be the deadlock error
        local ch = conc.chan(3)
        ch:send("v1"); ch:send("v2")
        ch:close()
        assert.are.equal(2, ch:len())
        assert.are.same({ n = 2, "v1", true }, pack(ch:recv()))
        assert.are.same({ n = 2, "v2", true }, pack(ch:recv()))
        for _ = 1, 3 do assert.are.same({ n = 2, nil, false }, pack(ch:recv())) end
        assert.are.same({ n = 2, nil, false }, pack(ch:try_recv()))
        local u = conc.chan()
        u:close()
        assert.are.same({ n = 2, nil, false }, pack(u:recv()))
      end)
    end)

    it("C13: one close wakes all 10,000 waiting receivers with nil, false, in the same scheduler turn", function()
      conc.run(function()
        local ch = conc.chan()
        local n, woke = 10000, 0
        local rs = {}
        for i = 1, n do
          rs[i] = conc.go(function()
            local v, ok = ch:recv()
            if v == nil and ok == false then woke = woke + 1 end
          end)
        end
        settle_n(n)
        for i = 1, n do assert(rs[i]:status() == "blocked", "receiver not blocked") end
        ch:close()
        local still = 0
        for i = 1, n do
          if rs[i]:status() == "blocked" then still = still + 1 end
        end
        assert.are.equal(0, still, "receivers left blocked after close")
        for i = 1, n do rs[i]:wait() end
        assert.are.equal(n, woke)
      end)
    end)

    it("C14: close wakes every waiting sender, which raises; their values are never delivered", function()
      conc.run(function()
        local ch = conc.chan()
        local ss = {}
        for i = 1, 3 do ss[i] = parked(function() return conc.pcall(ch.send, ch, i) end) end
        local raw = parked(function() return ch:send("raw") end)
        ch:close()
        for i = 1, 3 do assert.are.equal("ready", ss[i]:status()) end
        assert.are.equal("ready", raw:status())
        local ok, err = raw:wait()
        assert.is_nil(ok)
        assert.are.equal(CLOSED_SEND, err.cause)
        for i = 1, 3 do assert.are.same({ true, false, CLOSED_SEND }, { ss[i]:wait() }) end
        assert.are.same({ nil, false }, { ch:recv() })
      end)
    end)

    it("C14, C12: on a buffered channel the values already buffered are still delivered, the blocked senders' are not", function()
      conc.run(function()
        local ch = conc.chan(1)
        ch:send("a")
        local s = parked(function() return conc.pcall(ch.send, ch, "b") end)
        ch:close()
        assert.are.same({ true, false, CLOSED_SEND }, { s:wait() })
        assert.are.same({ "a", true }, { ch:recv() })
        assert.are.same({ nil, false }, { ch:recv() })
      end)
    end)

    it("C15: send on a closed channel raises 'conc: send on closed channel'", function()
      local ch = conc.chan(1)
      ch:close()
      assert.are.equal(CLOSED_SEND, support.error_of(ch.send, ch, 1))
      assert.are.equal(CLOSED_SEND, support.error_of(ch.send, ch, nil))
      conc.run(function()
        local ok, err = conc.pcall(ch.send, ch, 1)
        assert.is_false(ok)
        assert.are.equal(CLOSED_SEND, err)
      end)
      assert.are.equal(0, ch:len(), "the value did not reach the free slot")
    end)

    it("C16: a second close raises 'conc: close of closed channel', and close of nil is an argument error", function()
      local ch = conc.chan()
      ch:close()
      assert.are.equal("conc: close of closed channel", support.error_of(ch.close, ch))
      assert.are.equal("conc: close of closed channel", support.error_of(ch.close, ch))
      assert.are.equal("conc: ch:close: bad self (chan expected, got nil)", support.error_of(ch.close, nil))
    end)

    it("C17: try_send on a closed channel raises, even with a free slot", function()
      for _, cap in ipairs { 0, 1 } do
        local ch = conc.chan(cap)
        ch:close()
        assert.are.equal(CLOSED_SEND, support.error_of(ch.try_send, ch, 1))
        assert.are.equal(0, ch:len())
      end
    end)
  end)

  describe("try_recv", function()
    it("C18: try_recv returns v, true; nil, false, 'empty' when open and empty; nil, false once closed and drained", function()
      conc.run(function()
        local ch = conc.chan(2)
        assert.are.same({ n = 3, nil, false, "empty" }, pack(ch:try_recv()))
        ch:send("a"); ch:send(false)
        assert.are.same({ n = 2, "a", true }, pack(ch:try_recv()))
        ch:close()
        assert.are.same({ n = 2, false, true }, pack(ch:try_recv()), "buffered values come out first after close")
        assert.are.same({ n = 2, nil, false }, pack(ch:try_recv()))
        assert.are.same({ n = 2, nil, false }, pack(ch:try_recv()))
        -- an unbuffered channel: a blocked sender's value, and the sender is woken
        local u = conc.chan()
        assert.are.same({ n = 3, nil, false, "empty" }, pack(u:try_recv()))
        local s = parked(function() return u:send("s") end)
        assert.are.same({ n = 2, "s", true }, pack(u:try_recv()))
        assert.are.equal("ready", s:status())
        assert.are.same({ true, true }, { s:wait() })
        assert.are.same({ n = 3, nil, false, "empty" }, pack(u:try_recv()))
      end)
    end)

    it("C19: try_recv on a full channel moves a blocked sender's value into the buffer and wakes the sender", function()
      conc.run(function()
        local ch = conc.chan(1)
        ch:send("a")
        local s = parked(function() return ch:send("b") end)
        assert.are.same({ "a", true }, { ch:try_recv() })
        assert.are.equal(1, ch:len())
        assert.are.equal("ready", s:status())
        assert.are.same({ true, true }, { s:wait() })
        assert.are.same({ "b", true }, { ch:try_recv() })
        assert.are.same({ nil, false, "empty" }, { ch:try_recv() })
      end)
    end)
  end)

  describe("iter", function()
    it("C20: a top-level for-in loop over ch:iter() blocks, yields every value in order and ends after close and drain", function()
      local ch = conc.chan()
      local p = conc.go(function()
        for i = 1, 5 do ch:send(i) end
        ch:send(false)
        ch:close()
      end)
      local got = {}
      for v in ch:iter() do got[#got + 1] = v end
      assert.are.same({ 1, 2, 3, 4, 5, false }, got)
      assert.is_true(p:wait())
      for _ in ch:iter() do error("a closed, drained channel yields nothing") end
    end)

    it("C20: iter over values already buffered and a closed channel needs no blocking, in a task too", function()
      conc.run(function()
        local ch = conc.chan(4)
        for i = 1, 4 do ch:send(i * 10) end
        ch:close()
        local got = {}
        for v in ch:iter() do got[#got + 1] = v end
        assert.are.same({ 10, 20, 30, 40 }, got)
        assert.are.same({ nil, false }, { ch:recv() })
      end)
    end)

    if not support.puc51 then
      it("C20: inside a task, for-in over ch:iter() blocks for each value (not on PUC Lua 5.1, which cannot yield in an iterator)", function()
        conc.run(function()
          for _, cap in ipairs { 0, 2 } do
            local ch = conc.chan(cap)
            local c = conc.go(function()
              local got = {}
              for v in ch:iter() do got[#got + 1] = v end
              return got
            end)
            for i = 1, 6 do ch:send(i) end
            ch:close()
            assert.are.same({ true, { 1, 2, 3, 4, 5, 6 } }, { c:wait() })
          end
        end)
      end)

      it("C20: a nil handed to an iterator parked inside a task raises the iter error (not on PUC Lua 5.1)", function()
        conc.run(function()
          local ch = conc.chan()
          local c = parked(function()
            return conc.pcall(function() for _ in ch:iter() do end end)
          end)
          ch:send(nil)
          assert.are.same({ true, false, ITER_NIL }, { c:wait() })
        end)
      end)
    end

    if support.puc51 then
      it("C20 (PUC Lua 5.1 only): a for-in loop over ch:iter() that would block inside a task raises a clear error", function()
        conc.run(function()
          local ch = conc.chan(1)
          ch:send("first")
          local got = {}
          local ok, err = pcall(function()
            for v in ch:iter() do got[#got + 1] = v end
          end)
          assert.are.same({ false, ITER_51 }, { ok, err })
          assert.are.same({ "first" }, got, "the values already there were yielded")
          assert.is_true(ch:try_send("after"), "the failed call left no waiter behind")
          assert.are.same({ "after", true }, { ch:recv() })
        end)
      end)
    end

    it("C20: iter raises the nil-value error when it receives nil, buffered or handed to a parked top-level loop", function()
      local ch = conc.chan(2)
      ch:send(1); ch:send(nil)
      local got = {}
      local ok, err = pcall(function()
        for v in ch:iter() do got[#got + 1] = v end
      end)
      assert.are.same({ false, ITER_NIL }, { ok, err })
      assert.are.same({ 1 }, got)
      -- the top-level loop parks, then a task sends nil
      local u = conc.chan()
      local p = conc.go(function() u:send(nil) end)
      ok, err = pcall(function() for _ in u:iter() do end end)
      assert.are.same({ false, ITER_NIL }, { ok, err })
      assert.is_true(p:wait())
      -- the channel still works
      p = conc.go(function() u:send("x"); u:close() end)
      got = {}
      for v in u:iter() do got[#got + 1] = v end
      assert.are.same({ "x" }, got)
      assert.is_true(p:wait())
    end)
  end)

  describe("matched waiters, abandonment and lifetime", function()
    it("C21, D2: a value matched to a parked receiver belongs to it: nobody who runs before it resumes gets the value", function()
      conc.run(function()
        for _, cap in ipairs { 0, 1 } do
          local ch = conc.chan(cap)
          local r = parked(function() return ch:recv() end)
          ch:send("mine")
          -- r is matched but has not run yet; the sender's task runs on
          assert.are.equal("ready", r:status())
          assert.are.same({ nil, false, "empty" }, { ch:try_recv() })
          assert.are.same({ 2 }, { conc.select(ch, conc.default) })
          assert.are.equal(0, ch:len())
          -- a task started now, which may run before r resumes, gets nothing either
          local other = conc.go(function() return ch:try_recv() end)
          assert.are.same({ true, nil, false, "empty" }, { other:wait() })
          assert.are.same({ true, "mine", true }, { r:wait() })
        end
      end)
    end)

    it("D2, C21: a receiver matched with a value gets it even if the channel is closed before it resumes", function()
      conc.run(function()
        local ch = conc.chan()
        local r = parked(function() return pack(ch:recv()) end)
        local x = parked(function() return conc.select(conc.chan(), ch) end)
        ch:send("v1")
        ch:send("v2")
        ch:close()
        local got = {}
        local _, rr = r:wait()
        got[#got + 1] = rr[1]
        assert.are.same({ n = 2, rr[1], true }, rr)
        local xr = pack(x:wait())
        assert.are.same({ n = 4, true, 2, xr[3], true }, xr)
        got[#got + 1] = xr[3]
        table.sort(got)
        assert.are.same({ "v1", "v2" }, got, "each value delivered once")
      end)
    end)

    it("C22, D2: a sender matched by a receive from a full buffer is complete before it runs: its value is in the buffer", function()
      conc.run(function()
        local ch = conc.chan(1)
        ch:send("a")
        local s = parked(function() return ch:send("b") end)
        assert.are.same({ "a", true }, { ch:recv() })
        assert.are.equal("ready", s:status())
        assert.are.equal(1, ch:len())
        assert.is_false(ch:try_send("c"), "no send running in between can take the slot")
        assert.are.same({ 2 }, { conc.select(conc.send(ch, "d"), conc.default) })
        -- even a close before the sender runs: its send returns true and its value is delivered
        ch:close()
        assert.are.same({ true, true }, { s:wait() })
        assert.are.same({ "b", true }, { ch:recv() })
        assert.are.same({ nil, false }, { ch:recv() })
      end)
    end)

    it("C23: receivers of abandoned tasks leave the queue: a later send goes to a live receiver", function()
      local ch = conc.chan()
      conc.run(function()
        for _ = 1, 1000 do conc.go(function() ch:recv() error("an abandoned task ran") end) end
        settle_n(1000)
      end)
      assert.are.equal(0, conc.stats().tasks)
      assert.is_false(ch:try_send("lost"), "no receiver is waiting")
      conc.run(function()
        local r = parked(function() return ch:recv() end)
        ch:send("x")
        assert.are.same({ true, "x", true }, { r:wait() })
      end)
      -- a buffered channel: the value goes to the buffer, not to a dead receiver
      local b = conc.chan(1)
      conc.run(function() parked(function() b:recv() end) end)
      assert.is_true(b:try_send("kept"))
      assert.are.equal(1, b:len())
      assert.are.same({ "kept", true }, { b:recv() })
    end)

    it("C23: senders of abandoned tasks leave the queue: their values are never received", function()
      local u, b = conc.chan(), conc.chan(1)
      b:send("a")
      conc.run(function()
        parked(function() u:send("dead") end)
        parked(function() b:send("dead") end)
      end)
      assert.are.same({ nil, false, "empty" }, { u:try_recv() })
      assert.are.same({ "a", true }, { b:try_recv() })
      assert.are.same({ nil, false, "empty" }, { b:try_recv() }, "the dead sender's value did not move in")
      conc.run(function()
        local s = parked(function() return u:send("live") end)
        assert.are.same({ "live", true }, { u:recv() })
        assert.is_true(s:wait())
      end)
      u:close(); b:close() -- no dead sender is woken to raise
    end)

    it("C23: a select that fired, or whose task was abandoned, leaves no waiter on its other channels", function()
      local quiet, busy = conc.chan(), conc.chan()
      conc.run(function()
        for i = 1, 1000 do
          local x = conc.go(function() return conc.select(quiet, busy, conc.send(quiet, "q")) end)
          if i % 2 == 0 then settle(x) end -- half of them park, the others find busy ready
          busy:send(i)
          assert.are.same({ true, 2, i, true }, { x:wait() })
        end
        assert.is_false(quiet:try_send("swallowed?"))
        assert.are.same({ nil, false, "empty" }, { quiet:try_recv() })
        local r = parked(function() return quiet:recv() end)
        quiet:send("next")
        assert.are.same({ true, "next", true }, { r:wait() })
        -- a select parked when conc.run returns
        conc.go(function() conc.select(quiet, conc.send(busy, "dead")) end)
      end)
      assert.is_false(quiet:try_send(1))
      assert.are.same({ nil, false, "empty" }, { busy:try_recv() })
    end)

    it("C25: the GC runs while tasks wait on channels nothing else references: no crash, and they are abandoned cleanly", function()
      local weak = setmetatable({}, { __mode = "v" })
      local n = 50
      conc.run(function()
        local tasks = {}
        for _ = 1, n do
          tasks[#tasks + 1] = conc.go(function()
            local ch = conc.chan(); weak[#weak + 1] = ch; ch:recv()
          end)
          tasks[#tasks + 1] = conc.go(function()
            local ch = conc.chan(1); weak[#weak + 1] = ch; ch:send({}); ch:send({ "held" })
          end)
          tasks[#tasks + 1] = conc.go(function()
            local a, b = conc.chan(), conc.chan(); weak[#weak + 1] = a; weak[#weak + 1] = b
            conc.select(a, conc.send(b, {}))
          end)
          if not support.puc51 then -- a for-in loop cannot block inside a task on PUC 5.1
            tasks[#tasks + 1] = conc.go(function()
              local ch = conc.chan(); weak[#weak + 1] = ch
              for _ in ch:iter() do end
            end)
          end
        end
        settle(unpack(tasks))
        collectgarbage()
        collectgarbage()
        -- conc's choice: a parked waiter keeps its channel alive (as Go's sudogs do)
        assert.are.equal(support.puc51 and 4 * n or 5 * n, count(weak))
        for _, t in ipairs(tasks) do assert.are.equal("blocked", t:status()) end
        -- the runtime still works
        local ch = conc.chan()
        local p = conc.go(function() ch:send("ok") end)
        assert.are.same({ "ok", true }, { ch:recv() })
        p:wait()
      end)
      -- conc.run returned: the waiters were abandoned, and their channels can go (LuaJIT's
      -- compiled traces may hold the iterator closures as constants: flush them first)
      if jit then jit.flush() end
      collectgarbage()
      collectgarbage()
      assert.are.equal(0, count(weak))
    end)
  end)

  describe("deadlock", function()
    it("C26: every task blocked on channels is the deadlock error", function()
      local a, b = conc.chan(), conc.chan(1)
      b:send(1)
      local ok, err = pcall(conc.run, function()
        conc.go(function() a:send(1) end)
        conc.go(function() b:send(2) end)
        conc.go(function() conc.select(conc.chan(), conc.send(b, 3)) end)
        conc.chan():recv()
      end)
      assert.is_false(ok)
      assert.is_true(starts_with(err, DEADLOCK), err)
      assert.are.equal(0, conc.stats().tasks)
    end)

    it("C26: a task sleeping on a timer means no deadlock", function()
      conc.virtual_time(true)
      local ch = conc.chan()
      assert.are.same({ "late", true }, { conc.run(function()
        conc.go(function() conc.sleep(1); ch:send("late") end)
        return ch:recv()
      end) })
      -- also while the timer task itself does not touch the channel
      local u = conc.chan()
      assert.are.same({ "u", true }, { conc.run(function()
        local sleeper = conc.go(function() conc.sleep(2) end)
        conc.go(function() sleeper:wait(); u:send("u") end)
        return u:recv()
      end) })
    end)

    it("C27: a lone recv on an unbuffered channel or conc.select() in the only task is the deadlock error", function()
      local ch = conc.chan()
      local ok, err = pcall(conc.run, function() ch:recv() end)
      assert.is_false(ok)
      assert.is_true(starts_with(err, DEADLOCK), err)
      ok, err = pcall(conc.run, function() conc.select() end)
      assert.is_false(ok)
      assert.is_true(starts_with(err, DEADLOCK), err)
      -- the runtime works afterwards
      assert.are.equal(3, conc.run(function() return 3 end))
    end)
  end)

  describe("bad arguments", function()
    local ch = conc.chan()
    local closed = conc.chan(1)
    closed:close()
    local nan = 0 / 0
    local tostring_mt = getmetatable(ch).__tostring
    local cases = {
      { "C1: chan(-1)", function() return conc.chan(-1) end,
        "conc: chan: bad argument #1 (capacity must be an integer from 0 to 2^31-1, got -1)" },
      { "C1: chan(1.5)", function() return conc.chan(1.5) end,
        "conc: chan: bad argument #1 (capacity must be an integer from 0 to 2^31-1, got 1.5)" },
      { "C1: chan(2^31)", function() return conc.chan(2 ^ 31) end,
        "conc: chan: bad argument #1 (capacity must be an integer from 0 to 2^31-1, got " .. tostring(2 ^ 31) .. ")" },
      { "C1: chan(math.huge)", function() return conc.chan(math.huge) end,
        "conc: chan: bad argument #1 (capacity must be an integer from 0 to 2^31-1, got " .. tostring(math.huge) .. ")" },
      { "C1: chan(nan)", function() return conc.chan(nan) end,
        "conc: chan: bad argument #1 (capacity must be an integer from 0 to 2^31-1, got " .. tostring(nan) .. ")" },
      { "C1: chan('x')", function() return conc.chan("x") end,
        "conc: chan: bad argument #1 (number expected, got string)" },
      { "C1: chan('3')", function() return conc.chan("3") end,
        "conc: chan: bad argument #1 (number expected, got string)" },
      { "C1: chan({})", function() return conc.chan({}) end,
        "conc: chan: bad argument #1 (number expected, got table)" },
      { "C1: chan(1, 2)", function() return conc.chan(1, 2) end,
        "conc: chan: too many arguments (at most 1 expected, got 2)" },
      { "DESIGN Channels: ch:send()", function() return ch:send() end,
        "conc: ch:send: bad argument #1 (value expected)" },
      { "DESIGN Channels: ch:send(1, 5) (a ctx)", function() return ch:send(1, 5) end,
        "conc: ch:send: bad argument #2 (ctx expected, got number)" },
      { "DESIGN Channels: ch:send(1, nil, 3)", function() return ch:send(1, nil, 3) end,
        "conc: ch:send: too many arguments (at most 2 expected, got 3)" },
      { "DESIGN Channels: ch.send(5, 1)", function() return ch.send(5, 1) end,
        "conc: ch:send: bad self (chan expected, got number)" },
      { "DESIGN Channels: ch.send(nil, 1)", function() return ch.send(nil, 1) end,
        "conc: ch:send: bad self (chan expected, got nil)" },
      { "DESIGN Channels: ch.send(conc.send(ch, 1), 1)", function() return ch.send(conc.send(ch, 1), 1) end,
        "conc: ch:send: bad self (chan expected, got conc.sendcase)" },
      { "DESIGN Channels: ch:recv(5) (a ctx)", function() return ch:recv(5) end,
        "conc: ch:recv: bad argument #1 (ctx expected, got number)" },
      { "DESIGN Channels: ch:recv({}) (a ctx)", function() return ch:recv({}) end,
        "conc: ch:recv: bad argument #1 (ctx expected, got table)" },
      { "DESIGN Channels: ch:recv(nil, 1)", function() return ch:recv(nil, 1) end,
        "conc: ch:recv: too many arguments (at most 1 expected, got 2)" },
      { "DESIGN Channels: ch.recv(conc.default)", function() return ch.recv(conc.default) end,
        "conc: ch:recv: bad self (chan expected, got conc.default)" },
      { "DESIGN Channels: ch.recv('x')", function() return ch.recv("x") end,
        "conc: ch:recv: bad self (chan expected, got string)" },
      { "DESIGN Channels: ch:try_send()", function() return ch:try_send() end,
        "conc: ch:try_send: bad argument #1 (value expected)" },
      { "DESIGN Channels: ch:try_send(1, 2)", function() return ch:try_send(1, 2) end,
        "conc: ch:try_send: too many arguments (at most 1 expected, got 2)" },
      { "DESIGN Channels: ch.try_send({}, 1)", function() return ch.try_send({}, 1) end,
        "conc: ch:try_send: bad self (chan expected, got table)" },
      { "C17: closed:try_send(1)", function() return closed:try_send(1) end, CLOSED_SEND },
      { "C15: closed:send(1)", function() return closed:send(1) end, CLOSED_SEND },
      { "DESIGN Channels: ch:try_recv(1)", function() return ch:try_recv(1) end,
        "conc: ch:try_recv: too many arguments (at most 0 expected, got 1)" },
      { "DESIGN Channels: ch.try_recv(5)", function() return ch.try_recv(5) end,
        "conc: ch:try_recv: bad self (chan expected, got number)" },
      { "DESIGN Channels: ch:close(1)", function() return ch:close(1) end,
        "conc: ch:close: too many arguments (at most 0 expected, got 1)" },
      { "C16: ch.close(true)", function() return ch.close(true) end,
        "conc: ch:close: bad self (chan expected, got boolean)" },
      { "C16: closed:close()", function() return closed:close() end,
        "conc: close of closed channel" },
      { "DESIGN Channels: ch:cap(1)", function() return ch:cap(1) end,
        "conc: ch:cap: too many arguments (at most 0 expected, got 1)" },
      { "DESIGN Channels: ch.cap(5)", function() return ch.cap(5) end,
        "conc: ch:cap: bad self (chan expected, got number)" },
      { "DESIGN Channels: ch.len({})", function() return ch.len({}) end,
        "conc: ch:len: bad self (chan expected, got table)" },
      { "DESIGN Channels: ch:iter(5) (a ctx)", function() return ch:iter(5) end,
        "conc: ch:iter: bad argument #1 (ctx expected, got number)" },
      { "DESIGN Channels: ch:iter(nil, 2)", function() return ch:iter(nil, 2) end,
        "conc: ch:iter: too many arguments (at most 1 expected, got 2)" },
      { "DESIGN Channels: ch.iter(5)", function() return ch.iter(5) end,
        "conc: ch:iter: bad self (chan expected, got number)" },
      { "DESIGN Channels: __tostring(5)", function() return tostring_mt(5) end,
        "conc: ch:__tostring: bad self (chan expected, got number)" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " raises the exact conc: message", function()
        assert.are.equal(c[3], support.error_of(c[2]))
      end)
    end

    it("bad calls leave the channel unchanged (DESIGN Channels)", function()
      local b = conc.chan(1)
      for _, f in ipairs {
        function() return b:send() end,
        function() return b:send(1, 5) end,
        function() return b:try_send(1, 2) end,
        function() return b:recv(5) end,
        function() return b:close(1) end,
      } do
        assert.is_string(support.error_of(f))
      end
      assert.are.equal(0, b:len())
      assert.is_true(b:try_send("ok"))
      assert.are.same({ "ok", true }, { b:recv() })
      b:close()
      assert.are.same({ nil, false }, { b:recv() })
    end)
  end)

  it("a userdata given a channel's metatable (debug.setmetatable) is still no channel", function()
    local f = assert(io.tmpfile())
    local file_mt = getmetatable(f)
    debug.setmetatable(f, getmetatable(conc.chan()))
    local err = support.error_of(function() return f:send(1) end)
    debug.setmetatable(f, file_mt)
    f:close()
    assert.are.equal("conc: ch:send: bad self (chan expected, got conc.chan)", err)
  end)
end)
