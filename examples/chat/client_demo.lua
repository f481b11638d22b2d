-- client_demo.lua: a conversation on the chat server, scripted. It starts the server
-- (chat.lua) in-process on a free port, connects alice and bob with conc.net, and prints
-- what each sends (">>") and reads ("<<"). Each step waits for the line that shows the
-- server handled the one before, so the transcript is the same on every run.
--   lua5.4 examples/chat/client_demo.lua
local conc = require "conc"
local net = conc.net

local dir = arg and arg[0] and arg[0]:match("^(.*[/\\])") or ""
local chat = dofile(dir .. "chat.lua")

conc.run(function()
  local ctx, shutdown = conc.with_cancel(conc.background())
  local srv = assert(chat.start(ctx, { port = 0 }))
  print(("chat server on %s:%d"):format(srv.host, srv.port))

  local people = {}
  local function connect(name)
    local conn = assert(net.connect(srv.host, srv.port))
    people[name] = conn
    return conn
  end
  local function says(name, line)
    print(("%-5s >> %s"):format(name, line))
    assert(people[name]:write(line .. "\n"))
  end
  local function hears(name, n)
    for _ = 1, n or 1 do
      local line = assert(people[name]:read_line(), name .. " was disconnected")
      print(("%-5s << %s"):format(name, line))
    end
  end

  connect("alice")
  hears("alice", 2)                 -- the greeting
  says("alice", "/nick alice")
  hears("alice")
  connect("bob")
  hears("bob", 2)
  hears("alice")                    -- guest2 joined lobby
  says("bob", "/nick bob")
  hears("bob")
  hears("alice")                    -- guest2 is now bob
  says("alice", "hello bob")
  hears("bob")
  says("bob", "/me waves")
  hears("alice")
  says("bob", "/who")
  hears("bob")
  says("bob", "/join #lua")
  hears("bob")
  hears("alice")                    -- bob left lobby
  says("alice", "/nick bob")
  hears("alice")
  says("alice", "/quit")
  hears("alice")
  assert(people.alice:read_line() == nil) -- then the server closes the connection
  people.alice:close()
  print("(the server shuts down)")
  shutdown()
  hears("bob")
  assert(people.bob:read_line() == nil)
  people.bob:close()
  assert(srv:wait())
end)
