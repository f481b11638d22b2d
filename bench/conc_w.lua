-- bench/conc_w.lua: the conc workloads of `make bench`.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/release/?.so;;' \
--     lua5.4 bench/conc_w.lua W1     (W1 W2 W3 W4 W4mem W5 X1 X2 X2ref M1 M2 G1 R1 R2 R3
--                                     K1 P1 P2 P4; env BENCH_SCALE shrinks N)
--
-- Prints `RESULT <key> <number>` and `NOTE <text>` lines for bench/run.lua. The same
-- workloads, defined the same way, are in bench/purelua.lua, bench/tarantool_w.lua and
-- bench/go/main.go.
local conc = require "conc"

local scale = tonumber(os.getenv("BENCH_SCALE")) or 1
local function n_of(n) return math.max(4, math.floor(n * scale)) end
local function result(k, v) io.write("RESULT ", k, " ", string.format("%.17g", v), "\n") end

local function rss_bytes()
  local f = io.open("/proc/self/status"); local s = f:read("*a"); f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) * 1024
end
local function heap_bytes()
  collectgarbage("collect"); collectgarbage("collect")
  return collectgarbage("count") * 1024
end

local W = {}

-- W1: ping-pong over two unbuffered channels; ns per round trip.
function W.W1()
  local n = n_of(1e6)
  local ping, pong = conc.chan(), conc.chan()
  local t0 = conc.now()
  conc.go(function()
    for _ = 1, n do
      local v = ping:recv()
      pong:send(v)
    end
  end)
  for i = 1, n do ping:send(i); pong:recv() end
  result("ns", (conc.now() - t0) / n * 1e9)
end

-- W2: one producer, one consumer, buffered channel of cap 128; ns per item.
function W.W2()
  local n = n_of(1e7)
  local ch = conc.chan(128)
  local t0 = conc.now()
  conc.go(function()
    for i = 1, n do ch:send(i) end
  end)
  for _ = 1, n do ch:recv() end
  result("ns", (conc.now() - t0) / n * 1e9)
end

-- W3: select over 4 unbuffered channels, each fed by its own producer; ns per select.
function W.W3()
  local per = math.floor(n_of(1e6) / 4)
  local c1, c2, c3, c4 = conc.chan(), conc.chan(), conc.chan(), conc.chan()
  local t0 = conc.now()
  for _, ch in ipairs({ c1, c2, c3, c4 }) do
    conc.go(function() for i = 1, per do ch:send(i) end end)
  end
  local sum = 0
  for _ = 1, 4 * per do
    local _, v = conc.select(c1, c2, c3, c4)
    sum = sum + v
  end
  assert(sum == 4 * per * (per + 1) / 2)
  result("ns", (conc.now() - t0) / (4 * per) * 1e9)
end

-- W4: spawn 1e6 tasks that do nothing but count down; the last one signals.
function W.W4()
  local n = n_of(1e6)
  local left, done = n, conc.chan(1)
  local function task()
    left = left - 1
    if left == 0 then done:send(true) end
  end
  local t0 = conc.now()
  for _ = 1, n do conc.go(task) end
  done:recv()
  result("ns", (conc.now() - t0) / n * 1e9)
end

-- W4mem: bytes per task while 100k tasks are parked on a channel receive.
-- heap_bytes is what the Lua allocator holds (coroutines, task userdata, anything the
-- core allocates through lua_newuserdata); rss_bytes also sees memory the C core
-- mallocs itself.
function W.W4mem()
  local n = n_of(1e5)
  local ch, ready, parked = conc.chan(), conc.chan(1), 0
  local function task()
    parked = parked + 1
    if parked == n then ready:send(true) end
    ch:recv()
  end
  local h0, r0 = heap_bytes(), rss_bytes()
  for _ = 1, n do conc.go(task) end
  ready:recv()                  -- every task has run up to its ch:recv()
  local h1, r1 = heap_bytes(), rss_bytes()
  local st = conc.stats and conc.stats() or {}
  io.write("INFO W4mem conc.stats(): tasks=", tostring(st.tasks), " blocked=", tostring(st.blocked), "\n")
  result("heap_bytes", (h1 - h0) / n)
  result("rss_bytes", (r1 - r0) / n)
end

-- Park-Miller "minstd" generator, seed 42, identical in every peer, so every peer
-- sleeps the very same list of durations (uniform in [0, 0.1] s).
local function durations(n)
  local x, d, max = 42, {}, 0
  for i = 1, n do
    x = x * 48271 % 2147483647
    d[i] = x / 2147483647 * 0.1
    if d[i] > max then max = d[i] end
  end
  return d, max
end

