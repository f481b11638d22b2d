--- Token-bucket rate limiting with the semantics of Go's golang.org/x/time/rate:
-- `require "conc.rate"`, also `conc.rate`. A limit is a number of events per second.
--
-- Choices where Go is silent or conc departs (SEMANTICS.md D1, D3-D5, R8, R13):
--
-- * `Limiter:wait` with a ctx that is already done returns `nil, ctx:err()` before any
--   other check, even n > burst (DESIGN.md's D1 comes before R26's order).
-- * A wait refused because it would outlast the ctx's deadline, or exceed the burst,
--   returns nil and a conc error of kind `"rate"`, for which
--   `errors.is(err, errors.deadline_exceeded)` is false, since the ctx is not done (D3).
-- * n is a whole number >= 0; `allow(0)` and `wait(0)` succeed at once (R8).
-- * A reservation that could never act (a limit of 0 with the bucket empty) is not ok,
--   where Go books it ~292 years ahead.
-- @module conc.rate

-- The limiter itself and its reservations are C (csrc/rate.c over the arithmetic of
-- csrc/bucket.c); this file adds the limits, lim:wait, rate.multi and rate.keyed.
local core = require "conc.core"
local errors = require "conc.errors"
local check = require "conc.check"

local M = {}

local fail, typename = check.fail, check.typename
local book, wait_for, reserve_at = core.rate_book, core.rate_wait_for, core.rate_reserve_at
local sleep, now = core.sleep, core.now
local huge = math.huge

--- No limit (`math.huge`): every event is allowed, whatever the burst (R1).
-- @value inf
M.inf = huge

local function check_number(fname, v, arg, what)
  if type(v) ~= "number" or v ~= v then
    fail("%s: bad argument #%d (%s must be a number, got %s)", fname, arg, what, check.show(v))
  end
end

--- One event every `d` seconds, as a limit (R2).
-- @number d the interval in seconds
-- @treturn number the limit, `1 / d`; `rate.inf` when `d <= 0`
-- @function every
function M.every(d, ...)
  check.nargs("rate.every", select("#", ...) + 1, 1)
  check_number("rate.every", d, 1, "interval")
  if d <= 0 then return huge end
  return 1 / d
end

--- `n` events every `d` seconds, as a limit: `rate.per(10, 60)` is 10 a minute.
-- @number n the number of events, >= 0
-- @number d the period in seconds, > 0
-- @treturn number the limit, `n / d`
-- @function per
function M.per(n, d, ...)
  check.nargs("rate.per", select("#", ...) + 2, 2)
  check_number("rate.per", n, 1, "events")
  check_number("rate.per", d, 2, "period")
  if n < 0 then fail("rate.per: bad argument #1 (events must be >= 0, got %s)", tostring(n)) end
  if d <= 0 then fail("rate.per: bad argument #2 (period must be > 0 seconds, got %s)", tostring(d)) end
  return n / d
end

local function check_limit_burst(fname, limit, burst)
  check_number(fname, limit, 1, "limit")
  if limit < 0 then fail("%s: bad argument #1 (limit must be a number >= 0, got %s)", fname, check.show(limit)) end
  check.whole(fname, burst, 2, 0, "burst")
end

local function check_clock(fname, clock)
  if clock ~= nil and type(clock) ~= "function" then
    fail("%s: bad option clock (function expected, got %s)", fname, typename(clock))
  end
end

--- A token bucket of *burst* tokens, full at first (R3), refilled at *limit* tokens a
-- second.
-- @number limit the limit, events per second (>= 0; `rate.inf` for none)
-- @int burst the bucket's size, a whole number >= 0
-- @tparam[opt] table opts `{clock = fn}`: `fn()` returns the time in seconds (default
-- `conc.now`, so `conc.virtual_time` applies); tests inject a fake clock
-- @treturn Limiter the limiter
-- @function limiter
function M.limiter(limit, burst, opts, ...)
  check.nargs("rate.limiter", select("#", ...) + 3, 3)
  check_limit_burst("rate.limiter", limit, burst)
  check.options("rate.limiter", opts, 3, { clock = true }, true)
  local clock = opts and opts.clock
  check_clock("rate.limiter", clock)
  return core.rate_limiter(limit, burst, clock)
