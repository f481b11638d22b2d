-- bench/purelua.lua: the "pure Lua" peer of `make bench`: a small hand-written
-- channel scheduler in plain Lua (runs on Lua 5.4 and LuaJIT), and the workloads.
--
--   lua5.4 bench/purelua.lua W1        (W1 W2 W3 W4 W4mem W5 R1 R2 R3 K1; env BENCH_SCALE
--                                      shrinks N; X1 X2 X2ref M1 M2 G1 P1 P2 P4 print NA)
--
-- Prints `RESULT <key> <number>` and `NOTE <text>` lines for bench/run.lua.
--
-- The scheduler (what a Lua programmer would write without conc):
--   * tasks are coroutines; a FIFO run queue holds the ready ones together with the
--     values their pending yield will return;
--   * a channel is a ring buffer of `cap` slots plus FIFO queues of waiting receivers
--     and senders; cap 0 is a rendezvous (a send hands its value straight to a waiting
--     receiver, or parks until one comes);
--   * select (receive cases only) polls the cases once and picks uniformly at random
--     among the ready ones; if none is ready it parks one waiter per case, all sharing
--     one `sel` record whose first taker wins. Waiters left behind on the other
--     channels are dropped lazily when a sender reaches them (Go unlinks them at once);
--   * sleep uses a binary min-heap of timers ordered by (deadline, sequence); when no
--     task is ready the loop sleeps until the first deadline.
-- And a token bucket (R1 R2 R3 K1): golang.org/x/time/rate's Limiter transcribed into
-- plain Lua (see "token bucket" below), on the same clock.
-- Plain Lua has neither a monotonic clock nor a way to sleep, so the clock and the
-- idle sleep come from luasystem (`system.monotime`, `system.sleep`; Debian package
-- lua-system, which bench/run.sh installs). Without it the workloads are timed with
-- os.clock (CPU time) and W5 is reported as n/a.

local co_create, co_resume, co_yield, co_status =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status
local floor, random = math.floor, math.random
local unpack = table.unpack or unpack

local S = {}   -- the scheduler's API, shaped like conc's

---------------------------------------------------------------------------- clock
local has_sys, sys = pcall(require, "system")
if has_sys and sys.monotime and sys.sleep then
  S.clock, S.now, S.os_sleep = "luasystem", sys.monotime, sys.sleep
else
  S.clock, S.now = nil, os.clock
end
local now = S.now

---------------------------------------------------------------------------- queues
-- A FIFO: a table with head/tail indices, reset when it empties.
local function fifo() return { h = 1, t = 0 } end
local function push(q, x) local t = q.t + 1; q.t = t; q[t] = x end
local function pop(q)
  local h = q.h
  if h > q.t then return nil end
  local x = q[h]; q[h] = nil
  if h == q.t then q.h, q.t = 1, 0 else q.h = h + 1 end
  return x
end

-- The run queue: ready coroutines and up to three values for their resume.
local rq_co, rq_a, rq_b, rq_c = {}, {}, {}, {}
local rq_h, rq_t = 1, 0
local current            -- the running task; nil while the loop itself runs

local function ready(co, a, b, c)
  local t = rq_t + 1; rq_t = t
  rq_co[t], rq_a[t], rq_b[t], rq_c[t] = co, a, b, c
end

--- go(fn, ...): starts fn(...) as a task; it first runs when the caller blocks.
function S.go(fn, ...)
  local n = select("#", ...)
  local co
  if n == 0 then
    co = co_create(fn)
  else
    local args = { ... }
    co = co_create(function() return fn(unpack(args, 1, n)) end)
  end
  ready(co)
  return co
end

---------------------------------------------------------------------------- timers
local heap, heap_n, seq = {}, 0, 0
local function less(a, b) return a.when < b.when or (a.when == b.when and a.seq < b.seq) end

