-- soak.lua: `make soak`. Creates and discards timers, tickers, contexts, channels, tasks,
-- rate limiters, errors and stewards in a loop for SOAK_SECONDS (default 60) and checks that memory stays bounded
-- (DESIGN.md, reliability contract). Prints a sample every few seconds; exits non-zero
-- when the Lua heap or the RSS at the end is more than 25% (and 4 MB) above the level
-- reached after the first fifth of the run.
local conc = require "conc"

local seconds = tonumber(os.getenv("SOAK_SECONDS")) or 60

local function rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local kb = tonumber(f:read("*a"):match("VmRSS:%s*(%d+)"))
  f:close()
  return kb or 0
end

local function sample()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count"), rss_kb()
end

-- One round: every kind of object made and dropped, some used, some abandoned pending.
local function round(i)
  local parent, cancel_parent = conc.with_cancel(conc.background())
  local ch = conc.chan(i % 3)
  local sem, mu, wg = conc.semaphore(3), conc.mutex(), conc.waitgroup()
  local tasks = {}
  for k = 1, 20 do
    local ctx = conc.with_value(conc.with_timeout(parent, 0.001 * (k % 5)), "k", k)
    local stop = conc.after_func(ctx, function() end)
    if k % 3 == 0 then stop() end
    wg:add(1)
    tasks[k] = conc.go(function()
      local t = conc.after(0.0005)
      local tick = conc.ticker(0.0002)
      conc.select(t, tick:chan(), ctx:done())
      tick:stop()
      if k % 2 == 0 then ch:send(k, ctx) else ch:recv(ctx) end
      if sem:acquire(ctx, 1 + k % 3) then sem:release(1 + k % 3) end
      if mu:lock(ctx) then mu:unlock() end
      conc.sleep(0, ctx)
      wg:done()
    end)
  end
  local lim, keyed = conc.rate.limiter(1e4, 2), conc.rate.keyed(1e3, 1, { idle = 0.01, max_keys = 64 })
  for k = 1, 10 do
    lim:wait(parent)
    lim:reserve(2):cancel()
    keyed:allow(("client-%d-%d"):format(i, k))
    conc.errors.wrap(conc.errors.new("soak", { kind = "soak" }), "round")
  end
  local runs = 0
  local steward = conc.steward {
    timeout = 0.001, intensity = 100, on_event = function() end,
    ward = function(wctx, pulse)
      runs = runs + 1
      pulse()
      if runs < 3 then error("ward fails") end
      wctx:done():recv()
    end,
  }
  local steward_task = conc.go(steward, parent)
  local g = conc.group(parent)
  g:set_limit(4)
  for _ = 1, 8 do g:go(function() return conc.sleep(0.0003) end) end
  conc.after(10) -- never waited on: collected with nothing referring to it
  conc.timer(10)
  conc.ticker(10)
  conc.sleep(0.002)
  cancel_parent()
  for _, t in ipairs(tasks) do t:wait() end
  steward_task:wait()
  wg:wait()
  g:wait()
end

conc.run(function()
  local start, rounds = conc.now(), 0
  local base_heap, base_rss, last_print = nil, nil, start
  local heap, rss
  while conc.now() - start < seconds do
    round(rounds)
    rounds = rounds + 1
    local elapsed = conc.now() - start
    if not base_heap and elapsed >= seconds / 5 then
      base_heap, base_rss = sample()
      print(("baseline at %.0f s: heap %.0f KB, RSS %d KB"):format(elapsed, base_heap, base_rss))
    end
    if conc.now() - last_print >= seconds / 10 then
      last_print = conc.now()
      heap, rss = sample()
      print(("%3.0f s: %d rounds, heap %.0f KB, RSS %d KB, tasks %d, timers %d"):format(
        elapsed, rounds, heap, rss, conc.stats().tasks, conc.stats().timers))
    end
  end
  heap, rss = sample()
  local function grew(now, base) return now > base * 1.25 and now - base > 4096 end
  print(("end: %d rounds; heap %.0f KB (baseline %.0f), RSS %d KB (baseline %d)"):format(
    rounds, heap, base_heap, rss, base_rss))
  if grew(heap, base_heap) or grew(rss, base_rss) then
    print("soak: FAILED, memory grew")
    os.exit(1)
  end
  print("soak: ok, memory bounded")
end)