end

local function rate_error(msg, transient)
  return errors.new("rate: " .. msg, { kind = "rate", transient = transient })
end

-- The ctx and n of a wait called as wait([ctx,] [n]), and n's argument position; `first`
-- is the position of the first of them (2 for k:wait, after the key).
local function wait_args(fname, first, ...)
  check.nargs(fname, select("#", ...) + first - 1, first + 1)
  local a, b = ...
  if type(a) == "number" then
    if b ~= nil then fail("%s: bad argument #%d (nothing expected after n, got %s)", fname, first + 1, typename(b)) end
    return nil, a, first
  end
  check.ctx(fname, a, first, true)
  return a, b == nil and 1 or b, first + 1
end

local function check_n(fname, n, arg)
  check.whole(fname, n, arg, 0, "n")
end

-- Why a wait for n tokens was refused (rate_book's reason, or a multi's).
local function refusal(fname, why, n, burst)
  if why == "burst" then
    return rate_error(("%s(%d) exceeds the burst %d"):format(fname, n, burst), false)
  elseif why == "deadline" then
    return rate_error(("%s(%d) would exceed the context's deadline"):format(fname, n), true)
  end
  return rate_error(("%s(%d) can never get its tokens (the limit is 0)"):format(fname, n), false)
end

-- Sleeps until reservation r may act; if ctx ends first, gives its tokens back (R30).
-- Tokens due at the very moment ctx ends (a deadline the wait was accepted for, R31) are
-- the waiter's: its ctx's timer merely fired first.
local function sleep_or_cancel(r, delay, ctx)
  local ok, err = sleep(delay, ctx)
  if ok or r:delay() == 0 then return true end
  r:cancel()
  return nil, err
end

local LIMITER_MT = getmetatable(core.rate_limiter(0, 0))
local limiter_methods = LIMITER_MT.__index

-- lim:wait([ctx,] [n]) and k:wait(key [, ctx] [, n]); `first` is the position of the
-- ctx-or-n argument (2 for k:wait, after the key).
local function limiter_wait(lim, fname, first, ...)
  local ctx, n, narg = wait_args(fname, first, ...)
  check_n(fname, n, narg)
  local r, delay = book(lim, n, ctx)
  if r == true then return true end
  if r == nil then
    if type(delay) == "string" then return nil, refusal(fname, delay, n, lim:burst()) end
    return nil, delay -- ctx:err() (D1)
  end
  return sleep_or_cancel(r, delay, ctx)
end

--- A limiter, made by `rate.limiter`.
-- @type Limiter

--- Waits until `n` tokens are there and takes them (R26-R32).
-- @tparam[opt] conc.Context ctx ends the wait early when it ends
-- @int[opt=1] n the number of tokens, a whole number >= 0 (0 succeeds at once)
-- @treturn[1] boolean true once the tokens are taken
-- @return[2] nil when ctx ended first (the tokens are given back), or at once, taking
-- nothing, when `n` exceeds the burst or the tokens would come after ctx's deadline
-- @return[2] `ctx:err()`, or a conc error of kind `"rate"` for a refused wait
-- @function wait
function limiter_methods.wait(lim, ...)
  if getmetatable(lim) ~= LIMITER_MT then fail("lim:wait: bad self (rate limiter expected, got %s)", typename(lim)) end
  return limiter_wait(lim, "lim:wait", 1, ...)
end

-- multi -------------------------------------------------------------------------

local Multi = { __name = "conc.rate.multi" }
Multi.__index = Multi

local MultiReservation = { __name = "conc.rate.multi_reservation" }
MultiReservation.__index = MultiReservation

--- A reservation, made by `Limiter:reserve`: tokens booked, maybe ahead of time.
-- @type Reservation

