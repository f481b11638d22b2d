--- conc.heartbeat and conc.steward: the book's healing of unhealthy tasks (Concurrency in Go,
-- ch. 5), with the restart policy of an OTP supervisor.
--
-- A steward runs a ward as a task and watches two things: the ward's heartbeat (with
-- opts.timeout, no pulse within that many seconds is a missed heartbeat) and its end
-- (returned, or failed: raised, or returned nil plus an error). It restarts the ward per
-- opts.restart (D7): `permanent` always, `transient` after a failure or a missed heartbeat,
-- `temporary` never. Restarting cancels the old ward's ctx first, then starts a new one
-- (W4); it does not wait for the old one. More than opts.intensity restarts within
-- opts.period seconds (the window includes a restart exactly `period` ago, O7) makes it
-- give up. A steward is itself a ward, `(ctx, pulse, ...)`, so stewards nest into trees.
-- @module conc

--- Heartbeats and stewards.
-- The book's healing of unhealthy tasks, with the restart policy of an OTP supervisor.
-- @section stewards

local core = require "conc.core"
local errors = require "conc.errors"
local check = require "conc.check"
local attempt = require "conc.protect".attempt

local M = {}

local fail, typename = check.fail, check.typename
local select_ = core.select
local huge = math.huge

--- A heartbeat: `pulse()` sends a beat on `beat_ch` and never blocks; the channel holds
-- one beat, and a beat nobody has taken yet makes the next one a no-op (W1).
-- @treturn Channel beat_ch, where the beats arrive (`true`)
-- @treturn function pulse
-- @function heartbeat
function M.heartbeat(...)
  check.nargs("heartbeat", select("#", ...), 0)
  local ch = core.chan(1)
  return ch, function() ch:try_send(true) end
end

local RESTART = { permanent = true, transient = true, temporary = true }
local OPTIONS = { ward = true, name = true, timeout = true, restart = true, intensity = true,
  period = true, backoff = true, on_event = true }
local BACKOFF = { initial = true, max = true, factor = true, jitter = true }

local function check_seconds(what, v, positive)
  if type(v) ~= "number" or v ~= v or v < 0 or (positive and v == 0) then
    fail("steward: bad option %s (a number of seconds %s expected, got %s)", what, positive and "> 0" or ">= 0",
      check.show(v))
  end
end

local function check_opts(opts)
  check.options("steward", opts, 1, OPTIONS)
  if type(opts.ward) ~= "function" then fail("steward: bad option ward (function expected, got %s)", typename(opts.ward)) end
  if opts.name ~= nil and type(opts.name) ~= "string" then
    fail("steward: bad option name (string expected, got %s)", typename(opts.name))
  end
  if opts.timeout ~= nil then check_seconds("timeout", opts.timeout, true) end
  if opts.restart ~= nil and not RESTART[opts.restart] then
    fail("steward: bad option restart ('permanent', 'transient' or 'temporary' expected, got %s)",
      type(opts.restart) == "string" and ("'" .. opts.restart .. "'") or check.show(opts.restart))
  end
  local n = opts.intensity
  if n ~= nil and (type(n) ~= "number" or n ~= math.floor(n) or n < 0) then
    fail("steward: bad option intensity (a whole number >= 0 expected, got %s)", check.show(n))
  end
  if opts.period ~= nil then check_seconds("period", opts.period, true) end
  if opts.on_event ~= nil and type(opts.on_event) ~= "function" then
    fail("steward: bad option on_event (function expected, got %s)", typename(opts.on_event))
  end
  local b = opts.backoff
  if b ~= nil then
    if type(b) ~= "table" then fail("steward: bad option backoff (table expected, got %s)", typename(b)) end
    for k in pairs(b) do
      if not BACKOFF[k] then fail("steward: unknown backoff option '%s'", tostring(k)) end
    end
    check_seconds("backoff.initial", b.initial, true)
    if b.max ~= nil then check_seconds("backoff.max", b.max) end
    if b.factor ~= nil and (type(b.factor) ~= "number" or not (b.factor >= 1)) then
      fail("steward: bad option backoff.factor (a number >= 1 expected, got %s)", check.show(b.factor))
    end
    if b.jitter ~= nil and (type(b.jitter) ~= "number" or not (b.jitter >= 0)) then
      fail("steward: bad option backoff.jitter (a number >= 0 expected, got %s)", check.show(b.jitter))
    end
  end
end

-- The pause before the k-th restart (k >= 1): initial * factor^(k-1), at most max, then
-- stretched by up to `jitter` of itself ([d, d * (1 + jitter)), as suture does).
local function backoff_delay(b, k)
  local d = b.initial * (b.factor or 2) ^ (k - 1)
  if b.max ~= nil and d > b.max then d = b.max end
  return d * (1 + (b.jitter or 0) * math.random())
end

-- Starts opts.ward(wctx, wpulse, ...) as a task; its outcome arrives on the returned
-- channel as {ok, err}.
local function start_ward(opts, name, wctx, wpulse, ...)
  local exit = core.chan(1)
  local task = core.go(function(...)
    local ok, err = attempt(opts.ward, wctx, wpulse, ...)
    exit:send({ ok = ok, err = not ok and err or nil })
  end, ...)
  task:name(name)
  return exit
end

