-- spec/doccheck.lua: the documentation check of `make lint`. It fails, listing them, when a
-- public function of conc has no doc comment in the API reference that LDoc makes from
-- config.ld, or when the reference documents a function that does not exist.
--
-- Run from the repository root, with conc on the paths of a build:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/release/?.so;;" \
--     lua5.4 spec/doccheck.lua
-- It lives in spec/ beside the other helpers of the checks (run.sh, support.lua): DESIGN.md
-- fixes the top-level layout, and busted runs only the *_spec.lua files here.
--
-- The public API is what a user can call: every function of `require "conc"` (the C
-- functions it re-exports from conc.core included), of conc.rate, conc.errors and conc.net, and
-- the methods of the objects they make, found on live objects (their metatable's __index,
-- metamethods aside). What LDoc found comes from LDoc itself: this file is also the
-- filter that `ldoc --filter doccheck.list` loads (then `...` is the module name and only
-- the table below is returned), which prints one line per item it documents.
local M = {}

-- LDoc's filter: called with the processed modules; prints "doc", module, item name, item
-- type and whether the item has any text, tab-separated.
function M.list(modules)
  for _, mod in ipairs(modules) do
    for _, item in ipairs(mod.items) do
      local text = (item.summary or "") .. (item.description or "")
      print(table.concat({ "doc", mod.name, item.name, item.type, text:find("%S") and "1" or "0" }, "\t"))
    end
  end
end

if ... == "doccheck" then return M end

local conc = require "conc"
local rate, errors = require "conc.rate", require "conc.errors"

-- public["module\tname"]: a function users can call; methods are named type:method.
local public = {}

local function add_functions(modname, t)
  for name, v in pairs(t) do
    if type(v) == "function" then public[modname .. "\t" .. name] = true end
  end
end

local function add_methods(modname, typename, objects)
  for _, obj in ipairs(objects) do
    local mt = getmetatable(obj)
    local index = type(mt) == "table" and mt.__index
    if type(index) ~= "table" then
      error(("doccheck: a %s (%s) has no method table"):format(typename, tostring(obj)))
    end
    for name, v in pairs(index) do
      if type(v) == "function" and not name:match("^__") then
        public[modname .. "\t" .. typename .. ":" .. name] = true
      end
    end
  end
end

add_functions("conc", conc)
add_functions("conc.rate", rate)
add_functions("conc.errors", errors)
add_functions("conc.net", conc.net)

-- One or more objects of each type users get, with the type's name in the reference; objects made in different ways are all walked, in case their methods differ.
local ctx, cancel = conc.with_cancel(conc.background())
local timer, ticker = conc.timer(1), conc.ticker(1)
local lim = rate.limiter(1, 1)
local multi = rate.multi(lim)
add_methods("conc", "Task", { conc.go(function() end) })
add_methods("conc", "Channel", { conc.chan(), conc.chan(1), conc.after(1), ctx:done() })
add_methods("conc", "Timer", { timer, ticker })
add_methods("conc", "Context", { conc.background(), ctx, conc.with_value(ctx, "k", 1), conc.without_cancel(ctx) })
add_methods("conc", "WaitGroup", { conc.waitgroup() })
add_methods("conc", "Semaphore", { conc.semaphore(1) })
add_methods("conc", "Mutex", { conc.mutex() })
add_methods("conc", "Group", { (conc.group()), (conc.group(ctx)) })
add_methods("conc.rate", "Limiter", { lim, rate.keyed(1, 1):get("k") })
add_methods("conc.rate", "Reservation", { lim:reserve() })
add_methods("conc.rate", "MultiLimiter", { multi })
add_methods("conc.rate", "MultiReservation", { multi:reserve() })
add_methods("conc.rate", "KeyedLimiter", { rate.keyed(1, 1) })
local listener = assert(conc.net.listen("127.0.0.1", 0))
local conn = assert(conc.net.connect(listener:addr()))
add_methods("conc.net", "Listener", { listener })
add_methods("conc.net", "Connection", { conn, (listener:accept()) })
conn:close()
listener:close()
timer:stop()
ticker:stop()
cancel()

-- What LDoc documents, from the same configuration `make docs` uses.
local MODULES = { conc = true, ["conc.rate"] = true, ["conc.errors"] = true, ["conc.net"] = true }
local ldoc = io.popen("LUA_PATH='spec/?.lua;;' ldoc --filter doccheck.list . 2>&1")
local documented, other, seen = {}, {}, 0
for line in ldoc:lines() do
  local modname, name, kind, has_text = line:match("^doc\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([01])$")
  if modname then
    seen = seen + 1
    if kind == "function" and MODULES[modname] then
      documented[modname .. "\t" .. name] = has_text == "1"
    end
  elseif not line:match("^found master module\t") and not line:match("^%*%*%*closing section")
      and not line:match("^reading configuration from ") then
    other[#other + 1] = line -- a warning, or an error of ldoc's
  end
end
local ok = ldoc:close()
if not ok or seen == 0 then
  io.stderr:write("doccheck: ldoc failed (is lua-ldoc installed? `make deps` installs it)\n")
  for _, line in ipairs(other) do io.stderr:write(line, "\n") end
  os.exit(1)
end

local function show(key)
  local modname, name = key:match("^(.-)\t(.*)$")
  return modname .. ": " .. name
end

local missing, stale = {}, {}
for key in pairs(public) do
  if not documented[key] then missing[#missing + 1] = show(key) end
end
for key in pairs(documented) do
  if not public[key] then stale[#stale + 1] = show(key) end
end
table.sort(missing)
table.sort(stale)

local n = 0
for _ in pairs(public) do n = n + 1 end
if #missing > 0 then
  print(("doccheck: public functions without a doc comment (%d):"):format(#missing))
  for _, name in ipairs(missing) do print("  " .. name) end
end
if #stale > 0 then
  print(("doccheck: documented functions that are not in the API, misnamed or gone (%d):"):format(#stale))
  for _, name in ipairs(stale) do print("  " .. name) end
end
if #missing > 0 or #stale > 0 then
  print("doccheck: document each one next to its code, as config.ld says: a method is")
  print("`@function name` inside its type's section (`@type Channel`), in C and Lua alike")
  os.exit(1)
end
print(("doccheck: all %d public functions and methods are documented"):format(n))
