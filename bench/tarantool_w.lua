-- bench/tarantool_w.lua: the Tarantool-fibers peer of `make bench`.
--
--   tarantool bench/tarantool_w.lua W1    (W1 W2 W3 W4 W4mem W5; env BENCH_SCALE shrinks N;
--                                         X1 X2 X2ref M1 M2 G1 R1 R2 R3 K1 P1 P2 P4
--                                         print NA)
--
-- Prints `RESULT <key> <number>` and `NOTE <text>` lines for bench/run.lua.
-- Same workload definitions as bench/conc_w.lua. Where Tarantool differs:
--   * fiber.create starts the fiber at once (the caller yields to it), where conc.go
--     and Go's `go` only schedule. It is the idiomatic call, so W4 uses it.
--   * fiber.channel has no select: W3 emulates one (see W3 below), so its number is
--     an emulation's, marked as such in RESULTS.md.
--   * every fiber has its own mmap'ed stack plus a guard page (two kernel mappings), so
--     vm.max_map_count (65530 by default) caps the fibers alive at once near 32k; W4mem
--     parks fewer fibers when it must and says so.
--   * time is read with clock.monotonic() (a real clock_gettime), not fiber.clock(),
--     which is the event loop's cached time.
local fiber = require "fiber"
local clock = require "clock"
local now = clock.monotonic

local scale = tonumber(os.getenv("BENCH_SCALE")) or 1
local function n_of(n) return math.max(4, math.floor(n * scale)) end
local function result(k, v) io.write("RESULT ", k, " ", string.format("%.17g", v), "\n") end
local function note(s) io.write("NOTE ", s, "\n") end

local function rss_bytes()
  local f = io.open("/proc/self/status"); local s = f:read("*a"); f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) * 1024
end
local function heap_bytes()
  collectgarbage("collect"); collectgarbage("collect")
  return collectgarbage("count") * 1024
end

-- Fibers alive at once are limited by vm.max_map_count (two mappings per fiber).
local function capped(n, what)
  local f, max = io.open("/proc/sys/vm/max_map_count"), math.huge
  if f then max = tonumber(f:read("*l")) or max; f:close() end
  local limit = math.floor((max - 2000) / 2)
  if n <= limit then return n end
  note(("%s: ran %d fibers, not %d: vm.max_map_count=%d allows about %d live fibers")
       :format(what, limit, n, max, limit))
  return limit
end

local W = {}

-- W1: ping-pong over two unbuffered channels; ns per round trip.
function W.W1()
  local n = n_of(1e6)
  local ping, pong = fiber.channel(0), fiber.channel(0)
  local t0 = now()
  fiber.create(function()
    for _ = 1, n do
      local v = ping:get()
      pong:put(v)
    end
  end)
  for i = 1, n do ping:put(i); pong:get() end
  result("ns", (now() - t0) / n * 1e9)
end

-- W2: one producer, one consumer, buffered channel of cap 128; ns per item.
function W.W2()
  local n = n_of(1e7)
  local ch = fiber.channel(128)
  local t0 = now()
  fiber.create(function()
    for i = 1, n do ch:put(i) end
  end)
  for _ = 1, n do ch:get() end
  result("ns", (now() - t0) / n * 1e9)
end

-- W3: select over 4 unbuffered channels, each fed by its own producer; ns per select.
-- Emulated select: a channel is ready when it holds a message or has a writer waiting;
-- choose uniformly among the ready ones and get() from it; if none is ready, wait on a
-- fiber.cond that every producer signals just before its put().
function W.W3()
  note("W3: emulated select (fiber.channel has none): is_empty/has_writers poll, random pick, fiber.cond wake-up")
  local per = math.floor(n_of(1e6) / 4)
  local chans = { fiber.channel(0), fiber.channel(0), fiber.channel(0), fiber.channel(0) }
  local cond = fiber.cond()
  local function select4()
    while true do
      local pick, seen = nil, 0
      for i = 1, 4 do
        local ch = chans[i]
        if not ch:is_empty() or ch:has_writers() then
          seen = seen + 1
          if math.random(seen) == 1 then pick = i end
        end
      end
      if pick then return pick, chans[pick]:get() end
      cond:wait()
    end
  end
  local t0 = now()
  for _, ch in ipairs(chans) do
    fiber.create(function()
      for i = 1, per do cond:signal(); ch:put(i) end
    end)
  end
  local sum = 0
  for _ = 1, 4 * per do
    local _, v = select4()
    sum = sum + v
  end
  assert(sum == 4 * per * (per + 1) / 2)
  result("ns", (now() - t0) / (4 * per) * 1e9)
