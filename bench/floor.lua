-- bench/floor.lua: what the interpreter itself costs, the floor under conc's numbers.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/release/?.so;;' \
--     lua5.4 bench/floor.lua             (or luajit; env BENCH_SCALE shrinks N)
--
-- Prints `RESULT <key> <number>` lines for bench/run.lua, each in ns and including the
-- step of its for loop:
--   switch_ns     one coroutine.resume of a coroutine that at once coroutine.yields
--   conc_call_ns  one ch:len() on a conc channel: a method lookup and a trivial C call
--   conc_local_ns the same C function called from a local, len(ch): no method lookup
--   strlen_ns     one string.len(s), a builtin, for comparison
--   rawlen_ns     one rawlen(t), likewise (absent from LuaJIT 2.1: not printed)
-- A W1 round trip needs at least 2 switch pairs (to the echo task and back) and 4 conc
-- calls (ping:send, ping:recv, pong:send, pong:recv); run.lua adds these up.
local conc = require "conc"

local scale = tonumber(os.getenv("BENCH_SCALE")) or 1
local function n_of(n) return math.max(4, math.floor(n * scale)) end
local function result(k, v) io.write("RESULT ", k, " ", string.format("%.17g", v), "\n") end
local now = conc.now

-- ns per iteration of body(n), which runs its own loop of n steps.
local function time(n, body)
  local t0 = now()
  body(n)
  return (now() - t0) / n * 1e9
end

local resume, yield = coroutine.resume, coroutine.yield
result("switch_ns", time(n_of(5e6), function(n)
  local co = coroutine.create(function() while true do yield() end end)
  for _ = 1, n do resume(co) end
end))

result("conc_call_ns", time(n_of(2e7), function(n)
  local ch, sum = conc.chan(1), 0
  for _ = 1, n do sum = sum + ch:len() end
  assert(sum == 0)
end))

result("conc_local_ns", time(n_of(2e7), function(n)
  local ch, sum = conc.chan(1), 0
  local len = ch.len
  for _ = 1, n do sum = sum + len(ch) end
  assert(sum == 0)
end))

local strlen = string.len
result("strlen_ns", time(n_of(2e7), function(n)
  local s, sum = "floor", 0
  for _ = 1, n do sum = sum + strlen(s) end
  assert(sum == 5 * n)
end))

if rawlen then
  result("rawlen_ns", time(n_of(2e7), function(n)
    local t, sum = { 1, 2, 3 }, 0
    for _ = 1, n do sum = sum + rawlen(t) end
    assert(sum == 3 * n)
  end))
end