local function heap_push(t)
  heap_n = heap_n + 1
  local i = heap_n
  while i > 1 do
    local p = floor(i / 2)
    if not less(t, heap[p]) then break end
    heap[i] = heap[p]; i = p
  end
  heap[i] = t
end

local function heap_pop()
  local top, last = heap[1], heap[heap_n]
  heap[heap_n] = nil; heap_n = heap_n - 1
  local n, i = heap_n, 1
  if n > 0 then
    while true do
      local c = 2 * i
      if c > n then break end
      if c < n and less(heap[c + 1], heap[c]) then c = c + 1 end
      if not less(heap[c], last) then break end
      heap[i] = heap[c]; i = c
    end
    heap[i] = last
  end
  return top
end

--- sleep(d): parks the calling task for at least d seconds.
function S.sleep(d)
  if not S.os_sleep then error("sleep needs luasystem") end
  seq = seq + 1
  heap_push({ when = now() + d, seq = seq, co = current })
  return co_yield()
end

---------------------------------------------------------------------------- channels
local Chan = {}
Chan.__index = Chan

--- chan(cap): a channel; cap 0 (the default) is unbuffered.
function S.chan(cap)
  return setmetatable({ cap = cap or 0, buf = {}, head = 1, len = 0,
                        recvq = fifo(), sendq = fifo(), closed = false }, Chan)
end

