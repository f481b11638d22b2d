--- The runtime: tasks (conc.go, task methods), conc.run and the implicit main, conc.yield,
-- conc.pcall, conc.sleep, conc.now, conc.self, conc.step, conc.dump, conc.stats, errors in
-- tasks (E21), deadlock detection (C26, C27) and the limits of PUC Lua 5.1.
-- Rules without a SEMANTICS ID are named after their DESIGN.md section.
local conc = require "conc"
local errors = require "conc.errors"
local support = require "support"
local settle, starts_with, pack = support.settle, support.starts_with, support.pack

local unpack = table.unpack or unpack

local here, capture_reports = support.here, support.capture_reports
local DEADLOCK = support.DEADLOCK

describe("tasks and the runtime", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("conc.go and task handles", function()
    it("conc.go only schedules: the task has not run and its status is 'ready' (DESIGN Laziness)", function()
      conc.run(function()
        local ran = false
        local t = conc.go(function() ran = true end)
        assert.is_false(ran)
        assert.are.equal("ready", t:status())
        assert.is_true(t:wait())
        assert.is_true(ran)
        assert.are.equal("done", t:status())
      end)
    end)

    it("a task started at the top level runs at the next blocking call there (DESIGN implicit main)", function()
      local ch = conc.chan()
      local ran = false
      local t = conc.go(function() ran = true; ch:send("hi") end)
      assert.is_false(ran)
      assert.are.equal("ready", t:status())
      assert.are.same({ "hi", true }, { ch:recv() })
      assert.is_true(ran)
      assert.is_true(t:wait())
    end)

    it("conc.go passes its arguments, nil included, and wait returns every result, nil included (DESIGN Runtime)", function()
      conc.run(function()
        local t = conc.go(function(...) return select("#", ...), ... end, 1, nil, "x", nil)
        local r = pack(t:wait())
        assert.are.equal(6, r.n)
        assert.are.same({ true, 4, 1, nil, "x", nil }, { unpack(r, 1, r.n) })
      end)
    end)

    it("wait returns true alone for a task that returned nothing, and the same outcome on every call (DESIGN Runtime)", function()
      conc.run(function()
        local none = conc.go(function() end)
        local some = conc.go(function() return "a", "b" end)
        for _ = 1, 3 do
          assert.are.equal(1, select("#", none:wait()))
          assert.is_true(none:wait())
          assert.are.same({ true, "a", "b" }, { some:wait() })
        end
      end)
    end)

    it("every task waiting on a task gets its results when it returns (DESIGN Runtime)", function()
      conc.run(function()
        local gate = conc.chan()
        local t = conc.go(function() return gate:recv() end)
        local waiters = {}
        for i = 1, 3 do
          waiters[i] = conc.go(function() return t:wait() end)
        end
        settle(unpack(waiters))
        for i = 1, 3 do assert.are.equal("blocked", waiters[i]:status()) end
        gate:send("r")
        for i = 1, 3 do
          assert.are.same({ true, true, "r", true }, { waiters[i]:wait() })
        end
      end)
    end)

    it("task:status goes ready, running, blocked, then done or failed (DESIGN Runtime)", function()
      conc.run(function()
        local ch = conc.chan()
        local inside
        local t = conc.go(function()
          inside = conc.self():status()
          return ch:recv()
        end)
        assert.are.equal("ready", t:status())
        settle(t)
        assert.are.equal("running", inside)
        assert.are.equal("blocked", t:status())
        ch:send(1)
        assert.are.same({ true, 1, true }, { t:wait() })
        assert.are.equal("done", t:status())
        local f = conc.go(function() error("no", 0) end)
        assert.is_nil((f:wait()))
        assert.are.equal("failed", f:status())
      end)
    end)

    it("task ids are distinct and increasing; name() sets and gets; tostring shows both (DESIGN Runtime)", function()
      conc.run(function()
        local a, b = conc.go(function() end), conc.go(function() end)
        assert.is_number(a:id())
        assert.is_true(b:id() > a:id())
        assert.are.equal("task#" .. a:id(), tostring(a))
        assert.is_nil(a:name())
        assert.are.equal("worker", a:name("worker"))
        assert.are.equal("worker", a:name())
        assert.are.equal("worker", a:name(nil))
        assert.are.equal(("task#%d (worker)"):format(a:id()), tostring(a))
        a:wait()
        b:wait()
        assert.are.equal("worker", a:name(), "a finished task keeps its name")
      end)
    end)

    it("conc.self() is nil at the top level and the task's own handle inside a task (DESIGN Runtime)", function()
      assert.is_nil(conc.self())
      conc.run(function()
        local main = conc.self()
        assert.are.equal("running", main:status())
        local t = conc.go(function() return conc.self() end)
        local ok, me = t:wait()
        assert.is_true(ok)
        assert.are.equal(t, me)
        assert.are_not.equal(main, me)
      end)
      assert.is_nil(conc.self())
    end)

    it("a task cannot wait for itself (DESIGN Runtime)", function()
      conc.run(function()
        local me = conc.self()
        assert.are.equal("conc: task:wait: a task cannot wait for itself", support.error_of(me.wait, me))
      end)
    end)
  end)

  describe("conc.run", function()
    it("passes its arguments to fn and returns all of fn's results, nil included (DESIGN Runtime)", function()
      local r = pack(conc.run(function(a, b) return a, nil, b end, 1, 2))
      assert.are.equal(3, r.n)
      assert.are.same({ 1, nil, 2 }, { unpack(r, 1, r.n) })
      assert.are.equal(0, select("#", conc.run(function() end)))
    end)

    it("raises the main task's error as a conc error with its traceback (DESIGN Runtime, E21)", function()
      local raw = { code = 7 }
      local site
      local ok, err = pcall(conc.run, function()
        site = here(); error(raw)
      end)
      assert.is_false(ok)
      assert.is_true(errors.is_error(err))
      assert.are.equal(raw, err.cause)
      assert.is_true(err.bug)
      assert.is_number(err.task.id)
      assert.matches("stack traceback", err.stack, 1, true)
      assert.matches(site, err.stack, 1, true)
    end)

    it("abandons the tasks still alive when the main task returns: they never run again (DESIGN Runtime)", function()
      local ch, full = conc.chan(), conc.chan(1)
      local late = false
      full:send("kept")
      conc.run(function()
        local r = conc.go(function() ch:recv() end)
        local s = conc.go(function() full:send("never") end)
        settle(r, s)
        conc.go(function() late = true end)
      end)
      assert.is_false(late, "a task started just before the main task returned ran after it had returned")
      assert.are.equal(0, conc.stats().tasks)
      conc.run(function() conc.yield() end)
      assert.is_false(late, "an abandoned task ran in a later conc.run")
      -- the abandoned receiver left ch's queue, and the abandoned sender's value never landed
      assert.is_false(ch:try_send(1))
      assert.are.same({ "kept", true }, { full:try_recv() })
      assert.are.same({ nil, false, "empty" }, { full:try_recv() })
    end)

    it("raises when called from inside a task or from a nested coroutine (DESIGN Runtime)", function()
      conc.run(function()
        assert.are.equal("conc: run: called from inside a task (only the top level can run the scheduler)",
          support.error_of(conc.run, function() end))
      end)
      local co = coroutine.create(function() return conc.run(function() end) end)
      assert.are.same({ false, "conc: run: called from a nested coroutine (call it from the main thread)" },
        { coroutine.resume(co) })
    end)
  end)

  describe("errors in tasks are never lost", function()
    it("E21: a raw error becomes a bug whose cause is the raw value, with task, spawned_at and stack", function()
      conc.run(function()
        local site; site = here(); local t = conc.go(function() error("boom", 0) end)
        t:name("w")
        local ok, err = t:wait()
        assert.is_nil(ok)
        assert.is_true(errors.is_error(err))
        assert.are.equal("boom", err.message)
        assert.are.equal("boom", err.cause)
        assert.is_true(err.bug)
        assert.are.same({ id = t:id(), name = "w" }, err.task)
        assert.are.equal(site, err.spawned_at)
        assert.matches("stack traceback", err.stack, 1, true)
        assert.matches("boom", tostring(err), 1, true)
        assert.are.equal("failed", t:status())
      end)
    end)

    it("E21: any raised value is kept as the cause: a table, false, nil", function()
      conc.run(function()
        local tbl = {}
        for _, raw in ipairs { tbl, false } do
          local ok, err = conc.go(function() error(raw) end):wait()
          assert.is_nil(ok)
          assert.is_true(errors.is_error(err))
          assert.are.equal(raw, err.cause)
          assert.is_true(err.bug)
        end
        local ok, err = conc.go(function() error(nil) end):wait()
        assert.is_nil(ok)
        assert.is_true(errors.is_error(err), "error(nil) still fails the task with a conc error")
        assert.is_nil(err.cause)
        assert.is_true(err.bug)
      end)
    end)

    it("E21: a raised conc error is kept as it is, with the task where it began", function()
      conc.run(function()
        local first = conc.go(function() error("origin", 0) end)
        local _, e1 = first:wait()
        local second = conc.go(function() error(e1) end)
        local ok, e2 = second:wait()
        assert.is_nil(ok)
        assert.are.equal(e1, e2)
        assert.are.equal(first:id(), e2.task.id)
      end)
    end)

    it("E21: an error nobody waits on is reported at once, exactly once, and wait still returns it", function()
      local seen = capture_reports(function(seen)
        conc.virtual_time(true)
        conc.run(function()
          local t = conc.go(function() error("lost", 0) end)
          conc.sleep(1) -- virtual time moves only once t has run and failed
          assert.are.equal(1, #seen, "reported while the program still runs")
          assert.are.equal("lost", seen[1].cause)
          assert.are.equal(t:id(), seen[1].task.id)
          local ok, err = t:wait()
          assert.is_nil(ok)
          assert.are.equal(seen[1], err)
        end)
      end)
      assert.are.equal(1, #seen, "never reported twice")
    end)

    it("E21: an error delivered to a waiter, to conc.run or to the top level is not reported", function()
      local seen = capture_reports(function()
        conc.run(function()
          local t = conc.go(function() error("x", 0) end)
          local ok, err = t:wait()
          assert.is_nil(ok)
          assert.are.equal("x", err.cause)
        end)
        local ok, err = pcall(conc.run, function() error("m", 0) end)
        assert.is_false(ok)
        assert.are.equal("m", err.cause)
        local t = conc.go(function() error("top", 0) end)
        local ok2, err2 = t:wait()
        assert.is_nil(ok2)
        assert.are.equal("top", err2.cause)
      end)
      assert.are.equal(0, #seen)
    end)
  end)

  describe("deadlock", function()
    it("C26: conc.run raises the deadlock error with a dump of each blocked task, its reason and object", function()
      local ch_site; ch_site = here(); local ch = conc.chan()
      local full_site; full_site = here(); local full = conc.chan(1)
      full:send("x")
      local main, sender, waiter, sender_site
      local ok, err = pcall(conc.run, function()
        main = conc.self()
        sender_site = here(); sender = conc.go(function() full:send("y") end)
        sender:name("sender")
        waiter = conc.go(function() return sender:wait() end)
        waiter:name("waiter")
        ch:recv()
      end)
      assert.is_false(ok)
      assert.is_string(err)
      assert.is_true(starts_with(err, DEADLOCK .. "\n"), err)
      local function has(s) assert.matches(s, err, 1, true) end
      has(("%s blocked: recv on %s made at %s"):format(tostring(main), tostring(ch), ch_site))
      has(("%s blocked: send on %s made at %s"):format(tostring(sender), tostring(full), full_site))
      has(("%s blocked: task on %s started at %s"):format(tostring(waiter), tostring(sender), sender_site))
      has("started at " .. sender_site)
      has("main (top level) blocked: task on " .. tostring(main))
      -- every task was abandoned; the blocked sender's value never reached the channel
      assert.are.equal(0, conc.stats().tasks)
      assert.are.same({ "x", true }, { full:try_recv() })
      assert.are.same({ nil, false, "empty" }, { full:try_recv() })
    end)

    it("C26: a pending timer is not a deadlock", function()
      conc.virtual_time(true)
      local ch = conc.chan()
      assert.are.equal("late", conc.run(function()
        conc.go(function() conc.sleep(5); ch:send("late") end)
        return (ch:recv())
      end))
    end)

    it("C27: a lone recv on an unbuffered channel in the only task raises the deadlock error", function()
      local ch = conc.chan()
      local ok, err = pcall(conc.run, function() ch:recv() end)
      assert.is_false(ok)
      assert.is_true(starts_with(err, DEADLOCK), err)
      assert.matches("blocked: recv on " .. tostring(ch), err, 1, true)
    end)

    it("C27: conc.select() with no cases in the only task raises the deadlock error", function()
      local main
      local ok, err = pcall(conc.run, function() main = conc.self(); conc.select() end)
      assert.is_false(ok)
      assert.is_true(starts_with(err, DEADLOCK), err)
      assert.matches(tostring(main) .. " blocked: select", err, 1, true)
    end)

    it("C26: the top level blocking alone deadlocks too, and the runtime still works afterwards (DESIGN implicit main)", function()
      local site; site = here(); local ch = conc.chan()
      local ok, err = pcall(ch.recv, ch)
      assert.is_false(ok)
      assert.is_true(starts_with(err, DEADLOCK), err)
      assert.matches("main (top level) blocked: recv on " .. tostring(ch) .. " made at " .. site, err, 1, true)
      local t = conc.go(function() ch:send(5) end)
      assert.are.same({ 5, true }, { ch:recv() })
      assert.is_true(t:wait())
      assert.are.equal(1, conc.run(function() return 1 end))
    end)
  end)

  describe("nested coroutines and the limits of Lua 5.1", function()
    local NESTED = "blocking call from a nested coroutine (only a task's own coroutine can block)"

    local function blocking_calls(ch, gate)
      local blocked = conc.go(function() gate:recv() end)
      return {
        { "ch:recv", function() return ch:recv() end },
        { "ch:send", function() return ch:send(1) end },
        { "select", function() return conc.select(ch) end },
        { "yield", function() return conc.yield() end },
        { "sleep", function() return conc.sleep(1) end },
        { "task:wait", function() return blocked:wait() end },
      }, blocked
    end

    it("a blocking call from a user coroutine inside a task raises, and the task goes on (DESIGN Runtime)", function()
      conc.run(function()
        local ch, gate = conc.chan(), conc.chan()
        local calls, blocked = blocking_calls(ch, gate)
        for _, c in ipairs(calls) do
          local co = coroutine.create(c[2])
          assert.are.same({ false, "conc: " .. c[1] .. ": " .. NESTED }, { coroutine.resume(co) })
        end
        assert.is_false(ch:try_send(0), "the failed calls left no waiter behind")
        -- conc.go never blocks, so a user coroutine may start tasks
        local ok, h = coroutine.resume(coroutine.create(function() return conc.go(function() return "co" end) end))
        assert.is_true(ok)
        assert.are.same({ true, "co" }, { h:wait() })
        local t = conc.go(function() ch:send("ok") end)
        assert.are.same({ "ok", true }, { ch:recv() })
        t:wait()
        gate:send(1)
        blocked:wait()
      end)
    end)

    it("a blocking call from a user coroutine at the top level raises the same error (DESIGN implicit main)", function()
      local ch, gate = conc.chan(), conc.chan()
      local calls, blocked = blocking_calls(ch, gate)
      for _, c in ipairs(calls) do
        local co = coroutine.create(c[2])
        assert.are.same({ false, "conc: " .. c[1] .. ": " .. NESTED }, { coroutine.resume(co) })
      end
      gate:send(1)
      assert.is_true(blocked:wait())
    end)

    it("conc.pcall lets a task block inside it and returns its results or its error, on every interpreter (DESIGN Runtime)", function()
      conc.run(function()
        local ch = conc.chan()
        conc.go(function() ch:send("v"); ch:send("w") end)
        assert.are.same({ true, "v", true }, { conc.pcall(function() return ch:recv() end) })
        assert.are.same({ false, "after" }, { conc.pcall(function() ch:recv(); error("after", 0) end) })
        assert.are.same({ true, 3 }, { conc.pcall(function(a, b) return a + b end, 1, 2) })
        -- a C function, as with pcall
        conc.go(function() ch:send("c") end)
        assert.are.same({ true, "c", true }, { conc.pcall(ch.recv, ch) })
        -- nested, blocking in the inner one
        conc.go(function() ch:send("deep") end)
        assert.are.same({ true, true, "deep", true },
          { conc.pcall(function() return conc.pcall(function() return ch:recv() end) end) })
        -- a send woken by close raises inside conc.pcall
        local s = conc.go(function() ch:close() end)
        assert.are.same({ false, "conc: send on closed channel" }, { conc.pcall(function() return ch:send(1) end) })
        s:wait()
      end)
    end)

    it("conc.pcall at the top level blocks like any top-level call (DESIGN implicit main)", function()
      local ch = conc.chan()
      local t = conc.go(function() ch:send("top") end)
      assert.are.same({ true, "top", true }, { conc.pcall(function() return ch:recv() end) })
      t:wait()
    end)

    it("at the top level a blocking call works inside pcall, a metamethod and a C callback, on every interpreter (DESIGN implicit main)", function()
      local ch = conc.chan()
      local t = conc.go(function() for i = 1, 3 do ch:send(i) end end)
      assert.are.same({ true, 1, true }, { pcall(ch.recv, ch) })
      local proxy = setmetatable({}, { __index = function() return (ch:recv()) end })
      assert.are.equal(2, proxy.x)
      assert.are.equal("3", (string.gsub("a", "a", function() return tostring((ch:recv())) end)))
      t:wait()
    end)

    if not support.puc51 then
      it("plain pcall around a blocking call works in a task on Lua 5.2+ and LuaJIT (not on PUC 5.1: see below)", function()
        conc.run(function()
          local ch = conc.chan()
          conc.go(function() ch:send("p") end)
          assert.are.same({ true, "p", true }, { pcall(ch.recv, ch) })
          conc.go(function() ch:send("q") end)
          assert.are.same({ false, "x" }, { pcall(function() ch:recv(); error("x", 0) end) })
        end)
      end)

      it("a blocking call inside a metamethod or a for-in iterator works in a task on Lua 5.2+ and LuaJIT (not on PUC 5.1: see below)", function()
        conc.run(function()
          local ch = conc.chan()
          conc.go(function() ch:send("m"); ch:send(1); ch:send(2); ch:close() end)
          local proxy = setmetatable({}, { __index = function() return (ch:recv()) end })
          assert.are.equal("m", proxy.anything)
          local got = {}
          for v in ch:iter() do got[#got + 1] = v end
          assert.are.same({ 1, 2 }, got)
        end)
      end)

      it("a blocking call inside a C function that cannot yield raises a clear error, in a task on Lua 5.3+ and LuaJIT (DESIGN Runtime)", function()
        conc.run(function()
          local ch = conc.chan()
          local ok, err = pcall(string.gsub, "a", "a", function() return ch:recv() end)
          assert.is_false(ok)
          assert.are.equal("conc: ch:recv: cannot block here (inside a metamethod, an iterator or a C call that cannot yield)", err)
          assert.is_false(ch:try_send(0), "no waiter left behind")
        end)
      end)
    else
      it("on PUC 5.1 a blocking call inside plain pcall fails with Lua's own error and leaves the scheduler sound", function()
        conc.run(function()
          local ch = conc.chan()
          assert.are.same({ false, "attempt to yield across metamethod/C-call boundary" }, { pcall(ch.recv, ch) })
          assert.is_false(ch:try_send(0), "the failed recv left no waiter behind")
          assert.are.equal("running", conc.self():status())
          local t = conc.go(function() ch:send("after") end)
          assert.are.same({ "after", true }, { ch:recv() })
          t:wait()
          conc.go(function() ch:send("again") end)
          assert.are.same({ true, "again", true }, { conc.pcall(function() return ch:recv() end) })
        end)
      end)

      it("on PUC 5.1 a failed blocking call inside pcall does not leave the task half-parked: coroutine.yield still just yields", function()
        conc.run(function()
          local ch = conc.chan()
          assert.is_false((pcall(ch.recv, ch)))
          local other = conc.go(function() return "ran" end)
          coroutine.yield()
          assert.are.same({ true, "ran" }, { other:wait() })
        end)
      end)

      it("on PUC 5.1 blocking inside a metamethod or a C callback in a task fails with Lua's own error", function()
        conc.run(function()
          local ch = conc.chan()
          local proxy = setmetatable({}, { __index = function() return (ch:recv()) end })
          local ok, err = pcall(function() return proxy.x end)
          assert.is_false(ok)
          assert.matches("attempt to yield across metamethod/C-call boundary", err, 1, true)
          assert.are.same({ false, "attempt to yield across metamethod/C-call boundary" },
            { pcall(string.gsub, "a", "a", function() return ch:recv() end) })
        end)
      end)

      it("on PUC 5.1 ch:iter() in a task raises a clear error when it would block; a top-level for loop may block", function()
        conc.run(function()
          local ch = conc.chan(2)
          ch:send(1)
          local got = {}
          local ok, err = pcall(function() for v in ch:iter() do got[#got + 1] = v end end)
          assert.is_false(ok)
          assert.are.equal("conc: ch:iter: cannot block inside a for-in loop on Lua 5.1 "
            .. "(use: while true do local v, ok = ch:recv() if not ok then break end ... end)", err)
          assert.are.same({ 1 }, got)
        end)
        local ch = conc.chan()
        local t = conc.go(function() ch:send("a"); ch:send("b"); ch:close() end)
        local got = {}
        for v in ch:iter() do got[#got + 1] = v end
        assert.are.same({ "a", "b" }, got)
        t:wait()
      end)
    end
  end)

  describe("conc.yield", function()
    it("lets the other ready tasks run (DESIGN Runtime)", function()
      conc.run(function()
        local flag = false
        local spinner = conc.go(function()
          for i = 1, 10000 do
            if flag then return i end
            conc.yield()
          end
        end)
        conc.go(function() flag = true end)
        local ok, rounds = spinner:wait()
        assert.is_true(ok)
        assert.is_number(rounds, "the spinner saw the other task's write")
      end)
    end)

    it("at the top level runs the ready tasks (DESIGN implicit main)", function()
      local ran = false
      local t = conc.go(function() ran = true end)
      for _ = 1, 10000 do
        if ran then break end
        conc.yield()
      end
      assert.is_true(ran)
      assert.are.equal("done", t:status())
    end)
  end)

  describe("conc.sleep and conc.now", function()
    it("T5: conc.sleep(d) with d <= 0 returns true at once, in a task and at the top level", function()
      assert.is_true(conc.sleep(0))
      assert.is_true(conc.sleep(-1))
      conc.run(function()
        assert.is_true(conc.sleep(0))
        assert.is_true(conc.sleep(-0.5))
        assert.are.equal(0, conc.stats().timers)
      end)
    end)

    it("T1: conc.sleep(d) never returns before d has passed (real clock, lower bound only)", function()
      local t0 = conc.now()
      assert.is_true(conc.sleep(0.01))
      assert.is_true(conc.now() - t0 >= 0.01)
      conc.run(function()
        local sleepers = {}
        for i = 1, 3 do
          sleepers[i] = conc.go(function()
            local s = conc.now()
            conc.sleep(0.005 * i)
            return conc.now() - s
          end)
        end
        for i = 1, 3 do
          local ok, slept = sleepers[i]:wait()
          assert.is_true(ok)
          assert.is_true(slept >= 0.005 * i, ("slept %.6f < %.3f"):format(slept, 0.005 * i))
        end
      end)
    end)

    it("conc.now() is a monotonic clock in seconds (DESIGN Runtime)", function()
      local prev = conc.now()
      assert.is_number(prev)
      for _ = 1, 1000 do
        local n = conc.now()
        assert.is_true(n >= prev)
        prev = n
      end
    end)

    it("T1: with virtual time, sleeps are exact and sleepers wake in deadline order", function()
      conc.virtual_time(true)
      conc.run(function()
        local woke = conc.chan(3)
        local t0 = conc.now()
        for _, d in ipairs { 3, 1, 2 } do
          conc.go(function() conc.sleep(d); woke:send({ d, conc.now() - t0 }) end)
        end
        for i = 1, 3 do
          local r = woke:recv()
          assert.are.equal(i, r[1])
          assert.is_true(math.abs(r[2] - i) < 1e-9, ("woke at %.12f, not %d"):format(r[2], i))
        end
        assert.is_true(conc.sleep(10))
        assert.is_true(math.abs(conc.now() - t0 - 13) < 1e-9)
      end)
    end)
  end)

  describe("conc.step", function()
    it("runs the ready tasks and returns the number of live tasks (DESIGN Runtime)", function()
      assert.are.equal(0, conc.step())
      local ch = conc.chan()
      local log = {}
      for i = 1, 3 do
        conc.go(function() log[#log + 1] = i; ch:recv() end)
      end
      assert.are.equal(0, #log)
      assert.are.equal(3, conc.step())
      assert.are.equal(3, #log)
      assert.are.equal(3, conc.stats().blocked)
      ch:close()
      assert.are.equal(0, conc.step())
      assert.are.equal(0, conc.stats().tasks)
    end)

    it("fires due timers, and no timer before its time (virtual time) (DESIGN Runtime, T1)", function()
      conc.virtual_time(true)
      local t0 = conc.now()
      local done = false
      conc.go(function() conc.sleep(1); done = true end)
      assert.are.equal(1, conc.step())
      assert.is_false(done)
      assert.are.equal(1, conc.step(0.5))
      assert.is_false(done)
      local n
      for _ = 1, 5 do
        n = conc.step(1)
        if n == 0 then break end
      end
      assert.are.equal(0, n)
      assert.is_true(done)
      assert.is_true(conc.now() - t0 >= 1)
    end)

    it("raises when called from inside a task (DESIGN Runtime)", function()
      conc.run(function()
        assert.are.equal("conc: step: called from inside a task (only the top level can run the scheduler)",
          support.error_of(conc.step))
      end)
    end)
  end)

  describe("conc.stats and conc.dump", function()
    it("conc.stats counts tasks alive, ready and blocked, switches, channel ops and pending timers (DESIGN Fine points)", function()
      local s0 = conc.stats()
      for _, k in ipairs { "tasks", "ready", "blocked", "switches", "chan_ops", "timers" } do
        assert.is_number(s0[k], k)
      end
      assert.are.same({ 0, 0, 0, 0 }, { s0.tasks, s0.ready, s0.blocked, s0.timers })
      conc.run(function()
        local ch = conc.chan()
        local st = conc.stats()
        assert.are.same({ 1, 0, 0 }, { st.tasks, st.ready, st.blocked })
        local a = conc.go(function() return ch:recv() end)
        local b = conc.go(function() conc.sleep(100) end)
        st = conc.stats()
        assert.are.same({ 3, 2, 0, 0 }, { st.tasks, st.ready, st.blocked, st.timers })
        settle(a, b)
        local st2 = conc.stats()
        assert.are.same({ 3, 0, 2, 1 }, { st2.tasks, st2.ready, st2.blocked, st2.timers })
        assert.is_true(st2.switches >= st.switches + 2)
        ch:send(1)
        assert.is_true(a:wait())
        local st3 = conc.stats()
        assert.is_true(st3.chan_ops >= st2.chan_ops + 1)
        assert.are.same({ 2, 1 }, { st3.tasks, st3.timers })
      end)
      local s1 = conc.stats()
      assert.are.same({ 0, 0, 0, 0 }, { s1.tasks, s1.ready, s1.blocked, s1.timers })
    end)

    it("conc.dump lists every live task: status, what it is blocked on, where it started, its traceback (DESIGN Runtime)", function()
      assert.are.equal("", conc.dump())
      local ch_site; ch_site = here(); local ch = conc.chan()
      conc.run(function()
        local site; site = here(); local reader = conc.go(function() ch:recv() end)
        reader:name("reader")
        settle(reader)
        local fresh = conc.go(function() end)
        local d = conc.dump()
        local function has(s) assert.matches(s, d, 1, true) end
        has(("%s blocked: recv on %s made at %s"):format(tostring(reader), tostring(ch), ch_site))
        has("started at " .. site)
        has("stack traceback")
        has(tostring(fresh) .. " ready")
        has(tostring(conc.self()) .. " running")
        has("main (top level) blocked: task on " .. tostring(conc.self()))
      end)
    end)
  end)

  describe("bad arguments", function()
    local done = conc.go(function() end)
    done:wait()
    local ch = conc.chan()
    local cases = {
      { "go()", function() conc.go() end, "conc: go: bad argument #1 (function expected, got no value)" },
      { "go(1)", function() conc.go(1) end, "conc: go: bad argument #1 (function expected, got number)" },
      { "go(ch)", function() conc.go(ch) end, "conc: go: bad argument #1 (function expected, got conc.chan)" },
      { "run()", function() conc.run() end, "conc: run: bad argument #1 (function expected, got no value)" },
      { "run('f')", function() conc.run("f") end, "conc: run: bad argument #1 (function expected, got string)" },
      { "sleep()", function() conc.sleep() end, "conc: sleep: bad argument #1 (number expected, got no value)" },
      { "sleep('1')", function() conc.sleep("1") end, "conc: sleep: bad argument #1 (number expected, got string)" },
      { "sleep(nan)", function() conc.sleep(0 / 0) end, "conc: sleep: bad argument #1 (duration in seconds expected, got nan)" },
      { "sleep(1, 2)", function() conc.sleep(1, 2) end, "conc: sleep: bad argument #2 (ctx expected, got number)" },
      { "sleep(1, nil, 3)", function() conc.sleep(1, nil, 3) end, "conc: sleep: too many arguments (at most 2 expected, got 3)" },
      { "step('x')", function() conc.step("x") end, "conc: step: bad argument #1 (number expected, got string)" },
      { "step(nan)", function() conc.step(0 / 0) end, "conc: step: bad argument #1 (duration in seconds expected, got nan)" },
      { "step(1, 2)", function() conc.step(1, 2) end, "conc: step: too many arguments (at most 1 expected, got 2)" },
      { "seed()", function() conc.seed() end, "conc: seed: bad argument #1 (number expected, got no value)" },
      { "seed('x')", function() conc.seed("x") end, "conc: seed: bad argument #1 (number expected, got string)" },
      { "seed(1, 2)", function() conc.seed(1, 2) end, "conc: seed: too many arguments (at most 1 expected, got 2)" },
      { "virtual_time()", function() conc.virtual_time() end, "conc: virtual_time: bad argument #1 (boolean expected, got no value)" },
      { "virtual_time(1)", function() conc.virtual_time(1) end, "conc: virtual_time: bad argument #1 (boolean expected, got number)" },
      { "virtual_time(true, 1)", function() conc.virtual_time(true, 1) end, "conc: virtual_time: too many arguments (at most 1 expected, got 2)" },
      { "self(1)", function() conc.self(1) end, "conc: self: too many arguments (at most 0 expected, got 1)" },
      { "now(1)", function() conc.now(1) end, "conc: now: too many arguments (at most 0 expected, got 1)" },
      { "yield(1)", function() conc.yield(1) end, "conc: yield: too many arguments (at most 0 expected, got 1)" },
      { "stats(1)", function() conc.stats(1) end, "conc: stats: too many arguments (at most 0 expected, got 1)" },
      { "t:wait(1)", function() done:wait(1) end, "conc: task:wait: bad argument #1 (ctx expected, got number)" },
      { "t:wait(nil, 1)", function() done:wait(nil, 1) end, "conc: task:wait: too many arguments (at most 1 expected, got 2)" },
      { "t.wait(42)", function() done.wait(42) end, "conc: task:wait: bad self (task expected, got number)" },
      { "t.wait(ch)", function() done.wait(ch) end, "conc: task:wait: bad self (task expected, got conc.chan)" },
      { "t.wait()", function() done.wait() end, "conc: task:wait: bad self (task expected, got no value)" },
      { "t:name(42)", function() done:name(42) end, "conc: task:name: bad argument #1 (string expected, got number)" },
      { "t:name('a', 'b')", function() done:name("a", "b") end, "conc: task:name: too many arguments (at most 1 expected, got 2)" },
      { "t.name({})", function() done.name({}) end, "conc: task:name: bad self (task expected, got table)" },
      { "t:id(1)", function() done:id(1) end, "conc: task:id: too many arguments (at most 0 expected, got 1)" },
      { "t.id('x')", function() done.id("x") end, "conc: task:id: bad self (task expected, got string)" },
      { "t:status(1)", function() done:status(1) end, "conc: task:status: too many arguments (at most 0 expected, got 1)" },
      { "t.status(nil)", function() done.status(nil) end, "conc: task:status: bad self (task expected, got nil)" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " raises " .. c[3], function()
        assert.are.equal(c[3], support.error_of(c[2]))
      end)
    end

    it("a bad argument raises without starting or changing anything", function()
      local before = conc.stats()
      for _, c in ipairs(cases) do support.error_of(c[2]) end
      local after = conc.stats()
      assert.are.same({ before.tasks, before.timers, before.switches }, { after.tasks, after.timers, after.switches })
    end)
  end)
end)
