-- options.lua: the command-line options of the examples, parsed the same way by each. An
-- example loads it from its own folder, so it runs from anywhere:
--   local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
--   local opts = options.parse("demo.lua", { { "scale", 1, options.positive }, { "virtual", false } })
-- Each entry is {name, default [, check]}: a boolean default makes a flag (--name), a
-- number default an option taking a number, a string default one taking a word; check(v)
-- may refuse a value. An unknown option or a refused value prints the usage line to
-- stderr and exits with status 2.
local M = {}

function M.positive(v) return v > 0 end
function M.non_negative(v) return v >= 0 end
function M.whole(v) return v >= 1 and v == math.floor(v) end

local function usage(script, spec)
  local parts = {}
  for _, o in ipairs(spec) do
    local kind = type(o[2])
    parts[#parts + 1] = kind == "boolean" and ("[--%s]"):format(o[1])
      or ("[--%s %s]"):format(o[1], kind == "number" and "n" or "value")
  end
  io.stderr:write(("usage: %s %s\n"):format(script, table.concat(parts, " ")))
  os.exit(2)
end

--- The options given on the command line (arg), with the defaults for the others.
function M.parse(script, spec)
  local opts, by_name = {}, {}
  for _, o in ipairs(spec) do
    opts[o[1]], by_name[o[1]] = o[2], o
  end
  local args, i = arg or {}, 1
  while args[i] do
    local o = by_name[(args[i]:match("^%-%-(.+)$"))]
    if o == nil then usage(script, spec) end
    local kind, v = type(o[2]), true
    if kind ~= "boolean" then
      v = args[i + 1]
      if kind == "number" then v = tonumber(v) end
      if v == nil or (o[3] and not o[3](v)) then usage(script, spec) end
      i = i + 1
    end
    opts[o[1]] = v
    i = i + 1
  end
  return opts
end

return M
