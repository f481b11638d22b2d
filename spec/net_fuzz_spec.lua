--- Fuzzing conc.net with real peers (issue 7, acceptance): "Nothing a peer sends can crash
-- the process or grow memory without bound. The spec sends random bytes from 20 clients
-- for 10 s, and RSS stays flat."
--
-- Two servers run in this process, on 127.0.0.1:
--   * a "mixed" server of this file, whose connection tasks turn by turn read_line (max
--     512), read and read_exactly (1..1500 bytes), each under a 2 s ctx, and write an answer
--     back (so a peer that does not read meets backpressure);
--   * the chat server of examples/chat (chat.start), when it is there: idle timeout 2 s,
--     rate limit, bounded queues, max_line 512.
-- 20 client tasks connect again and again to either server, send random bytes, protocol
-- commands, overlong lines, invalid UTF-8, "\r\n" and control bytes in writes of random
-- sizes, and end each connection one way or another: close, half-close then drain, close
-- with unread data (a reset), or drop it without closing (the collector closes it). Some
-- read what comes back, some never do.
--
-- Memory: after a warm-up (the first 2 s: every kind of buffer has been allocated and
-- the allocator has its working set) the Lua heap and RSS are sampled after a full
-- collection, and again at the end. What conc.net may hold per connection is bounded
-- (64 KiB of unread input + the largest request, 64 KiB of unsent output + one write), and
-- each of the 20 clients has one connection at a time (and the ones it dropped, until the
-- collector closes them), so the steady state does not depend on how long the peers go on. The bounds: the Lua heap may grow by less
-- than 1 MiB (measured: +30 to 40 KiB), RSS by less than 4 MiB (measured: +1 to 2 MiB in
-- 10 s). RSS creeps a little because of the allocator, not of a leak: over a 90 s run
-- glibc's bytes in use (mallinfo2) stayed between 3.4 and 4.6 MB while its free bytes
-- went from 3.9 to 5.2 MB; without the chat server RSS is flat within 0.3 MB. A leak of a
-- read buffer per connection (thousands of connections are made after the warm-up) or
-- of anything per chunk read would pass these bounds many times over.
--
-- The seed is printed; CONC_FUZZ_SEED=<n> replays a run's choices (not its timing),
-- CONC_FUZZ_SECONDS=<s> changes the duration, CONC_FUZZ_VERBOSE=1 prints the memory every
-- 0.5 s and CONC_FUZZ_NO_CHAT=1 leaves the chat server out. Under ASan (the asan build, or libasan
-- preloaded) the run is shortened to 3 s and the memory bounds are not checked: ASan's
-- quarantine keeps freed memory on purpose, so RSS says nothing there. ASan still checks
-- every access made while the peers misbehave.
local conc = require "conc"
local net = require "conc.net"
local support = require "support"

local HOST = "127.0.0.1"
local KiB = 1024
local ASAN = package.cpath:find("/asan/", 1, true) ~= nil
  or (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) ~= nil
local SECONDS = tonumber(os.getenv("CONC_FUZZ_SECONDS")) or (ASAN and 3 or 10)
local WARMUP = math.min(2, SECONDS / 3)
local SEED = tonumber(os.getenv("CONC_FUZZ_SEED")) or os.time()
local VERBOSE = os.getenv("CONC_FUZZ_VERBOSE") ~= nil
local CLIENTS = 20
local MAX_LINE = 512

local rss_kb = support.rss_kb

--- The Lua heap (KiB) and RSS (KiB) after a full collection.
local function memory()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count"), rss_kb()
end

-- The chat server, if examples/chat is there (it is optional to this spec).
local chat do
  local ok, mod = false, nil
  if not os.getenv("CONC_FUZZ_NO_CHAT") then ok, mod = pcall(dofile, support.ROOT .. "/examples/chat/chat.lua") end
  if ok and type(mod) == "table" and type(mod.start) == "function" then chat = mod end
end

--- What the peers send, drawn from pools made once (random bytes, printable text).
local random_pool, text_pool
local function make_pools()
  local t = {}
  for i = 1, 64 * KiB do t[i] = string.char(math.random(0, 255)) end
  random_pool = table.concat(t)
  for i = 1, 64 * KiB do t[i] = string.char(math.random(32, 126)) end
  text_pool = table.concat(t)
end

