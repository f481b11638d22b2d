-- server.lua: the chat room server, the command line around chat.lua. Chat from two
-- terminals with nc (see the README, "A chat server"):
--   lua5.4 examples/chat/server.lua --port 7000
--   nc 127.0.0.1 7000
-- Lines are messages to your room; /nick NAME, /join ROOM, /who, /me TEXT, /quit. The
-- wire format is bench/chat_load/PROTOCOL.md.
--
-- Options: --port (0: a free port) and --host, where to listen; --rate and --burst, the
-- lines a second a client may send (0: no limit); --idle, the seconds without a line
-- before a client is dropped (0: never); --queue, the lines queued for a client before it
-- counts as too slow; --max-line, the longest line a client may send, in bytes;
-- --grace, the seconds a shutdown gives the clients' queues to flush; --for, run that
-- many seconds, then shut down as on SIGTERM (0: until SIGINT or SIGTERM).
-- The first line on stdout says where it listens: "chat: listening on 127.0.0.1:7000".
local conc = require "conc"

local dir = arg[0]:match("^(.*[/\\])") or ""
local options = dofile(dir .. "../options.lua")
local chat = dofile(dir .. "chat.lua")

local d = chat.defaults
local function port(v) return v >= 0 and v <= 65535 and v == math.floor(v) end
local opts = options.parse("chat/server.lua", {
  { "port", d.port, port }, { "host", d.host }, { "rate", d.rate, options.non_negative },
  { "burst", d.burst, options.whole }, { "idle", d.idle, options.non_negative },
  { "queue", d.queue, options.whole }, { "max-line", d.max_line, options.whole },
  { "grace", d.grace, options.positive }, { "for", 0, options.non_negative },
})

local status = conc.run(function()
  local signalled, unwatch = conc.signal(conc.background(), "SIGINT", "SIGTERM")
  local ctx, cancel = signalled, unwatch
  if opts["for"] > 0 then ctx, cancel = conc.with_timeout(signalled, opts["for"]) end
  local srv, err = chat.start(ctx, {
    host = opts.host, port = opts.port, rate = opts.rate, burst = opts.burst,
    idle = opts.idle, queue = opts.queue, max_line = opts["max-line"], grace = opts.grace,
  })
  if not srv then
    io.stderr:write("chat: ", tostring(err), "\n") -- e.g. "listen on 127.0.0.1:7000: address already in use"
    cancel()
    unwatch()
    return 1
  end
  local host = srv.host:find(":") and "[" .. srv.host .. "]" or srv.host -- IPv6
  print(("chat: listening on %s:%d"):format(host, srv.port))
  io.stdout:flush()
  local ok, failure = srv:wait()
  local why = signalled:err() and signalled:cause().signal or ("after %g s"):format(opts["for"])
  cancel()
  unwatch()
  if not ok then
    io.stderr:write("chat: stopped: ", tostring(failure), "\n")
    return 1
  end
  print("chat: shut down (" .. why .. ")")
  return 0
end)
os.exit(status)