-- After the steward's ctx ended: gives the ward up to `grace` seconds to see its ctx end
-- and return, so that a well-behaved tree leaves no task behind.
local function await_exit(exit, grace)
  local t = core.timer(grace)
  select_(exit, t:chan())
  t:stop()
end

--- A steward: a ward `(ctx, pulse, ...)` that runs `opts.ward(wctx, wpulse, ...)` as a
-- task, watches its heartbeat and its end, and restarts it per `opts.restart`. A
-- restart cancels the old ward's wctx first and does not wait for it. A ward that
-- returns or fails is never taken for healthy. Since a steward is itself a ward,
-- stewards nest into trees.
--
-- The steward, called as `steward(ctx [, pulse], ...)`, returns true once its ctx ends
-- (giving the ward up to `timeout`, or 5 s, to stop) or once its ward ends and is not to
-- be restarted (nil, err if that ward failed). When it gives up it raises a conc error of
-- kind `"steward"` naming the ward, whose cause is the ward's last error. It pulses `pulse`
-- at each (re)start and each healthy beat. Without `on_event`, a ward's failure is
-- written to `conc.errors.report`, never dropped.
-- @tparam table opts
--   `opts.ward` (required): the function to run, as `ward(wctx, wpulse, ...)`;
--   `opts.name` (default `"ward"`): for errors, events and the task's name;
--   `opts.timeout`: no pulse within that many seconds is a missed heartbeat (wards should
--   pulse every `timeout/2`; default: no heartbeat watch);
--   `opts.restart`: `"permanent"` (the default: always), `"transient"` (after a failure or
--   a missed heartbeat, not after a normal return) or `"temporary"` (never);
--   `opts.intensity` (default 3) and `opts.period` (default 5 s): more than intensity
--   restarts within period seconds makes the steward give up;
--   `opts.backoff = {initial, max, factor = 2, jitter = 0}`: the k-th restart waits
--   `min(max, initial * factor^(k-1))`, stretched by up to jitter of itself;
--   `opts.on_event(ev)`: sees `ev = {type, ward, err, n}`, type `"start"`, `"restart"`,
--   `"returned"`, `"missed"`, `"failed"` or `"gave_up"`, n the restarts so far
-- @treturn function the steward, a ward `(ctx, pulse, ...)`
-- @function steward
function M.steward(opts)
  check_opts(opts)
  local name = opts.name or "ward"
  local timeout, restart = opts.timeout, opts.restart or "permanent"
  local intensity, period = opts.intensity or 3, opts.period or 5
  local on_event = opts.on_event

  local function emit(ev)
    ev.ward = name
    if on_event then
      on_event(ev)
    elseif ev.type == "failed" then
      errors.report(ev.err)
    end
  end

  return function(ctx, pulse, ...)
    check.ctx("steward ward", ctx, 1)
    if pulse ~= nil and type(pulse) ~= "function" then
      fail("steward ward: bad argument #2 (function expected, got %s)", typename(pulse))
    end
    local restarts, n = {}, 0
    while true do
      if ctx:err() then return true end -- W6
      local wctx, wcancel = core.with_cancel(ctx)
      local beat, wpulse = M.heartbeat()
      local exit = start_ward(opts, name, wctx, wpulse, ...)
      emit { type = n == 0 and "start" or "restart", n = n }
      if pulse then pulse() end
      local timer = timeout and core.timer(timeout)
      local outcome, err -- "stopped", "returned", "failed" or "missed"
      repeat
        local i, v = select_(ctx:done(), beat, exit, timer and timer:chan())
        if i == 1 then
          outcome = "stopped"
        elseif i == 2 then -- healthy: a new window (W3), and our own beat (W5)
          if timer then timer:reset(timeout) end
          if pulse then pulse() end
        elseif i == 3 then -- the ward ended: never taken for healthy (W7)
          outcome, err = v.ok and "returned" or "failed", v.err
        else
          outcome = "missed"
          err = errors.new(("steward: ward '%s' missed its heartbeat (no pulse in %g s)"):format(name, timeout),
            { kind = "steward", transient = true })
        end
        if ctx:err() then outcome = "stopped" end -- U7: judged by our ctx, not the ward's error
      until outcome
      if timer then timer:stop() end
      wcancel()
      if outcome == "stopped" then
        await_exit(exit, timeout or 5)
        return true
      end
      emit { type = outcome, err = err, n = n }
      if restart == "temporary" or (restart == "transient" and outcome == "returned") then
        if outcome == "returned" then return true end
        return nil, err
      end
      local now = core.now()
      local kept = {}
      for _, t in ipairs(restarts) do
        -- O7: inclusive; a nanosecond of slack, as now and t are large times whose
        -- difference can come out a hair over a restart exactly `period` ago
        if t >= now - period - 1e-9 then kept[#kept + 1] = t end
      end
      kept[#kept + 1] = now
      restarts = kept
      if #restarts > intensity then
        local last = err or errors.new(("ward '%s' returned"):format(name), { kind = "steward" })
        local gave_up = errors.wrap(last, ("steward: gave up on ward '%s' (%d restarts in %g s)"):format(
          name, #restarts, period), { kind = "steward" })
        emit { type = "gave_up", err = gave_up, n = n }
        error(gave_up, 0)
      end
      n = n + 1
      if opts.backoff and not core.sleep(backoff_delay(opts.backoff, n), ctx) then return true end
    end
  end
end

return M
