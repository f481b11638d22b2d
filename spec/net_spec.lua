--- conc.net: TCP on libuv, with real sockets on 127.0.0.1 (issue 7, item 4; DESIGN.md
-- "Network and signals"). Echo between tasks, line framing across chunk boundaries,
-- backpressure, a ctx on every blocking call (success, a ctx already done (D1), a timeout and
-- a cancel while blocked, and the peer failing), refused and reset errors, close semantics,
-- fd stability over 10,000 connections, deadlock detection with idle handles, and misuse.
--
-- Events are ordered with channels, tasks and ctxs. Two helpers touch the real clock without
-- ordering anything: `let_deliver` pauses 1 ms between single-byte writes so that the reader
-- sees them as separate chunks (every assertion holds however the bytes are chunked), and the
-- external peers of the keep-alive specs wait 0.2 s so that they arrive after the process
-- has blocked (they pass either way, the wait only makes them test something).
-- A reset is made the portable way: closing a socket whose receive buffer holds unread data
-- sends RST instead of FIN (RFC 1122, 4.2.2.13; Linux tcp_close).
local conc = require "conc"
local net = require "conc.net"
local support = require "support"
local errors = conc.errors
local pack, parked = support.pack, support.parked
local starts_with = support.starts_with

local unpack = table.unpack or unpack
local HOST = "127.0.0.1"
local bg = conc.background()
local PID = require("conc.core").sysinfo()
local KiB = 1024
local ASAN = package.cpath:find("/asan/", 1, true) ~= nil
  or (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) ~= nil