-- A waiting receiver is its bare coroutine, or for a select a table {co, sel, i};
-- a waiting sender is a table {co, v}.
-- Pops the first live receiver. A select's waiter is live until one of its cases
-- fires: taking it claims the select (lazy removal of the other cases' waiters).
local function dequeue(q)
  while true do
    local w = pop(q)
    if w == nil or type(w) == "thread" then return w end
    local sel = w.sel
    if not sel.done then sel.done = true; return w end
  end
end

-- Readies receiver w with (v, ok); a select's waiter also gets its case index.
local function wake(w, v, ok)
  if type(w) == "thread" then ready(w, v, ok) else ready(w.co, w.i, v, ok) end
end

local function trysend(ch, v)
  if ch.closed then error("send on closed channel", 3) end
  local r = dequeue(ch.recvq)
  if r then wake(r, v, true); return true end   -- hand over, skipping the buffer
  local len, cap = ch.len, ch.cap
  if len < cap then
    ch.buf[(ch.head + len - 1) % cap + 1] = v
    ch.len = len + 1
    return true
  end
  return false
end

-- Returns done, v, ok.
local function tryrecv(ch)
  local len = ch.len
  if len > 0 then
    local buf, head, cap = ch.buf, ch.head, ch.cap
    local v = buf[head]
    local s = pop(ch.sendq)
    if s then                       -- buffer full and a sender waits: its value goes last
      buf[head] = s.v
      ready(s.co, true)
    else
      buf[head] = nil
      ch.len = len - 1
    end
    ch.head = head % cap + 1
    return true, v, true
  end
  local s = pop(ch.sendq)
  if s then ready(s.co, true); return true, s.v, true end
  if ch.closed then return true, nil, false end
  return false
end

function Chan:send(v)
  if trysend(self, v) then return true end
  push(self.sendq, { co = current, v = v })
  return co_yield()
end

function Chan:recv()
  local done, v, ok = tryrecv(self)
  if done then return v, ok end
  push(self.recvq, current)
  return co_yield()
end

function Chan:close()
  if self.closed then error("close of closed channel", 2) end
  self.closed = true
  for r in dequeue, self.recvq do wake(r, nil, false) end
end

--- select(c1, c2, ...): receives from one ready channel, chosen uniformly at random;
--- returns i, v, ok.
function S.select(...)
  local n = select("#", ...)
  local pick, seen = nil, 0
  for i = 1, n do
    local ch = select(i, ...)
    if ch.len > 0 or ch.sendq.h <= ch.sendq.t or ch.closed then
      seen = seen + 1
      if random(seen) == 1 then pick = i end     -- reservoir sampling: uniform
    end
  end
  if pick then
    local _, v, ok = tryrecv((select(pick, ...)))
    return pick, v, ok
  end
  local sel = { done = false }
  for i = 1, n do push((select(i, ...)).recvq, { co = current, sel = sel, i = i }) end
  return co_yield()
end

---------------------------------------------------------------------------- loop
-- Readies the due timers; with `block`, first sleeps until the earliest is due.
local function poll_timers(block)
  if heap_n == 0 then return end
  local t = now()
  if block and heap[1].when > t then
    S.os_sleep(heap[1].when - t)
    t = now()
  end
  while heap_n > 0 and heap[1].when <= t do ready(heap_pop().co, true) end
end

--- run(fn, ...): runs fn as the main task, driving the scheduler until it returns.
function S.run(fn, ...)
  local main = S.go(fn, ...)
  local turns = 0
  while true do
    if rq_h > rq_t then
      rq_h, rq_t = 1, 0
      if heap_n == 0 then error("all tasks are asleep - deadlock!", 0) end
      poll_timers(true)
    else
      local i = rq_h; rq_h = i + 1
      local co, a, b, c = rq_co[i], rq_a[i], rq_b[i], rq_c[i]
      rq_co[i], rq_a[i], rq_b[i], rq_c[i] = nil, nil, nil, nil
      current = co
      local ok, r = co_resume(co, a, b, c)
      current = nil
      if not ok then error(debug.traceback(co, tostring(r)), 0) end
      if co == main and co_status(co) == "dead" then return r end
      turns = turns + 1
      if turns % 64 == 0 then poll_timers(false) end   -- timers are not starved by load
    end
  end
end

---------------------------------------------------------------------------- token bucket
-- golang.org/x/time/rate's Limiter as a Lua programmer would transcribe it: a table
-- {limit, burst, tokens, last, last_event} with methods; times are now()'s seconds. Like
-- Go, allow() makes no reservation object (Go's reserveN returns a struct by value); a
-- reservation is a table. No argument checks beyond Go's (n defaults to 1).
local inf = math.huge
local Limiter, Reservation = {}, {}
Limiter.__index, Reservation.__index = Limiter, Reservation

--- limiter(limit, burst): a bucket that starts full.
function S.limiter(limit, burst)
  local t = now()
  return setmetatable({ limit = limit, burst = burst, tokens = burst, last = t, last_event = t }, Limiter)
end

-- The tokens at t (Go's advance): what was there plus what the limit minted, up to burst.
local function advance(lim, t)
  local last = lim.last
  if t < last then last = t end
  local tokens = lim.tokens + (t - last) * lim.limit
  if tokens > lim.burst then tokens = lim.burst end
  return tokens
end

-- Go's reserveN: returns ok and the time to act; books the tokens when ok.
local function reserve_n(lim, t, n, max_wait)
  local limit = lim.limit
  if limit == inf then return true, t end
  if limit == 0 then   -- Go: spends the burst and mints nothing
    if lim.burst >= n then lim.burst = lim.burst - n; return true, t end
    return false, t
  end
  local tokens = advance(lim, t) - n
  local wait = 0
  if tokens < 0 then wait = -tokens / limit end
  if n > lim.burst or wait > max_wait then return false, t end
  local act = t + wait
  lim.last, lim.tokens, lim.last_event = t, tokens, act
  return true, act
end

function Limiter:allow(n)
  return (reserve_n(self, now(), n or 1, 0))
end

function Limiter:tokens_now()
  return advance(self, now())
end

function Limiter:reserve(n)
  n = n or 1
  local limit = self.limit
  local ok, act = reserve_n(self, now(), n, inf)
  return setmetatable({ ok_ = ok, lim = self, tokens = ok and n or 0, act = act, limit = limit }, Reservation)
end

function Reservation:ok() return self.ok_ end

function Reservation:delay()
  if not self.ok_ then return inf end
  local d = self.act - now()
  return d > 0 and d or 0
end

-- Go's CancelAt: gives back what later reservations have not come to depend on.
function Reservation:cancel()
  local lim, n = self.lim, self.tokens
  local t = now()
  if not self.ok_ or lim.limit == inf or n == 0 or self.act < t then return end
  local restore = n - self.limit * (lim.last_event - self.act)
  if restore <= 0 then return end
  local tokens = advance(lim, t) + restore
  if tokens > lim.burst then tokens = lim.burst end
  lim.last, lim.tokens = t, tokens
  if self.act == lim.last_event then
    local prev = self.act - n / self.limit
    if prev >= t then lim.last_event = prev end
  end
  self.tokens = 0
end

--- lim:wait([n]): books n tokens and sleeps until they are there (no ctx here).
function Limiter:wait(n)
  n = n or 1
  if n > self.burst and self.limit ~= inf then return nil, "rate: wait(n) exceeds the burst" end
  local t = now()
  local ok, act = reserve_n(self, t, n, inf)
  if not ok then return nil, "rate: wait(n) can never be served" end
  if act > t then S.sleep(act - t) end
  return true
end

if ... == "purelua" then return S end   -- require "purelua" gives just the scheduler

---------------------------------------------------------------------------- workloads
-- The same definitions as bench/conc_w.lua, bench/tarantool_w.lua and bench/go/main.go.
local go, chan = S.go, S.chan
local scale = tonumber(os.getenv("BENCH_SCALE")) or 1
local function n_of(n) return math.max(4, floor(n * scale)) end
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
  local ping, pong = chan(), chan()
  local t0 = now()
  go(function()
    for _ = 1, n do
      local v = ping:recv()
      pong:send(v)
    end
  end)
  for i = 1, n do ping:send(i); pong:recv() end
  result("ns", (now() - t0) / n * 1e9)
end

-- W2: one producer, one consumer, buffered channel of cap 128; ns per item.
function W.W2()
  local n = n_of(1e7)
  local ch = chan(128)
  local t0 = now()
  go(function()
    for i = 1, n do ch:send(i) end
  end)
  for _ = 1, n do ch:recv() end
  result("ns", (now() - t0) / n * 1e9)
end

-- W3: select over 4 unbuffered channels, each fed by its own producer; ns per select.
function W.W3()
  local per = floor(n_of(1e6) / 4)
  local c1, c2, c3, c4 = chan(), chan(), chan(), chan()
  local t0 = now()
  for _, ch in ipairs({ c1, c2, c3, c4 }) do
    go(function() for i = 1, per do ch:send(i) end end)
  end
  local sum = 0
  for _ = 1, 4 * per do
    local _, v = S.select(c1, c2, c3, c4)
    sum = sum + v
  end
  assert(sum == 4 * per * (per + 1) / 2)
  result("ns", (now() - t0) / (4 * per) * 1e9)
end

-- W4: spawn 1e6 tasks that do nothing but count down; the last one signals.
function W.W4()
  local n = n_of(1e6)
  local left, done = n, chan(1)
  local function task()
    left = left - 1
    if left == 0 then done:send(true) end
  end
  local t0 = now()
  for _ = 1, n do go(task) end
  done:recv()
  result("ns", (now() - t0) / n * 1e9)
end

-- W4mem: bytes per task while 100k tasks are parked on a channel receive.
function W.W4mem()
  local n = n_of(1e5)
  local ch, ready_ch, parked = chan(), chan(1), 0
  local function task()
    parked = parked + 1
    if parked == n then ready_ch:send(true) end
    ch:recv()
  end
  local h0, r0 = heap_bytes(), rss_bytes()
  for _ = 1, n do go(task) end
  ready_ch:recv()               -- every task has run up to its ch:recv()
  local h1, r1 = heap_bytes(), rss_bytes()
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
  if not S.os_sleep then
    io.write("NA no monotonic clock or sleep in plain Lua (install lua-system)\n")
    return
  end
  local n = n_of(1e5)
  local d, max = durations(n)
  local left, early, late, done = n, 0, 0, chan(1)
  local function task(dt)
    local s = now()
    S.sleep(dt)
    local slept = now() - s
    if slept < dt then early = early + 1 end
    late = late + (slept - dt)
    left = left - 1
    if left == 0 then done:send(true) end
  end
  local t0 = now()
  for i = 1, n do go(task, d[i]) end
  done:recv()
  result("overhead_ms", (now() - t0 - max) * 1e3)
  result("early", early)
  result("late_ms", late / n * 1e3)
end

-- R1: lim:allow() on a limiter that always allows: limit 1e12/s, burst 1e9, so the bucket
-- never empties but every call still goes through the refill arithmetic. ns per call.
function W.R1()
  local n = n_of(1e7)
  local lim = S.limiter(1e12, 1e9)
  local allowed = 0
  local t0 = now()
  for _ = 1, n do
    if lim:allow() then allowed = allowed + 1 end
  end
  result("ns", (now() - t0) / n * 1e9)
  assert(allowed == n, "R1: a call was refused")
end

-- R2: lim:reserve() then r:cancel() on a limiter of 10/s, burst 1, whose token was taken
-- first: every reservation is booked about 0.1 s ahead and its cancel gives the token back.
-- ns per pair.
function W.R2()
  local n = n_of(1e6)
  local lim = S.limiter(10, 1)
  assert(lim:allow(), "R2: the first token was refused")
  local t0 = now()
  for _ = 1, n do
    local r = lim:reserve()
    r:cancel()
  end
  result("ns", (now() - t0) / n * 1e9)
  assert(lim:tokens_now() > -1.5, "R2: cancel gave nothing back")
end

-- R3: 100 tasks share a limiter of 1e5/s, burst 1, and wait until N waits (in all) have
-- returned. Waits per second achieved, that over the 1e5 ideal, and CPU time (os.clock)
-- per wait.
function W.R3()
  if not S.os_sleep then
    io.write("NA no monotonic clock or sleep in plain Lua (install lua-system)\n")
    return
  end
  local tasks, limit, n = 100, 1e5, n_of(2e5)
  local lim = S.limiter(limit, 1)
  local claimed, finished, done = 0, 0, chan(1)
  local function task()
    while claimed < n do
      claimed = claimed + 1
      assert(lim:wait())
      finished = finished + 1
      if finished == n then done:send(true) end
    end
  end
  local c0, t0 = os.clock(), now()
  for _ = 1, tasks do go(task) end
  done:recv()
  local el, cpu = now() - t0, os.clock() - c0
  result("waits_per_s", n / el)
  result("of_ideal", n / el / limit)
  result("cpu_ns", cpu / n * 1e9)
end

-- K1: a table of 1e5 buckets keyed "client-<i>", each made on first use and used once
-- with allow() (limit 0.01/s, burst 10). Bytes per key, as in conc_w.lua.
function W.K1()
  local n = n_of(1e5)
  local map, limiter = {}, S.limiter
  local function allow(key)
    local lim = map[key]
    if lim == nil then lim = limiter(0.01, 10); map[key] = lim end
    return lim:allow()
  end
  local h0 = heap_bytes()
  for i = 1, n do
    if not allow("client-" .. i) then error("K1: refused") end
  end
  local h1 = heap_bytes()
  result("bytes", (h1 - h0) / n)
  assert(next(map) ~= nil)
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

local name = arg and arg[1]
if not W[name] then
  io.stderr:write("usage: purelua.lua W1|W2|W3|W4|W4mem|W5|X1|X2|X2ref|M1|M2|G1|R1|R2|R3|K1|P1|P2|P4\n")
  os.exit(2)
end
math.randomseed(42)
io.write("INFO clock: ", S.clock and "luasystem monotime" or "os.clock (CPU time; no luasystem)", "\n")
S.run(W[name])