local function slice(pool, n)
  local i = math.random(1, #pool - n + 1)
  return pool:sub(i, i + n - 1)
end

local function word()
  local n = math.random(0, 40)
  local s = slice(text_pool, n + 1)
  return math.random() < 0.7 and s:gsub("[^%w_-]", "x") or s
end

local COMMANDS = { "/nick ", "/join ", "/who", "/me ", "/quit", "/", "/unknown ", "/NICK " }

--- One write's worth of misbehaviour.
local function payload()
  local r = math.random(1, 10)
  if r <= 3 then -- random bytes, mostly small writes, some large
    return slice(random_pool, math.random() < 0.8 and math.random(1, 64) or math.random(1, 16 * KiB))
  elseif r == 4 then -- an overlong line, perhaps without its end yet
    return ("L"):rep(math.random(MAX_LINE + 1, 8 * KiB)) .. (math.random() < 0.5 and "\n" or "")
  elseif r == 5 then -- invalid UTF-8 and control bytes in a line
    local bad = { "\255\254", "\192\128", "\237\160\128", "\244\144\128\128", "\0", "\27[2J", "\r", "\8" }
    return word() .. bad[math.random(#bad)] .. word() .. "\n"
  elseif r == 6 then -- many short lines at once, \n and \r\n
    local t = {}
    for i = 1, math.random(1, 50) do t[i] = word() .. (math.random() < 0.5 and "\r\n" or "\n") end
    return table.concat(t)
  elseif r <= 8 then -- a protocol command with a random argument
    return COMMANDS[math.random(#COMMANDS)] .. word() .. "\n"
  elseif r == 9 then -- a line cut in pieces across writes: its start only
    return word()
  else
    return "\n"
  end
end

--- The mixed server's session: read_line, read and read_exactly in turn, each under a 2 s
-- ctx, answering each; ends at EOF, on an error, or when ctx ends.
local function serve_mixed(ctx, s, stats)
  local turn = 0
  while true do
    turn = turn + 1
    local op = turn % 3
    local octx, cancel = conc.with_timeout(ctx, 2)
    local answer, err
    if op == 1 then
      answer, err = s:read_line(octx, MAX_LINE)
      if answer then
        answer = "#" .. #answer .. "\n"
      elseif err and err.code == "toolong" then
        answer, err = "toolong\n", nil
        stats.toolong = stats.toolong + 1
      end
    elseif op == 2 then
      answer, err = s:read(octx)
    else
      answer, err = s:read_exactly(turn * 37 % 1500 + 1, octx)
    end
    local ok = false
    if answer then
      stats.ops = stats.ops + 1
      ok, err = s:write(answer, octx)
    end
    cancel()
    if not ok then
      local code = err and (err.code or err.kind or tostring(err)) or "eof"
      stats.ends[code] = (stats.ends[code] or 0) + 1
      break
    end
  end
  s:close()
end

--- One client: connects again and again until the deadline; each connection misbehaves
-- for a while, then ends in one of four ways.
local function client(ctx, targets, deadline, stats)
  while conc.now() < deadline and not ctx:err() do
    local cctx, cancel = conc.with_timeout(ctx, 1)
    local c = net.connect(HOST, targets[math.random(#targets)], cctx)
    cancel()
    if c then
      stats.conns = stats.conns + 1
      local reading = math.random() < 0.5
      local rctx, stop_reading = conc.with_cancel(ctx)
      if reading then
        local conn = c
        conc.go(function()
          while conn:read(rctx) do end
        end)
      end
      for _ = 1, math.random(1, 40) do
        if conc.now() >= deadline then break end
        local data = payload()
        local wctx, wcancel = conc.with_timeout(ctx, 0.5)
        local ok = c:write(data, wctx)
        wcancel()
        if not ok then break end
        stats.bytes = stats.bytes + #data
        if math.random() < 0.3 then conc.yield() end
      end
      local how = math.random(1, 4)
      stats.how[how] = stats.how[how] + 1
      if how == 1 then
        c:close()
      elseif how == 2 then -- half-close, then drain what comes back, for a while
        c:close_write()
        local dctx, dcancel = conc.with_timeout(ctx, 0.3)
        stop_reading()
        while c:read(dctx) do end
        dcancel()
        c:close()
      elseif how == 3 then -- close with whatever was not read: a reset if anything came
        stop_reading()
        c:close()
      end -- how == 4: dropped without close, for the collector
      stop_reading()
      c = nil -- dropped: how == 4 leaves it to the collector
    end
  end
end

describe("conc.net under random peers", function()
  after_each(function()
    support.nothing_left()
  end)

  it(("20 clients send random bytes for %g s to a mixed read_line/read/read_exactly server%s: nothing crashes, memory stays flat%s")
    :format(SECONDS, chat and " and the chat server" or "", ASAN and " (ASan: shortened, memory not checked)" or ""), function()
    print(("\nnet_fuzz: seed %d, %g s, %d clients, chat server %s%s")
      :format(SEED, SECONDS, CLIENTS, chat and "included" or "absent", ASAN and ", ASan" or ""))
    math.randomseed(SEED)
    make_pools()
    conc.run(function()
      local ctx, cancel = conc.with_cancel(conc.background())
      local stats = { ops = 0, toolong = 0, conns = 0, bytes = 0, ends = {}, how = { 0, 0, 0, 0 } }
      local sessions = conc.waitgroup()

      local l = assert(net.listen(HOST, 0))
      local _, mixed_port = l:addr()
      local acceptor = conc.go(function()
        while true do
          local s = l:accept(ctx)
          if not s then return end
          sessions:add(1)
          conc.go(function()
            serve_mixed(ctx, s, stats)
            sessions:done()
          end)
        end
      end)
      local targets = { mixed_port }
      local srv
      if chat then
        srv = assert(chat.start(ctx, {
          host = HOST, port = 0, rate = 50, burst = 20, idle = 2, queue = 64, max_line = MAX_LINE, grace = 0.5,
        }))
        targets[2] = srv.port
      end

      local t0 = conc.now()
      local deadline = t0 + SECONDS
      local clients = conc.waitgroup()
      for _ = 1, CLIENTS do
        clients:add(1)
        conc.go(function()
          client(ctx, targets, deadline, stats)
          clients:done()
        end)
      end

      conc.sleep(WARMUP)
      local lua0, rss0 = memory()
      local peak = rss0
      while conc.now() < deadline - 0.5 do
        conc.sleep(0.5)
        collectgarbage() -- so that RSS follows what conc holds, not the collector's pace
        local rss = rss_kb()
        peak = math.max(peak, rss)
        if VERBOSE then
          print(("net_fuzz: %5.1f s: RSS %d KiB, Lua heap %d KiB, %d connections")
            :format(conc.now() - t0, rss, math.floor(collectgarbage("count")), stats.conns))
        end
      end
      local lua1, rss1 = memory()
      assert.is_true(clients:wait())

      -- Both servers still serve a well-behaved peer.
      local c = assert(net.connect(HOST, mixed_port))
      local check, check_cancel = conc.with_timeout(ctx, 5)
      assert(c:write("hello\n", check))
      assert.are.equal("#5", c:read_line(check))
      c:close()
      if srv then
        local cc = assert(net.connect(HOST, srv.port))
        assert(cc:write("/nick fuzz_check\n", check))
        local answered
        while true do
          local line, err = cc:read_line(check)
          assert(line, "the chat server did not answer /nick: " .. tostring(err))
          if line:find("fuzz_check", 1, true) then
            answered = line
            break
          end
        end
        assert.is_truthy(answered:find("^%* "), answered)
        cc:close()
      end
      check_cancel()

      if srv then
        cancel()
        assert.is_true(srv:wait())
      end
      cancel()
      l:close()
      acceptor:wait()
      assert.is_true(sessions:wait())

      local ends = {}
      for code, n in pairs(stats.ends) do ends[#ends + 1] = code .. " " .. n end
      table.sort(ends)
      print(("net_fuzz: %d connections, %d KiB sent, %d answers, %d toolong; ends: close %d, half-close %d, reset %d, dropped %d; mixed server sessions ended by: %s")
        :format(stats.conns, math.floor(stats.bytes / KiB), stats.ops, stats.toolong,
          stats.how[1], stats.how[2], stats.how[3], stats.how[4], table.concat(ends, ", ")))
      print(("net_fuzz: after warm-up: Lua heap %d KiB, RSS %d KiB; at the end: Lua heap %d KiB, RSS %d KiB; peak RSS %d KiB")
        :format(math.floor(lua0), rss0, math.floor(lua1), rss1, peak))

      assert.is_true(stats.conns >= 100, "too few connections to mean anything")
      assert.is_true(stats.toolong > 0, "no overlong line reached the mixed server")
      if not ASAN then
        assert.is_true(rss1 - rss0 < 4 * KiB, ("RSS grew by %d KiB after the warm-up"):format(rss1 - rss0))
        assert.is_true(lua1 - lua0 < 1 * KiB, ("the Lua heap grew by %d KiB after the warm-up"):format(math.floor(lua1 - lua0)))
      end
    end)
  end)
end)
