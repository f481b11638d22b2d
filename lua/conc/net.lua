--- TCP on libuv: listeners and connections whose every wait parks only the calling task
-- and takes an optional ctx, last. A ctx that is already done fails the call at once;
-- one that ends while the call waits makes it return `nil, ctx:err()`.
--
-- What a peer or the network causes (a reset, a refused connection, the use of a
-- connection closed here) comes back as `nil, err`, where `err` is a conc error of kind
-- "net" (see @{conc.errors}) whose `code` is the libuv error name ("ECONNREFUSED",
-- "ECONNRESET", "EPIPE", "EADDRINUSE", "EAI_NONAME", ...) or one of "closed" (the
-- connection or listener was closed here), "toolong" (a line over read_line's maximum)
-- and "EOF" (the stream ended inside read_exactly). Misuse raises a `conc:` error.
--
-- Memory per connection is bounded whatever the peer does: reading stops while 64 KiB
-- wait unread, and writers wait while 64 KiB wait unsent. Connections and listeners
-- that are collected are closed. The first socket makes the process ignore SIGPIPE
-- (unless a handler was set), so that a write to a closed peer is an EPIPE error.
-- @module conc.net
local core = require "conc.core"
local errors = require "conc.errors"
local check = require "conc.check"

local M = {}

local function net_error(code, msg)
  local err = errors.new(msg, { kind = "net" })
  err.code = code
  return err
end

-- Every PASS_EVERY calls, a task lets the others run (core.pass), even when its calls
-- never had to wait: a loop reading buffered lines or writing to a socket that takes
-- everything is fair to other tasks, timers and ctx deadlines.
local PASS_EVERY = 64
local pass, calls = core.pass, 0

-- The C methods return (nil, code, message) for a failure the peer caused; every other
-- result passes through as it is.
local function result(...)
  local a, code, msg = ...
  if a == nil and type(code) == "string" then return nil, net_error(code, msg) end
  calls = calls + 1
  if calls >= PASS_EVERY then
    calls = 0
    pass()
  end
  return ...
end

local function wrap(fn)
  return function(...) return result(fn(...)) end
end

-- listen's and connect's errors name the address: "connect to HOST:PORT: ..." (the C
-- message starts with the operation's name).
local function result_at(host, port, ...)
  local a, code, msg = ...
  if a == nil and type(code) == "string" then
    local op, why = msg:match("^(%w+): (.*)$")
    local where = (host:find(":", 1, true) and "[%s]:%d" or "%s:%d"):format(host, port)
    return nil, net_error(code, ("%s %s %s: %s"):format(op, op == "listen" and "on" or "to", where, why))
  end
  return ...
end

local LISTEN_OPTIONS = { backlog = true }

local conn_mt, listener_mt = core.net_types()
for name, fn in pairs(conn_mt.__index) do conn_mt.__index[name] = wrap(fn) end
for name, fn in pairs(listener_mt.__index) do listener_mt.__index[name] = wrap(fn) end

--- Listens for TCP connections on `host`:`port`.
-- @string host a numeric address ("127.0.0.1", "::1"), a name ("localhost", resolved
-- at once), or "*" or "" for every IPv4 address
-- @int port the port; 0 picks a free one (see `Listener:addr`)
-- @tparam[opt] table opts `backlog`: how many connections may wait to be accepted (511)
-- @treturn Listener the listener
-- @return or nil, err (code EADDRINUSE, EACCES, ...)
-- @function listen
function M.listen(...)
  local host, port, opts = ...
  if type(opts) == "table" then check.options("net.listen", opts, 3, LISTEN_OPTIONS) end
  return result_at(host, port, core.net_listen(...))
end

--- Connects to `host`:`port`. A name is resolved through libuv's getaddrinfo, and the
-- first address it gives is used.
-- @string host a name or a numeric IPv4 or IPv6 address
-- @int port the port
-- @tparam[opt] Context ctx ends the wait early
-- @treturn Connection the connection
-- @return or nil, err (code ECONNREFUSED, ETIMEDOUT, EAI_NONAME, ...)
-- @function connect
function M.connect(...)
  local host, port = ...
  return result_at(host, port, core.net_connect(...))
end

return M