--- @section end

--- One limiter over several (the book's MultiLimiter). An event needs a token from each;
-- they are booked on all at once, for the time the slowest can grant them, so a wait that
-- ends early gives every one back. An argument may itself be a `rate.multi`, whose
-- limiters join this one's (as the book nests its MultiLimiters).
-- @tparam Limiter|MultiLimiter ... the limiters, at least one
-- @treturn MultiLimiter the multi-limiter
-- @function multi
function M.multi(...)
  local n = select("#", ...)
  if n == 0 then fail("rate.multi: bad argument #1 (rate limiter expected, got no value)") end
  local lims = {}
  for i = 1, n do
    local lim = select(i, ...)
    if getmetatable(lim) == LIMITER_MT then
      lims[#lims + 1] = lim
    elseif getmetatable(lim) == Multi then
      for _, inner in ipairs(lim.lims) do lims[#lims + 1] = inner end
    else
      fail("rate.multi: bad argument #%d (rate limiter expected, got %s)", i, typename(lim))
    end
  end
  return setmetatable({ lims = lims }, Multi)
end

local function check_multi(self, fname)
  if getmetatable(self) ~= Multi then fail("%s: bad self (rate.multi expected, got %s)", fname, typename(self)) end
end

--- A multi-limiter, made by `rate.multi`.
-- @type MultiLimiter

--- The strictest limit.
-- @treturn number the smallest limit of the limiters
-- @function limit
function Multi:limit()
  check_multi(self, "m:limit")
  local l = huge
  for _, lim in ipairs(self.lims) do l = math.min(l, lim:limit()) end
  return l
end

--- The smallest burst of the limiters with a finite limit (`rate.inf` ones allow any n).
-- @treturn number that burst; `math.huge` when there is none
-- @function burst
function Multi:burst()
  check_multi(self, "m:burst")
  local b = huge
  for _, lim in ipairs(self.lims) do
    if lim:limit() ~= huge then b = math.min(b, lim:burst()) end
  end
  return b
end

--- The fewest tokens any of the limiters has now.
-- @treturn number the tokens
-- @function tokens
function Multi:tokens()
  check_multi(self, "m:tokens")
  local t = huge
  for _, lim in ipairs(self.lims) do t = math.min(t, lim:tokens()) end
  return t
end

-- The wait until every limiter can grant n tokens (huge: never).
local function multi_wait_for(self, n)
  local d = 0
  for _, lim in ipairs(self.lims) do d = math.max(d, wait_for(lim, n)) end
  return d
end

-- Books n tokens on every limiter, to act in `delay` s (which each of them can meet).
local function book_all(self, n, delay)
  local rs = {}
  for i, lim in ipairs(self.lims) do rs[i] = reserve_at(lim, n, delay) end
  return setmetatable({ rs = rs, ok_ = true }, MultiReservation)
end

--- Takes `n` tokens from every limiter now, or from none.
-- @int[opt=1] n the number of tokens
-- @treturn boolean whether they were taken
-- @function allow
function Multi:allow(n)
  check_multi(self, "m:allow")
  if n == nil then n = 1 end
  check_n("m:allow", n, 1)
  if multi_wait_for(self, n) > 0 then return false end
  book_all(self, n, 0)
  return true
end

--- Books `n` tokens on every limiter for the time the slowest can grant them.
-- @int[opt=1] n the number of tokens
-- @treturn MultiReservation the booking: its `delay()` is that time, its `cancel()`
-- gives back what each limiter can
-- @function reserve
function Multi:reserve(n)
  check_multi(self, "m:reserve")
  if n == nil then n = 1 end
  check_n("m:reserve", n, 1)
  local d = multi_wait_for(self, n)
  if d == huge then return setmetatable({ rs = {}, ok_ = false }, MultiReservation) end
  return book_all(self, n, d)
end

--- `Limiter:wait` over all the limiters, giving every token back when ctx ends first.
-- @tparam[opt] conc.Context ctx ends the wait early when it ends
-- @int[opt=1] n the number of tokens
-- @treturn[1] boolean true once the tokens are taken from every limiter
-- @return[2] nil when ctx ended first, or at once when the wait is refused
-- @return[2] `ctx:err()`, or a conc error of kind `"rate"`
-- @function wait
function Multi:wait(...)
  check_multi(self, "m:wait")
  local ctx, n, narg = wait_args("m:wait", 1, ...)
  check_n("m:wait", n, narg)
  if ctx and ctx:err() then return nil, ctx:err() end
  if n == 0 then return true end
  local d = multi_wait_for(self, n)
  if d == huge then
    for _, lim in ipairs(self.lims) do
      if lim:limit() ~= huge and n > lim:burst() then return nil, refusal("m:wait", "burst", n, lim:burst()) end
    end
    return nil, refusal("m:wait", "never", n)
  end
  local deadline = ctx and ctx:deadline()
  -- the same nanosecond of slack as lim:wait's (rate.c): a wait ending at the deadline fits
  if deadline and d > deadline - now() + 1e-9 then return nil, refusal("m:wait", "deadline", n) end
  local r = book_all(self, n, d)
  if d == 0 then return true end
  return sleep_or_cancel(r, d, ctx)
end

--- A booking on every limiter of a multi-limiter, made by `MultiLimiter:reserve`; it
-- answers as a reservation made by `Limiter:reserve` does.
-- @type MultiReservation

--- Whether the tokens can ever be granted.
-- @treturn boolean false when `n` exceeds a burst, or the tokens never come
-- @function ok
function MultiReservation:ok()
  return self.ok_
end

--- How long until the tokens may be used.
-- @treturn number seconds (0: now); `math.huge` when not ok
-- @function delay
function MultiReservation:delay()
  if not self.ok_ then return huge end
  local d = 0
  for _, r in ipairs(self.rs) do d = math.max(d, r:delay()) end
  return d
end

--- Gives the tokens back to every limiter, as `Reservation:cancel` does for each.
-- @function cancel
function MultiReservation:cancel()
  for _, r in ipairs(self.rs) do r:cancel() end
end

-- keyed -------------------------------------------------------------------------

local Keyed = { __name = "conc.rate.keyed" }
Keyed.__index = Keyed

--- @section end

--- A limiter per key (one per client, say), made on first use with a full bucket.
-- Dropping is lazy: calls look for droppable keys at most once every `idle` seconds
-- (every second without idle). A key whose bucket is full with nothing booked is dropped
-- too, whatever idle says, since a new limiter would be the same. When `max_keys` is
-- reached, the least recently used eighth of the keys is dropped. A key that comes back
-- after being dropped starts with a full bucket, and settings changed on its limiter
-- (through `KeyedLimiter:get`) are lost.
-- @number limit each key's limit
-- @int burst each key's burst
-- @tparam[opt] table opts `idle` (drop a key unused this many seconds), `max_keys` (at
-- most this many limiters), `clock` (as `rate.limiter`'s)
-- @treturn KeyedLimiter the keyed limiter
-- @function keyed
function M.keyed(limit, burst, opts)
  check_limit_burst("rate.keyed", limit, burst)
  check.options("rate.keyed", opts, 3, { idle = true, max_keys = true, clock = true }, true)
  opts = opts or {}
  check_clock("rate.keyed", opts.clock)
  if opts.idle ~= nil then
    check_number("rate.keyed", opts.idle, 3, "opts.idle")
    if opts.idle <= 0 then fail("rate.keyed: bad argument #3 (opts.idle must be > 0 seconds, got %s)", tostring(opts.idle)) end
  end
  if opts.max_keys ~= nil then check.whole("rate.keyed", opts.max_keys, 3, 1, "opts.max_keys") end
  local clock = opts.clock or now
  return setmetatable({
    limit_ = limit, burst_ = burst, clock = opts.clock, now = clock,
    idle = opts.idle or huge, every = opts.idle or 1, max_keys = opts.max_keys or huge,
    map = {}, n = 0, next_sweep = clock() + (opts.idle or 1),
  }, Keyed)
end

local function check_keyed(self, fname)
  if getmetatable(self) ~= Keyed then fail("%s: bad self (rate.keyed expected, got %s)", fname, typename(self)) end
end

local function sweep(self, t)
  local map, idle, dropped = self.map, self.idle, 0
  for key, lim in pairs(map) do
    if core.rate_idle(lim, t, idle) then
      map[key] = nil
      dropped = dropped + 1
    end
  end
  self.n = self.n - dropped
  self.next_sweep = t + self.every
end

-- At max_keys with nothing droppable: drop the least recently used eighth (at least one
-- key), ties broken arbitrarily.
local function drop_oldest(self)
  local keys, used, rate_used = {}, {}, core.rate_used
  for key, lim in pairs(self.map) do
    keys[#keys + 1] = key
    used[key] = rate_used(lim)
  end
  table.sort(keys, function(a, b) return used[a] < used[b] end)
  for i = 1, math.max(1, math.floor(#keys / 8)) do self.map[keys[i]] = nil end
  self.n = self.n - math.max(1, math.floor(#keys / 8))
end

-- The limiter of key, made when missing; sweeps when it is time.
local function limiter_of(self, key, fname)
  if key == nil or key ~= key then fail("%s: bad argument #1 (key expected, got %s)", fname, typename(key)) end
  local t = self.now()
  if t >= self.next_sweep then sweep(self, t) end
  local lim = self.map[key]
  if lim == nil then
    if self.n >= self.max_keys then
      sweep(self, t)
      if self.n >= self.max_keys then drop_oldest(self) end
    end
    lim = core.rate_limiter(self.limit_, self.burst_, self.clock)
    self.map[key] = lim
    self.n = self.n + 1
  end
  return lim
end

--- A keyed limiter, made by `rate.keyed`.
-- @type KeyedLimiter

--- The limiter of a key, made if need be.
-- @param key the key (not nil, not NaN)
-- @treturn Limiter its limiter
-- @function get
function Keyed:get(key)
  check_keyed(self, "k:get")
  return limiter_of(self, key, "k:get")
end

--- `Limiter:allow` on the key's limiter.
-- @param key the key
-- @int[opt=1] n the number of tokens
-- @treturn boolean whether they were taken
-- @function allow
function Keyed:allow(key, n, ...)
  check_keyed(self, "k:allow")
  check.nargs("k:allow", select("#", ...) + 2, 2)
  if n ~= nil then check_n("k:allow", n, 2) end
  return limiter_of(self, key, "k:allow"):allow(n)
end

--- `Limiter:reserve` on the key's limiter.
-- @param key the key
-- @int[opt=1] n the number of tokens
-- @treturn Reservation the booking
-- @function reserve
function Keyed:reserve(key, n, ...)
  check_keyed(self, "k:reserve")
  check.nargs("k:reserve", select("#", ...) + 2, 2)
  if n ~= nil then check_n("k:reserve", n, 2) end
  return limiter_of(self, key, "k:reserve"):reserve(n)
end

--- `Limiter:wait` on the key's limiter.
-- @param key the key
-- @tparam[opt] conc.Context ctx ends the wait early when it ends
-- @int[opt=1] n the number of tokens
-- @treturn[1] boolean true once the tokens are taken
-- @return[2] nil when ctx ended first, or at once when the wait is refused
-- @return[2] `ctx:err()`, or a conc error of kind `"rate"`
-- @function wait
function Keyed:wait(key, ...)
  check_keyed(self, "k:wait")
  return limiter_wait(limiter_of(self, key, "k:wait"), "k:wait", 2, ...)
end

--- The number of keys that have a limiter now, after dropping what is due.
-- @treturn integer the count
-- @function len
function Keyed:len()
  check_keyed(self, "k:len")
  local t = self.now()
  if t >= self.next_sweep then sweep(self, t) end
  return self.n
end

return M
