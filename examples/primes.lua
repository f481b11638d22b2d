-- primes.lua: the book's prime finder, a pipeline fanned out over workers (Concurrency in
-- Go, ch. 4, "Fan-Out, Fan-In").
--
-- A stream of random integers (conc.repeat_fn) goes through a deliberately naive primality
-- test, the slow stage, which conc.map fans out over --workers tasks and fans back in; the
-- numbers that are not prime are dropped, and conc.take keeps the first --count primes.
-- Then main cancels the ctx that every stage was given, and they all stop.
--
--   repeat_fn(random) -> map(is_prime_slow, workers) -> only the primes -> take(count)
--
-- As in the book, the test tries every divisor from n - 1 down to 2. The numbers are below
-- 100,000 (the book's go up to 50,000,000: plain Lua is slower than Go, and an example
-- should end in a moment). They come from a small seeded generator of our own, so
-- `--seed N` gives the same numbers under every Lua.
--
-- conc.map keeps the order of its input: the primes come in the order the numbers were
-- drawn. With --unordered, each result goes on as soon as it is ready, so the primes may
-- come in another order (the book's fan-in makes no promise of order either).
--
-- The tasks of conc.go share one OS thread, so fanning a CPU-bound test out over workers
-- does not make it faster here: the book's Go program gets its speed-up from running its
-- finders on several cores at once. What one thread can overlap is waiting: with --delay D
-- each test first waits D simulated seconds (as a call to a remote service would), and N
-- workers wait N at a time. Time is scaled: a simulated second lasts --scale real seconds
-- (default 1), and the time printed is in simulated seconds. --virtual runs on conc's
-- virtual clock: no real time passes while tasks wait, and the time printed counts only
-- waiting (CPU time does not move that clock).
--   lua5.4 examples/primes.lua [--workers 4] [--count 10] [--seed 1] [--unordered]
--                              [--delay 0] [--scale 1] [--virtual]
local conc = require "conc"

local MAX = 100000 -- the random numbers are in [0, MAX)

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("primes.lua", {
  { "workers", 4, options.whole }, { "count", 10, options.whole }, { "seed", 1 },
  { "unordered", false }, { "delay", 0, options.non_negative }, { "scale", 1, options.positive },
  { "virtual", false },
})
local workers, count, seed, unordered = opts.workers, opts.count, opts.seed, opts.unordered
local delay, scale, virtual = opts.delay, opts.scale, opts.virtual

-- Park and Miller's minimal standard generator: exact in doubles, so the same everywhere.
local state = seed % 2147483646 + 1
local function random()
  state = state * 16807 % 2147483647
  return state / 2147483647
end
for _ = 1, 3 do random() end -- small seeds start with small values: move past them

local function random_int()
  return math.floor(random() * MAX)
end

-- The slow stage: n if n is prime, else false. Every divisor from n - 1 down is tried, as
-- in the book (which forgets that 0 and 1 are not prime). With --delay, the test waits
-- first; if ctx ends meanwhile it returns nil and ctx's error, and its stage stops.
local function prime_test(ctx)
  return function(n)
    if delay > 0 then
      local ok, err = conc.sleep(delay * scale, ctx)
      if not ok then return nil, err end
    end
    if n < 2 then return false end
    for divisor = n - 1, 2, -1 do
      if n % divisor == 0 then return false end
    end
    return n
  end
end

-- A stage of our own: the values received from ch that are not false, until ch closes or
-- ctx ends. The book's prime finder is a filter; conc.map sends a result for every input.
local function only_primes(ctx, ch)
  local out = conc.chan()
  conc.go(function()
    while true do
      local v, ok = ch:recv(ctx)
      if not ok then break end
      if v and not out:send(v, ctx) then break end
    end
    out:close()
  end)
  return out
end

conc.seed(seed) -- the scheduler's random choices (in select) are repeatable too
conc.virtual_time(virtual)

conc.run(function()
  print(("finding %d primes below %d with %d worker%s, %s, seed %s"):format(count, MAX, workers,
    workers == 1 and "" or "s", unordered and "unordered" or "ordered", seed))
  local ctx, cancel = conc.with_cancel(conc.background())
  local t0 = conc.now()
  local randoms = conc.repeat_fn(ctx, random_int)
  local tested = conc.map(ctx, randoms, prime_test(ctx), { workers = workers, unordered = unordered })
  local primes = conc.take(ctx, only_primes(ctx, tested), count)
  print("Primes:")
  while true do
    local p, ok = primes:recv()
    if not ok then break end
    print(("\t%d"):format(p))
  end
  cancel() -- stops the generator, the workers and the filter
  print(("Search took: %.3f s"):format((conc.now() - t0) / scale))
end)
