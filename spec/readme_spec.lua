--- The README's tour runs as written (issue 6, acceptance: "a spec extracts its code blocks
-- and runs them"). Every ```lua block of the "## A tour" section, and only those, is a
-- whole script: it is written to a temporary file and run as a user runs it (a separate
-- process, under the interpreter running the specs, with the release build, on the real
-- clock), through support.run_lua. Each must exit 0 and write nothing on stderr. When a ```text block follows it (nothing but blank lines between), that
-- is its output, line for line; the parts that change from run to run (log ids, times) are
-- checked by shape instead, in SHAPES below. A step is named by the bold lead-in
-- ("**Hello, tasks.**") of the paragraph before its block; there is one `it` per step.
local conc = require "conc"
local support = require "support"

local README = support.ROOT .. "/README.md"

local function lines_of(s)
  local out = {}
  for line in (s .. "\n"):gmatch("(.-)\n") do out[#out + 1] = line end
  if out[#out] == "" then out[#out] = nil end
  return out
end

--- The steps of the tour: { {name, code, expected (a list of lines, or nil)}, ... }, in
-- README order. Raises when the section is missing or a block is not closed.
local function tour_steps()
  local f = assert(io.open(README))
  local text = f:read("*a")
  f:close()
  local lines = lines_of(text)
  local first
  for i, line in ipairs(lines) do
    if line == "## A tour" then first = i break end
  end
  assert(first, "README.md has no '## A tour' section")
  local last = #lines
  for i = first + 1, #lines do
    if lines[i]:match("^## ") then last = i - 1 break end
  end

  -- The fenced blocks of the section: { {lang, body (lines), from, to}, ... }
  local blocks, i = {}, first + 1
  while i <= last do
    local lang = lines[i]:match("^```(%S*)%s*$")
    if lang then
      local body, j = {}, i + 1
      while j <= last and lines[j] ~= "```" do
        body[#body + 1] = lines[j]
        j = j + 1
      end
      assert(j <= last, ("README.md:%d: a code block that is not closed"):format(i))
      blocks[#blocks + 1] = { lang = lang, body = body, from = i, to = j }
      i = j + 1
    else
      i = i + 1
    end
  end

  local steps = {}
  for k, b in ipairs(blocks) do
    if b.lang == "lua" then
      local name -- from the prose between the previous block and this one
      for j = b.from - 1, k > 1 and blocks[k - 1].to + 1 or first, -1 do
        name = lines[j]:match("^%*%*(.-)%.?%*%*")
        if name then break end
      end
      local expected
      local nxt = blocks[k + 1]
      if nxt and nxt.lang == "text" then
        local between = true
        for j = b.to + 1, nxt.from - 1 do
          if lines[j]:match("%S") then between = false end
        end
        if between then expected = nxt.body end
      end
      steps[#steps + 1] = {
        name = name or ("block at README.md:" .. b.from),
        line = b.from,
        code = table.concat(b.body, "\n") .. "\n",
        expected = expected,
      }
    end
  end
  return steps
end

-- Log ids look like "5239f6bae767-1": this run's prefix, then a counter.
local LOG_ID = "log id (%x+)%-(%d+)"

--- Steps whose output changes from run to run. normalize(line) turns a line of the
-- expected and of the actual output into its shape; check(actual, expected) compares what
-- the shape hides (both are lists of lines).
local SHAPES = {
  ["Rate limiting"] = {
    -- Each wait ends at the time the README shows or later, never earlier (a sleep never
    -- returns early; printed with one decimal); how much later depends on the machine's
    -- load, which a spec does not judge.
    normalize = function(line)
      return (line:gsub("^waits done at [%d., ]+ s$", "waits done at <times> s"))
    end,
    check = function(actual, expected)
      local function times(lines)
        local t = {}
        for _, line in ipairs(lines) do
          local list = line:match("^waits done at ([%d., ]+) s$")
          for v in (list or ""):gmatch("[%d.]+") do t[#t + 1] = tonumber(v) end
        end
        return t
      end
      local got, want = times(actual), times(expected)
      assert.are.equal(#want, #got, "the number of waits")
      for k, t in ipairs(got) do
        assert.is_true(t >= want[k],
          ("wait %d done at %.1f s, the README says %.1f s"):format(k, t, want[k]))
      end
    end,
  },
  ["Structured errors"] = {
    -- The log ids are this run's: one prefix, counted from 1 in report order.
    normalize = function(line)
      return (line:gsub(LOG_ID, "log id <id>"))
    end,
    check = function(actual)
      local prefix, n = nil, 0
      for _, line in ipairs(actual) do
        for p, count in line:gmatch(LOG_ID) do
          n = n + 1
          prefix = prefix or p
          assert.are.equal(prefix, p, "one prefix per run")
          assert.are.equal(tostring(n), count, "ids counted in report order")
        end
      end
      assert.is_true(n > 0, "no log id shown")
    end,
  },
}

local function map(list, fn)
  local out = {}
  for k, v in ipairs(list) do out[k] = fn(v) end
  return out
end

--- Runs code as a script; returns its stdout, its stderr and whether it exited 0.
local function run_script(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local out, err, ok = support.run_lua("'" .. path .. "'")
  os.remove(path)
  return out, err, ok
end

local steps = tour_steps()

describe("README tour", function()
  after_each(support.nothing_left)

  it("has its steps, each named, starting with its requires, and showing its output", function()
    assert.is_true(#steps >= 8, "the tour has " .. #steps .. " lua blocks")
    local seen = {}
    for _, step in ipairs(steps) do
      assert.is_nil(step.name:match("^block at "), "no bold lead-in names the " .. step.name)
      assert.is_nil(seen[step.name], "two steps named " .. step.name)
      seen[step.name] = true
      assert.is_truthy(step.code:match("^local [%w_, ]+ = require "),
        step.name .. " does not start with its requires")
      assert.is_table(step.expected, step.name .. " shows no output")
    end
    for name in pairs(SHAPES) do
      assert.is_true(seen[name] ~= nil, "SHAPES names a step the tour lacks: " .. name)
    end
  end)

  for k, step in ipairs(steps) do
    it(("step %d, %s: runs, prints no error, and prints what the README shows (README.md:%d)")
      :format(k, step.name, step.line), function()
      local out, err, ok = run_script(step.code)
      assert.is_true(ok, step.name .. " failed:\n" .. err)
      assert.are.equal("", err, "stderr")
      local actual = lines_of(out)
      if step.expected then
        local shape = SHAPES[step.name]
        local expected = step.expected
        if shape then
          shape.check(actual, expected)
          expected, actual = map(expected, shape.normalize), map(actual, shape.normalize)
        end
        assert.are.same(expected, actual)
      else
        assert.is_true(#actual > 0, step.name .. " prints nothing")
      end
    end)
  end
end)
