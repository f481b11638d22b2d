--- conc's pipeline stages (the book's composable stages, Concurrency in Go ch. 4). Each
-- takes a ctx; when it ends, the stage stops and closes its output, leaving no task
-- behind. A stage made with a ctx that is already done returns a closed channel.
local core = require "conc.core"
local check = require "conc.check"

local M = {}

local CHAN_MT = getmetatable(core.chan())

local function check_chan(fname, ch, arg)
  if getmetatable(ch) ~= CHAN_MT then
    check.fail("%s: bad argument #%d (channel expected, got %s)", fname, arg, check.typename(ch))
  end
end

-- A new output channel, and whether the stage should start (false: ctx is already done,
-- and the channel is closed).
local function output(ctx)
  local out = core.chan()
  if ctx:err() then
    out:close()
    return out, false
  end
  return out, true
end

--- conc.take(ctx, ch, n): a channel of the first n values received from ch; it closes
-- after them, when ch closes, or when ctx ends.
function M.take(ctx, ch, n)
  check.ctx("take", ctx, 1)
  check_chan("take", ch, 2)
  check.whole("take", n, 3, 0, "n")
  local out, live = output(ctx)
  if live then
    core.go(function()
      for _ = 1, n do
        local v, ok = ch:recv(ctx)
        if not ok or not out:send(v, ctx) then break end
      end
      out:close()
    end)
  end
  return out
end

--- conc.bridge(ctx, chch): one channel of the values of every channel received from chch,
-- a stream of streams, read in turn until each closes; it closes when chch closes or ctx
-- ends.
function M.bridge(ctx, chch)
  check.ctx("bridge", ctx, 1)
  check_chan("bridge", chch, 2)
  local out, live = output(ctx)
  if live then
    core.go(function()
      local going = true
      while going do
        local stream, ok = chch:recv(ctx)
        if not ok then break end
        if getmetatable(stream) ~= CHAN_MT then
          out:close()
          check.fail("bridge: the stream of streams carried %s, not a channel", check.typename(stream))
        end
        while true do
          local v, more = stream:recv(ctx)
          if not more then
            going = ctx:err() == nil
            break
          end
          if not out:send(v, ctx) then
            going = false
            break
          end
        end
      end
      out:close()
    end)
  end
  return out
end

return M
