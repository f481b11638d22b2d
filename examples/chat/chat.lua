-- chat.lua: the chat room server of examples/chat, as a module. `start(ctx, opts)` listens,
-- serves until ctx ends, then shuts down gracefully. server.lua is its command line;
-- spec/chat_spec.lua and client_demo.lua start it in-process. The wire format is
-- bench/chat_load/PROTOCOL.md; one client's session is client.lua.
--
-- How it is built, each piece one of conc's patterns:
--   * The accept loop is a ward under conc.steward: an unexpected accept error fails the
--     ward, the steward reports it (conc.errors.report) and restarts it after a backoff;
--     if it gives up, the server shuts down and wait() returns its error.
--   * Each client is a reader task, a writer task, and between the room and the writer a
--     bounded outbound queue, conc.chan(opts.queue) (client.lua).
--   * The rooms and the nick registry are plain tables, touched only by code that never
--     blocks: tasks switch only at blocking calls, so no lock is needed. A broadcast puts
--     the line in each member's queue with try_send, so a slow member never stalls the
--     room: a member whose queue is full is disconnected. (Joins, leaves and renames are
--     best effort, see announce; and each reader yields after a line, see client.lua.)
--   * A per-client rate limit, conc.rate.keyed keyed by client; idle clients dropped by
--     a ctx timeout on each read; a failure while handling a line reported through
--     conc.errors.report, its log id shown to the client (client.lua).
--   * Shutdown (ctx ends: SIGINT/SIGTERM in server.lua): stop accepting, give every client
--     "* server shutting down" after what is already queued for it, wait for the writers
--     up to opts.grace seconds, then cut what is left (the `hard` ctx every write takes).
local conc = require "conc"
local net = require "conc.net"

local here = debug.getinfo(1, "S").source:match("^@(.-)[^/\\]*$") or ""
local client = dofile(here .. "client.lua")

local M = { client = client, commands = client.commands }