-- W5: 100k tasks each sleep a random 0-100 ms; overhead = wall time until the last
-- one woke minus the longest requested sleep; early = sleeps shorter than requested;
-- late = mean of (measured sleep - requested sleep).
function W.W5()
  local n = n_of(1e5)
  local d, max = durations(n)
  local left, early, late, done = n, 0, 0, conc.chan(1)
  local function task(dt)
    local s = conc.now()
    conc.sleep(dt)
    local slept = conc.now() - s
    if slept < dt then early = early + 1 end
    late = late + (slept - dt)
    left = left - 1
    if left == 0 then done:send(true) end
  end
  local t0 = conc.now()
  for i = 1, n do conc.go(task, d[i]) end
  done:recv()
  result("overhead_ms", (conc.now() - t0 - max) * 1e3)
  result("early", early)
  result("late_ms", late / n * 1e3)
end

-- X1: create a child of a long-lived cancellable context and cancel it; ns per pair.
function W.X1()
  local n = n_of(1e6)
  local parent, cancel_parent = conc.with_cancel(conc.background())
  local t0 = conc.now()
  for _ = 1, n do
    local _, cancel = conc.with_cancel(parent)
    cancel()
  end
  result("ns", (conc.now() - t0) / n * 1e9)
  cancel_parent()
end

-- X2: a producer sends N values on an unbuffered channel; the main task receives each
-- through a select whose other case is ctx:done() of a live context, called each time
-- round as Go calls ctx.Done(); ns per select. Were the done case taken, v would be nil
-- and the sum would raise.
function W.X2()
  local n = n_of(1e6)
  local ctx, cancel = conc.with_cancel(conc.background())
  local ch = conc.chan()
  local t0 = conc.now()
  conc.go(function() for i = 1, n do ch:send(i) end end)
  local sum = 0
  for _ = 1, n do
    local _, v = conc.select(ctx:done(), ch)
    sum = sum + v
  end
  assert(sum == n * (n + 1) / 2)
  result("ns", (conc.now() - t0) / n * 1e9)
  cancel()
end

-- X2ref: X2 with an ordinary channel that never becomes ready in place of ctx:done().
function W.X2ref()
  local n = n_of(1e6)
  local other, ch = conc.chan(), conc.chan()
  local t0 = conc.now()
  conc.go(function() for i = 1, n do ch:send(i) end end)
  local sum = 0
  for _ = 1, n do
    local _, v = conc.select(other, ch)
    sum = sum + v
  end
  assert(sum == n * (n + 1) / 2)
  result("ns", (conc.now() - t0) / n * 1e9)
end

-- M1: acquire and release a semaphore of weight 1 that nobody else wants; ns per pair.
function W.M1()
  local n = n_of(1e6)
  local s = conc.semaphore(1)
  local t0 = conc.now()
  for _ = 1, n do
    s:acquire()
    s:release()
  end
  result("ns", (conc.now() - t0) / n * 1e9)
end

-- M2: two tasks share a semaphore of weight 1; each does N/2 times acquire, yield while
-- holding it (so the other one queues), release. ns per acquire+release, over both.
function W.M2()
  local half = math.floor(n_of(1e6) / 2)
  local s, done = conc.semaphore(1), conc.chan(2)
  local function task()
    for _ = 1, half do
      s:acquire()
      conc.yield()
      s:release()
    end
    done:send(true)
  end
  local t0 = conc.now()
  conc.go(task)
  conc.go(task)
  done:recv()
  done:recv()
  result("ns", (conc.now() - t0) / (2 * half) * 1e9)
end

-- G1: a group starts 1000 tasks that return at once and waits for them, N/1000 times;
-- ns per task.
function W.G1()
  local rounds = math.max(1, math.floor(n_of(1e6) / 1000))
  local function fn() end
  local t0 = conc.now()
  for _ = 1, rounds do
    local g = conc.group()
    for _ = 1, 1000 do g:go(fn) end
    local err = g:wait()
    if err ~= nil then error(err) end
  end
  result("ns", (conc.now() - t0) / (rounds * 1000) * 1e9)
end

---------------------------------------------------------------------------- conc.rate
local rate = conc.rate

-- R1: lim:allow() on a limiter that always allows: limit 1e12/s, burst 1e9, so the bucket
-- never empties but every call still goes through the refill arithmetic (rate.inf would
-- take a shortcut). ns per call.
function W.R1()
  local n = n_of(1e7)
  local lim = rate.limiter(1e12, 1e9)
  local allowed = 0
  local t0 = conc.now()
  for _ = 1, n do
    if lim:allow() then allowed = allowed + 1 end
  end
  result("ns", (conc.now() - t0) / n * 1e9)
  assert(allowed == n, "R1: a call was refused")
