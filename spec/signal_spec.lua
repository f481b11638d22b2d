--- Signals: conc.signal (Go's signal.NotifyContext) and conc.signals (Go's signal.Notify),
-- with real signals sent to this process by kill(1) (issue 7, item 2; DESIGN.md "Network
-- and signals"). A watched signal must not kill the process; the specs where the default
-- action must come back (after stop, after the ctx ended) run in a child process, and so do
-- those that check that a watch keeps a blocked program alive (no deadlock error).
--
-- Each kill runs through io.popen and waits for kill(1): by then the signal handler
-- has run, so two kills are two deliveries, never merged into one. The child processes of
-- the keep-alive specs send their signal after 0.2 s, so that it comes while the program is
-- blocked; they pass either way, the wait only makes them test something.
local conc = require "conc"
local support = require "support"
local errors = conc.errors
local starts_with = support.starts_with

local bg = conc.background()
local PID = require("conc.core").sysinfo()

--- Sends this process a signal ("USR1", "USR2", ...) and returns once it is delivered.
-- Through io.popen, not os.execute: system(3) ignores SIGINT and SIGQUIT in the caller
-- while it waits, so a kill -INT run by os.execute would be lost.
local function kill(sig)
  local p = assert(io.popen(("kill -%s %d 2>&1"):format(sig, PID)))
  local out = p:read("*a")
  p:close()
  assert(out == "", "kill failed: " .. out)
end

--- Runs Lua code in a child process of this interpreter with this package.path and cpath
-- and a 10 s limit; `PID` there is the child's pid. Returns its output (stdout and stderr)
-- followed by "rc=<exit status>" (128 + n when signal n killed it).
local function isolated(code)
  local interp = assert(arg and arg[-1], "no interpreter in arg[-1]")
  local script = ("package.path = %q; package.cpath = %q\nlocal PID = require('conc.core').sysinfo()\n%s")
    :format(package.path, package.cpath, code)
  local p = assert(io.popen(("exec 2>/dev/null; timeout 10 %s -e '%s' 2>&1; echo \"rc=$?\"")
    :format(interp, script:gsub("'", "'\\''"))))
  local out = p:read("*a")
  p:close()
  return (out:gsub("User defined signal 1\n", "")) -- the shell's note on a child USR1 killed
end

--- Asserts that ctx was ended by this signal: err canceled, cause a kind "signal" error.
local function ended_by(ctx, name)
  assert.are.equal(errors.canceled, ctx:err())
  local cause = ctx:cause()
  assert.is_true(errors.is_error(cause), "the cause is a conc error: " .. tostring(cause))
  assert.are.equal("signal", errors.kind(cause))
  assert.are.equal(name, cause.signal)
  assert.is_false(errors.is_bug(cause))
  assert.is_truthy(tostring(cause):find(name, 1, true), tostring(cause))
end

local NAMES = "SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGCHLD, "
  .. "SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH"

describe("signals", function()
  after_each(function()
    conc.yield() -- runs the task (conc.after_func) that ends a conc.signal watch
    support.nothing_left()
  end)

  describe("conc.signal", function()
    it("a real SIGUSR1 cancels the ctx; its cause is a conc error of kind signal naming it; the process lives on", function()
      local ctx, stop = conc.signal(bg, "SIGUSR1")
      assert.is_nil(ctx:err())
      assert.is_nil(ctx:cause())
      kill("USR1")
      assert.are.same({ nil, false }, { ctx:done():recv() })
      ended_by(ctx, "SIGUSR1")
      assert.is_true(errors.is(ctx:err(), errors.canceled))
      stop()
      ended_by(ctx, "SIGUSR1")
    end)

    it("a task waiting on the ctx wakes; only it was parked", function()
      conc.run(function()
        local ctx, stop = conc.signal(bg, "SIGUSR1")
        local waiter = conc.go(function()
          local _, ok = ctx:done():recv()
          return ok, ctx:cause().signal
        end)
        support.settle(waiter)
        assert.are.equal("blocked", waiter:status())
        kill("USR1")
        assert.are.same({ true, false, "SIGUSR1" }, { waiter:wait() })
        stop()
      end)
    end)

    it("watching several signals: the one that arrives is the cause", function()
      local ctx, stop = conc.signal(bg, "SIGUSR1", "SIGUSR2")
      kill("USR2")
      ctx:done():recv()
      ended_by(ctx, "SIGUSR2")
      stop()
    end)

    it("two watches of one signal are both cancelled by it", function()
      local a, stop_a = conc.signal(bg, "SIGUSR1")
      local b, stop_b = conc.signal(bg, "SIGUSR1")
      kill("USR1")
      a:done():recv()
      b:done():recv()
      ended_by(a, "SIGUSR1")
      ended_by(b, "SIGUSR1")
      stop_a()
      stop_b()
    end)

    it("cancelling the parent cancels the ctx with the parent's err and cause, and a later signal changes nothing", function()
      local parent, cancel = conc.with_cancel(bg)
      local ctx, stop = conc.signal(parent, "SIGUSR1")
      local guard, stop_guard = conc.signals("SIGUSR1")
      cancel("shutting down")
      assert.are.equal(errors.canceled, ctx:err())
      assert.are.equal("shutting down", ctx:cause())
      kill("USR1")
      assert.are.equal("SIGUSR1", (guard:recv()))
      assert.are.equal("shutting down", ctx:cause())
      stop()
      stop_guard()
    end)

    it("a parent already done: the ctx is done at once", function()
      local parent, cancel = conc.with_cancel(bg)
      cancel()
      local ctx, stop = conc.signal(parent, "SIGUSR1")
      assert.are.equal(errors.canceled, ctx:err())
      stop()
    end)

    it("stop() cancels the ctx (cause canceled, not a signal) and is idempotent", function()
      local ctx, stop = conc.signal(bg, "SIGUSR1")
      stop()
      assert.are.equal(errors.canceled, ctx:err())
      assert.are.equal(errors.canceled, ctx:cause())
      stop()
      assert.are.equal(errors.canceled, ctx:cause())
    end)

    it("stop() ends the watch: the signal has its default action again (child process)", function()
      local out = isolated [[
        local conc = require "conc"
        local ctx, stop = conc.signal(conc.background(), "SIGUSR1")
        stop()
        print("stopped")
        io.stdout:flush()
        io.popen("kill -USR1 " .. PID):close()
        print("still alive")
      ]]
      assert.are.equal("stopped\nrc=138\n", out)
    end)

    it("cancelling the parent ends the watch: the signal has its default action again (child process)", function()
      local out = isolated [[
        local conc = require "conc"
        local parent, cancel = conc.with_cancel(conc.background())
        local ctx = conc.signal(parent, "SIGUSR1")
        cancel()
        conc.yield()
        print("cancelled")
        io.stdout:flush()
        io.popen("kill -USR1 " .. PID):close()
        print("still alive")
      ]]
      assert.are.equal("cancelled\nrc=138\n", out)
    end)

    it("once the signal ended the ctx, the watch has ended: a second signal has its default action (child process)", function()
      local out = isolated [[
        local conc = require "conc"
        local ctx = conc.signal(conc.background(), "SIGUSR1")
        io.popen("kill -USR1 " .. PID):close()
        ctx:done():recv()
        conc.yield()
        print(ctx:cause().signal)
        io.stdout:flush()
        io.popen("kill -USR1 " .. PID):close()
        print("still alive")
      ]]
      assert.are.equal("SIGUSR1\nrc=138\n", out)
    end)

    it("a watch keeps a blocked program alive until the signal comes (no deadlock error; child process)", function()
      local out = isolated [[
        local conc = require "conc"
        local ctx, stop = conc.signal(conc.background(), "SIGUSR1")
        os.execute("(sleep 0.2; kill -USR1 " .. PID .. ") >/dev/null 2>&1 &")
        ctx:done():recv()
        print(ctx:cause().signal)
        stop()
      ]]
      assert.are.equal("SIGUSR1\nrc=0\n", out)
    end)

    it("without a watch, the blocked program is a deadlock (the stopped watch does not keep it alive; child process)", function()
      local out = isolated [[
        local conc = require "conc"
        local ctx, stop = conc.signal(conc.background(), "SIGUSR1")
        stop()
        local ok, err = pcall(conc.run, function() conc.chan():recv() end)
        print(ok, (tostring(err):match("^[^\n]*")))
      ]]
      assert.are.equal("false\t" .. support.DEADLOCK .. "\nrc=0\n", out)
    end)

    it("SIGINT and SIGTERM, watched, end the ctx and do not kill the process (child process)", function()
      local out = isolated [[
        local conc = require "conc"
        for _, sig in ipairs { "TERM", "INT" } do
          local ctx, stop = conc.signal(conc.background(), "SIGINT", "SIGTERM")
          io.popen("kill -" .. sig .. " " .. PID):close()
          ctx:done():recv()
          print(ctx:cause().signal)
          stop()
        end
      ]]
      assert.are.equal("SIGTERM\nSIGINT\nrc=0\n", out)
    end)
  end)

  describe("conc.signals", function()
    it("the channel (capacity 8) receives the name of each signal, in order, a repeated one each time", function()
      local ch, stop = conc.signals("SIGUSR1", "SIGUSR2")
      assert.are.equal(8, ch:cap())
      for _, sig in ipairs { "USR1", "USR2", "USR1", "USR1", "USR2" } do
        kill(sig)
        assert.are.same({ "SIG" .. sig, true }, { ch:recv() })
      end
      stop()
    end)

    it("a full channel drops further signals, as Go's signal.Notify; the watch goes on", function()
      local ch, stop = conc.signals("SIGUSR1")
      local sentinel, stop_sentinel = conc.signals("SIGUSR2")
      for _ = 1, 10 do kill("USR1") end
      kill("USR2") -- the loop delivers the signals in order: once this one is in, the ten were
      assert.are.equal("SIGUSR2", (sentinel:recv()))
      assert.are.equal(8, ch:len())
      for _ = 1, 8 do assert.are.same({ "SIGUSR1", true }, { ch:try_recv() }) end
      kill("USR1")
      assert.are.same({ "SIGUSR1", true }, { ch:recv() })
      stop()
      stop_sentinel()
    end)

    it("stop() ends the watch: no name arrives after it; stop is idempotent", function()
      local ch, stop = conc.signals("SIGUSR1")
      local guard, stop_guard = conc.signals("SIGUSR1", "SIGUSR2")
      stop()
      stop()
      kill("USR1")
      kill("USR2")
      assert.are.equal("SIGUSR1", (guard:recv()))
      assert.are.equal("SIGUSR2", (guard:recv()))
      assert.are.equal(0, ch:len())
      stop_guard()
    end)

    it("the watch lasts until stop() even when the channel is dropped and collected (as Go's Notify)", function()
      local _, stop = conc.signals("SIGUSR1")
      collectgarbage()
      collectgarbage()
      local guard, stop_guard = conc.signals("SIGUSR2")
      kill("USR1") -- would kill the process if the watch had gone with its channel
      kill("USR2")
      assert.are.equal("SIGUSR2", (guard:recv()))
      stop()
      stop_guard()
    end)

    it("a watch keeps a blocked program alive until the signal comes (no deadlock error; child process)", function()
      local out = isolated [[
        local conc = require "conc"
        local ch, stop = conc.signals("SIGUSR2")
        os.execute("(sleep 0.2; kill -USR2 " .. PID .. ") >/dev/null 2>&1 &")
        conc.run(function() print((ch:recv())) end)
        stop()
      ]]
      assert.are.equal("SIGUSR2\nrc=0\n", out)
    end)
  end)

  describe("bad arguments", function()
    local cases = {
      { "signal(bg, 'SIGFOO')", function() conc.signal(bg, "SIGFOO") end,
        "conc: signal: bad argument #2 (unknown signal 'SIGFOO'; one of " .. NAMES .. " expected)" },
      { "signal(bg, 'SIGUSR1', 'USR2')", function() conc.signal(bg, "SIGUSR1", "USR2") end,
        "conc: signal: bad argument #3 (unknown signal 'USR2'; one of " .. NAMES .. " expected)" },
      { "signal(bg, 'SIGKILL') (cannot be caught)", function() conc.signal(bg, "SIGKILL") end,
        "conc: signal: bad argument #2 (unknown signal 'SIGKILL'; one of " .. NAMES .. " expected)" },
      { "signal(bg, 10)", function() conc.signal(bg, 10) end,
        "conc: signal: bad argument #2 (signal name expected, got number)" },
      { "signal(bg)", function() conc.signal(bg) end,
        "conc: signal: no signal named (at least one expected)" },
      { "signal('SIGINT')", function() conc.signal("SIGINT") end,
        "conc: signal: bad argument #1 (ctx expected, got string)" },
      { "signal(nil, 'SIGINT')", function() conc.signal(nil, "SIGINT") end,
        "conc: signal: bad argument #1 (ctx expected, got nil)" },
      { "signals('SIGFOO')", function() conc.signals("SIGFOO") end,
        "conc: signals: bad argument #1 (unknown signal 'SIGFOO'; one of " .. NAMES .. " expected)" },
      { "signals('SIGUSR1', true)", function() conc.signals("SIGUSR1", true) end,
        "conc: signals: bad argument #2 (signal name expected, got boolean)" },
      { "signals()", function() conc.signals() end,
        "conc: signals: no signal named (at least one expected)" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        assert.are.equal(case[3], support.error_of(case[2]))
      end)
    end

    it("a refused call leaves no watch behind: the signal still kills (child process)", function()
      local out = isolated [[
        local conc = require "conc"
        print(pcall(conc.signals, "SIGUSR1", "SIGFOO"))
        io.stdout:flush()
        io.popen("kill -USR1 " .. PID):close()
        print("still alive")
      ]]
      assert.is_truthy(starts_with(out, "false\t"), out)
      assert.is_truthy(out:find("\nrc=138\n$"), out)
    end)
  end)
end)