--- The options and their defaults (server.lua's flags, with max_line for --max-line).
M.defaults = {
  host = "127.0.0.1", port = 7000,
  rate = 5, burst = 10,   -- lines a second per client (0: no limit), and the burst
  idle = 300,             -- seconds without a line before a client is dropped (0: never)
  queue = 256,            -- lines queued for one client before it counts as too slow
  max_line = 4096,        -- bytes in one line from a client
  grace = 2,              -- seconds the shutdown gives the writers to flush
  clock = nil,            -- the rate limiter's clock (specs only; default conc.now)
}

--- How the steward treats the accept loop: restarted after a failure, after a backoff;
-- more than `intensity` restarts within `period` seconds and the server stops.
M.acceptor = { intensity = 5, period = 10, backoff = { initial = 0.05, max = 1 } }

local Server = {}
Server.__index = Server

--- Listens on opts.host:opts.port and serves until ctx ends. Returns the server (fields
-- host and port, the address it listens on; methods wait and stop), or nil, err when it
-- cannot listen. Call it from a task or the top level of a conc script.
function M.start(ctx, opts)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if M.defaults[k] == nil and k ~= "clock" then error("chat.start: unknown option '" .. k .. "'", 2) end
    o[k] = v
  end
  local listener, err = net.listen(o.host, o.port)
  if not listener then return nil, err end
  local host, port = listener:addr()
  local hard, hard_cancel = conc.with_cancel(conc.background())
  local sctx, stop = conc.with_cancel(ctx)
  local srv = setmetatable({
    opts = o, host = host, port = port, listener = listener,
    rooms = {},    -- name -> {name =, members = {[client] = true}, n =}
    nicks = {},    -- lower-case nick -> client
    clients = {},  -- client -> true
    last_id = 0, guests = 0,
    tasks = conc.waitgroup(), -- every reader and writer
    hard = hard, hard_cancel = hard_cancel, -- ends every write, when the grace period is over
    stop_ = stop, done = conc.chan(),
    limiter = o.rate > 0 and conc.rate.keyed(conc.rate.per(o.rate, 1), o.burst, { clock = o.clock }) or nil,
  }, Server)

  local acceptor = conc.steward {
    name = "chat acceptor", restart = "transient", intensity = M.acceptor.intensity,
    period = M.acceptor.period, backoff = M.acceptor.backoff,
    ward = function(wctx) return srv:accept_loop(wctx) end,
  }
  local accepting = conc.chan()
  conc.go(function()
    local ok, gave_up = conc.pcall(acceptor, sctx)
    if not ok then -- more accept failures than the steward tolerates: stop serving
      srv.err = gave_up
      conc.errors.report(gave_up)
      stop()
    end
    accepting:close()
  end):name("chat acceptor steward")
  conc.go(function()
    sctx:done():recv()
    srv:shutdown(accepting)
    hard_cancel()
    stop()
    srv.done:close()
  end):name("chat shutdown")
  return srv
end

--- Waits until the server has shut down: true, or nil, err when it stopped because the
-- accept loop failed for good; nil, ctx:err() when ctx ends first.
function Server:wait(ctx)
  local _, _, err = self.done:recv(ctx)
  if err then return nil, err end
  if self.err then return nil, self.err end
  return true
end

--- Shuts the server down gracefully, as when its ctx ends, and waits for it.
function Server:stop()
  self.stop_()
  return self:wait()
end

-- The ward the steward runs: accepts until its ctx ends or the listener closes. Any other
-- accept error fails the ward, for the steward to report and restart.
function Server:accept_loop(ctx)
  while true do
    local conn, err = self.listener:accept(ctx)
    if not conn then
      if ctx:err() or err.code == "closed" then return true end
      return nil, conc.errors.wrap(err, "chat: accepting a connection", { kind = "chat", transient = true })
    end
    client.start(self, conn)
  end
end

function Server:shutdown(accepting)
  self.closing = true
  self.listener:close()
  accepting:recv() -- the accept loop has ended: nobody joins from now on
  for c in pairs(self.clients) do
    client.finish(c, { flush = true, farewell = "* server shutting down\n" })
  end
  local ctx, cancel = conc.with_timeout(conc.background(), self.opts.grace)
  local flushed = self.tasks:wait(ctx)
  cancel()
  if not flushed then -- some peer does not read: cut the writes still waiting
    self.hard_cancel()
    self.tasks:wait()
  end
end

-- Rooms. None of these blocks.

--- A new guest nick, not taken by anyone.
function Server:guest_nick()
  local nick
  repeat
    self.guests = self.guests + 1
    nick = "guest" .. self.guests
  until not self.nicks[nick]
  return nick
end

--- Puts line in the queue of every member of room but `except`; members whose queue is
-- full are disconnected as too slow (after the loop: that tells the room too).
function Server:broadcast(room, line, except)
  local slow
  for m in pairs(room.members) do
    if m ~= except and not m.out:try_send(line) then
      slow = slow or {}
      slow[#slow + 1] = m
    end
  end
  for _, m in ipairs(slow or {}) do client.too_slow(m) end
end

--- Tells room that someone came, went or changed names. Such news is best effort: a
-- member whose queue is half full or more does not get it, so that a crowd joining at
-- once cannot push anyone out; messages and answers are never skipped.
function Server:announce(room, line, except)
  local half = self.opts.queue / 2
  for m in pairs(room.members) do
    if m ~= except and m.out:len() < half then m.out:try_send(line) end
  end
end

function Server:join(c, name)
  local room = self.rooms[name]
  if not room then
    room = { name = name, members = {}, n = 0 }
    self.rooms[name] = room
  end
  room.members[c], room.n, c.room = true, room.n + 1, room
  self:announce(room, ("* %s joined %s\n"):format(c.nick, name), c)
end

--- Takes c out of its room; tells the others why, unless the whole server is closing.
function Server:leave(c, why)
  local room = c.room
  if not room then return end
  room.members[c], room.n, c.room = nil, room.n - 1, nil
  if room.n == 0 then
    self.rooms[room.name] = nil
  elseif not self.closing then
    self:announce(room, ("* %s left %s%s\n"):format(c.nick, room.name, why and " (" .. why .. ")" or ""))
  end
end

--- The nicks in room, sorted.
function Server:who(room)
  local names = {}
  for m in pairs(room.members) do names[#names + 1] = m.nick end
  table.sort(names)
  return names
end

return M
