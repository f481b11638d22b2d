-- replicated.lua: replicated requests (Concurrency in Go, "Replicated Requests").
--
-- The same request goes to 10 handlers at once, each with a random simulated load of 1 to
-- 6 s; the first answer wins and the other handlers are cancelled. conc.first does the
-- racing: it runs handler(rctx, i) in 10 tasks, returns the first success and cancels
-- rctx for the rest. Every handler prints how long it ran, so the program waits (a
-- waitgroup) until each cancelled one has had its say.
--
-- Time is scaled: a simulated second lasts `--scale` real seconds (default 0.01, so a run
-- takes a few hundredths of a second), and every time printed is in simulated seconds.
-- Timers fire on whole milliseconds, so at 0.01 a time is within about 0.1 simulated s
-- of the load (a smaller scale coarsens that; `--scale 1` runs in real time).
-- The loads come from a small seeded generator of our own, so `--seed N` gives the same
-- loads under every Lua. --virtual runs it on conc's virtual clock: it ends at once, and
-- every time printed is exact. Run it with `make demo`, or once conc is installed:
--   lua5.4 examples/replicated.lua [--scale 0.01] [--seed 1] [--virtual]
local conc = require "conc"

local options = dofile((arg[0]:match("^(.*[/\\])") or "") .. "options.lua")
local opts = options.parse("replicated.lua", {
  { "scale", 0.01, options.positive }, { "seed", 1 }, { "virtual", false },
})
local scale, seed, virtual = opts.scale, opts.seed, opts.virtual
conc.virtual_time(virtual)

-- Park and Miller's minimal standard generator: exact in doubles, so the same everywhere.
local state = seed % 2147483646 + 1
local function random()
  state = state * 16807 % 2147483647
  return state / 2147483647
end
for _ = 1, 3 do random() end -- small seeds start with small values: move past them

local N = 10
local loads = {}
for h = 1, N do loads[h] = 1 + 5 * random() end -- simulated seconds, in [1, 6)

conc.run(function()
  local wg = conc.waitgroup()
  wg:add(N)
  local answered, cancelled = false, 0

  -- One handler: it "works" for its load unless rctx is cancelled first.
  local function handler(rctx, h)
    local started = conc.now()
    local ok = conc.sleep(loads[h] * scale, rctx)
    local took = (conc.now() - started) / scale
    if not ok then
      cancelled = cancelled + 1
      print(("handler %2d cancelled after %.2f s (its load was %.2f s)"):format(h, took, loads[h]))
    elseif not answered then
      -- Tasks take turns, so the first handler to return is the first answer conc.first sees.
      answered = true
      print(("handler %2d answered in %.2f s"):format(h, took))
    else
      -- Possible only when two loads end in the same scheduler turn: its answer is dropped.
      print(("handler %2d answered in %.2f s, too late"):format(h, took))
    end
    wg:done()
    return h, took
  end

  local winner, took = conc.first(conc.background(), N, handler)
  wg:wait() -- every cancelled handler prints before the program ends
  print(("first answer: handler %d after %.2f s; %d handlers cancelled"):format(winner, took, cancelled))
end)