-- Every listener and connection a spec opens, closed by after_each (a failed spec must not
-- leave a socket that changes the next one's fd count).
local opened = {}
local function track(h)
  if h then opened[#opened + 1] = h end
  return h
end

local function listen(host, opts)
  local l = track(assert(net.listen(host or HOST, 0, opts)))
  local _, port = l:addr()
  return l, port
end

--- A connected pair: c (the client end), s (the accepted end), the listener and its port.
local function pair()
  local l, port = listen()
  local c = track(assert(net.connect(HOST, port)))
  local s = track(assert(l:accept()))
  return c, s, l, port
end

local function cancelled()
  local ctx, cancel = conc.with_cancel(bg)
  cancel()
  return ctx
end

--- Asserts that err is a well-formed conc error of kind "net" (with this code, if given).
local function net_error(err, code, what)
  what = what or "error"
  assert(errors.is_error(err), what .. ": a conc error expected, got " .. tostring(err))
  assert.are.equal("net", errors.kind(err), what)
  assert.is_false(errors.is_bug(err), what)
  if code then assert.are.equal(code, err.code, what .. ": " .. tostring(err)) end
  assert.are.equal("string", type(err.message))
  assert.is_true(#tostring(err) > 0)
end

--- Asserts that r (a pack) is exactly `nil, target`.
local function failed_with(target, r, what)
  assert.is_nil(r[1], what)
  assert.are.equal(target, r[2], what)
end

--- Asserts that r (a pack) is `nil, err` with a net error of this code.
local function failed_net(code, r, what)
  assert.is_nil(r[1], what)
  net_error(r[2], code, what)
end

--- Calls call(ctx) with a ctx that ends after d seconds (default 0.05) while it waits.
local function with_timeout(call, d)
  local ctx, cancel = conc.with_timeout(bg, d or 0.05)
  local r = pack(call(ctx))
  cancel()
  return r
end

--- Starts call(ctx) in a task, cancels ctx from here once the task is blocked, and returns
-- what the call returned.
local function cancel_while_blocked(call)
  local ctx, cancel = conc.with_cancel(bg)
  local t = parked(function() return pack(call(ctx)) end)
  assert.are.equal("blocked", t:status(), "the call did not block")
  cancel()
  local ok, r = t:wait()
  assert.is_true(ok, tostring(r))
  return r
end

--- Starts fn(...) in a task and returns it once it is blocked (the call under test parked).
local function blocked(fn, ...)
  local t = parked(fn, ...)
  assert.are.equal("blocked", t:status(), "the call did not block")
  return t
end

--- Deterministic bytes (all 256 values), the same for a seed on every interpreter: a
-- 64 KiB block of a linear congruential sequence, made once per seed, repeated with a
-- different rotation in each 64 KiB, so that bytes out of place do not go unnoticed.
local blocks = {}
local function data(n, seed)
  seed = seed or 1
  local block = blocks[seed]
  if not block then
    local x, parts, chunk = seed, {}, {}
    for i = 1, 16 do
      for j = 1, 4096 do
        x = (x * 69069 + 1) % 4294967296
        chunk[j] = math.floor(x / 16777216)
      end
      parts[i] = string.char(unpack(chunk, 1, 4096))
    end
    block = table.concat(parts)
    blocks[seed] = block
  end
  local parts, i, k = {}, 0, 0
  while i < n do
    local r = (k * 4099 + seed) % 65536
    local piece = block:sub(r + 1) .. block:sub(1, r)
    parts[#parts + 1] = piece:sub(1, math.min(65536, n - i))
    i, k = i + 65536, k + 1
  end
  return table.concat(parts)
end

--- Reads c until EOF; returns what came. Fails on an error.
local function read_all(c, ctx)
  local parts = {}
  while true do
    local chunk, err = c:read(ctx)
    if not chunk then
      assert(err == nil, tostring(err))
      return table.concat(parts)
    end
    parts[#parts + 1] = chunk
  end
end

--- Lets the loop deliver what was just written, so that the next write reaches the reader
-- as a chunk of its own (see the file comment: nothing depends on it).
local function let_deliver()
  conc.sleep(0.001)
end

--- An echo server on l: a task per connection writes back each chunk until EOF, then closes.
-- The server task returns the error that ended accept (code "closed" once l is closed).
local function echo_server(l)
  return conc.go(function()
    while true do
      local s, err = l:accept()
      if not s then return err end
      conc.go(function()
        while true do
          local chunk = s:read()
          if not chunk or not s:write(chunk) then break end
        end
        s:close()
      end)
    end
  end)
end

local rss_kb = support.rss_kb

--- The open file descriptors of this process.
local function fd_count()
  local p = assert(io.popen("ls /proc/" .. PID .. "/fd"))
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

--- Asserts that this process has no more fds open than `before`. (Fewer is fine: a
-- socket an earlier spec closed with data unsent may finish its flush meanwhile.)
local function no_more_fds(before)
  local now = fd_count()
  if now > before then
    local p = assert(io.popen("ls -l /proc/" .. PID .. "/fd"))
    local list = p:read("*a")
    p:close()
    error(("%d fds open, %d before:\n%s"):format(now, before, list), 2)
  end
end

-- The TCP sockets of this host with local or remote port `port`, each {state =, lport =,
-- rport =, rx =, tx =}: rx the bytes in its receive queue (not yet read by the process), tx
-- those in its send queue (not yet acknowledged). Through ss(8), which filters in the
-- kernel, when it is there; else /proc/net/tcp, which lists every TIME_WAIT socket of the
-- host (tens of thousands after a few runs) and so takes a while.
local HAVE_SS = os.execute("command -v ss >/dev/null 2>&1")
HAVE_SS = HAVE_SS == true or HAVE_SS == 0
local PROC_STATES = { ["01"] = "ESTAB", ["02"] = "SYN-SENT", ["06"] = "TIME-WAIT", ["0A"] = "LISTEN" }
local function tcp_sockets(port)
  local list = {}
  if HAVE_SS then
    local p = assert(io.popen(("ss -tanH '( sport = :%d or dport = :%d )'"):format(port, port)))
    for line in p:lines() do
      local st, rx, tx, lp, rp = line:match("^(%S+)%s+(%d+)%s+(%d+)%s+%S+:(%d+)%s+%S+:(%d+)")
      if st then
        list[#list + 1] = { state = st, rx = tonumber(rx), tx = tonumber(tx), lport = tonumber(lp), rport = tonumber(rp) }
      end
    end
    p:close()
  else
    for line in io.lines("/proc/net/tcp") do
      local lp, rp, st, tx, rx = line:match("^%s*%d+: %x+:(%x+) %x+:(%x+) (%x+) (%x+):(%x+)")
      if lp and (tonumber(lp, 16) == port or tonumber(rp, 16) == port) then
        list[#list + 1] = { state = PROC_STATES[st] or st, rx = tonumber(rx, 16), tx = tonumber(tx, 16),
          lport = tonumber(lp, 16), rport = tonumber(rp, 16) }
      end
    end
  end
  return list
end

--- The kernel's send and receive queues of the established socket lport -> rport.
local function kernel_queues(lport, rport)
  for _, sk in ipairs(tcp_sockets(lport)) do
    if sk.state == "ESTAB" and sk.lport == lport and sk.rport == rport then return sk.tx, sk.rx end
  end
  error(("no established socket %d -> %d"):format(lport, rport))
end

--- The sockets of this host connected or connecting to port (not LISTEN nor TIME-WAIT).
local function sockets_to(port)
  local n = 0
  for _, sk in ipairs(tcp_sockets(port)) do
    if sk.rport == port and sk.state ~= "LISTEN" and sk.state ~= "TIME-WAIT" then n = n + 1 end
  end
  return n
end

--- Resets the connection from `closer`'s end: its peer writes bytes that closer never
-- reads, so closer's kernel answers the close with RST. The bytes are in closer's kernel
-- receive buffer once the write returns (loopback delivers within the send call).
local function reset_from(closer, peer)
  assert(peer:write("bytes the peer never reads\n"))
  assert(closer:close())
end

--- A listener whose accept queue is full (backlog 1, nobody accepting): a further connect
-- blocks, its SYN dropped by the kernel (Linux tcp_conn_request: sk_acceptq_is_full).
local function stuck_listener()
  local l, port = listen(HOST, { backlog = 1 })
  for _ = 1, 8 do
    local ctx, cancel = conc.with_timeout(bg, 0.2)
    local c, err = net.connect(HOST, port, ctx)
    cancel()
    if not c then
      assert.are.equal(errors.deadline_exceeded, err, "the connect failed otherwise: " .. tostring(err))
      return l, port
    end
    track(c)
  end
  error("the accept queue never filled")
end

--- Runs Lua code in a child process of this interpreter with this package.path and cpath
-- and a 10 s limit; returns its stdout and stderr followed by "rc=<exit status>".
local function isolated(code)
  local interp = assert(arg and arg[-1], "no interpreter in arg[-1]")
  local script = ("package.path = %q; package.cpath = %q\n%s"):format(package.path, package.cpath, code)
  local p = assert(io.popen(("timeout 10 %s -e '%s' 2>&1; echo \"rc=$?\""):format(interp, script:gsub("'", "'\\''"))))
  local out = p:read("*a")
  p:close()
  return out
end

describe("conc.net", function()
  after_each(function()
    for i = #opened, 1, -1 do
      opened[i]:close()
      opened[i] = nil
    end
    support.nothing_left()
  end)

  describe("echo", function()
    it("a client task and a server task: what the client writes comes back, then EOF after close_write", function()
      conc.run(function()
        local l, port = listen()
        local server = echo_server(l)
        local client = conc.go(function()
          local c = assert(net.connect(HOST, port))
          assert.is_true(c:write("hello, "))
          assert.is_true(c:write("world"))
          assert.is_true(c:close_write())
          local got = read_all(c)
          assert.is_true(c:close())
          return got
        end)
        assert.are.same({ true, "hello, world" }, { client:wait() })
        assert.is_true(l:close())
        local ok, err = server:wait()
        assert.is_true(ok)
        net_error(err, "closed")
      end)
    end)

    it("20 concurrent clients, each in ping-pong with the server for 50 lines, get only their own lines back", function()
      conc.run(function()
        local l, port = listen()
        local server = echo_server(l)
        local g = conc.group()
        for i = 1, 20 do
          g:go(function()
            local c = assert(net.connect(HOST, port))
            for j = 1, 50 do
              local line = ("client %d line %d"):format(i, j)
              assert(c:write(line .. "\n"))
              local got, err = c:read_line()
              assert(got == line, ("client %d: expected %q, got %s"):format(i, line, tostring(got or err)))
            end
            c:close()
          end)
        end
        assert.is_nil(g:wait())
        l:close()
        server:wait()
      end)
    end)

    it("1 MB in a single write comes back whole, in chunks of at most 64 KiB", function()
      conc.run(function()
        local l, port = listen()
        local server = echo_server(l)
        local payload = data(1024 * KiB, 7)
        local c = track(assert(net.connect(HOST, port)))
        local reader = conc.go(function()
          local parts, n, biggest = {}, 0, 0
          while n < #payload do
            local chunk, err = c:read()
            assert(chunk, "read failed: " .. tostring(err))
            biggest = math.max(biggest, #chunk)
            parts[#parts + 1] = chunk
            n = n + #chunk
          end
          return table.concat(parts), biggest
        end)
        assert.is_true(c:write(payload))
        local ok, got, biggest = reader:wait()
        assert.is_true(ok, tostring(got))
        assert.are.equal(#payload, #got)
        assert.is_true(got == payload, "the echo differs from what was sent")
        assert.is_true(biggest <= 64 * KiB, "a chunk of " .. biggest .. " bytes")
        c:close()
        l:close()
        server:wait()
      end)
    end)

    it("1 MB each way at once: both ends write and read concurrently, in writes of varied sizes", function()
      conc.run(function()
        local l, port = listen()
        local up, down = data(1024 * KiB, 11), data(1024 * KiB, 13)
        local function send_all(c, payload)
          local i, size = 1, 1
          while i <= #payload do
            assert(c:write(payload:sub(i, i + size - 1)))
            i, size = i + size, size * 3 % 70001 + 1
          end
          return true
        end
        local server = conc.go(function()
          local s = track(assert(l:accept()))
          local w = conc.go(send_all, s, down)
          local got = assert(s:read_exactly(#up))
          assert(w:wait())
          return got
        end)
        local c = track(assert(net.connect(HOST, port)))
        local w = conc.go(send_all, c, up)
        local got_down = assert(c:read_exactly(#down))
        assert.is_true((w:wait()))
        local ok, got_up = server:wait()
        assert.is_true(ok, tostring(got_up))
        assert.is_true(got_up == up, "the server got other bytes than the client sent")
        assert.is_true(got_down == down, "the client got other bytes than the server sent")
      end)
    end)

    it("works at the top level (implicit main), without conc.run", function()
      local c, s = pair()
      assert.is_true(c:write("ping\n"))
      assert.are.equal("ping", s:read_line())
      assert.is_true(s:write("pong"))
      assert.are.equal("pong", c:read_exactly(4))
    end)
  end)

  describe("line framing", function()
    it("a line written one byte at a time, each its own chunk, is read whole", function()
      local c, s = pair()
      local reader = blocked(function() return s:read_line() end)
      for ch in ("split over many writes\r\n"):gmatch(".") do
        assert(c:write(ch))
        let_deliver()
      end
      assert.are.same({ true, "split over many writes" }, { reader:wait() })
    end)

    it("an empty write returns true and sends nothing", function()
      local c, s = pair()
      assert.is_true(c:write(""))
      assert(c:write("x"))
      assert(c:close_write())
      assert.are.equal("x", read_all(s))
    end)

    it("several lines in one write are read one by one, empty lines included", function()
      local c, s = pair()
      assert(c:write("a\nbb\n\nccc\n"))
      assert.are.equal("a", s:read_line())
      assert.are.equal("bb", s:read_line())
      assert.are.equal("", s:read_line())
      assert.are.equal("ccc", s:read_line())
    end)

    it("lines and their ends split at every place across writes", function()
      local c, s = pair()
      local text = "one\r\ntwo\nthree\r\n\r\nfour\n"
      local want = { "one", "two", "three", "", "four" }
      for cut = 1, #text - 1 do
        local reader = conc.go(function()
          local got = {}
          for i = 1, #want do got[i] = assert(s:read_line()) end
          return got
        end)
        assert(c:write(text:sub(1, cut)))
        let_deliver()
        assert(c:write(text:sub(cut + 1)))
        local ok, got = reader:wait()
        assert.is_true(ok, tostring(got))
        assert.are.same(want, got, "cut at " .. cut)
      end
    end)

    it("\\r\\n ends a line like \\n; a \\r elsewhere is data", function()
      local c, s = pair()
      assert(c:write("crlf\r\nbare\rcr\nlast\r"))
      let_deliver()
      assert(c:write("\n"))
      assert.are.equal("crlf", s:read_line())
      assert.are.equal("bare\rcr", s:read_line())
      assert.are.equal("last", s:read_line())
    end)

    it("a last line without its newline is returned at EOF, then nil (one value) for ever", function()
      local c, s = pair()
      assert(c:write("first\nunterminated"))
      assert(c:close_write())
      assert.are.equal("first", s:read_line())
      assert.are.same({ n = 1, "unterminated" }, pack(s:read_line()))
      assert.are.same({ n = 1 }, pack(s:read_line()))
      assert.are.same({ n = 1 }, pack(s:read_line()))
      assert.are.same({ n = 1 }, pack(s:read()))
    end)

    it("an empty stream gives nil at once at EOF", function()
      local c, s = pair()
      assert(c:close_write())
      assert.are.same({ n = 1 }, pack(s:read_line()))
    end)

    it("a line longer than max fails with code toolong; that line is skipped and the next one read", function()
      local c, s = pair()
      assert(c:write("0123456789\n01234567890\nnext\n"))
      assert.are.equal("0123456789", s:read_line(nil, 10), "a line of exactly max bytes is fine")
      failed_net("toolong", pack(s:read_line(nil, 10)))
      assert.are.equal("next", s:read_line(nil, 10))
    end)

    it("an overlong line arriving over many chunks, far beyond the default max (64 KiB), is skipped whole", function()
      conc.run(function()
        local c, s = pair()
        local long = data(300 * KiB, 5):gsub("[\r\n]", "x")
        local writer = conc.go(function()
          local i = 1
          while i <= #long do
            assert(c:write(long:sub(i, i + 9999)))
            i = i + 10000
          end
          assert(c:write("\nafter\n" .. ("y"):rep(65536) .. "\n"))
          assert(c:close_write())
        end)
        failed_net("toolong", pack(s:read_line()))
        assert.are.equal("after", s:read_line())
        assert.are.equal(("y"):rep(65536), s:read_line(), "a line of exactly 65536 bytes is fine by default")
        assert.are.same({ n = 1 }, pack(s:read_line()))
        assert.is_true((writer:wait()))
      end)
    end)

    it("an overlong last line without a newline fails with toolong, then EOF", function()
      local c, s = pair()
      assert(c:write(("z"):rep(50)))
      assert(c:close_write())
      failed_net("toolong", pack(s:read_line(nil, 20)))
      assert.are.same({ n = 1 }, pack(s:read_line(nil, 20)))
    end)

    it("read_exactly gathers bytes across chunks and leaves the rest for the next read", function()
      local c, s = pair()
      local reader = blocked(function() return s:read_exactly(5) end)
      for _, piece in ipairs { "a", "bc", "defg" } do
        assert(c:write(piece))
        let_deliver()
      end
      assert.are.same({ true, "abcde" }, { reader:wait() })
      assert.are.equal("fg", s:read_exactly(2))
      assert.are.equal("", s:read_exactly(0))
    end)

    it("read_exactly fails with code EOF when the stream ends before n bytes, and leaves those bytes for the next read", function()
      local c, s = pair()
      assert(c:write("abc"))
      assert(c:close_write())
      failed_net("EOF", pack(s:read_exactly(5)))
      assert.are.equal("abc", s:read())
      assert.are.same({ n = 1 }, pack(s:read()))
    end)

    it("read_line, read_exactly and read share one buffer: nothing is lost or repeated between them", function()
      local c, s = pair()
      assert(c:write("line one\nABCDEFrest of it"))
      assert(c:close_write())
      assert.are.equal("line one", s:read_line())
      assert.are.equal("ABC", s:read_exactly(3))
      assert.are.equal("DEF", s:read_exactly(3))
      assert.are.equal("rest of it", read_all(s))
    end)
  end)

  describe("backpressure", function()
    it("a peer that never reads: write blocks once about 64 KiB wait beyond what the kernel holds; a timeout ends it with nothing of it sent; memory stays bounded; writes go on once the peer reads", function()
      local c, s = pair()
      local chunk = data(16 * KiB, 3)
      collectgarbage()
      local rss0 = rss_kb()
      local taken, err = 0, nil
      while true do
        local ctx, cancel = conc.with_timeout(bg, 0.2)
        local ok, e = s:write(chunk, ctx)
        cancel()
        if not ok then
          err = e
          break
        end
        taken = taken + #chunk
        assert(taken < 256 * 1024 * KiB, "write never blocked")
      end
      assert.are.equal(errors.deadline_exceeded, err)
      local _, cport = c:addr()
      local _, sport = s:addr()
      local tx = kernel_queues(sport, cport)
      local _, rx = kernel_queues(cport, sport)
      local queued = taken - tx - rx
      assert.is_true(queued <= 64 * KiB + #chunk,
        ("%d bytes wait in conc beyond the kernel's %d"):format(queued, tx + rx))
      assert.is_true(queued >= 32 * KiB,
        ("write blocked with only %d bytes waiting beyond the kernel's %d"):format(queued, tx + rx))
      collectgarbage()
      if not ASAN then -- ASan's quarantine keeps freed memory: RSS says nothing there
        assert.is_true(rss_kb() - rss0 < 8 * KiB, ("RSS grew by %d KiB"):format(rss_kb() - rss0))
      end

      local reader = conc.go(function()
        local n = 0
        while true do
          local got, e = c:read()
          if not got then
            assert(e == nil, tostring(e))
            return n
          end
          n = n + #got
        end
      end)
      for _ = 1, 64 do
        assert.is_true(s:write(chunk))
        taken = taken + #chunk
      end
      assert(s:close_write())
      assert.are.same({ true, taken }, { reader:wait() },
        "the peer got exactly the bytes of the writes that returned true")
    end)
  end)

  describe("ctx on every blocking call", function()
    describe("l:accept", function()
      it("with a ctx: returns the connection", function()
        local l, port = listen()
        local c = track(assert(net.connect(HOST, port)))
        local s = track(assert(l:accept(bg)))
        assert.are.equal(select(2, c:addr()), select(2, s:peer()))
      end)

      it("D1: a ctx already done fails at once with ctx:err() and leaves the pending connection queued", function()
        local l, port = listen()
        local c = track(assert(net.connect(HOST, port)))
        failed_with(errors.canceled, pack(l:accept(cancelled())))
        local s = track(assert(l:accept()))
        assert.are.equal(select(2, c:addr()), select(2, s:peer()), "the pending connection was consumed")
      end)

      it("a timeout while blocked returns deadline_exceeded; accept works afterwards", function()
        local l, port = listen()
        failed_with(errors.deadline_exceeded, with_timeout(function(ctx) return l:accept(ctx) end))
        local c = track(assert(net.connect(HOST, port)))
        local s = track(assert(l:accept()))
        assert.are.equal(select(2, c:addr()), select(2, s:peer()))
      end)

      it("a cancel from another task while blocked returns canceled", function()
        local l = listen()
        failed_with(errors.canceled, cancel_while_blocked(function(ctx) return l:accept(ctx) end))
      end)

      it("a listener closed by another task wakes the accept with code closed", function()
        local l = listen()
        local t = blocked(function() return pack(l:accept()) end)
        assert.is_true(l:close())
        local _, r = t:wait()
        failed_net("closed", r)
      end)
    end)

    describe("net.connect", function()
      it("with a ctx: connects", function()
        local l, port = listen()
        local c = track(assert(net.connect(HOST, port, bg)))
        track(assert(l:accept()))
        assert.are.same({ HOST, port }, { c:peer() })
      end)

      it("D1: a ctx already done fails at once with ctx:err(), and no connection is attempted", function()
        local l, port = listen()
        failed_with(errors.canceled, pack(net.connect(HOST, port, cancelled())))
        failed_with(errors.canceled, pack(net.connect("localhost", port, cancelled())))
        assert.are.equal(0, sockets_to(port))
        local c = track(assert(net.connect(HOST, port)))
        local s = track(assert(l:accept()))
        assert.are.equal(select(2, c:addr()), select(2, s:peer()))
        failed_with(errors.deadline_exceeded, with_timeout(function(ctx) return l:accept(ctx) end),
          "a second connection was made")
      end)

      it("a timeout while blocked (the listener's accept queue full) returns deadline_exceeded and leaves no socket behind", function()
        local _, port = stuck_listener()
        local before = sockets_to(port)
        failed_with(errors.deadline_exceeded, with_timeout(function(ctx) return net.connect(HOST, port, ctx) end))
        assert.are.equal(before, sockets_to(port))
      end)

      it("a cancel from another task while blocked returns canceled", function()
        local _, port = stuck_listener()
        failed_with(errors.canceled, cancel_while_blocked(function(ctx) return net.connect(HOST, port, ctx) end))
      end)

      it("the peer failing: no listener on the port gives code ECONNREFUSED", function()
        local l, port = listen()
        l:close()
        local r = pack(net.connect(HOST, port))
        failed_net("ECONNREFUSED", r)
        assert.is_truthy(tostring(r[2]):find(tostring(port), 1, true), "the message names the port: " .. tostring(r[2]))
      end)
    end)

    -- The three reading calls share these specs: read(c, ctx) calls one of them.
    local readers = {
      { "c:read", function(c, ctx) return c:read(ctx) end, "data\n", "data\n" },
      { "c:read_line", function(c, ctx) return c:read_line(ctx) end, "data\n", "data" },
      { "c:read_exactly", function(c, ctx) return c:read_exactly(5, ctx) end, "data\n", "data\n" },
    }
    for _, case in ipairs(readers) do
      local name, read, sent, want = case[1], case[2], case[3], case[4]
      describe(name, function()
        it("with a ctx: returns the data", function()
          local c, s = pair()
          assert(c:write(sent))
          assert.are.equal(want, read(s, bg))
        end)

        it("D1: a ctx already done fails at once with ctx:err(), even with data waiting, and consumes none of it", function()
          local c, s = pair()
          assert(c:write(sent))
          assert.are.equal(want, read(s, bg), "data arrived")
          assert(c:write(sent))
          let_deliver()
          failed_with(errors.canceled, pack(read(s, cancelled())))
          assert.are.equal(want, read(s))
        end)

        it("a timeout while blocked returns deadline_exceeded; data that comes later is read", function()
          local c, s = pair()
          failed_with(errors.deadline_exceeded, with_timeout(function(ctx) return read(s, ctx) end))
          assert(c:write(sent))
          assert.are.equal(want, read(s))
        end)

        it("a cancel from another task while blocked returns canceled", function()
          local c, s = pair()
          failed_with(errors.canceled, cancel_while_blocked(function(ctx) return read(s, ctx) end))
          assert(c:write(sent))
          assert.are.equal(want, read(s))
        end)

        it("the peer closing while blocked ends the call (EOF)", function()
          local c, s = pair()
          local t = blocked(function() return pack(read(s, bg)) end)
          assert.is_true(c:close())
          local _, r = t:wait()
          if name == "c:read_exactly" then
            failed_net("EOF", r)
          else
            assert.are.same({ n = 1 }, r, "one nil at EOF, no error")
          end
        end)

        it("the peer resetting while blocked gives code ECONNRESET", function()
          local c, s = pair()
          local t = blocked(function() return pack(read(s, bg)) end)
          reset_from(c, s)
          local _, r = t:wait()
          failed_net("ECONNRESET", r)
        end)

        it("a close from another task while blocked gives code closed", function()
          local _, s = pair()
          local t = blocked(function() return pack(read(s, bg)) end)
          assert.is_true(s:close())
          local _, r = t:wait()
          failed_net("closed", r)
        end)
      end)
    end

    describe("partial data and a ctx", function()
      it("a line begun before read_line's ctx ended is not lost", function()
        local c, s = pair()
        assert(c:write("begun "))
        failed_with(errors.deadline_exceeded, with_timeout(function(ctx) return s:read_line(ctx) end))
        assert(c:write("and ended\n"))
        assert.are.equal("begun and ended", s:read_line())
      end)

      it("bytes gathered by read_exactly before its ctx ended are not lost", function()
        local c, s = pair()
        assert(c:write("abc"))
        failed_with(errors.deadline_exceeded, with_timeout(function(ctx) return s:read_exactly(5, ctx) end))
        assert(c:write("de"))
        assert.are.equal("abcde", s:read_exactly(5))
      end)
    end)

    describe("c:write", function()
      it("with a ctx: writes", function()
        local c, s = pair()
        assert.is_true(c:write("x", bg))
        assert.are.equal("x", s:read())
      end)

      it("D1: a ctx already done fails at once with ctx:err() and sends nothing", function()
        local c, s = pair()
        failed_with(errors.canceled, pack(c:write("never sent", cancelled())))
        assert(c:write("sent"))
        assert(c:close_write())
        assert.are.equal("sent", read_all(s))
      end)

      -- A writer blocked by backpressure: s's peer c never reads; fill() writes until a
      -- write would block and returns the bytes taken.
      local function fill(s)
        local chunk, taken = ("w"):rep(64 * KiB), 0
        while true do
          local ctx, cancel = conc.with_timeout(bg, 0.1)
          local ok = s:write(chunk, ctx)
          cancel()
          if not ok then return taken end
          taken = taken + #chunk
        end
      end

      it("a timeout while blocked returns deadline_exceeded (see backpressure)", function()
        local _, s = pair()
        fill(s)
        failed_with(errors.deadline_exceeded, with_timeout(function(ctx) return s:write("more", ctx) end))
      end)

      it("a cancel from another task while blocked returns canceled, and nothing of that write is sent", function()
        local c, s = pair()
        local taken = fill(s)
        failed_with(errors.canceled, cancel_while_blocked(function(ctx) return s:write("cancelled", ctx) end))
        assert(s:close_write())
        local got = read_all(c)
        assert.are.equal(taken, #got)
        assert.is_nil(got:find("cancelled", 1, true))
      end)

      it("a close from another task while blocked gives code closed", function()
        local _, s = pair()
        fill(s)
        local t = blocked(function() return pack(s:write("blocked")) end)
        assert.is_true(s:close())
        local _, r = t:wait()
        failed_net("closed", r)
      end)

      it("the peer resetting while blocked gives code ECONNRESET or EPIPE", function()
        local c, s = pair()
        assert(s:write("unread by c"))
        fill(s)
        local t = blocked(function() return pack(s:write("blocked")) end)
        assert.is_true(c:close())
        local _, r = t:wait()
        assert.is_nil(r[1])
        net_error(r[2])
        assert.is_truthy(r[2].code == "ECONNRESET" or r[2].code == "EPIPE", tostring(r[2].code))
      end)

      it("writes to a peer that closed soon fail with EPIPE or ECONNRESET, and the process lives (no SIGPIPE)", function()
        local c, s = pair()
        assert.is_true(s:close())
        local err
        for _ = 1, 100 do
          local ok, e = c:write("into the void\n")
          if not ok then
            err = e
            break
          end
          let_deliver()
        end
        net_error(err)
        assert.is_truthy(err.code == "EPIPE" or err.code == "ECONNRESET", tostring(err.code))
      end)
    end)
  end)

  describe("errors", function()
    it("connect to a port with no listener: code ECONNREFUSED, kind net", function()
      local l, port = listen()
      l:close()
      failed_net("ECONNREFUSED", pack(net.connect(HOST, port)))
      conc.run(function()
        failed_net("ECONNREFUSED", pack(net.connect(HOST, port)))
      end)
    end)

    it("listen on a port in use: code EADDRINUSE, and the message names the address", function()
      local _, port = listen()
      local r = pack(net.listen(HOST, port))
      failed_net("EADDRINUSE", r)
      assert.is_truthy(tostring(r[2]):find(tostring(port), 1, true), tostring(r[2]))
    end)

    it("listen on an address that is not this host's: a net error", function()
      local r = pack(net.listen("192.0.2.1", 0))
      failed_net("EADDRNOTAVAIL", r)
    end)

    it("connect to a name that does not resolve: a net error naming the host", function()
      local r = with_timeout(function(ctx) return net.connect("no-such-host.invalid", 80, ctx) end, 10)
      assert.is_nil(r[1])
      net_error(r[2])
      assert.is_truthy(tostring(r[2]):find("no-such-host.invalid", 1, true), tostring(r[2]))
    end)

    it("names resolve: localhost", function()
      local l, port = listen("localhost")
      local c = track(assert(net.connect("localhost", port)))
      local s = track(assert(l:accept()))
      assert(c:write("hi\n"))
      assert.are.equal("hi", s:read_line())
    end)
  end)

  describe("close", function()
    it("close wakes a blocked reader in another task with code closed (read, read_line, read_exactly)", function()
      conc.run(function()
        local conns, tasks = {}, {}
        for i, read in ipairs { "read", "read_line", "read_exactly" } do
          local _, s = pair()
          conns[i] = s
          tasks[i] = conc.go(function()
            if read == "read_exactly" then return pack(s:read_exactly(10)) end
            return pack(s[read](s))
          end)
        end
        support.settle(unpack(tasks))
        for i = 1, 3 do assert.is_true(conns[i]:close()) end
        for i = 1, 3 do
          local _, r = tasks[i]:wait()
          failed_net("closed", r)
        end
      end)
    end)

    it("every call after close returns nil and code closed; close is idempotent", function()
      local c, s, l = pair()
      assert.is_true(s:close())
      assert.is_true(s:close())
      failed_net("closed", pack(s:read()))
      failed_net("closed", pack(s:read_line()))
      failed_net("closed", pack(s:read_exactly(1)))
      failed_net("closed", pack(s:write("x")))
      failed_net("closed", pack(s:close_write()))
      assert.is_true(l:close())
      assert.is_true(l:close())
      failed_net("closed", pack(l:accept()))
      assert.is_true(c:close())
    end)

    it("close_write sends EOF to the peer; the other direction still works", function()
      local c, s = pair()
      assert(c:write("request"))
      assert.is_true(c:close_write())
      assert.are.equal("request", read_all(s))
      assert(s:write("reply"))
      assert(s:close_write())
      assert.are.equal("reply", read_all(c))
    end)

    it("a write after close_write fails with a net error", function()
      local c = pair()
      assert.is_true(c:close_write())
      local r = pack(c:write("late"))
      assert.is_nil(r[1])
      net_error(r[2])
    end)

    it("close flushes what was queued: the peer reads all 1 MB, then EOF", function()
      conc.run(function()
        local c, s = pair()
        local payload = data(1024 * KiB, 17)
        local reader = conc.go(read_all, s)
        assert.is_true(c:write(payload))
        assert.is_true(c:close())
        local ok, got = reader:wait()
        assert.is_true(ok)
        assert.are.equal(#payload, #got)
        assert.is_true(got == payload)
      end)
    end)

    it("a script that ends right after close still delivers what it queued (the closing state waits for the flush)", function()
      local l, port = listen()
      local child = assert(io.popen(("%s -e '%s' 2>&1"):format(assert(arg[-1]), ([[
        package.path = %q; package.cpath = %q
        local net = require "conc.net"
        local c = assert(net.connect("127.0.0.1", %d))
        assert(c:write(("0123456789abcdef"):rep(65536)))
        c:close()
        print("exiting")
      ]]):format(package.path, package.cpath, port))))
      local s = track(assert(l:accept()))
      local got = read_all(s)
      local out = child:read("*a")
      child:close()
      assert.are.equal("exiting\n", out)
      assert.are.equal(1024 * KiB, #got)
      assert.is_true(got == ("0123456789abcdef"):rep(65536))
    end)

    it("addr and peer: port 0 gives a real port; each end's peer is the other's addr", function()
      local c, s, l, port = pair()
      assert.is_true(port > 0 and port <= 65535)
      assert.are.same({ HOST, port }, { l:addr() })
      assert.are.same({ HOST, port }, { c:peer() })
      assert.are.same({ HOST, port }, { s:addr() })
      local chost, cport = c:addr()
      assert.are.equal(HOST, chost)
      assert.is_true(cport > 0 and cport ~= port)
      assert.are.same({ chost, cport }, { s:peer() })
    end)

    it("IPv6 (::1), 0.0.0.0 and * listen and connect", function()
      local l6, p6 = listen("::1")
      assert.are.same({ "::1", p6 }, { l6:addr() })
      local c6 = track(assert(net.connect("::1", p6)))
      local s6 = track(assert(l6:accept()))
      assert.are.equal("::1", (c6:peer()))
      assert(c6:write("six\n"))
      assert.are.equal("six", s6:read_line())
      for _, host in ipairs { "0.0.0.0", "*" } do
        local l, port = listen(host)
        local c = track(assert(net.connect(HOST, port)))
        local s = track(assert(l:accept()))
        assert(c:write(host .. "\n"))
        assert.are.equal(host, s:read_line())
      end
    end)
  end)

  describe("file descriptors", function()
    it("10,000 connect/accept/close cycles leave the fd count where it was", function()
      local l, port = listen()
      collectgarbage()
      collectgarbage()
      local before = fd_count()
      for i = 1, 10000 do
        local c = assert(net.connect(HOST, port))
        local s = assert(l:accept())
        if i % 2 == 0 then c, s = s, c end
        assert(c:close())
        assert(s:close())
      end
      no_more_fds(before)
    end)

    it("10,000 connections dropped without close are released by the collector", function()
      local l, port = listen()
      collectgarbage()
      collectgarbage()
      local before = fd_count()
      for i = 1, 10000 do
        assert(net.connect(HOST, port))
        assert(l:accept())
        if i % 500 == 0 then collectgarbage() end
      end
      collectgarbage()
      collectgarbage()
      -- one more round trip lets the loop run the close callbacks of the collected handles
      local c = assert(net.connect(HOST, port))
      local s = assert(l:accept())
      c:close()
      s:close()
      no_more_fds(before)
    end)

    it("listeners closed or collected release their socket; timed-out connects too", function()
      collectgarbage()
      collectgarbage()
      local before = fd_count()
      for i = 1, 1000 do
        local l = assert(net.listen(HOST, 0))
        if i % 2 == 0 then l:close() end
      end
      collectgarbage()
      collectgarbage()
      conc.sleep(0.001)
      no_more_fds(before)
      local l, port = stuck_listener()
      before = fd_count()
      for _ = 1, 20 do
        failed_with(errors.canceled, cancel_while_blocked(function(ctx) return net.connect(HOST, port, ctx) end))
      end
      conc.sleep(0.001)
      no_more_fds(before)
      l:close()
    end)
  end)

  describe("deadlock detection", function()
    it("C26: an idle listener and an idle connection do not keep a blocked program alive: deadlock", function()
      local c, s, l = pair()
      local ok, err = pcall(conc.run, function()
        conc.chan():recv()
      end)
      assert.is_false(ok)
      assert.is_true(starts_with(err, support.DEADLOCK), err)
      assert(c and s and l)
    end)

    it("a task waiting on accept and read keeps the process alive until the peer comes (no deadlock)", function()
      local out = isolated [[
        local conc = require "conc"
        local net = require "conc.net"
        local l = assert(net.listen("127.0.0.1", 0))
        local _, port = l:addr()
        local got = conc.chan()
        conc.go(function()
          local s = assert(l:accept())
          got:send(s:read_line())
          s:close()
        end)
        os.execute(("bash -c 'sleep 0.2; exec 3<>/dev/tcp/127.0.0.1/%d; sleep 0.2; echo hello >&3' >/dev/null 2>&1 &"):format(port))
        print((got:recv()))
        l:close()
      ]]
      assert.are.equal("hello\nrc=0\n", out)
    end)
  end)

  describe("bad arguments", function()
    local l, c, s
    setup(function()
      l = assert(net.listen(HOST, 0))
      c = assert(net.connect(HOST, select(2, l:addr())))
      s = assert(l:accept())
    end)
    teardown(function()
      c:close()
      s:close()
      l:close()
    end)
    local cases = {
      { "net.listen(1, 0)", function() net.listen(1, 0) end,
        "conc: net.listen: bad argument #1 (host string expected, got number)" },
      { "net.listen(nil, 0)", function() net.listen(nil, 0) end,
        "conc: net.listen: bad argument #1 (host string expected, got nil)" },
      { "net.listen(HOST)", function() net.listen(HOST) end,
        "conc: net.listen: bad argument #2 (port number expected, got no value)" },
      { "net.listen(HOST, '80')", function() net.listen(HOST, "80") end,
        "conc: net.listen: bad argument #2 (port number expected, got string)" },
      { "net.listen(HOST, -1)", function() net.listen(HOST, -1) end,
        "conc: net.listen: bad argument #2 (port must be a whole number in 0..65535, got -1)" },
      { "net.listen(HOST, 65536)", function() net.listen(HOST, 65536) end,
        "conc: net.listen: bad argument #2 (port must be a whole number in 0..65535, got 65536)" },
      { "net.listen(HOST, 1.5)", function() net.listen(HOST, 1.5) end,
        "conc: net.listen: bad argument #2 (port must be a whole number in 0..65535, got 1.5)" },
      { "net.listen(HOST, 0, 5)", function() net.listen(HOST, 0, 5) end,
        "conc: net.listen: bad argument #3 (options table expected, got number)" },
      { "net.listen(HOST, 0, {backlg = 1})", function() net.listen(HOST, 0, { backlg = 1 }) end,
        "conc: net.listen: unknown option 'backlg'" },
      { "net.listen(HOST, 0, {backlog = 0})", function() net.listen(HOST, 0, { backlog = 0 }) end,
        "conc: net.listen: bad argument #3 (whole number >= 1 expected, got 0)" },
      { "net.listen(HOST, 0, {}, 1)", function() net.listen(HOST, 0, {}, 1) end,
        "conc: net.listen: too many arguments (at most 3 expected, got 4)" },
      { "net.connect({}, 80)", function() net.connect({}, 80) end,
        "conc: net.connect: bad argument #1 (host string expected, got table)" },
      { "net.connect(HOST, 70000)", function() net.connect(HOST, 70000) end,
        "conc: net.connect: bad argument #2 (port must be a whole number in 0..65535, got 70000)" },
      { "net.connect(HOST, nil)", function() net.connect(HOST, nil) end,
        "conc: net.connect: bad argument #2 (port number expected, got nil)" },
      { "net.connect(HOST, 80, 'ctx')", function() net.connect(HOST, 80, "ctx") end,
        "conc: net.connect: bad argument #3 (ctx expected, got string)" },
      { "net.connect(HOST, 80, bg, 1)", function() net.connect(HOST, 80, bg, 1) end,
        "conc: net.connect: too many arguments (at most 3 expected, got 4)" },
      { "l:accept(5)", function() l:accept(5) end,
        "conc: l:accept: bad argument #1 (ctx expected, got number)" },
      { "l.accept(c)", function() l.accept(c) end,
        "conc: l:accept: bad self (listener expected, got conc.net.conn)" },
      { "l.addr(5)", function() l.addr(5) end,
        "conc: l:addr: bad self (listener expected, got number)" },
      { "l.close({})", function() l.close({}) end,
        "conc: l:close: bad self (listener expected, got table)" },
      { "c:read(5)", function() c:read(5) end,
        "conc: c:read: bad argument #1 (ctx expected, got number)" },
      { "c.read(l)", function() c.read(l) end,
        "conc: c:read: bad self (connection expected, got conc.net.listener)" },
      { "c:read_line('x')", function() c:read_line("x") end,
        "conc: c:read_line: bad argument #1 (ctx expected, got string)" },
      { "c:read_line(nil, -1)", function() c:read_line(nil, -1) end,
        "conc: c:read_line: bad argument #2 (whole number >= 0 expected, got -1)" },
      { "c:read_line(nil, 1.5)", function() c:read_line(nil, 1.5) end,
        "conc: c:read_line: bad argument #2 (whole number >= 0 expected, got 1.5)" },
      { "c:read_line(nil, 'x')", function() c:read_line(nil, "x") end,
        "conc: c:read_line: bad argument #2 (number expected, got string)" },
      { "c:read_exactly()", function() c:read_exactly() end,
        "conc: c:read_exactly: bad argument #1 (number expected, got no value)" },
      { "c:read_exactly(-1)", function() c:read_exactly(-1) end,
        "conc: c:read_exactly: bad argument #1 (whole number >= 0 expected, got -1)" },
      { "c:read_exactly(0.5)", function() c:read_exactly(0.5) end,
        "conc: c:read_exactly: bad argument #1 (whole number >= 0 expected, got 0.5)" },
      { "c:read_exactly(1, {})", function() c:read_exactly(1, {}) end,
        "conc: c:read_exactly: bad argument #2 (ctx expected, got table)" },
      { "c:write()", function() c:write() end,
        "conc: c:write: bad argument #1 (string expected, got no value)" },
      { "c:write({})", function() c:write({}) end,
        "conc: c:write: bad argument #1 (string expected, got table)" },
      { "c:write('x', 1)", function() c:write("x", 1) end,
        "conc: c:write: bad argument #2 (ctx expected, got number)" },
      { "c.write(5, 'x')", function() c.write(5, "x") end,
        "conc: c:write: bad self (connection expected, got number)" },
      { "c.close_write(l)", function() c.close_write(l) end,
        "conc: c:close_write: bad self (connection expected, got conc.net.listener)" },
      { "c.close(nil)", function() c.close(nil) end,
        "conc: c:close: bad self (connection expected, got nil)" },
      { "c.peer(5)", function() c.peer(5) end,
        "conc: c:peer: bad self (connection expected, got number)" },
      { "c.addr(5)", function() c.addr(5) end,
        "conc: c:addr: bad self (connection expected, got number)" },
      { "c:write(5)", function() c:write(5) end,
        "conc: c:write: bad argument #1 (string expected, got number)" },
      { "c:read(bg, 1)", function() c:read(bg, 1) end,
        "conc: c:read: too many arguments (at most 1 expected, got 2)" },
      { "c:read_line(bg, 10, 1)", function() c:read_line(bg, 10, 1) end,
        "conc: c:read_line: too many arguments (at most 2 expected, got 3)" },
      { "c:read_exactly(1, bg, 1)", function() c:read_exactly(1, bg, 1) end,
        "conc: c:read_exactly: too many arguments (at most 2 expected, got 3)" },
      { "c:write('x', bg, 1)", function() c:write("x", bg, 1) end,
        "conc: c:write: too many arguments (at most 2 expected, got 3)" },
      { "c:close(1)", function() c:close(1) end,
        "conc: c:close: too many arguments (at most 0 expected, got 1)" },
      { "l:accept(bg, 1)", function() l:accept(bg, 1) end,
        "conc: l:accept: too many arguments (at most 1 expected, got 2)" },
      { "l:close(1)", function() l:close(1) end,
        "conc: l:close: too many arguments (at most 0 expected, got 1)" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        assert.are.equal(case[3], support.error_of(case[2]))
      end)
    end
  end)
end)
