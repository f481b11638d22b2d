-- client.lua: one client's session on the chat server (chat.lua): a reader task, a writer
-- task and the bounded queue between them, the commands, and the checks on what a peer
-- sends. Lines queued for a client end with "\n".
--
-- A session ends once, through finish(c, how), whoever ends it: the reader (/quit, end of
-- stream, idle, a reset), the room (a full queue: too slow), the writer (a failed write)
-- or the shutdown. finish takes the client out of its room and the registry and cancels
-- c.ctx; the reader stops at once, and the writer writes what remains (the queue too, for
-- a graceful end) and the farewell line, then closes the connection.
--
-- Bad input never ends a session and never reaches the others: a line longer than
-- max_line (read_line skips it up to its newline), a line with control characters (all
-- but tab) or one that is not valid UTF-8 is dropped with a notice to its sender. We reject
-- rather than repair, so that what a room reads is exactly what its sender typed. A peer
-- that half-closes (it is done sending) still gets what is queued for it; one that
-- vanished without a word is dropped by the idle timeout; a reset ends the session.
local conc = require "conc"
local errors = conc.errors

local M = {}

local function send(c, line)
  if not c.ended and not c.out:try_send(line) then M.too_slow(c) end
end
M.send = send

--- Ends c's session (the first call counts). how: flush (deliver what is queued first),
-- farewell (a last line for c), why (for the room: "* nick left room (why)").
function M.finish(c, how)
  if c.ended then return end
  c.ended, c.flush, c.farewell = true, how.flush, how.farewell
  local srv = c.srv
  srv:leave(c, how.why)
  srv.nicks[c.nick:lower()], srv.clients[c] = nil, nil
  c.cancel()
end

--- c's queue is full: it does not read what it is sent. Disconnect it, without what it has
-- not read, so that it holds nobody back.
function M.too_slow(c)
  M.finish(c, { why = "too slow", farewell = "* too slow, disconnected\n" })
end

-- Text checks ---------------------------------------------------------------------

local function valid_utf8(s)
  local byte, i, n = string.byte, 1, #s
  while i <= n do
    local b = byte(s, i)
    if b < 0x80 then
      i = i + 1
    else
      local more, cp, min
      if b >= 0xC2 and b <= 0xDF then more, cp, min = 1, b - 0xC0, 0x80
      elseif b >= 0xE0 and b <= 0xEF then more, cp, min = 2, b - 0xE0, 0x800
      elseif b >= 0xF0 and b <= 0xF4 then more, cp, min = 3, b - 0xF0, 0x10000
      else return false end
      for k = i + 1, i + more do
        local d = byte(s, k)
        if not d or d < 0x80 or d > 0xBF then return false end
        cp = cp * 64 + d - 0x80
      end
      -- overlong forms, UTF-16 surrogates, beyond U+10FFFF
      if cp < min or (cp >= 0xD800 and cp <= 0xDFFF) or cp > 0x10FFFF then return false end
      i = i + more + 1
    end
  end
  return true
end

--- Why text cannot be sent to a room, or nil if it can.
local function text_problem(s)
  if s:find("[%z\1-\8\10-\31\127]") then return "control characters are not allowed" end
  if s:find("[\128-\255]") and not valid_utf8(s) then return "not valid UTF-8" end
end

local function valid_name(s)
  return #s >= 1 and #s <= 32 and not s:find("[^%w_%-]")
end

-- Commands: fn(c, arg), arg the rest of the line, trimmed. None of them blocks. ------

local commands = {}
M.commands = commands

function commands.nick(c, name)
  local srv = c.srv
  if not valid_name(name) then return send(c, "* invalid nick: 1 to 32 letters, digits, _ or -\n") end
  if name == c.nick then return send(c, "* you are already " .. name .. "\n") end
  local owner = srv.nicks[name:lower()]
  if owner and owner ~= c then return send(c, "* nick " .. name .. " is taken\n") end
  local old = c.nick
  srv.nicks[old:lower()], srv.nicks[name:lower()], c.nick = nil, c, name
  send(c, "* you are now " .. name .. "\n")
  srv:announce(c.room, ("* %s is now %s\n"):format(old, name), c)
end

function commands.join(c, name)
  name = name:gsub("^#", "")
  if not valid_name(name) then return send(c, "* invalid room: 1 to 32 letters, digits, _ or -\n") end
  if name == c.room.name then return send(c, "* you are already in " .. name .. "\n") end
  c.srv:leave(c)
  c.srv:join(c, name)
  send(c, ("* you joined %s (%d here)\n"):format(name, c.room.n))
end