end

-- R2: lim:reserve() then r:cancel() on a limiter of 10/s, burst 1, whose token was taken
-- first: every reservation is booked about 0.1 s ahead and its cancel gives the token back
-- (the whole restore path). ns per pair.
function W.R2()
  local n = n_of(1e6)
  local lim = rate.limiter(10, 1)
  assert(lim:allow(), "R2: the first token was refused")
  local t0 = conc.now()
  for _ = 1, n do
    local r = lim:reserve()
    r:cancel()
  end
  result("ns", (conc.now() - t0) / n * 1e9)
  assert(lim:tokens() > -1.5, "R2: cancel gave nothing back")
end

-- R3: 100 tasks share a limiter of 1e5/s, burst 1, and wait until N waits (in all) have
-- returned. Waits per second achieved, that over the 1e5 ideal, and CPU time (os.clock:
-- the whole process) per wait.
function W.R3()
  local tasks, limit, n = 100, 1e5, n_of(2e5)
  local lim = rate.limiter(limit, 1)
  local claimed, finished, done = 0, 0, conc.chan(1)
  local function task()
    while claimed < n do
      claimed = claimed + 1
      assert(lim:wait())
      finished = finished + 1
      if finished == n then done:send(true) end
    end
  end
  local c0, t0 = os.clock(), conc.now()
  for _ = 1, tasks do conc.go(task) end
  done:recv()
  local el, cpu = conc.now() - t0, os.clock() - c0
  result("waits_per_s", n / el)
  result("of_ideal", n / el / limit)
  result("cpu_ns", cpu / n * 1e9)
end

-- K1: rate.keyed with 1e5 live keys "client-<i>", each used once with allow() (limit
-- 0.01/s, burst 10: no bucket refills during the run, so rate.keyed drops none). Bytes per
-- key: collectgarbage("count") after full collections, before and after; the key strings
-- count, as they do in Go's map.
function W.K1()
  local n = n_of(1e5)
  local k = rate.keyed(0.01, 10)
  local h0 = heap_bytes()
  for i = 1, n do
    if not k:allow("client-" .. i) then error("K1: refused") end
  end
  local h1 = heap_bytes()
  assert(k:len() == n, "K1: keys were dropped")
  result("bytes", (h1 - h0) / n)
end

---------------------------------------------------------------------------- pipeline
-- P1 P2 P4: the prime finder of Concurrency in Go ch. 4 (fan-out/fan-in) with 1, 2 and 4
-- map workers. conc.repeat_fn draws integers in [1, 5e7) from Park-Miller minstd (seed
-- 42, as W5), conc.take passes the first N = 1e5 of them, conc.map (unordered, as the
-- book's fan-in) tests each with a deliberately naive trial division by every odd number
-- up to sqrt(n) and sends on the number if it is prime, else false; the main task counts
-- the primes until the output closes. Every peer and every worker count test the same N
-- numbers, which hold 5955 primes. ns per number tested, from building the pipeline until
-- its output closed.
local function is_prime(n)
  if n < 2 then return false end
  if n % 2 == 0 then return n == 2 end
  for d = 3, math.floor(math.sqrt(n)), 2 do
    if n % d == 0 then return false end
  end
  return true
end

local function prime_finder(workers)
  local n = n_of(1e5)
  local x = 42
  local function rand()
    x = x * 48271 % 2147483647
    return 1 + x % 49999999
  end
  local function prime_or_false(v) return is_prime(v) and v end
  local ctx, cancel = conc.with_cancel(conc.background())
  local t0 = conc.now()
  local numbers = conc.take(ctx, conc.repeat_fn(ctx, rand), n)
  local found = conc.map(ctx, numbers, prime_or_false, { workers = workers, unordered = true })
  local count, sum = 0, 0
  while true do
    local v, ok = found:recv()
    if not ok then break end
    if v then count, sum = count + 1, sum + v end
  end
  result("ns", (conc.now() - t0) / n * 1e9)
  cancel()   -- stops repeat_fn, blocked on its next send
  if n == 1e5 then assert(count == 5955 and sum == 142258200187, "P: wrong primes") end
end
function W.P1() prime_finder(1) end
function W.P2() prime_finder(2) end
function W.P4() prime_finder(4) end

local name = arg and arg[1]
if not W[name] then
  io.stderr:write("usage: conc_w.lua W1|W2|W3|W4|W4mem|W5|X1|X2|X2ref|M1|M2|G1|R1|R2|R3|K1|P1|P2|P4\n")
  os.exit(2)
end
math.randomseed(42)
conc.run(W[name])
