-- bench/conc_echo.lua: the echo row of `make bench` (workload E1), conc.net over loopback.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/release/?.so;;' \
--     lua5.4 bench/conc_echo.lua E1     (env BENCH_SCALE shrinks N)
--
-- One process, two tasks: a server task accepts one connection on 127.0.0.1 and writes
-- back every chunk it reads; the main task connects, then N = 5e4 times writes 64 bytes
-- and reads the 64 back (read_exactly), after 1000 unmeasured round trips. Prints
-- `RESULT ns <ns per round trip>` for bench/run.lua. The Go twin is `chatgo -w E1`
-- (bench/chatgo/echo.go): a goroutine per end, GOMAXPROCS=1.
local conc = require "conc"
local net = require "conc.net"

local scale = tonumber(os.getenv("BENCH_SCALE")) or 1
local n = math.max(100, math.floor(5e4 * scale))

local function E1()
  local l = assert(net.listen("127.0.0.1", 0))
  local host, port = l:addr()
  conc.go(function()
    local c = assert(l:accept())
    while true do
      local s = c:read()
      if not s then break end
      if not c:write(s) then break end
    end
    c:close()
  end)
  local c = assert(net.connect(host, port))
  local msg = ("0123456789abcdef"):rep(4)   -- 64 bytes
  local function trip()
    assert(c:write(msg))
    local got = assert(c:read_exactly(64))
    if got ~= msg then error("echo returned " .. ("%q"):format(got)) end
  end
  for _ = 1, 1000 do trip() end
  local t0 = conc.now()
  for _ = 1, n do trip() end
  io.write("RESULT ns ", ("%.17g"):format((conc.now() - t0) / n * 1e9), "\n")
  c:close()
  l:close()
end

if arg and arg[1] ~= "E1" then
  io.stderr:write("usage: conc_echo.lua E1\n")
  os.exit(2)
end
conc.run(E1)
