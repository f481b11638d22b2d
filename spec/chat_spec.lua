--- The chat room server of examples/chat (issue 7, item 3), over real TCP on 127.0.0.1,
-- with the wire format of bench/chat_load/PROTOCOL.md. The server runs in-process
-- (chat.start in a conc task) with clients made with conc.net; the last spec runs
-- examples/chat/server.lua as a process and sends it a real SIGTERM.
--
-- Nothing sleeps: each step waits for the line that proves the server handled the one
-- before (lines to one client arrive in the order the server queued them, and the server
-- handles one client's lines in order). Reads take a 10 s ctx only so that a broken server
-- fails the spec instead of hanging it. The rate limit runs on a clock the spec moves.
local conc = require "conc"
local net = require "conc.net"
local support = require "support"
local errors = conc.errors

local chat = dofile(support.ROOT .. "/examples/chat/chat.lua")
local bg = conc.background()

local UNKNOWN = "* unknown command; try /nick NAME, /join ROOM, /who, /me TEXT, /quit"
local INVALID_NICK = "* invalid nick: 1 to 32 letters, digits, _ or -"

--- A client: conn, and nick (its guest nick).
local Client = {}
Client.__index = Client

--- The next line from the server (nil at EOF); fails the spec after 10 s.
function Client:line()
  local ctx, cancel = conc.with_timeout(bg, 10)
  local line, err = self.conn:read_line(ctx, 1024 * 1024)
  cancel()
  assert(line ~= nil or err == nil, self.nick .. ": " .. tostring(err))
  return line
end

function Client:expect(want)
  assert.are.equal(want, self:line())
end

--- Reads lines until one equals want (or matches it as a pattern, when pattern is true);
-- returns the lines read before it.
function Client:skip_to(want, pattern)
  local before = {}
  while true do
    local line = self:line()
    assert(line ~= nil, self.nick .. ": EOF while waiting for " .. want)
    if line == want or (pattern and line:find(want)) then return before, line end
    before[#before + 1] = line
  end
end

function Client:say(line)
  assert(self.conn:write(line .. "\n"))
end

--- Reads until EOF; returns the lines.
function Client:rest()
  local lines = {}
  while true do
    local line = self:line()
    if line == nil then return lines end
    lines[#lines + 1] = line
  end
end

local function connect(srv)
  local c = setmetatable({ conn = assert(net.connect(srv.host, srv.port)), nick = "?" }, Client)
  local hello = c:line()
  c.nick = assert(hello:match("^%* welcome to conc chat, (guest%d+)! you are in lobby %(%d+ here%)$"), hello)
  c:expect("* commands: /nick NAME, /join ROOM, /who, /me TEXT, /quit")
  return c
end

--- Runs fn(srv) with a chat server started on a free port with opts (no rate limit and no
-- idle drop unless opts says otherwise); then shuts the server down, waits for it, and
-- checks that it left no task behind.
local function serve(opts, fn)
  local o = { port = 0, rate = 0, idle = 0 }
  for k, v in pairs(opts) do o[k] = v end
  conc.run(function()
    local ctx, cancel = conc.with_cancel(bg)
    local srv = assert(chat.start(ctx, o))
    fn(srv)
    cancel()
    assert.is_true(srv:wait())
    for _ = 1, 100 do
      if conc.stats().tasks == 1 then break end
      conc.yield()
    end
    assert.are.equal(1, conc.stats().tasks, "tasks left alive:\n" .. conc.dump())
  end)
end

describe("chat server", function()
  after_each(support.nothing_left)

  it("fans each message out to every other member of the sender's room, and only there", function()
    serve({}, function(srv)
      local clients, rooms = {}, { red = {}, blue = {} }
      for i = 1, 50 do
        local c = connect(srv)
        clients[i] = c
        c:say("/nick u" .. i)
        c:skip_to("* you are now u" .. i)
        c.nick, c.room = "u" .. i, i % 2 == 1 and "red" or "blue"
        c:say("/join " .. c.room)
        c:skip_to("^%* you joined " .. c.room .. " %(%d+ here%)$", true)
        table.insert(rooms[c.room], c.nick)
      end
      for _, c in ipairs(clients) do c:say("hello from " .. c.nick) end
      for _, c in ipairs(clients) do
        local got = {}
        for _ = 1, 24 do -- the room's 25 members but itself
          local line = c:line()
          while line:sub(1, 2) == "* " do line = c:line() end -- joins and renames
          local from, text = line:match("^(u%d+): (.*)$")
          assert.are.equal("hello from " .. tostring(from), text)
          assert.are_not.equal(c.nick, from, "a sender gets no copy of its own message")
          assert.are.equal(c.room, tonumber(from:sub(2)) % 2 == 1 and "red" or "blue", c.nick .. " got " .. line)
          assert.is_nil(got[from], "delivered twice: " .. line)
          got[from] = true
        end
      end
      -- Every message has been handled: one from the other room would already be queued
      -- before the answer to /who.
      for _, c in ipairs(clients) do
        c:say("/who")
        local before, who = c:skip_to("^%* in ", true)
        for _, line in ipairs(before) do assert.are.equal("* ", line:sub(1, 2), c.nick .. " got " .. line) end
        table.sort(rooms[c.room])
        assert.are.equal(("* in %s: %s (25)"):format(c.room, table.concat(rooms[c.room], ", ")), who)
      end
      for _, c in ipairs(clients) do c.conn:close() end
    end)
  end)

  it("/nick renames under the rules, /me, /who, /join and /quit", function()
    serve({}, function(srv)
      local a = connect(srv)
      local b = connect(srv)
      a:expect("* " .. b.nick .. " joined lobby")
      for _, bad in ipairs { "/nick", "/nick " .. ("x"):rep(33), "/nick a:b", "/nick a b", "/nick caf\195\169" } do
        a:say(bad)
        a:expect(INVALID_NICK)
      end
      a:say("/nick " .. ("x"):rep(32))
      a:expect("* you are now " .. ("x"):rep(32))
      a:say("/nick Ann_1-x")
      a:expect("* you are now Ann_1-x")
      b:expect(("* %s is now %s"):format(a.nick, ("x"):rep(32)))
      b:expect(("* %s is now Ann_1-x"):format(("x"):rep(32)))
      b:say("/nick ANN_1-X")
      b:expect("* nick ANN_1-X is taken")       -- nicks are unique whatever their case
      a:say("/nick Ann_1-x")
      a:expect("* you are already Ann_1-x")
      a:say("/me waves")
      b:expect("* Ann_1-x waves")
      a:say("/me")
      a:expect("* usage: /me TEXT")
      a:say("/dance")
      a:expect(UNKNOWN)
      b:say("/who")
      b:expect(("* in lobby: Ann_1-x, %s (2)"):format(b.nick))
      a:say("/join two words")
      a:expect("* invalid room: 1 to 32 letters, digits, _ or -")
      a:say("/join lobby")
      a:expect("* you are already in lobby")
      a:say("/join #side")
      a:expect("* you joined side (1 here)")
      b:expect("* Ann_1-x left lobby")
      b:say("/join side")
      b:expect("* you joined side (2 here)")
      a:expect("* " .. b.nick .. " joined side")
      b:say("/who")
      b:expect(("* in side: Ann_1-x, %s (2)"):format(b.nick))
      a:say("/quit")
      a:expect("* bye")
      assert.is_nil(a:line())                   -- then the server closes the connection
      b:expect("* Ann_1-x left side")
      b:say("/nick ann_1-x")                    -- a nick is free once its owner left
      b:expect("* you are now ann_1-x")
      a.conn:close()
      b.conn:close()
    end)
  end)

  it("disconnects a client whose queue is full, with a notice, and the room goes on", function()
    serve({ queue = 8, max_line = 65536 }, function(srv)
      local slow = connect(srv)  -- never reads until the end
      local a = connect(srv)
      local b = connect(srv)
      slow.conn:write("/nick slow\n")
      a:skip_to("* " .. slow.nick .. " is now slow")
      b:skip_to("* " .. slow.nick .. " is now slow")
      local big = ("x"):rep(60000)
      local dropped, sent = false, 0
      repeat
        sent = sent + 1
        a:say(sent .. big)
        local line = b:line()
        if line == "* slow left lobby (too slow)" then
          dropped = true
          b:expect(a.nick .. ": " .. sent .. big)
        else
          assert.are.equal(a.nick .. ": " .. sent .. big, line)
        end
        assert(sent < 2000, "the slow client was never dropped")
      until dropped
      a:expect("* slow left lobby (too slow)")
      b:say("still here")
      a:expect(b.nick .. ": still here")
      -- What the slow client gets: whole lines, then the notice, then EOF.
      local lines = slow:rest()
      assert.are.equal("* too slow, disconnected", lines[#lines])
      for k = 1, #lines - 1 do
        local n = lines[k]:match("^" .. a.nick .. ": (%d+)x+$")
        if n then assert.are.equal(#(a.nick .. ": " .. n) + 60000, #lines[k]) end
      end
      assert.is_true(#lines < sent + 10, "the slow client was sent everything anyway")
      for _, c in ipairs { slow, a, b } do c.conn:close() end
    end)
  end)

  it("keeps a room's members when one sends many lines at once or a crowd renames", function()
    serve({ queue = 8 }, function(srv)
      local a, b = connect(srv), connect(srv)
      local lines = {}
      for i = 1, 100 do lines[i] = "line " .. i end
      a.conn:write(table.concat(lines, "\n") .. "\n")  -- 100 lines, one write
      b:skip_to(a.nick .. ": line 1")
      for i = 2, 100 do b:expect(a.nick .. ": line " .. i) end
      -- 30 renames at once: 30 readers run before any writer does, each telling 31 others.
      local crowd = {}
      for i = 1, 30 do crowd[i] = connect(srv) end
      for i, c in ipairs(crowd) do c:say("/nick crowd" .. i) end
      a:say("after the crowd")
      b:skip_to(a.nick .. ": after the crowd")
      for _, c in ipairs(crowd) do
        c:skip_to(a.nick .. ": after the crowd")
        c.conn:close()
      end
      a.conn:close()
      b.conn:close()
    end)
  end)

  it("rate-limits each client with one polite notice per throttled stretch", function()
    local t = 1000
    serve({ rate = 5, burst = 3, clock = function() return t end }, function(srv)
      local a = connect(srv)
      local b = connect(srv)
      a:expect("* " .. b.nick .. " joined lobby")
      local flood = {}
      for i = 1, 10 do flood[i] = "m" .. i end
      a.conn:write(table.concat(flood, "\n") .. "\n")
      for i = 1, 3 do b:expect(a.nick .. ": m" .. i) end
      a:expect("* slow down: at most 5 lines a second (line dropped)")
      t = t + 1 -- the bucket refills
      a:say("after")
      b:expect(a.nick .. ": after")             -- so m4..m10 were handled, and dropped
      a:say("/who")
      a:expect(("* in lobby: %s, %s (2)"):format(a.nick, b.nick)) -- no second notice
      b:say("b is not limited by a")
      a:expect(b.nick .. ": b is not limited by a")
      a.conn:close()
      b.conn:close()
    end)
  end)

  it("drops overlong lines, invalid UTF-8 and control characters with a notice", function()
    serve({ max_line = 64 }, function(srv)
      local a = connect(srv)
      local b = connect(srv)
      a:expect("* " .. b.nick .. " joined lobby")
      local ok_text = "h\195\169llo w\195\182rld \226\156\147 \240\159\152\128\tend"
      a.conn:write(table.concat({
        ("y"):rep(100),                         -- too long
        ("z"):rep(64),                          -- just fits
        "\255\254 bad",                         -- bytes that are never UTF-8
        "\192\175",                             -- an overlong "/"
        "\237\160\128",                         -- a UTF-16 surrogate
        "caf\195",                              -- cut in the middle of a character
        "a\0b",                                 -- control characters
        "\27[31mred",
        ok_text,
        "/me \255",
        "done",
      }, "\n") .. "\n")
      a:expect("* line too long (more than 64 bytes), dropped")
      for _ = 1, 4 do a:expect("* line dropped: not valid UTF-8") end
      for _ = 1, 2 do a:expect("* line dropped: control characters are not allowed") end
      a:expect("* line dropped: not valid UTF-8")
      b:expect(a.nick .. ": " .. ("z"):rep(64))
      b:expect(a.nick .. ": " .. ok_text)
      b:expect(a.nick .. ": done")
      a.conn:close()
      b.conn:close()
    end)
  end)

  it("survives binary garbage, resets and half-closed connections; the others are unaffected", function()
    serve({ max_line = 256 }, function(srv)
      local a = connect(srv)
      local b = connect(srv)
      a:expect("* " .. b.nick .. " joined lobby")
      math.randomseed(7)
      local garbage = {}
      for i = 1, 64 * 1024 do garbage[i] = string.char(math.random(0, 255)) end
      local g = connect(srv)
      b:expect("* " .. g.nick .. " joined lobby")
      assert(g.conn:write(table.concat(garbage) .. "\n/nick garbage\n"))
      g:skip_to("* you are now garbage")        -- its session is alive and well
      b:skip_to("* " .. g.nick .. " is now garbage") -- b saw only well-formed lines
      -- A reset: a client that closes with data unread (its greeting) sends RST.
      local r = net.connect(srv.host, srv.port)
      local _, joined = b:skip_to("^%* guest%d+ joined lobby$", true)
      local rnick = joined:match("(guest%d+)")
      r:close()
      b:skip_to("^%* " .. rnick .. " left lobby", true)
      -- A half-close: the client is done sending but still reads what is queued for it.
      local h = connect(srv)
      b:expect("* " .. h.nick .. " joined lobby")
      a:skip_to("* " .. h.nick .. " joined lobby")
      a:say("to everyone")
      h:expect(a.nick .. ": to everyone")
      h:say("last words")
      assert(h.conn:close_write())
      b:skip_to(a.nick .. ": to everyone")
      b:expect(h.nick .. ": last words")
      b:expect("* " .. h.nick .. " left lobby")
      assert.are.same({}, h:rest())             -- then the server closes
      a:say("all fine")
      b:expect(a.nick .. ": all fine")
      for _, c in ipairs { a, b, g, h } do c.conn:close() end
    end)
  end)

  it("reports a failure with a log id, tells the client, and carries on", function()
    local records = {}
    errors.set_sink(function(json) records[#records + 1] = json end)
    chat.commands.boom = function() error("kaboom") end
    local ok, err = pcall(serve, {}, function(srv)
      local a = connect(srv)
      local b = connect(srv)
      a:expect("* " .. b.nick .. " joined lobby")
      a:say("/boom")
      local id = a:line():match("^%* sorry, something went wrong %(log id ([%w%-]+)%)$")
      assert.is_not_nil(id)
      assert.are.equal(1, #records)
      assert.is_truthy(records[1]:find('"id":"' .. id .. '"', 1, true))
      assert.is_truthy(records[1]:find("kaboom", 1, true))
      a:say("still works")
      b:expect(a.nick .. ": still works")
      a.conn:close()
      b.conn:close()
    end)
    chat.commands.boom = nil
    errors.set_sink(nil)
    assert(ok, err)
  end)

  it("runs the accept loop under a steward: restarted after a failure, stopped when it keeps failing", function()
    local records = {}
    errors.set_sink(function(json) records[#records + 1] = json end)
    local backoff = chat.acceptor.backoff
    chat.acceptor.backoff = { initial = 0.001, max = 0.001 }
    local ok, err = pcall(conc.run, function()
      local srv = assert(chat.start(bg, { port = 0, rate = 0, idle = 0 }))
      local real, failures = srv.listener, 0
      local c1 = connect(srv)                   -- the loop now waits in real:accept
      srv.listener = {                           -- what the next accepts use
        accept = function(_, ctx)
          if failures < 2 or failures >= 100 then
            failures = failures + 1
            return nil, errors.new("accept failed", { kind = "net" })
          end
          return real:accept(ctx)
        end,
        close = function() return real:close() end,
      }
      local c2 = connect(srv)                    -- taken by the waiting accept; then 2 failures
      local c3 = connect(srv)                    -- the restarted loop accepts again
      assert.are.equal(2, failures)
      assert.are.equal(2, #records)
      assert.is_truthy(records[1]:find('"message":"chat: accepting a connection: accept failed"', 1, true))
      failures = 100                             -- from now on, every accept fails
      local c4 = connect(srv)
      local stopped, why = srv:wait()
      assert.is_nil(stopped)
      assert.are.equal("steward: gave up on ward 'chat acceptor' (6 restarts in 10 s): chat: accepting a connection: accept failed", tostring(why))
      for _, c in ipairs { c1, c2, c3, c4 } do
        c:skip_to("* server shutting down")
        assert.is_nil(c:line())
        c.conn:close()
      end
    end)
    chat.acceptor.backoff = backoff
    errors.set_sink(nil)
    assert(ok, err)
  end)

  it("drops a client that sends nothing for --idle seconds", function()
    serve({ idle = 0.2 }, function(srv)
      local a = connect(srv)
      a:expect("* idle for 0.2 s, disconnected")
      assert.is_nil(a:line())
      a.conn:close()
    end)
  end)

  it("shuts down gracefully: every client gets what was queued, the notice, then EOF", function()
    conc.run(function()
      local ctx, cancel = conc.with_cancel(bg)
      local srv = assert(chat.start(ctx, { port = 0, rate = 0, idle = 0, grace = 1 }))
      local clients = {}
      for i = 1, 10 do clients[i] = connect(srv) end
      clients[1]:say("goodbye all")
      clients[2]:skip_to(clients[1].nick .. ": goodbye all")
      cancel()
      for i, c in ipairs(clients) do
        local lines = c:rest()
        assert.are.equal("* server shutting down", lines[#lines])
        if i > 2 then assert.are.equal(clients[1].nick .. ": goodbye all", lines[#lines - 1]) end
      end
      assert.is_true(srv:wait())
      assert.is_nil(net.connect(srv.host, srv.port)) -- no longer listening
      for _, c in ipairs(clients) do c.conn:close() end
    end)
  end)

  it("does not let a client that never reads hold the shutdown past its grace period", function()
    conc.run(function()
      local ctx, cancel = conc.with_cancel(bg)
      local srv = assert(chat.start(ctx, { port = 0, rate = 0, idle = 0, grace = 0.2, queue = 100000, max_line = 65536 }))
      local deaf, a, b = connect(srv), connect(srv), connect(srv)
      b:say("/join elsewhere")
      b:skip_to("* you joined elsewhere (1 here)")
      local big = ("x"):rep(60000)
      for i = 1, 150 do a:say(i .. big) end   -- 9 MB for deaf: more than loopback buffers
      a:say("/who")
      a:skip_to("^%* in lobby", true)         -- all handled: deaf's writer is stuck
      cancel()
      assert.are.same({ "* server shutting down" }, a:rest())
      assert.are.same({ "* server shutting down" }, b:rest())
      local wctx, wcancel = conc.with_timeout(bg, 5)
      assert.is_true(srv:wait(wctx))           -- the grace period cut deaf's writes
      wcancel()
      local lines = deaf:rest()                 -- what the kernel had, then EOF
      assert.is_true(#lines < 150, "deaf got all " .. #lines .. " lines")
      assert.are.equal(a.nick .. ": " .. (#lines - 3) .. big, lines[#lines])
      for _, c in ipairs { deaf, a, b } do c.conn:close() end
    end)
  end)

  it("client_demo.lua prints a whole conversation", function()
    local out, err, ok = support.run_lua("examples/chat/client_demo.lua")
    assert(ok, err)
    assert.is_truthy(out:find("^chat server on 127%.0%.0%.1:%d+\n"), out)
    assert.are.equal([[
alice << * welcome to conc chat, guest1! you are in lobby (1 here)
alice << * commands: /nick NAME, /join ROOM, /who, /me TEXT, /quit
alice >> /nick alice
alice << * you are now alice
bob   << * welcome to conc chat, guest2! you are in lobby (2 here)
bob   << * commands: /nick NAME, /join ROOM, /who, /me TEXT, /quit
alice << * guest2 joined lobby
bob   >> /nick bob
bob   << * you are now bob
alice << * guest2 is now bob
alice >> hello bob
bob   << alice: hello bob
bob   >> /me waves
alice << * bob waves
bob   >> /who
bob   << * in lobby: alice, bob (2)
bob   >> /join #lua
bob   << * you joined lua (1 here)
alice << * bob left lobby
alice >> /nick bob
alice << * nick bob is taken
alice >> /quit
alice << * bye
(the server shuts down)
bob   << * server shutting down
]], out:gsub("^[^\n]*\n", "", 1))
  end)

  it("server.lua runs --for seconds and refuses bad options", function()
    local out, err, ok = support.run_lua("examples/chat/server.lua --port 0 --for 0.05")
    assert(ok, err)
    assert.is_truthy(out:find("^chat: listening on 127%.0%.0%.1:%d+\nchat: shut down %(after 0%.05 s%)\n$"), out)
    for _, bad in ipairs { "--port 70000", "--rate -1", "--queue 0", "--nope" } do
      out, err, ok = support.run_lua("examples/chat/server.lua " .. bad)
      assert.is_false(ok)
      assert.is_truthy(support.starts_with(err, "usage: chat/server.lua [--port n] [--host value]"), err)
    end
  end)

  it("server.lua exits 0 on SIGTERM after telling its clients", function()
    -- sh starts the server, says its pid, and once it has exited, its status.
    local cmd = ("cd '%s' && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_PATH_5_3 -u LUA_CPATH_5_3 "
      .. "LUA_PATH='lua/?.lua;lua/?/init.lua' LUA_CPATH='build/%s/release/?.so' "
      .. "%s examples/chat/server.lua --port 0 & echo \"pid $!\"; wait $!; echo \"exit $?\""):format(
      support.ROOT, support.EXE, support.EXE)
    local p = assert(io.popen("sh -c '" .. cmd:gsub("'", "'\\''") .. "'"))
    local pid = assert(p:read("*l"):match("^pid (%d+)$"))
    local ok, err = pcall(function()
      local first = p:read("*l")
      local port = tonumber(first and first:match("^chat: listening on 127%.0%.0%.1:(%d+)$"))
      assert(port, first)
      conc.run(function()
        local srv = { host = "127.0.0.1", port = port }
        local a, b = connect(srv), connect(srv)
        a:expect("* " .. b.nick .. " joined lobby")
        a:say("hi")
        b:expect(a.nick .. ": hi")
        os.execute("kill -TERM " .. pid)
        for _, c in ipairs { a, b } do
          assert.are.same({ "* server shutting down" }, c:rest())
          c.conn:close()
        end
      end)
    end)
    if not ok then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    local rest = p:read("*a")
    p:close()
    assert(ok, err)
    assert.are.equal("chat: shut down (SIGTERM)\nexit 0\n", rest)
  end)
end)
