-- rate_limit.lua: the book's APIConnection with several rate limits (Concurrency in Go,
-- "Rate Limiting", the final version with MultiLimiter).
--
-- An API client whose calls are limited on three resources at once:
--   API calls:     2 a second (burst 2) and 10 a minute (burst 10), both at once;
--   disk reads:    1 a second (burst 1);
--   network calls: 3 a second (burst 3).
-- ReadFile needs the API limits and the disk limit, ResolveAddress the API limits and the
-- network limit. 10 ReadFile and 10 ResolveAddress callers start together (conc tasks under
-- a waitgroup), and each prints the time of its call, in simulated seconds, as it happens.
--
-- As in the book, each call's limiter nests multi-limiters: rate.multi(api, disk), where
-- api is rate.multi(per_second, per_minute). The book's MultiLimiter waits on its
-- limiters one after the other, so a token taken from one is burnt while the next one
-- blocks; rate.multi books a token on all of them for the time the slowest can grant it.
-- Calls are booked in the order the callers run, and the first 10 API calls use up the
-- per-minute burst, so what follows comes at 10 a minute, 6 s apart: ReadFile is held to
-- the disk's 1/s (at 0, 1, ..., 9 s), and ResolveAddress, booked after it, gets the
-- per-minute tokens as they come (6, 12, ..., 60 s).
--
-- Time is scaled: a simulated second lasts `--scale` real seconds (default 0.05, so the 60
-- simulated seconds take 3 s; `--scale 1` runs in real time, as the book does). Timers
-- fire on whole milliseconds, so a printed time may be a little late, the more so the
-- smaller the scale. `--virtual` runs on conc's virtual time: it ends at once, and every
-- time printed is exact. Run it with `make demo`, or once conc is installed:
--   lua5.4 examples/rate_limit.lua [--scale 0.05] [--virtual]
local conc = require "conc"
local rate = conc.rate

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("rate_limit.lua", { { "scale", 0.05, options.positive }, { "virtual", false } })
local scale, virtual = opts.scale, opts.virtual

-- The book's Per(n, d), with d in simulated seconds.
local function per(n, d)
  return rate.per(n, d * scale)
end

-- The book's Open(): the limiters of one API connection.
local function open()
  local per_second = rate.limiter(per(2, 1), 2)
  local per_minute = rate.limiter(per(10, 60), 10)
  local disk = rate.limiter(per(1, 1), 1)
  local network = rate.limiter(per(3, 1), 3)
  local api = rate.multi(per_second, per_minute)
  return {
    read_file_limit = rate.multi(api, disk),
    resolve_address_limit = rate.multi(api, network),
  }
end

local function read_file(api, ctx)
  local ok, err = api.read_file_limit:wait(ctx)
  if not ok then return nil, err end
  -- Pretend we do work here.
  return true
end

local function resolve_address(api, ctx)
  local ok, err = api.resolve_address_limit:wait(ctx)
  if not ok then return nil, err end
  -- Pretend we do work here.
  return true
end

conc.run(function()
  if virtual then conc.virtual_time(true) end
  local t0 = conc.now()
  local function elapsed()
    return (conc.now() - t0) / scale
  end
  local function log(what)
    print(("%7.2fs %s"):format(elapsed(), what))
  end

  print("API 2/s (burst 2) and 10/min (burst 10); disk 1/s (burst 1); network 3/s (burst 3)")
  local api = open()
  local ctx = conc.background()
  local wg = conc.waitgroup()
  local done = { ReadFile = 0, ResolveAddress = 0 }
  local function caller(name, call)
    local ok, err = call(api, ctx)
    if ok then
      done[name] = done[name] + 1
      log(name)
    else
      log(("cannot %s: %s"):format(name, tostring(err)))
    end
    wg:done()
  end

  wg:add(20)
  for _ = 1, 10 do conc.go(caller, "ReadFile", read_file) end
  for _ = 1, 10 do conc.go(caller, "ResolveAddress", resolve_address) end
  wg:wait()
  print(("done: %d ReadFile and %d ResolveAddress calls in %.2f s"):format(done.ReadFile,
    done.ResolveAddress, elapsed()))
  if virtual then conc.virtual_time(false) end
end)
