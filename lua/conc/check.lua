--- conc.check: argument checks shared by the Lua modules of conc. Each raises a `conc:`
-- error that names the function and the argument, as the C core's checks do.
local core = require "conc.core"

local M = {}

local CTX_MT = getmetatable(core.background())

--- Raises "conc: " .. fmt:format(...), with no position prefix.
function M.fail(fmt, ...)
  error("conc: " .. fmt:format(...), 0)
end
local fail = M.fail

--- A value's type as the C core's errors name it: the __name of its metatable, if any.
function M.typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  if v ~= v then return "nan" end
  return type(v)
end
local typename = M.typename

--- A value as a message shows it: a number as written (NaN as "nan", whatever the
-- platform prints), anything else by its type name.
function M.show(v)
  if type(v) ~= "number" then return typename(v) end
  if v ~= v then return "nan" end
  return tostring(v)
end
local show = M.show

--- Raises when more than max arguments were given (n: how many were).
function M.nargs(fname, n, max)
  if n > max then fail("%s: too many arguments (at most %d expected, got %d)", fname, max, n) end
end

function M.is_ctx(v)
  return getmetatable(v) == CTX_MT
end

function M.ctx(fname, ctx, arg, optional)
  if (ctx == nil and optional) or getmetatable(ctx) == CTX_MT then return end
  fail("%s: bad argument #%d (ctx expected, got %s)", fname, arg, typename(ctx))
end

function M.fn(fname, fn, arg)
  if type(fn) ~= "function" then
    fail("%s: bad argument #%d (function expected, got %s)", fname, arg, typename(fn))
  end
end

--- A whole number >= min; `what` names it in the message.
function M.whole(fname, n, arg, min, what)
  if type(n) ~= "number" then
    fail("%s: bad argument #%d (%s must be a number, got %s)", fname, arg, what, typename(n))
  elseif n ~= math.floor(n) or n < min then
    fail("%s: bad argument #%d (%s must be a whole number >= %d, got %s)", fname, arg, what, min, show(n))
  end
end

--- An options table (nil allowed when optional) whose keys are all in `known` (a set).
function M.options(fname, opts, arg, known, optional)
  if opts == nil and optional then return end
  if type(opts) ~= "table" then
    fail("%s: bad argument #%d (options table expected, got %s)", fname, arg, typename(opts))
  end
  for k in pairs(opts) do
    if not known[k] then fail("%s: unknown option '%s'", fname, tostring(k)) end
  end
end

return M
