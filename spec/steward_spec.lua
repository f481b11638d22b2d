--- Heartbeats and stewards: conc.heartbeat and conc.steward (lua/conc/steward.lua), rules
-- W1-W10 of SEMANTICS.md section 7 (the book's steward and ward), the OTP rules that apply to
-- a steward with one ward (O5 restart types, O6/O7 intensity and its inclusive window, O8
-- nested stewards), U7 (shutdown is judged from the steward's own ctx), and decision D7.
-- Everything timed runs on conc's virtual clock (conc.virtual_time(true)): time moves only
-- when every task waits, so times are exact and nothing sleeps. Events are ordered through
-- channels and log tables.
--
-- Not applicable to a steward with one ward: O1-O4 (strategies over several children), O9
-- and U8 (shutdown timeouts), U1-U6 and U9 (suture's failure decay, backoff pause and
-- special errors; conc follows OTP's counting instead).
local conc = require "conc"
local errors = require "conc.errors"
local support = require "support"

local pack, capture_reports, error_of = support.pack, support.capture_reports, support.error_of

local bg = conc.background()
local EPS = 1e-9

--- Runs fn(t0) as the main task on the virtual clock; t0 is conc.now() at its start.
local function vrun(fn)
  return conc.run(function()
    conc.virtual_time(true)
    return fn(conc.now())
  end)
end

--- A ward whose k-th run calls runs[k](wctx, pulse, k, ...) (the last entry serves every
-- later run). `log` records each run's start time, its ctx, and sends k on log.started.
local function scripted(runs)
  local log = { starts = {}, ctxs = {}, started = conc.chan(10000) }
  local function ward(wctx, pulse, ...)
    local k = #log.starts + 1
    log.starts[k], log.ctxs[k] = conc.now(), wctx
    log.started:try_send(k)
    return (runs[k] or runs[#runs])(wctx, pulse, k, ...)
  end
  return ward, log
end

--- Blocks until the ward of `log` has started its k-th run.
local function wait_run(log, k)
  while #log.starts < k do log.started:recv() end
end

--- Start times of the runs in `log`, relative to t0.
local function rel_starts(log, t0)
  local out = {}
  for i, t in ipairs(log.starts) do out[i] = t - t0 end
  return out
end

--- A run that waits until its ctx ends, then returns nil, ctx:err() (the Lua convention).
local function idle(wctx)
  wctx:done():recv()
  return nil, wctx:err()
end

--- on_event that records every event (with the time it came) in the returned list.
local function recorder()
  local evs = {}
  return evs, function(ev)
    evs[#evs + 1] = { type = ev.type, ward = ev.ward, err = ev.err, n = ev.n, t = conc.now() }
  end
end

--- "type n" of each event, e.g. {"start 0", "failed 0", "restart 1"}.
local function kinds(evs)
  local out = {}
  for i, e in ipairs(evs) do out[i] = ("%s %s"):format(e.type, tostring(e.n)) end
  return out
end

local function near_all(expected, got, what)
  assert.are.equal(#expected, #got, what)
  for i = 1, #expected do assert.is_near(expected[i], got[i], EPS, what .. " #" .. i) end
end

local function contains(s, part)
  return type(s) == "string" and s:find(part, 1, true) ~= nil
end

describe("heartbeats and stewards", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  describe("conc.heartbeat", function()
    it("W1: 10^4 pulses with no listener neither block nor grow memory; one beat waits, the rest are dropped", function()
      conc.run(function()
        local beat, pulse = conc.heartbeat()
        local switches = conc.stats().switches
        collectgarbage()
        collectgarbage()
        local before = collectgarbage("count")
        for _ = 1, 10000 do pulse() end
        collectgarbage()
        collectgarbage()
        local grown = collectgarbage("count") - before
        assert.are.equal(switches, conc.stats().switches, "a pulse parked the task")
        assert.is_true(grown < 16, ("memory grew by %.1f KB over 10^4 pulses (a kept beat each would be >= 128 KB)"):format(grown))
        assert.are.equal(1, beat:len())
        local _, ok = beat:try_recv()
        assert.is_true(ok)
        assert.are.same({ nil, false, "empty" }, { beat:try_recv() })
      end)
      -- at the top level too, where a blocking call would drive the scheduler
      local beat, pulse = conc.heartbeat()
      for _ = 1, 10000 do pulse() end
      assert.are.equal(1, beat:len())
    end)

    it("W1: the beat channel has capacity 1, and a listener already waiting gets the pulse at once (DESIGN Heartbeats)", function()
      conc.run(function()
        local beat, pulse = conc.heartbeat()
        assert.are.equal(1, beat:cap())
        local listener = support.parked(function() local _, ok = beat:recv(); return ok end)
        assert.are.equal("blocked", listener:status())
        pulse()
        assert.are.equal("ready", listener:status())
        assert.are.same({ true, true }, { listener:wait() })
        assert.are.equal(0, beat:len(), "the beat went to the listener, not into the buffer")
      end)
    end)
  end)

  describe("watching the heartbeat", function()
    it("W2/W3: a ward that pulses every timeout/2 is never restarted, however long it runs", function()
      vrun(function(t0)
        local beats = 0
        local ward, log = scripted { function(wctx, pulse)
          repeat
            pulse()
            beats = beats + 1
          until not conc.sleep(0.5, wctx)
        end }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_cancel(bg)
        local t = conc.go(conc.steward { ward = ward, timeout = 1, intensity = 0, on_event = on_event }, ctx)
        conc.sleep(1000)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.is_near(1000, conc.now() - t0, EPS)
        assert.is_true(beats >= 2000, "the ward ran all along")
        assert.are.equal(1, #log.starts)
        assert.are.same({ "start 0" }, kinds(evs))
      end)
    end)

    it("W3: each pulse opens a new window: pulses 0.9*timeout apart keep the ward, and the miss comes timeout after the last one", function()
      vrun(function(t0)
        local ward, log = scripted {
          function(wctx, pulse)
            for _ = 1, 5 do
              if not conc.sleep(0.9, wctx) then return end
              pulse()
            end
            return idle(wctx) -- silent from t=4.5 on
          end,
          idle,
        }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_cancel(bg)
        local t = conc.go(conc.steward { ward = ward, timeout = 1, on_event = on_event }, ctx)
        wait_run(log, 2)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.are.same({ "start 0", "missed 0", "restart 1" }, kinds(evs))
        assert.is_near(5.5, evs[2].t - t0, EPS)
        near_all({ 0, 5.5 }, rel_starts(log, t0), "starts")
      end)
    end)

    it("W4: the book's run: timeout 4 s, a ward that never pulses, stopped at 9 s: starts at 0, 4, 8; each ward's ctx ends at 4, 8, 9", function()
      vrun(function(t0)
        local ends = {}
        local ward, log = scripted { function(wctx, _, k)
          wctx:done():recv()
          ends[k] = conc.now() - t0
        end }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_timeout(bg, 9)
        local t = conc.go(conc.steward { name = "irresponsible", ward = ward, timeout = 4, on_event = on_event }, ctx)
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        cancel()
        assert.is_near(9, conc.now() - t0, EPS)
        near_all({ 0, 4, 8 }, rel_starts(log, t0), "starts")
        near_all({ 4, 8, 9 }, ends, "ends")
        assert.are.same({ "start 0", "missed 0", "restart 1", "missed 1", "restart 2" }, kinds(evs))
        for _, i in ipairs { 2, 4 } do
          assert.are.equal("steward", errors.kind(evs[i].err))
          assert.is_true(contains(tostring(evs[i].err), "irresponsible"), tostring(evs[i].err))
        end
      end)
    end)

    it("W4: the old ward's ctx is cancelled before its replacement starts, after a failure, a return and a missed heartbeat", function()
      vrun(function()
        local order = {}
        local ward, log
        local function note(k)
          local prev = log.ctxs[k - 1]
          order[#order + 1] = ("start %d, previous ctx: %s"):format(k, prev and tostring(prev:err()) or "none")
        end
        ward, log = scripted {
          function(_, _, k) note(k); return nil, errors.new("run 1 fails") end,
          function(_, _, k) note(k); return "run 2 returns" end,
          function(wctx, _, k) note(k); return idle(wctx) end, -- never pulses: missed
          function(wctx, _, k) note(k); return idle(wctx) end,
        }
        local ctx, cancel = conc.with_cancel(bg)
        local t = conc.go(conc.steward { ward = ward, timeout = 1, intensity = 10, on_event = function() end }, ctx)
        wait_run(log, 4)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.are.same({
          "start 1, previous ctx: none",
          "start 2, previous ctx: context canceled",
          "start 3, previous ctx: context canceled",
          "start 4, previous ctx: context canceled",
        }, order)
      end)
    end)

    it("W5: the steward pulses its own pulse at each healthy beat of its ward, and never while the ward is silent", function()
      vrun(function(t0)
        local beats, own = {}, {}
        local ward, log = scripted {
          function(wctx, pulse)
            for _ = 1, 5 do -- beats at 0, 0.5, 1, 1.5, 2; then silent
              beats[#beats + 1] = conc.now() - t0
              pulse()
              if not conc.sleep(0.5, wctx) then return end
            end
            return idle(wctx)
          end,
          idle,
        }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_cancel(bg)
        local st = conc.steward { ward = ward, timeout = 1, on_event = on_event }
        local t = conc.go(st, ctx, function() own[#own + 1] = conc.now() - t0 end)
        wait_run(log, 2)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.are.same({ "start 0", "missed 0", "restart 1" }, kinds(evs))
        assert.is_near(3, evs[2].t - t0, EPS)
        assert.are.equal(5, #beats)
        for _, b in ipairs(beats) do
          local found = false
          for _, p in ipairs(own) do found = found or math.abs(p - b) < EPS end
          assert.is_true(found, "no own pulse for the ward's beat at t=" .. b)
        end
        for _, p in ipairs(own) do
          assert.is_false(p > 2 + EPS and p < 3 - EPS, "own pulse while the ward was silent, at t=" .. p)
        end
      end)
    end)

    it("W5: a steward without a timeout passes its ward's pulses on and never restarts it for silence (DESIGN Stewards)", function()
      vrun(function(t0)
        local own = 0
        local ward, log = scripted { function(wctx, pulse)
          pulse()
          conc.sleep(1, wctx)
          pulse()
          return idle(wctx) -- silent for good
        end }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_cancel(bg)
        local t = conc.go(conc.steward { ward = ward, on_event = on_event }, ctx, function() own = own + 1 end)
        conc.sleep(100)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.is_near(100, conc.now() - t0, EPS)
        assert.are.equal(1, #log.starts)
        assert.are.same({ "start 0" }, kinds(evs))
        assert.is_true(own >= 2, "the ward's two beats were passed on")
      end)
    end)

    it("W5/O8: a steward without a timeout can watch another steward, which pulses it as it starts its ward (DESIGN Stewards)", function()
      vrun(function()
        local leaf, log = scripted { function() return nil, errors.new("leaf") end, idle }
        local inner = conc.steward { name = "leaf", ward = leaf, timeout = 1, on_event = function() end }
        local outer_evs, outer_on = recorder()
        local outer = conc.steward { name = "inner", ward = inner, on_event = outer_on }
        local ctx, cancel = conc.with_cancel(bg)
        local t = conc.go(outer, ctx)
        wait_run(log, 2)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.are.same({ "start 0" }, kinds(outer_evs))
      end)
    end)
  end)

  describe("stopping", function()
    it("W6: when the steward's ctx ends, it cancels the ward, waits for it to end, starts no other, and returns true", function()
      vrun(function(t0)
        local ended
        local ward, log = scripted { function(wctx)
          wctx:done():recv()
          conc.sleep(0.5) -- cleaning up, within the timeout
          ended = conc.now() - t0
        end }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_cancel(bg)
        local t = conc.go(conc.steward { ward = ward, timeout = 1, on_event = on_event }, ctx)
        wait_run(log, 1)
        conc.sleep(1.5) -- the ward is silent: the steward restarted it at t=1 ...
        assert.are.equal(2, #log.starts)
        cancel() -- ... and now it stops
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.is_near(2, conc.now() - t0, EPS)
        assert.is_near(2, ended, EPS, "the last ward ended before the steward returned")
        assert.are.equal(errors.canceled, log.ctxs[2]:err())
        assert.are.equal(2, #log.starts)
        assert.are.same({ "start 0", "missed 0", "restart 1" }, kinds(evs))
      end)
    end)

    it("W6: a steward whose ctx ends while it backs off returns true at once and restarts nothing", function()
      vrun(function(t0)
        local ward, log = scripted { function() return nil, errors.new("down") end }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_cancel(bg)
        local st = conc.steward { ward = ward, backoff = { initial = 10 }, on_event = on_event }
        local t = conc.go(st, ctx)
        conc.sleep(1)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.is_near(1, conc.now() - t0, EPS)
        assert.are.equal(1, #log.starts)
        assert.are.same({ "start 0", "failed 0" }, kinds(evs))
      end)
    end)

    it("W6/D1: a steward whose ctx is already done returns true without starting its ward", function()
      local ward, log = scripted { idle }
      local evs, on_event = recorder()
      local ctx, cancel = conc.with_cancel(bg)
      cancel()
      local st = conc.steward { ward = ward, timeout = 1, on_event = on_event }
      conc.run(function()
        assert.are.same({ n = 1, true }, pack(st(ctx)))
      end)
      assert.are.equal(0, #log.starts)
      assert.are.same({}, evs)
    end)

    it("U7/W6: a ward that returns ctx:err() because the steward's own ctx ended is not a failure: nothing is reported", function()
      local seen = capture_reports(function()
        vrun(function(t0)
          local ward, log = scripted { idle }
          local ctx, cancel = conc.with_timeout(bg, 3)
          local t = conc.go(conc.steward { ward = ward, restart = "transient" }, ctx)
          assert.are.same({ n = 2, true, true }, pack(t:wait()))
          cancel()
          assert.is_near(3, conc.now() - t0, EPS)
          assert.are.equal(errors.deadline_exceeded, log.ctxs[1]:err())
          assert.are.equal(1, #log.starts)
        end)
      end)
      assert.are.same({}, seen)
    end)
  end)

  describe("exits", function()
    it("W7: a ward that pulses and then returns or fails is never taken for healthy: restarted at once, given up on with no time passing", function()
      for _, how in ipairs { "returns", "raises", "returns nil, err" } do
        vrun(function(t0)
          local ward, log = scripted { function(_, pulse, k)
            pulse()
            if how == "raises" then error(errors.new("run " .. k), 0) end
            if how == "returns nil, err" then return nil, errors.new("run " .. k) end
            return "done"
          end }
          local evs, on_event = recorder()
          local st = conc.steward { name = "w7", ward = ward, timeout = 1, intensity = 2, on_event = on_event }
          local ok, err = conc.pcall(st, bg)
          assert.is_false(ok, how)
          assert.are.equal("steward", errors.kind(err), how)
          assert.is_near(0, conc.now() - t0, EPS, how)
          assert.are.equal(3, #log.starts, how)
          local ended = how == "returns" and "returned" or "failed"
          assert.are.same({ "start 0", ended .. " 0", "restart 1", ended .. " 1", "restart 2", ended .. " 2", "gave_up 2" },
            kinds(evs), how)
        end)
      end
    end)

    it("O5/D7: permanent, the default, restarts a ward after a normal return", function()
      vrun(function()
        local ward, log = scripted { function() return "done" end, idle }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_cancel(bg)
        local t = conc.go(conc.steward { ward = ward, on_event = on_event }, ctx)
        wait_run(log, 2)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.are.same({ "start 0", "returned 0", "restart 1" }, kinds(evs))
      end)
    end)

    it("D7/O5: transient + normal return: not restarted, and the steward returns true", function()
      vrun(function(t0)
        local ward, log = scripted { function(wctx, pulse)
          pulse()
          conc.sleep(0.5, wctx)
          return "finished"
        end }
        local evs, on_event = recorder()
        local st = conc.steward { ward = ward, timeout = 1, restart = "transient", on_event = on_event }
        assert.are.same({ n = 1, true }, pack(st(bg)))
        assert.is_near(0.5, conc.now() - t0, EPS)
        assert.are.equal(1, #log.starts)
        assert.are.same({ "start 0", "returned 0" }, kinds(evs))
      end)
    end)

    it("D7: transient + missed heartbeat: restarted", function()
      vrun(function(t0)
        local ward, log = scripted { idle, function() return "finished" end }
        local evs, on_event = recorder()
        local st = conc.steward { ward = ward, timeout = 1, restart = "transient", on_event = on_event }
        assert.are.same({ n = 1, true }, pack(st(bg)))
        assert.is_near(1, conc.now() - t0, EPS)
        near_all({ 0, 1 }, rel_starts(log, t0), "starts")
        assert.are.same({ "start 0", "missed 0", "restart 1", "returned 1" }, kinds(evs))
        assert.are.equal(errors.canceled, log.ctxs[1]:err(), "the silent ward was cancelled")
      end)
    end)

    it("O5: transient restarts after a failure, whether the ward raised or returned nil, err (DESIGN Failure of a user function)", function()
      vrun(function()
        local e1, e2 = errors.new("raised"), errors.new("returned")
        local ward, log = scripted {
          function() error(e1, 0) end,
          function() return nil, e2 end,
          function() return nil end, -- nil alone is a normal return
        }
        local evs, on_event = recorder()
        local st = conc.steward { ward = ward, restart = "transient", on_event = on_event }
        assert.are.same({ n = 1, true }, pack(st(bg)))
        assert.are.equal(3, #log.starts)
        assert.are.same({ "start 0", "failed 0", "restart 1", "failed 1", "restart 2", "returned 2" }, kinds(evs))
        assert.are.equal(e1, evs[2].err)
        assert.are.equal(e2, evs[4].err)
      end)
    end)

    it("O5: temporary is never restarted: a return gives true, a failure or a missed heartbeat gives nil, err", function()
      vrun(function(t0)
        local e = errors.new("broken")
        local cases = {
          { function() return "done" end, { n = 1, true } },
          { function() return nil, e end, { n = 2, nil, e } },
          { function() error(e, 0) end, { n = 2, nil, e } },
        }
        for i, c in ipairs(cases) do
          local ward, log = scripted { c[1] }
          local st = conc.steward { ward = ward, restart = "temporary", on_event = function() end }
          assert.are.same(c[2], pack(st(bg)), "case " .. i)
          assert.are.equal(1, #log.starts, "case " .. i)
        end
        local ward, log = scripted { idle }
        local st = conc.steward { ward = ward, timeout = 2, restart = "temporary", on_event = function() end }
        local r = pack(st(bg))
        assert.are.equal(2, r.n)
        assert.is_nil(r[1])
        assert.are.equal("steward", errors.kind(r[2]))
        assert.is_near(2, conc.now() - t0, EPS)
        assert.are.equal(1, #log.starts)
        assert.are.equal(errors.canceled, log.ctxs[1]:err(), "the silent ward was cancelled")
      end)
    end)

    it("U7: a ward that returns errors.canceled from some other ctx while the steward lives is restarted as a failure", function()
      vrun(function()
        local ward, log = scripted {
          function()
            local other, cancel_other = conc.with_cancel(bg)
            cancel_other()
            return nil, other:err()
          end,
          function(wctx) -- a child ctx of its own, with a deadline
            local c, cancel_c = conc.with_timeout(wctx, 0.5)
            c:done():recv()
            cancel_c()
            error(c:err(), 0)
          end,
          function() return "finished" end,
        }
        local evs, on_event = recorder()
        local st = conc.steward { ward = ward, restart = "transient", on_event = on_event }
        assert.are.same({ n = 1, true }, pack(st(bg)))
        assert.are.equal(3, #log.starts)
        assert.are.same({ "start 0", "failed 0", "restart 1", "failed 1", "restart 2", "returned 2" }, kinds(evs))
        assert.are.equal(errors.canceled, evs[2].err)
        assert.is_true(errors.is(evs[4].err, errors.deadline_exceeded))
      end)
    end)
  end)

  describe("intensity", function()
    it("O6: the default intensity is 3: a 4th restart within the period gives up", function()
      vrun(function(t0)
        local ward, log = scripted { function(_, _, k) return nil, errors.new("run " .. k) end }
        local evs, on_event = recorder()
        local ok, err = conc.pcall(conc.steward { ward = ward, on_event = on_event }, bg)
        assert.is_false(ok)
        assert.are.equal("steward", errors.kind(err))
        assert.is_near(0, conc.now() - t0, EPS)
        assert.are.equal(4, #log.starts)
        assert.are.same({ "start 0", "failed 0", "restart 1", "failed 1", "restart 2", "failed 2", "restart 3",
          "failed 3", "gave_up 3" }, kinds(evs))
      end)
    end)

    it("O6: the default period is 5 s: failures 1.6 s apart give up at t=6.4; 1.7 s apart never do", function()
      vrun(function(t0)
        local function every(gap)
          return scripted { function(wctx, _, k)
            if not conc.sleep(gap, wctx) then return nil, wctx:err() end
            return nil, errors.new("run " .. k)
          end }
        end
        local ward, log = every(1.6)
        local r = pack(conc.go(conc.steward { ward = ward, on_event = function() end }, bg):wait())
        assert.is_nil(r[1])
        assert.are.equal("steward", errors.kind(r[2]))
        assert.is_near(6.4, conc.now() - t0, EPS)
        assert.are.equal(4, #log.starts)

        local t1 = conc.now()
        ward, log = every(1.7)
        local ctx, cancel = conc.with_cancel(bg)
        local t = conc.go(conc.steward { ward = ward, on_event = function() end }, ctx)
        conc.sleep(20)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.is_near(20, conc.now() - t1, EPS)
        assert.are.equal(12, #log.starts) -- started at 0, 1.7, ..., 18.7
      end)
    end)

    local window = {
      { "restarts at t=0 and t=3 give up at t=3", { 0, 3 }, 3 },
      { "restarts at t=0 and t=5 give up at t=5: a restart exactly period ago still counts", { 0, 5 }, 5 },
      { "restarts at t=0 and t=6 do not give up", { 0, 6 } },
      { "restarts at t=0, t=6 and t=10 give up at t=10 (the window slides)", { 0, 6, 10 }, 10 },
    }
    for _, case in ipairs(window) do
      local name, times, gives_up_at = case[1], case[2], case[3]
      it("O7/W9: intensity 1, period 5: " .. name, function()
        vrun(function(t0)
          local runs = {}
          for k, at in ipairs(times) do
            runs[k] = function(wctx)
              if not conc.sleep(at - (times[k - 1] or 0), wctx) then return nil, wctx:err() end
              return nil, errors.new("run " .. k)
            end
          end
          runs[#times + 1] = idle
          local ward, log = scripted(runs)
          local evs, on_event = recorder()
          local ctx, cancel = conc.with_cancel(bg)
          local t = conc.go(conc.steward { ward = ward, intensity = 1, period = 5, on_event = on_event }, ctx)
          if gives_up_at then
            local r = pack(t:wait())
            assert.are.equal(2, r.n)
            assert.is_nil(r[1])
            assert.are.equal("steward", errors.kind(r[2]))
            assert.is_near(gives_up_at, conc.now() - t0, EPS)
            assert.are.equal(#times, #log.starts)
            assert.are.equal("gave_up", evs[#evs].type)
            cancel()
          else
            wait_run(log, #times + 1)
            assert.is_near(times[#times], conc.now() - t0, EPS)
            cancel()
            assert.are.same({ n = 2, true, true }, pack(t:wait()))
            assert.are.equal("restart", evs[#evs].type)
          end
        end)
      end)
    end

    it("O7: intensity 0 gives up at the first restart", function()
      vrun(function()
        local e = errors.new("once")
        local ward, log = scripted { function() return nil, e end }
        local evs, on_event = recorder()
        local ok, err = conc.pcall(conc.steward { ward = ward, intensity = 0, on_event = on_event }, bg)
        assert.is_false(ok)
        assert.are.equal(e, errors.unwrap(err))
        assert.are.equal(1, #log.starts)
        assert.are.same({ "start 0", "failed 0", "gave_up 0" }, kinds(evs))
      end)
    end)

    it("W9: giving up raises a conc error that names the ward, with the ward's last error as its cause", function()
      vrun(function()
        local errs = {}
        local ward = scripted { function(_, _, k)
          errs[k] = errors.new("fetch " .. k .. " failed")
          return nil, errs[k]
        end }
        local evs, on_event = recorder()
        local st = conc.steward { name = "fetcher", ward = ward, intensity = 1, on_event = on_event }
        local r = pack(conc.go(st, bg):wait())
        assert.are.equal(2, r.n)
        assert.is_nil(r[1], "the steward raised")
        local err = r[2]
        assert.is_true(errors.is_error(err))
        assert.is_false(errors.is_bug(err))
        assert.is_true(contains(tostring(err), "fetcher"), tostring(err))
        assert.are.equal(2, #errs)
        assert.are.equal(errs[2], errors.unwrap(err))
        assert.is_true(errors.is(err, errs[2]))
        assert.is_false(errors.is(err, errs[1]))
        assert.are.equal(err, evs[#evs].err, "the gave_up event carries the same error")
      end)
    end)

    it("W9: the give-up error's cause is the last outcome: a raw error (a bug), a missed heartbeat or a return", function()
      vrun(function()
        local cases = {
          { function(_, _, k) error("boom " .. k, 0) end, function(err)
            assert.is_true(errors.is_bug(errors.unwrap(err)))
            assert.are.equal("boom 2", errors.cause(err))
          end },
          { idle, function(err)
            assert.are.equal("steward", errors.kind(errors.unwrap(err)))
            assert.is_true(contains(tostring(errors.unwrap(err)), "sleepy"))
          end },
          { function() return "done" end, function(err)
            assert.is_not_nil(errors.unwrap(err))
            assert.is_true(contains(tostring(errors.unwrap(err)), "sleepy"))
          end },
        }
        for _, c in ipairs(cases) do
          local ward = scripted { c[1] }
          local st = conc.steward { name = "sleepy", ward = ward, timeout = 1, intensity = 1, on_event = function() end }
          local ok, err = conc.pcall(st, bg)
          assert.is_false(ok)
          assert.is_true(contains(tostring(err), "sleepy"), tostring(err))
          c[2](err)
        end
      end)
    end)

    it("O8: nested stewards multiply: a failing leaf under intensities 2 and 3 starts (2+1)*(3+1) times before the top gives up", function()
      vrun(function()
        local leaf_errs = {}
        local leaf = scripted { function(_, _, k)
          leaf_errs[k] = errors.new("leaf " .. k)
          return nil, leaf_errs[k]
        end }
        local inner_evs, inner_on = recorder()
        local outer_evs, outer_on = recorder()
        local inner = conc.steward { name = "leaf", ward = leaf, timeout = 1, intensity = 2, period = 100,
          on_event = inner_on }
        local outer = conc.steward { name = "inner", ward = inner, timeout = 1, intensity = 3, period = 100,
          on_event = outer_on }
        local ok, err = conc.pcall(outer, bg)
        assert.is_false(ok)
        assert.are.equal(12, #leaf_errs)
        local function count(evs, ty)
          local n = 0
          for _, e in ipairs(evs) do if e.type == ty then n = n + 1 end end
          return n
        end
        assert.are.equal(4 * 2, count(inner_evs, "restart"))
        assert.are.equal(4, count(inner_evs, "gave_up"))
        assert.are.equal(3, count(outer_evs, "restart"))
        assert.are.equal(1, count(outer_evs, "gave_up"))
        assert.is_true(contains(tostring(err), "inner"))
        local inner_gave_up = errors.unwrap(err)
        assert.are.equal(inner_evs[#inner_evs].err, inner_gave_up)
        assert.are.equal(leaf_errs[12], errors.unwrap(inner_gave_up))
        assert.is_true(errors.is(err, leaf_errs[12]))
      end)
    end)
  end)

  describe("backoff", function()
    it("W9: the k-th restart waits min(max, initial*factor^(k-1)) with jitter 0", function()
      vrun(function(t0)
        local ward, log = scripted { function(wctx, _, k)
          if k > 5 then return idle(wctx) end
          return nil, errors.new("run " .. k)
        end }
        local evs, on_event = recorder()
        local ctx, cancel = conc.with_cancel(bg)
        local st = conc.steward { ward = ward, intensity = 10, period = 1, on_event = on_event,
          backoff = { initial = 0.5, factor = 3, max = 10, jitter = 0 } }
        local t = conc.go(st, ctx)
        wait_run(log, 6)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        local waits = {}
        for k = 1, 5 do waits[k] = log.starts[k + 1] - log.starts[k] end
        near_all({ 0.5, 1.5, 4.5, 10, 10 }, waits, "waits")
        near_all({ 0, 0.5, 2, 6.5, 16.5, 26.5 }, rel_starts(log, t0), "starts")
        assert.are.same({ "start 0", "failed 0", "restart 1", "failed 1", "restart 2", "failed 2", "restart 3",
          "failed 3", "restart 4", "failed 4", "restart 5" }, kinds(evs))
      end)
    end)

    it("W9: with jitter j, each wait lies in [d, d*(1+j)), and it does vary", function()
      vrun(function()
        local N = 40
        local ward, log = scripted { function(wctx, _, k)
          if k > N then return idle(wctx) end
          return nil, errors.new("run " .. k)
        end }
        local ctx, cancel = conc.with_cancel(bg)
        local st = conc.steward { ward = ward, intensity = 1000, period = 1, on_event = function() end,
          backoff = { initial = 2, factor = 1, jitter = 0.5 } }
        local t = conc.go(st, ctx)
        wait_run(log, N + 1)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        local lo, hi = math.huge, -math.huge
        for k = 1, N do
          local w = log.starts[k + 1] - log.starts[k]
          assert.is_true(w >= 2 - EPS and w < 3, ("wait %d is %.12g, not in [2, 3)"):format(k, w))
          lo, hi = math.min(lo, w), math.max(hi, w)
        end
        assert.is_true(hi - lo > 1e-3, "jitter 0.5 never changed the wait")
      end)
    end)
  end)

  describe("events and reports", function()
    it("W10: every event goes through on_event as {type, ward, err, n}, n the restarts so far", function()
      vrun(function(t0)
        local e1 = errors.new("run 1 fails")
        local ward = scripted {
          function() error(e1, 0) end,
          idle, -- missed
          function() return "done" end,
        }
        local evs, on_event = recorder()
        local st = conc.steward { name = "w10", ward = ward, timeout = 1, intensity = 2, on_event = on_event }
        local ok, err = conc.pcall(st, bg)
        assert.is_false(ok)
        assert.are.same({ "start 0", "failed 0", "restart 1", "missed 1", "restart 2", "returned 2", "gave_up 2" },
          kinds(evs))
        for _, ev in ipairs(evs) do assert.are.equal("w10", ev.ward, ev.type) end
        for _, i in ipairs { 1, 3, 5, 6 } do assert.is_nil(evs[i].err, evs[i].type) end
        assert.are.equal(e1, evs[2].err)
        assert.are.equal("steward", errors.kind(evs[4].err))
        assert.are.equal(err, evs[7].err)
        near_all({ 0, 0, 0, 1, 1, 1, 1 }, (function()
          local out = {}
          for i, ev in ipairs(evs) do out[i] = ev.t - t0 end
          return out
        end)(), "event times")
      end)
    end)

    it("W10/E21: a failed ward with no on_event is written to errors.report, once, raw errors as bugs", function()
      local e2 = errors.new("returned error")
      local seen = capture_reports(function()
        vrun(function()
          local ward, log = scripted {
            function() error("boom", 0) end,
            function() return nil, e2 end,
            idle,
          }
          local ctx, cancel = conc.with_cancel(bg)
          local t = conc.go(conc.steward { name = "quiet", ward = ward }, ctx)
          wait_run(log, 3)
          cancel()
          assert.are.same({ n = 2, true, true }, pack(t:wait()))
        end)
      end)
      assert.are.equal(2, #seen)
      assert.is_true(errors.is_bug(seen[1]))
      assert.are.equal("boom", errors.cause(seen[1]))
      assert.are.equal(e2, seen[2])
    end)

    it("E21: with on_event, a ward's failure goes to on_event only, not to errors.report", function()
      local got = {}
      local seen = capture_reports(function()
        vrun(function()
          local ward, log = scripted { function() error("boom", 0) end, idle }
          local ctx, cancel = conc.with_cancel(bg)
          local st = conc.steward { ward = ward, on_event = function(ev) got[#got + 1] = ev.err end }
          local t = conc.go(st, ctx)
          wait_run(log, 2)
          cancel()
          assert.are.same({ n = 2, true, true }, pack(t:wait()))
        end)
      end)
      assert.are.same({}, seen)
      assert.are.equal(1, #got)
      assert.are.equal("boom", errors.cause(got[1]))
    end)
  end)

  describe("trees", function()
    it("W5/O8: a two-level tree: the inner steward restarts its hung ward, and the outer stays content on the inner's pulses", function()
      vrun(function(t0)
        local ward, log = scripted { function(wctx, pulse)
          for _ = 1, 4 do -- beats at s, s+0.5, s+1, s+1.5, then hung
            pulse()
            if not conc.sleep(0.5, wctx) then return nil, wctx:err() end
          end
          return idle(wctx)
        end }
        local inner_evs, inner_on = recorder()
        local outer_evs, outer_on = recorder()
        local inner = conc.steward { name = "worker", ward = ward, timeout = 1, intensity = 10, period = 100,
          on_event = inner_on }
        local outer = conc.steward { name = "inner", ward = inner, timeout = 2, on_event = outer_on }
        local beat, pulse = conc.heartbeat()
        local ctx, cancel = conc.with_timeout(bg, 10.8)
        local t = conc.go(outer, ctx, pulse)
        local beats = 0
        while true do
          local i = conc.select(beat, ctx:done())
          if i == 2 then break end
          beats = beats + 1
        end
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        cancel()
        assert.is_near(10.8, conc.now() - t0, EPS)
        near_all({ 0, 2.5, 5, 7.5, 10 }, rel_starts(log, t0), "the worker's starts")
        assert.are.same({ "start 0", "missed 0", "restart 1", "missed 1", "restart 2", "missed 2", "restart 3",
          "missed 3", "restart 4" }, kinds(inner_evs))
        assert.are.same({ "start 0" }, kinds(outer_evs), "the outer steward never restarted the inner one")
        assert.is_true(beats >= 10, "the tree's top pulsed its caller")
        for k = 1, 5 do assert.is_not_nil(log.ctxs[k]:err(), "worker " .. k .. " was stopped") end
      end)
    end)

    it("a steward is a ward (ctx, pulse, ...): extra arguments reach every run, and the ward's ctx is a child of the steward's (DESIGN Stewards)", function()
      vrun(function()
        local got = {}
        local ward, log = scripted {
          function(wctx, _, k, a, b) got[k] = { a, b, wctx:value("key") }; return nil, errors.new("again") end,
          function(wctx, _, k, a, b) got[k] = { a, b, wctx:value("key") }; return idle(wctx) end,
        }
        local ctx, cancel = conc.with_cancel(conc.with_value(bg, "key", "v"))
        local st = conc.steward { ward = ward, on_event = function() end }
        local t = conc.go(st, ctx, nil, "a", 2)
        wait_run(log, 2)
        cancel()
        assert.are.same({ n = 2, true, true }, pack(t:wait()))
        assert.are.same({ { "a", 2, "v" }, { "a", 2, "v" } }, got)
      end)
    end)
  end)

  describe("bad arguments", function()
    local function ward() end
    local function opts(extra)
      local o = { ward = ward }
      for k, v in pairs(extra) do o[k] = v end
      return o
    end
    local cases = {
      { "no options", function() conc.steward() end,
        "conc: steward: bad argument #1 (options table expected, got nil)" },
      { "an unknown option", function() conc.steward(opts { restrat = "permanent" }) end,
        "conc: steward: unknown option 'restrat'" },
      { "a missing ward", function() conc.steward {} end,
        "conc: steward: bad option ward (function expected, got nil)" },
      { "a non-function ward", function() conc.steward { ward = "w" } end,
        "conc: steward: bad option ward (function expected, got string)" },
      { "a negative timeout", function() conc.steward(opts { timeout = -1 }) end,
        "conc: steward: bad option timeout (a number of seconds > 0 expected, got -1)" },
      { "a zero timeout", function() conc.steward(opts { timeout = 0 }) end,
        "conc: steward: bad option timeout (a number of seconds > 0 expected, got 0)" },
      { "a string timeout", function() conc.steward(opts { timeout = "1" }) end,
        "conc: steward: bad option timeout (a number of seconds > 0 expected, got string)" },
      { "restart outside the three words", function() conc.steward(opts { restart = "always" }) end,
        "conc: steward: bad option restart ('permanent', 'transient' or 'temporary' expected, got 'always')" },
      { "a non-string name", function() conc.steward(opts { name = 5 }) end,
        "conc: steward: bad option name (string expected, got number)" },
      { "a negative intensity", function() conc.steward(opts { intensity = -1 }) end,
        "conc: steward: bad option intensity (a whole number >= 0 expected, got -1)" },
      { "a fractional intensity", function() conc.steward(opts { intensity = 1.5 }) end,
        "conc: steward: bad option intensity (a whole number >= 0 expected, got 1.5)" },
      { "a zero period", function() conc.steward(opts { period = 0 }) end,
        "conc: steward: bad option period (a number of seconds > 0 expected, got 0)" },
      { "a non-function on_event", function() conc.steward(opts { on_event = true }) end,
        "conc: steward: bad option on_event (function expected, got boolean)" },
      { "options that are not a table", function() conc.steward(print) end,
        "conc: steward: bad argument #1 (options table expected, got function)" },
      { "a non-table backoff", function() conc.steward(opts { backoff = 1 }) end,
        "conc: steward: bad option backoff (table expected, got number)" },
      { "an unknown backoff option", function() conc.steward(opts { backoff = { initial = 1, jiter = 0.1 } }) end,
        "conc: steward: unknown backoff option 'jiter'" },
      { "a backoff without initial", function() conc.steward(opts { backoff = { max = 1 } }) end,
        "conc: steward: bad option backoff.initial (a number of seconds > 0 expected, got nil)" },
      { "a zero backoff initial", function() conc.steward(opts { backoff = { initial = 0 } }) end,
        "conc: steward: bad option backoff.initial (a number of seconds > 0 expected, got 0)" },
      { "a negative backoff max", function() conc.steward(opts { backoff = { initial = 1, max = -1 } }) end,
        "conc: steward: bad option backoff.max (a number of seconds >= 0 expected, got -1)" },
      { "a backoff factor below 1", function() conc.steward(opts { backoff = { initial = 1, factor = 0.5 } }) end,
        "conc: steward: bad option backoff.factor (a number >= 1 expected, got 0.5)" },
      { "a negative backoff jitter", function() conc.steward(opts { backoff = { initial = 1, jitter = -0.1 } }) end,
        "conc: steward: bad option backoff.jitter (a number >= 0 expected, got -0.1)" },
      { "the ward called without a ctx", function() conc.steward(opts {})(nil) end,
        "conc: steward ward: bad argument #1 (ctx expected, got nil)" },
      { "the ward called with a non-function pulse", function() conc.steward(opts {})(bg, 5) end,
        "conc: steward ward: bad argument #2 (function expected, got number)" },
    }
    for _, c in ipairs(cases) do
      it("misuse raises a conc: error: " .. c[1] .. " (DESIGN Messages)", function()
        assert.are.equal(c[3], error_of(c[2]))
      end)
    end

    it("misuse raises a conc: error: a NaN timeout (DESIGN Messages)", function()
      local msg = error_of(conc.steward, opts { timeout = 0 / 0 })
      assert.matches("^conc: steward: bad option timeout %(a number of seconds > 0 expected, got nan%)$", msg)
    end)
  end)
end)