function commands.who(c)
  local names = c.srv:who(c.room)
  send(c, ("* in %s: %s (%d)\n"):format(c.room.name, table.concat(names, ", "), #names))
end

function commands.me(c, text)
  if text == "" then return send(c, "* usage: /me TEXT\n") end
  local bad = text_problem(text)
  if bad then return send(c, "* line dropped: " .. bad .. "\n") end
  c.srv:broadcast(c.room, "* " .. c.nick .. " " .. text .. "\n", c)
end

function commands.quit(c)
  M.finish(c, { flush = true, farewell = "* bye\n" })
end

local UNKNOWN = "* unknown command; try /nick NAME, /join ROOM, /who, /me TEXT, /quit\n"

local function handle(c, line)
  if line:byte(1) == 47 then -- "/"
    local name, arg = line:match("^/(%S*)%s*(.-)%s*$")
    local cmd = commands[name:lower()]
    if not cmd then return send(c, UNKNOWN) end
    return cmd(c, arg)
  end
  local bad = text_problem(line)
  if bad then return send(c, "* line dropped: " .. bad .. "\n") end
  c.srv:broadcast(c.room, c.nick .. ": " .. line .. "\n", c)
end

-- A failure in a command is a bug: it becomes a conc error with the traceback where it
-- was raised. (xpcall, not conc.pcall: commands never block, and this keeps the stack.)
local function as_error(raw)
  return errors.raised(raw, nil, nil, debug.traceback("", 2))
end
local protect = (_VERSION == "Lua 5.1" and not jit)
  and function(fn, a, b) return xpcall(function() return fn(a, b) end, as_error) end
  or function(fn, a, b) return xpcall(fn, as_error, a, b) end

--- The sorry line for a failure: reported (one JSON record for the log), and its log id.
local function sorry(err)
  local shown = errors.report(err) or ""
  return ("* sorry, something went wrong (log id %s)\n"):format(shown:match("log id ([^)]+)") or "?")
end

local function on_line(c, line)
  if line == "" or c.ended then return end
  local lim = c.srv.limiter
  if lim and line ~= "/quit" and not lim:allow(c.id) then
    if not c.throttled then -- one notice per throttled stretch, not one per line
      c.throttled = true
      send(c, ("* slow down: at most %g lines a second (line dropped)\n"):format(c.srv.opts.rate))
    end
    return
  end
  c.throttled = false
  local ok, err = protect(handle, c, line)
  if not ok then send(c, sorry(err)) end
end

-- The tasks --------------------------------------------------------------------------

local function reader(c)
  local conn, opts = c.conn, c.srv.opts
  local idle, max = opts.idle, opts.max_line
  while not c.ended do
    local ctx, cancel = c.ctx, nil
    if idle > 0 then ctx, cancel = conc.with_timeout(c.ctx, idle) end
    local line, err = conn:read_line(ctx, max)
    local idled = cancel and ctx:err() and not c.ctx:err()
    if cancel then cancel() end
    if line then
      on_line(c, line)
    elseif c.ended then
      break
    elseif idled then
      M.finish(c, { flush = true, why = "idle", farewell = ("* idle for %g s, disconnected\n"):format(idle) })
    elseif err == nil then -- end of stream: the peer is done sending, but may still read
      M.finish(c, { flush = true })
    elseif err.code == "toolong" then -- read_line skips the rest of it
      send(c, ("* line too long (more than %d bytes), dropped\n"):format(max))
    else -- reset, or any other network error
      M.finish(c, { why = "connection lost" })
    end
    -- Tasks switch only at blocking calls, and read_line does not block while lines are
    -- buffered: let the writers run before the next line, or a client sending many lines
    -- at once would fill its room's queues before any writer had a turn.
    conc.yield()
  end
end

local BATCH = 64 * 1024

-- line, and whatever else is queued already (up to about BATCH bytes), as one string.
local function gather(out, line)
  local more, ok = out:try_recv()
  if not ok then return line end
  local parts, size = { line, more }, #line + #more
  while size < BATCH do
    more, ok = out:try_recv()
    if not ok then break end
    parts[#parts + 1], size = more, size + #more
  end
  return table.concat(parts)
end

local function writer(c)
  local conn, out = c.conn, c.out
  local unsent
  while true do
    local line, ok = out:recv(c.ctx)
    if not ok then break end -- finish() was called
    local batch = gather(out, line)
    if not conn:write(batch, c.ctx) then -- ended while blocked (nothing was sent), or broken
      M.finish(c, { why = "connection lost" })
      unsent = batch
      break
    end
  end
  local rest = {}
  if c.flush then
    rest[1] = unsent
    while true do
      local line, ok = out:try_recv()
      if not ok then break end
      rest[#rest + 1] = line
    end
  end
  rest[#rest + 1] = c.farewell
  if #rest > 0 then -- best effort, bounded: at most grace seconds, less at shutdown
    local ctx, cancel = conc.with_timeout(c.srv.hard, c.srv.opts.grace)
    conn:write(table.concat(rest), ctx)
    cancel()
  end
  conn:close()
end

-- Runs body(c) as a task counted by the server. A failure there is a bug in this file:
-- it is reported, and the client is told and disconnected; the others are unaffected.
local function spawn(c, what, body)
  conc.go(function()
    local ok, err = conc.pcall(body, c)
    if not ok then
      M.finish(c, { why = "error", farewell = sorry(err) })
      if what == "writer" then c.conn:close() end
    end
    c.srv.tasks:done()
  end):name(("chat %s #%d"):format(what, c.id))
end

--- Starts the session of a client that just connected: greets it, puts it in the lobby
-- under a guest nick, and starts its reader and writer.
function M.start(srv, conn)
  srv.last_id = srv.last_id + 1
  local c = { id = srv.last_id, srv = srv, conn = conn, out = conc.chan(srv.opts.queue) }
  c.ctx, c.cancel = conc.with_cancel(srv.hard)
  c.nick = srv:guest_nick()
  srv.nicks[c.nick], srv.clients[c] = c, true
  srv:join(c, "lobby")
  send(c, ("* welcome to conc chat, %s! you are in lobby (%d here)\n"):format(c.nick, c.room.n)
    .. "* commands: /nick NAME, /join ROOM, /who, /me TEXT, /quit\n")
  srv.tasks:add(2)
  spawn(c, "reader", reader)
  spawn(c, "writer", writer)
end

return M
