--- A randomized stress of channels and select (DESIGN "Reliability contract"): many tasks do
-- random send/recv/select/try_send/try_recv/close/yield on a handful of shared channels of
-- mixed capacity. Every value sent is unique, and at the end every value is accounted for:
-- received exactly once, or still buffered, or never delivered (a send that raised, a
-- try_send that returned false, a select's send case that was not chosen); no value is
-- received twice, from the wrong channel, or without having been sent.
--
-- The run is deterministic given its seed (conc.seed drives select's choice and the asan
-- build's run-queue shuffle, math.randomseed the operations). The seed is printed; replay a
-- failure with CONC_STRESS_SEED=<seed>; CONC_STRESS_VERBOSE=1 prints the counts of the run.
local conc = require "conc"
local support = require "support"
local pack = support.pack

local unpack = table.unpack or unpack

local SEED = tonumber(os.getenv("CONC_STRESS_SEED") or "") or 20240601

local CLOSED = "conc: send on closed channel"

--- Runs one stress round. Returns a report table: counters, the list of violations found
-- (`bad`) and `trace`, the sequence of values received (to compare replays).
local function stress(seed, ntasks, nops, caps)
  conc.seed(seed)
  math.randomseed(seed)
  local chans, closed = {}, {}
  for i, c in ipairs(caps) do chans[i] = conc.chan(c) end
  local chan_of, state, received, leftover = {}, {}, {}, {}
  local bad, trace = {}, {}
  local n = { ops = 0, sent = 0, received = 0, failed = 0, selects = 0, closes = 0 }
  local nextv = 0

  local function fail(fmt, ...) bad[#bad + 1] = fmt:format(...) end

  local function newval(ci)
    nextv = nextv + 1
    chan_of[nextv], state[nextv] = ci, "offered"
    return nextv
  end

  local function settle(v, how)
    if state[v] ~= "offered" then fail("value %d settled twice (%s, then %s)", v, state[v], how) end
    state[v] = how
    n[how] = n[how] + 1
  end

  local function got(v, ci)
    if type(v) ~= "number" or chan_of[v] == nil then
      return fail("received %s, which was never sent", tostring(v))
    end
    if chan_of[v] ~= ci then fail("value %d sent on chan %d, received from chan %d", v, chan_of[v], ci) end
    received[v] = (received[v] or 0) + 1
    n.received = n.received + 1
    trace[#trace + 1] = v
  end

  local function closed_recv(ci, what)
    if not closed[ci] then fail("%s on open chan %d returned nil, false", what, ci) end
  end

  local function send_raised(err, ci, what)
    if err ~= CLOSED then fail("%s on chan %d raised %s", what, ci, tostring(err)) end
    if not closed[ci] then fail("%s on open chan %d raised", what, ci) end
  end

  local function op()
    local r, ci = math.random(), math.random(#chans)
    local ch = chans[ci]
    n.ops = n.ops + 1
    local len = ch:len()
    if len < 0 or len > caps[ci] or #ch ~= len then fail("C11: chan %d (cap %d) has len %d", ci, caps[ci], len) end
    if r < 0.25 then
      local v = newval(ci)
      local ok, err = conc.pcall(function() return ch:send(v) end)
      if ok then settle(v, "sent") else send_raised(err, ci, "send"); settle(v, "failed") end
    elseif r < 0.50 then
      local v, ok = ch:recv()
      if ok then got(v, ci) else closed_recv(ci, "recv") end
    elseif r < 0.60 then
      local v = newval(ci)
      local ok, res = conc.pcall(function() return ch:try_send(v) end)
      if not ok then
        send_raised(res, ci, "try_send"); settle(v, "failed")
      elseif res == true then
        settle(v, "sent")
      else
        if closed[ci] then fail("C17: try_send on closed chan %d returned false instead of raising", ci) end
        settle(v, "failed")
      end
    elseif r < 0.70 then
      local v, ok, e = ch:try_recv()
      if ok then
        got(v, ci)
      elseif e == "empty" then
        if closed[ci] and ch:len() == 0 then fail("try_recv on closed chan %d said empty", ci) end
      else
        closed_recv(ci, "try_recv")
      end
    elseif r < 0.97 then
      n.selects = n.selects + 1
      local k = math.random(1, 4)
      local cases, info = {}, {}
      for j = 1, k do
        local p, cj = math.random(), math.random(#chans)
        if p < 0.45 then
          cases[j], info[j] = chans[cj], { op = "recv", ci = cj }
        elseif p < 0.9 then
          local v = newval(cj)
          cases[j], info[j] = conc.send(chans[cj], v), { op = "send", ci = cj, v = v }
        else
          info[j] = { op = "nil" }
        end
      end
      if info[1].op == "nil" then cases[1], info[1] = chans[ci], { op = "recv", ci = ci } end
      if math.random() < 0.2 then -- conc.default somewhere among the cases
        local pos = math.random(1, k + 1)
        for j = k, pos, -1 do cases[j + 1], info[j + 1] = cases[j], info[j] end
        cases[pos], info[pos] = conc.default, { op = "default" }
        k = k + 1
      end
      local res = pack(conc.pcall(function() return conc.select(unpack(cases, 1, k)) end))
      local chosen
      if not res[1] then
        if res[2] ~= CLOSED then fail("select raised %s", tostring(res[2])) end
      else
        chosen = res[2]
        local c = info[chosen]
        if c == nil or c.op == "nil" then
          fail("select returned case %s, which is not a live case", tostring(chosen))
        elseif c.op == "recv" then
          if res[4] then got(res[3], c.ci) else closed_recv(c.ci, "select recv case") end
        elseif c.op == "send" then
          settle(c.v, "sent")
        else -- default: no case was ready (a value buffered, a closed channel, a free slot)
          for j = 1, k do
            local cj = info[j].ci
            if info[j].op == "recv" and (chans[cj]:len() > 0 or closed[cj]) then
              fail("S3: select chose default while its recv case on chan %d was ready", cj)
            elseif info[j].op == "send" and (closed[cj] or chans[cj]:len() < caps[cj]) then
              fail("S3: select chose default while its send case on chan %d was ready", cj)
            end
          end
        end
      end
      for j = 1, k do
        if info[j].op == "send" and j ~= chosen then settle(info[j].v, "failed") end
      end
    elseif r < 0.9998 then
      conc.yield()
    else
      local ok, err = pcall(ch.close, ch)
      if ok then
        if closed[ci] then fail("chan %d closed twice without raising", ci) end
        closed[ci] = true
        n.closes = n.closes + 1
      elseif err ~= "conc: close of closed channel" or not closed[ci] then
        fail("close of chan %d raised %s", ci, tostring(err))
      end
    end
  end

  conc.virtual_time(true)
  conc.run(function()
    local workers = {}
    for i = 1, ntasks do
      workers[i] = conc.go(function()
        for _ = 1, nops do op() end
      end)
    end
    -- Virtual time moves only when no task is ready: once this sleep returns, every worker
    -- has finished or is blocked for good. Closing every channel releases the blocked ones
    -- (receivers get nil, false; senders raise), and from then on no operation can block.
    conc.sleep(1)
    for ci, ch in ipairs(chans) do
      if not closed[ci] then
        closed[ci] = true
        ch:close()
      end
    end
    for i, t in ipairs(workers) do
      local ok, err = t:wait()
      if not ok then fail("worker %d failed: %s", i, tostring(err)) end
    end
  end)
  conc.virtual_time(false)

  for ci, ch in ipairs(chans) do
    while true do
      local v, ok = ch:try_recv()
      if not ok then break end
      if chan_of[v] ~= ci then fail("value %s left in chan %d was not sent there", tostring(v), ci) end
      leftover[v] = true
    end
  end

  for v = 1, nextv do
    local r, st = received[v] or 0, state[v]
    if r > 1 then fail("value %d received %d times", v, r) end
    if st == "sent" then
      if r == 0 and not leftover[v] then fail("value %d was sent but never received nor left buffered", v) end
      if r == 1 and leftover[v] then fail("value %d received and still buffered", v) end
    elseif st == "failed" then
      if r > 0 or leftover[v] then fail("value %d was not delivered (its send did not happen) but arrived", v) end
    else
      fail("value %d: its send never completed (state %s)", v, tostring(st))
    end
  end
  n.leftover = 0
  for _ in pairs(leftover) do n.leftover = n.leftover + 1 end
  n.bad, n.trace = bad, trace
  return n
end

local function explain(report)
  local lines = { ("%d violation(s), seed %d:"):format(#report.bad, SEED) }
  for i = 1, math.min(#report.bad, 20) do lines[#lines + 1] = "  " .. report.bad[i] end
  return table.concat(lines, "\n")
end

describe("stress", function()
  after_each(function()
    conc.virtual_time(false)
    support.nothing_left()
  end)

  it("C7 C11 C12 C13 C14 C15 C17 C18 C19 S1 S3 S4 S5 S6 S8 D2 D8: random operations by 200 tasks on shared channels lose, duplicate and invent no value", function()
    print("stress seed", SEED)
    local report = stress(SEED, 200, 150, { 0, 0, 1, 2, 5, 16 })
    if os.getenv("CONC_STRESS_VERBOSE") then
      print(("ops %d, sent %d, received %d, left buffered %d, not delivered %d, selects %d, closes %d"):format(
        report.ops, report.sent, report.received, report.leftover, report.failed, report.selects, report.closes))
    end
    assert(#report.bad == 0, explain(report))
    -- the run did real work, not only failing calls on closed channels
    assert.is_true(report.ops == 200 * 150)
    assert.is_true(report.received >= 3000, ("only %d values received"):format(report.received))
    assert.is_true(report.sent >= 3000, ("only %d values sent"):format(report.sent))
    assert.is_true(report.failed > 0 and report.selects > 0)
  end)

  describe("bad arguments", function()
    -- Every argument a user can get wrong, with values of every kind: each raises the exact
    -- conc: message and never crashes the interpreter (DESIGN "Reliability contract").
    local ch = conc.chan()
    local done = conc.go(function() end)
    done:wait()
    local junk = { nil, true, false, 0 / 0, "s", {}, print, coroutine.create(function() end), ch, conc.default,
      conc.send(ch, 1), done, io.stdout }
    local NJUNK = 13

    local function tname(v)
      if v ~= v then return "nan" end
      local mt = debug.getmetatable(v)
      if type(mt) == "table" and type(rawget(mt, "__name")) == "string" then return rawget(mt, "__name") end
      return type(v)
    end

    local function is(t) return function(v) return type(v) == t end end
    local function is_nil(v) return v == nil end
    local function case_ok(v) return v == nil or v == ch or v == conc.default or tname(v) == "conc.sendcase" end

    -- a number that is not one (NaN) is not a duration
    local function duration(v) return v ~= v and "duration in seconds" or "number" end

    local cases = { -- name, call with the junk value, its position, expected, which values are valid
      { "go", function(v) return conc.go(v) end, 1, "function", is("function") },
      { "run", function(v) return conc.run(v) end, 1, "function", is("function") },
      { "sleep", function(v) return conc.sleep(v) end, 1, duration, function(v) return type(v) == "number" and v == v end },
      { "sleep", function(v) return conc.sleep(0, v) end, 2, "ctx", is_nil },
      { "step", function(v) return conc.step(v) end, 1, duration, function(v) return v == nil or (type(v) == "number" and v == v) end },
      { "seed", function(v) return conc.seed(v) end, 1, "number", is("number") },
      { "virtual_time", function(v) return conc.virtual_time(v) end, 1, "boolean", is("boolean") },
      { "task:wait", function(v) return done:wait(v) end, 1, "ctx", is_nil },
      { "task:name", function(v) return done:name(v) end, 1, "string", function(v) return v == nil or type(v) == "string" end },
      { "ch:recv", function(v) return ch:recv(v) end, 1, "ctx", is_nil },
      { "ch:send", function(v) return ch:send(1, v) end, 2, "ctx", is_nil },
      { "send", function(v) return conc.send(v, 1) end, 1, "chan", function(v) return v == ch end },
      { "select", function(v) return conc.select(conc.default, v) end, 2,
        "chan, conc.send(ch, v), conc.default or nil", case_ok },
    }
    for _, c in ipairs(cases) do
      local expected = type(c[4]) == "function" and "number" or c[4]
      it(("%s: argument #%d of every other kind raises 'conc: %s: bad argument #%d (%s expected, got ...)'")
        :format(c[1], c[3], c[1], c[3], expected), function()
        local checked = 0
        for i = 1, NJUNK do
          local v = junk[i]
          if not c[5](v) then
            local expected = type(c[4]) == "function" and c[4](v) or c[4]
            local want = ("conc: %s: bad argument #%d (%s expected, got %s)"):format(c[1], c[3], expected, tname(v))
            assert.are.equal(want, support.error_of(c[2], v))
            checked = checked + 1
          end
        end
        assert.is_true(checked >= 8)
      end)
    end
  end)

  it("a stress run replays exactly from its seed (conc.seed, for replaying failures)", function()
    local a = stress(SEED + 1, 40, 60, { 0, 1, 3 })
    local b = stress(SEED + 1, 40, 60, { 0, 1, 3 })
    assert(#a.bad == 0, explain(a))
    assert.is_true(#a.trace > 0)
    assert.are.same(a.trace, b.trace)
    assert.are.same({ a.sent, a.received, a.failed, a.leftover, a.closes },
      { b.sent, b.received, b.failed, b.leftover, b.closes })
  end)
end)