end

-- W4: spawn 1e6 fibers that do nothing but count down; the last one signals.
function W.W4()
  local n = n_of(1e6)
  local left, done = n, fiber.channel(1)
  local function task()
    left = left - 1
    if left == 0 then done:put(true) end
  end
  local t0 = now()
  for _ = 1, n do fiber.create(task) end
  done:get()
  result("ns", (now() - t0) / n * 1e9)
end

-- W4mem: bytes per fiber while 100k fibers are parked on a channel receive. The fiber
-- structs and stacks are C memory outside the Lua heap: rss_bytes is the honest number,
-- heap_bytes shows only the Lua side (each fiber's Lua coroutine).
function W.W4mem()
  local n = capped(n_of(1e5), "W4mem")
  local ch, ready, parked = fiber.channel(0), fiber.channel(1), 0
  local function task()
    parked = parked + 1
    if parked == n then ready:put(true) end
    ch:get()
  end
  local h0, r0 = heap_bytes(), rss_bytes()
  for _ = 1, n do fiber.create(task) end
  ready:get()
  local h1, r1 = heap_bytes(), rss_bytes()
  result("heap_bytes", (h1 - h0) / n)
  result("rss_bytes", (r1 - r0) / n)
end

-- Park-Miller "minstd" generator, seed 42, identical in every peer.
local function durations(n)
  local x, d, max = 42, {}, 0
  for i = 1, n do
    x = x * 48271 % 2147483647
    d[i] = x / 2147483647 * 0.1
    if d[i] > max then max = d[i] end
  end
  return d, max
end

-- W5: 100k fibers each sleep a random 0-100 ms; overhead = wall time until the last
-- one woke minus the longest requested sleep; early = sleeps shorter than requested;
-- late = mean of (measured sleep - requested sleep).
function W.W5()
  local n = capped(n_of(1e5), "W5")
  local d, max = durations(n)
  local left, early, late, done = n, 0, 0, fiber.channel(1)
  local function task(dt)
    local s = now()
    fiber.sleep(dt)
    local slept = now() - s
    if slept < dt then early = early + 1 end
    late = late + (slept - dt)
    left = left - 1
    if left == 0 then done:put(true) end
  end
  local t0 = now()
  for i = 1, n do fiber.create(task, d[i]) end
  done:get()
  result("overhead_ms", (now() - t0 - max) * 1e3)
  result("early", early)
  result("late_ms", late / n * 1e3)
end

-- X1 X2 X2ref (contexts), M1 M2 (semaphore), G1 (group): nothing to run them on here.
local function na(reason) return function() io.write("NA ", reason, "\n") end end
local no_ctx, no_sem, no_group =
  na("no contexts"), na("no semaphore"), na("no group")
W.X1, W.X2, W.X2ref, W.M1, W.M2, W.G1 = no_ctx, no_ctx, no_ctx, no_sem, no_sem, no_group
-- P1 P2 P4 (the prime-finder pipeline): conc's stages (repeat_fn, take, map) are built on
-- contexts; nothing to run them on here.
local no_pipeline = na("no pipeline stages or contexts")
W.P1, W.P2, W.P4 = no_pipeline, no_pipeline, no_pipeline
-- R1 R2 R3 K1 (rate limiting): Tarantool has no rate limiter; the pure-Lua token bucket
-- under LuaJIT (the purejit column) is what one would run on it.
local no_rate = na("no rate limiter")
W.R1, W.R2, W.R3, W.K1 = no_rate, no_rate, no_rate, no_rate

local name = arg[1]
if not W[name] then
  io.stderr:write("usage: tarantool tarantool_w.lua W1|W2|W3|W4|W4mem|W5|X1|X2|X2ref|M1|M2|G1|R1|R2|R3|K1|P1|P2|P4\n")
  os.exit(2)
end
math.randomseed(42)
W[name]()
io.stdout:flush()
os.exit(0)
