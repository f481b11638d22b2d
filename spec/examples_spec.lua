-- The examples, each run as a user runs it (a separate process) on conc's virtual clock,
-- checking the shape of what it prints: which events happen, when, and in what order
-- where the order is fixed.
local support = require "support"

local function run(name, args)
  local out, err, ok = support.run_lua("examples/" .. name .. ".lua " .. (args or ""))
  assert.is_true(ok, name .. " failed:\n" .. err)
  return out, err
end

local function lines_of(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- The times (in the example's seconds) of the lines that match pattern, "%5.2fs text".
local function times_of(out, pattern)
  local t = {}
  for _, line in ipairs(lines_of(out)) do
    local at, text = line:match("^%s*([%d.]+)s (.*)$")
    if at and text:find(pattern) then t[#t + 1] = tonumber(at) end
  end
  return t
end

describe("examples", function()
  describe("errors.lua (E17-E19, the book's error propagation)", function()
    it("a known error: the user reads the intermediate module's message and a log id; stderr has its record", function()
      local out, err = run("errors")
      local id = out:match("%[user%] Job 1 cannot run: its binaries are not available%. %(log id (%S+)%)\n")
      assert.is_not_nil(id, out)
      assert.matches("[top] well-formed error of kind job", out, 1, true)
      local records = lines_of(err)
      assert.are.equal(1, #records, err)
      assert.matches('"id":"' .. id .. '"', records[1], 1, true)
      assert.matches('"kind":"job"', records[1], 1, true)
      assert.matches('"message":"cannot run job \\"1\\": /bad/job/binary:', records[1], 1, true)
      assert.matches('"task":{"id":%d+,"name":"job runner"', records[1])
    end)

    it("a bug: an unwrapped raw error reaches the top, which shows the bug line with the record's log id", function()
      local out, err = run("errors", "--bug")
      local id = out:match("%[user%] An unexpected error occurred %(log id (%S+)%); please report it%.\n")
      assert.is_not_nil(id, out)
      assert.matches("[top] an unwrapped error reached the top: a bug", out, 1, true)
      local records = lines_of(err)
      assert.are.equal(1, #records, err)
      assert.matches('"id":"' .. id .. '"', records[1], 1, true)
      assert.matches('"bug":true', records[1], 1, true)
    end)
  end)

  describe("heartbeat.lua (W1-W3, the book's heartbeats)", function()
    it("an interval heartbeat every second, results every two, a stuck worker noticed, a pulse per unit", function()
      local out = run("heartbeat", "--virtual")
      local one, two, three = out:match("1%. [^\n]*\n(.*)2%. [^\n]*\n(.*)3%. [^\n]*\n(.*)$")
      assert.is_not_nil(three, out)
      local pulses = times_of(one, "^pulse$")
      if pulses[#pulses] == 10 then pulses[#pulses] = nil end -- a tick racing the 10 s stop
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, pulses)
      assert.are.same({ 2, 4, 6, 8 }, times_of(one, "^results"))
      for _, line in ipairs(lines_of(one)) do
        local at, n = line:match("^%s*([%d.]+)s results (%d+)$")
        if at then assert.are.equal(tonumber(at), tonumber(n), "a result carries the time it was made") end
      end
      -- it goes round twice (at 1 s a pulse; at 2 s both tickers fire: a pulse, a result or
      -- both), then falls silent
      local seen = {}
      for _, at in ipairs(times_of(two, "^pulse$")) do seen[at] = true end
      for _, at in ipairs(times_of(two, "^results")) do seen[at] = true end
      assert.are.same({ [1] = true, [2] = true }, seen, two)
      assert.are.same({ 4 }, times_of(two, "worker is not healthy!"), "noticed one timeout after the last beat")
      local kinds = {}
      for _, line in ipairs(lines_of(three)) do kinds[#kinds + 1] = line:match("s (%a+)") end
      assert.are.same({ "pulse", "results", "pulse", "results", "pulse", "results", "pulse", "results",
        "pulse", "results" }, kinds, "one pulse at the start of each unit of work")
    end)
  end)

  describe("steward.lua (W4, the book's irresponsible ward)", function()
    it("the ward starts at 0, 4 and 8 s and halts at 4, 8 and 9 s; the steward is done at 9 s", function()
      local out = run("steward", "--virtual")
      assert.are.same({ 0, 4, 8 }, times_of(out, "ward: Hello, I'm irresponsible!"))
      assert.are.same({ 4, 8, 9 }, times_of(out, "ward: I am halting%."))
      assert.are.same({ 4, 8 }, times_of(out, "steward: ward unhealthy; restarting"))
      assert.are.same({ 9 }, times_of(out, "main: halting steward and ward%."))
      assert.are.same({ 9 }, times_of(out, "^Done$"))
      local lines = lines_of(out)
      assert.matches("Done$", lines[#lines])
    end)

    it("the same with --scale on the real clock, in order", function()
      local out = run("steward", "--scale 0.01")
      local starts = times_of(out, "Hello")
      assert.are.equal(3, #starts, out)
      assert.is_true(starts[1] < starts[2] and starts[2] < starts[3])
      assert.matches("Done\n$", out)
    end)
  end)

  describe("steward_stream.lua (W8, a restarted ward bridged into one stream)", function()
    it("take(6) of the bridged stream reads 1 2 1 2 1 2, the ward dying at -1 each time", function()
      local out = run("steward_stream", "--virtual")
      assert.matches("took: 1 2 1 2 1 2\n$", out)
      local _, deaths = out:gsub("negative value: %-1", "")
      assert.is_true(deaths >= 2, out)
    end)
  end)

  describe("steward_tree.lua (O8, W5, a two-level tree)", function()
    it("the inner steward restarts the worker, gives up, and the outer one restarts it", function()
      local out = run("steward_tree", "--virtual")
      assert.are.same({ 2.5, 5, 7.5, 10 }, times_of(out, "^inner steward: missed worker"))
      assert.are.same({ 2.5, 5, 10 }, times_of(out, "^inner steward: restart worker"))
      assert.are.same({ 7.5 }, times_of(out, "^inner steward: gave_up worker"))
      assert.are.same({ 7.5 }, times_of(out, "^outer steward: failed inner steward"))
      assert.are.same({ 7.5 }, times_of(out, "^outer steward: restart inner steward"))
      assert.are.same({}, times_of(out, "^outer steward: missed"), "the inner steward's pulses keep the outer one content")
      assert.are.same({ 12 }, times_of(out, "main: tree stopped"))
    end)
  end)
end)
