-- steward_stream.lua: a restarted ward whose output stays one stream, the book's program
-- (Concurrency in Go, ch. 5, "a more complicated ward").
--
-- The ward turns a list of integers into a stream, pulsing as it goes, and dies at the
-- first negative value. Each run makes a new stream and hands it over on a stream of
-- streams; conc.bridge joins them into one, so the reader never sees the restarts. The
-- steward restarts the ward when it stops pulsing; conc.take reads the first 6 values.
-- With the list 1, 2, -1, 3, 4, 5, the reader gets 1 2 1 2 1 2.
--   lua5.4 examples/steward_stream.lua [--scale S] [--virtual]
-- --scale multiplies every duration (0.01 runs it 100 times faster); --virtual runs it on
-- conc's virtual clock, so it ends at once.
local conc = require "conc"

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("steward_stream.lua", { { "scale", 1, options.positive }, { "virtual", false } })
local scale, virtual = opts.scale, opts.virtual
conc.virtual_time(virtual)

-- A ward producing `list` on a new stream per run; the streams go out on `streams`.
local function int_ward(streams, list)
  return function(ctx, pulse)
    local out = conc.chan()
    if not streams:send(out, ctx) then return end
    for _, v in ipairs(list) do
      if v < 0 then
        print(("negative value: %d"):format(v))
        out:close() -- the book's deferred close: the bridge moves on to the next stream
        return
      end
      pulse()
      if not out:send(v, ctx) then break end
    end
    out:close()
    ctx:done():recv() -- finished: idle, but not dead, until halted
  end
end

conc.run(function()
  local ctx, cancel = conc.with_cancel(conc.background())
  local streams = conc.chan()
  local steward = conc.steward {
    name = "ints",
    ward = int_ward(streams, { 1, 2, -1, 3, 4, 5 }),
    timeout = 1 * scale,
    intensity = 10,
    restart = "permanent",
    on_event = function(ev)
      if ev.type == "restart" then print("steward: restarting the ward") end
    end,
  }
  local supervised = conc.go(steward, ctx)
  local got = {}
  local values = conc.take(ctx, conc.bridge(ctx, streams), 6)
  while true do
    local v, ok = values:recv()
    if not ok then break end
    print(("received: %d"):format(v))
    got[#got + 1] = v
  end
  cancel()
  supervised:wait()
  print("took: " .. table.concat(got, " "))
end)
