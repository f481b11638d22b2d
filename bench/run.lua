-- bench/run.lua: runs every peer on every workload, BENCH_REPS times each, and writes
-- bench/RESULTS.md (also printed). Called by bench/run.sh, from the repository root:
--
--   BENCH_GO_BIN=/path/to/concbench lua5.4 bench/run.lua
--
-- Environment:
--   BENCH_REPS       repetitions, each a separate process (default 5); cells are medians
--   BENCH_SCALE      multiplies every N (default 1; 0.01 for a smoke run)
--   BENCH_PEERS      comma list of peer ids to run (default all: conc54,concjit,pure54,
--                    purejit,tarantool,go)
--   BENCH_WORKLOADS  comma list (default W1,W2,W3,W4,W4mem,W5,X1,X2,X2ref,M1,M2,G1,R1,R2,
--                    R3,K1,P1,P2,P4,C1,C1L,E1,Floor)
--   BENCH_TIMEOUT    seconds allowed to one process (default 600)
--   BENCH_OUT        where to write the report (default bench/RESULTS.md)
--   BENCH_GO_BIN     the Go program built by run.sh
--   BENCH_CHAT_LOAD_BIN, BENCH_CHATGO_BIN  bench/chat_load and bench/chatgo, built by run.sh
--   BENCH_CHAT_JIT   1: also run C1 (chat) with the chat server under LuaJIT (off by
--                    default: about 13 s a repetition; the targets are for Lua 5.4)
--
-- Each workload script prints `RESULT <key> <number>`, `NOTE <text>` (a caveat that
-- marks its cell), `INFO <text>` (about the peer) or `NA <reason>` (not applicable).
-- A peer that is missing or fails gets `n/a (reason)` cells; the run goes on.
--
-- C1 (chat) and E1 (echo) are the network rows: C1 runs bench/chat_load against
-- examples/chat/server.lua (conc) and bench/chatgo (Go), E1 runs bench/conc_echo.lua and
-- `chatgo -w E1`; the Lua-only peers have no network library and skip them.
--
-- Floor (bench/floor.lua) is what the interpreter costs: it runs only under the two conc
-- peers' interpreters (it calls conc's C code) and has its own table; a Targets table
-- checks this run's medians against conc's performance targets.

local REPS = math.max(1, math.floor(tonumber(os.getenv("BENCH_REPS")) or 5))
local SCALE = tonumber(os.getenv("BENCH_SCALE")) or 1
local TIMEOUT = tonumber(os.getenv("BENCH_TIMEOUT")) or 600
local OUT = os.getenv("BENCH_OUT") or "bench/RESULTS.md"
local GO_BIN = os.getenv("BENCH_GO_BIN")
local CHAT_LOAD_BIN = os.getenv("BENCH_CHAT_LOAD_BIN")
local CHATGO_BIN = os.getenv("BENCH_CHATGO_BIN")
local CHAT_JIT = os.getenv("BENCH_CHAT_JIT") == "1"

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function exists(path) local f = io.open(path); if f then f:close() end; return f ~= nil end
local function capture(cmd)
  local p = io.popen(cmd .. " 2>/dev/null"); local s = p:read("*a"); p:close()
  return (s:gsub("%s+$", ""))
end
local function have(bin) return capture("command -v " .. bin) ~= "" end
local function list(env, default)
  local s, t = os.getenv(env) or default, {}
  for x in s:gmatch("[^,%s]+") do t[#t + 1] = x end
  return t
end

---------------------------------------------------------------------------- peers
-- C1: the load generator, given the server's command line ({port}: a free port); the
-- server gets the peer's environment. --rate 0 lifts the per-client rate limit (each
-- client sends 10 lines a second); everything else is the server's default.
-- C1L is the same at a tenth of the load (a line a second per client), which neither
-- server saturates: its latencies are those of a server that keeps up.
local function chat_cmd(server, w)
  if not (CHAT_LOAD_BIN and exists(CHAT_LOAD_BIN)) then
    return nil, "not built: go build of bench/chat_load failed or BENCH_CHAT_LOAD_BIN unset"
  end
  return sh_quote(CHAT_LOAD_BIN) .. (w == "C1L" and " -interval 1s" or "") .. " -server "
    .. sh_quote(server .. " --port {port} --rate 0")
end

local function conc_peer(id, label, lua, dir, interp)
  local so = "build/" .. dir .. "/release/conc/core.so"
  return {
    chat = function(w)
      if id == "concjit" and not CHAT_JIT then return nil, "not run: BENCH_CHAT_JIT=1 runs it" end
      if not exists("examples/chat/server.lua") then return nil, "examples/chat/server.lua is missing" end
      return chat_cmd(lua .. " examples/chat/server.lua", w)
    end,
    echo = function() return lua .. " bench/conc_echo.lua" end,
    id = id, label = label,
    env = { LUA_PATH = "lua/?.lua;lua/?/init.lua;;", LUA_CPATH = "build/" .. dir .. "/release/?.so;;",
            LUA_PATH_5_4 = "lua/?.lua;lua/?/init.lua;;", LUA_CPATH_5_4 = "build/" .. dir .. "/release/?.so;;" },
    cmd = lua .. " bench/conc_w.lua",
    floor = lua .. " bench/floor.lua", interp = interp,   -- the Floor workload, and its column
    missing = function()
      if not have(lua) then return lua .. " not installed" end
      if not exists(so) then return "not built: " .. so .. " is missing" end
      if not exists("lua/conc/init.lua") then return "not built: lua/conc/init.lua is missing" end
    end,
  }
end

local ALL_PEERS = {
  conc_peer("conc54", "conc 5.4", "lua5.4", "lua5.4", "Lua 5.4"),
  conc_peer("concjit", "conc LuaJIT", "luajit", "luajit", "LuaJIT"),
  { id = "pure54", label = "pure Lua 5.4", cmd = "lua5.4 bench/purelua.lua",
    missing = function() if not have("lua5.4") then return "lua5.4 not installed" end end },
  { id = "purejit", label = "pure LuaJIT", cmd = "luajit bench/purelua.lua",
    missing = function() if not have("luajit") then return "luajit not installed" end end },
  { id = "tarantool", label = "Tarantool", cmd = "tarantool bench/tarantool_w.lua",
    missing = function() if not have("tarantool") then return "tarantool not installed" end end },
  { id = "go", label = "Go", env = { GOMAXPROCS = "1" },
    cmd = GO_BIN and (sh_quote(GO_BIN) .. " -w") or "false",
    chat = function(w)
      if not (CHATGO_BIN and exists(CHATGO_BIN)) then return nil, "not built: go build of bench/chatgo failed" end
      return chat_cmd(sh_quote(CHATGO_BIN) .. " serve", w)
    end,
    echo = function()
      if not (CHATGO_BIN and exists(CHATGO_BIN)) then return nil, "not built: go build of bench/chatgo failed" end
      return sh_quote(CHATGO_BIN) .. " -w"
    end,
    missing = function()
      if not GO_BIN or not exists(GO_BIN) then return "not built: go build failed or BENCH_GO_BIN unset" end
    end },
}

local PEERS, wanted = {}, {}
for _, id in ipairs(list("BENCH_PEERS", "conc54,concjit,pure54,purejit,tarantool,go")) do wanted[id] = true end
for _, p in ipairs(ALL_PEERS) do if wanted[p.id] then PEERS[#PEERS + 1] = p end end
local GO
for _, p in ipairs(PEERS) do if p.id == "go" then GO = p end end

---------------------------------------------------------------------------- metrics
-- One table row per metric; a workload (one process) may yield several metrics.
local METRICS = {
  { w = "W1", key = "ns", label = "W1 ping-pong, 2 unbuffered chans (ns/round trip)" },
  { w = "W2", key = "ns", label = "W2 buffered cap 128, 1 producer (ns/item)" },
  { w = "W3", key = "ns", label = "W3 select over 4 chans, 4 producers (ns/select)" },
  { w = "W4", key = "ns", label = "W4 spawn-and-finish (ns/task)" },
  { w = "W4mem", key = "rss_bytes", label = "W4 100k parked tasks, RSS (bytes/task)" },
  { w = "W4mem", key = "heap_bytes", label = "W4 100k parked tasks, Lua/Go heap (bytes/task)" },
  { w = "W5", key = "overhead_ms", label = "W5 100k sleepers 0-100 ms, overhead (ms)" },
  { w = "W5", key = "late_ms", label = "W5 mean lateness of a wake-up (ms)" },
  { w = "W5", key = "early", label = "W5 early wake-ups (count)", no_ratio = true, int = true },
  { w = "X1", key = "ns", label = "X1 context create+cancel (ns/op)" },
  { w = "X2", key = "ns", label = "X2 select with a ctx case (ns/select)" },
  { w = "X2ref", key = "ns", label = "X2ref the same, a plain never-ready chan (ns/select)" },
  { w = "M1", key = "ns", label = "M1 semaphore acquire+release, uncontended (ns/op)" },
  { w = "M2", key = "ns", label = "M2 semaphore, 2 tasks contending (ns/op)" },
  { w = "G1", key = "ns", label = "G1 group go+wait of 1000 tasks (ns/task)" },
  { w = "R1", key = "ns", label = "R1 rate lim:allow(), bucket never empty (ns/call)" },
  { w = "R2", key = "ns", label = "R2 rate reserve()+cancel(), token given back (ns/pair)" },
  { w = "R3", key = "waits_per_s", label = "R3 rate wait, 100 tasks, 1e5/s, burst 1 (waits/s; **higher is better**)" },
  { w = "R3", key = "of_ideal", label = "R3 the same over the 1e5/s ideal (**higher is better**, ≤ 1)" },
  { w = "R3", key = "cpu_ns", label = "R3 CPU time per wait, whole process (ns)" },
  { w = "K1", key = "bytes", label = "K1 rate.keyed, 1e5 live keys, Lua/Go heap (bytes/key)" },
  { w = "P1", key = "ns", label = "P1 prime finder pipeline, 1 map worker (ns/number tested)" },
  { w = "P2", key = "ns", label = "P2 the same, 2 map workers (ns/number tested)" },
  { w = "P4", key = "ns", label = "P4 the same, 4 map workers (ns/number tested)" },
  { w = "C1", key = "msgs_per_s", label = "C1 chat, 1000 clients in 10 rooms, a line each every 100 ms: delivered (msgs/s; **higher is better**)" },
  { w = "C1", key = "p50_ms", label = "C1 chat delivery latency, p50 (ms)" },
  { w = "C1", key = "p99_ms", label = "C1 chat delivery latency, p99 (ms)" },
  { w = "C1", key = "of_offered", label = "C1 delivered / offered (**higher is better**, ≤ 1)" },
  { w = "C1", key = "disconnects", label = "C1 clients disconnected during the run (count)", no_ratio = true, int = true },
  { w = "C1", key = "server_cpu", label = "C1 server CPU time / wall time in the window (cores)" },
  { w = "C1L", key = "msgs_per_s", label = "C1L chat at a tenth of the load (a line a second per client): delivered (msgs/s; **higher is better**)" },
  { w = "C1L", key = "p50_ms", label = "C1L chat delivery latency, p50 (ms)" },
  { w = "C1L", key = "p99_ms", label = "C1L chat delivery latency, p99 (ms)" },
  { w = "C1L", key = "of_offered", label = "C1L delivered / offered (**higher is better**, ≤ 1)" },
  { w = "E1", key = "ns", label = "E1 echo, 64-byte ping-pong over loopback (ns/round trip)" },
}
-- The Floor workload's metrics, all ns; rows of their own table (see floor_table).
local FLOOR = {
  { w = "Floor", key = "switch_ns", label = "coroutine.resume + coroutine.yield (ns/pair)" },
  { w = "Floor", key = "conc_call_ns", label = "ch:len() on a conc channel, a trivial C call (ns/call)" },
  { w = "Floor", key = "conc_local_ns", label = "the same, called from a local: len(ch) (ns/call)" },
  { w = "Floor", key = "strlen_ns", label = "string.len(s), a builtin (ns/call)" },
  { w = "Floor", key = "rawlen_ns", label = "rawlen(t), a builtin (ns/call)" },
}
local WORKLOADS = list("BENCH_WORKLOADS", "W1,W2,W3,W4,W4mem,W5,X1,X2,X2ref,M1,M2,G1,R1,R2,R3,K1,P1,P2,P4,C1,C1L,E1,Floor")

---------------------------------------------------------------------------- running
local samples = {}   -- samples[peer][w][key] = { values }
local failed = {}    -- failed[peer][w] = reason
local notes = {}     -- notes[peer][w] = { text = true }
local infos = {}     -- infos[peer] = { ordered unique lines }
for _, p in ipairs(PEERS) do
  samples[p.id], failed[p.id], notes[p.id], infos[p.id] = {}, {}, {}, { seen = {} }
end

-- The command that runs workload w for peer p; nil (and why) when p does not run w.
local function script(p, w)
  if w == "Floor" then return p.floor end
  if w == "C1" or w == "C1L" or w == "E1" then
    local f = w == "E1" and p.echo or p.chat
    if not f then return nil, "no network library" end
    return f(w)
  end
  return p.cmd
end

local function run_one(p, w)
  local env = { "BENCH_SCALE=" .. sh_quote(SCALE) }
  for k, v in pairs(p.env or {}) do env[#env + 1] = k .. "=" .. sh_quote(v) end
  local errf = os.tmpname()
  local cmd = ("env %s timeout %d %s %s 2>%s"):format(table.concat(env, " "), TIMEOUT,
                                                      script(p, w), w, sh_quote(errf))
  local t0 = os.time()
  local pipe = io.popen(cmd)
  local out = pipe:read("*a")
  local ok, _, code = pipe:close()
  local f = io.open(errf); local err = f and f:read("*a") or ""; if f then f:close() end
  os.remove(errf)
  local res, na = {}, nil
  for line in out:gmatch("[^\n]+") do
    local k, v = line:match("^RESULT (%S+) (%S+)")
    if k then res[k] = tonumber(v) end
    local n = line:match("^NOTE (.*)")
    if n then notes[p.id][w] = notes[p.id][w] or {}; notes[p.id][w][n] = true end
    local i = line:match("^INFO (.*)")
    if i and not infos[p.id].seen[i] then infos[p.id].seen[i] = true; table.insert(infos[p.id], i) end
    na = na or line:match("^NA (.*)")
  end
  if na then return nil, na end
  if not ok then
    if code == 124 then return nil, ("timed out after %d s"):format(TIMEOUT) end
    local first = err:match("%S[^\n]*") or "(no stderr)"   -- the error message, not the traceback
    return nil, ("exit %s: %s"):format(tostring(code), first)
  end
  if next(res) == nil then return nil, "printed no RESULT" end
  return res, nil, os.time() - t0
end

local t_start = os.time()
for _, p in ipairs(PEERS) do
  local why = p.missing()
  if why then for _, w in ipairs(WORKLOADS) do failed[p.id][w] = why end end
  for _, w in ipairs(WORKLOADS) do
    local cmd, not_run = script(p, w)
    if not cmd and not_run and not failed[p.id][w] then failed[p.id][w] = not_run end
  end
end
-- Repetitions are the outer loop so that a noisy spell hits every peer alike.
for rep = 1, REPS do
  for _, w in ipairs(WORKLOADS) do
    for _, p in ipairs(PEERS) do
      if not failed[p.id][w] and script(p, w) then
        io.stderr:write(("[rep %d/%d] %-5s %-12s "):format(rep, REPS, w, p.label))
        io.stderr:flush()
        local res, why, secs = run_one(p, w)
        if res then
          local s = samples[p.id][w] or {}
          samples[p.id][w] = s
          for k, v in pairs(res) do s[k] = s[k] or {}; table.insert(s[k], v) end
          local parts = {}
          for k, v in pairs(res) do parts[#parts + 1] = ("%s=%.4g"):format(k, v) end
          table.sort(parts)
          io.stderr:write(table.concat(parts, " "), (" (%ds)\n"):format(secs))
        else
          failed[p.id][w] = why
          io.stderr:write("n/a: ", why, "\n")
        end
      end
    end
  end
end

---------------------------------------------------------------------------- report
local function median(t)
  if not t or #t == 0 then return nil end
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

local function fmt(v, int)
  if int then return v % 1 == 0 and ("%d"):format(v) or ("%.1f"):format(v) end
  local a = math.abs(v)
  if a >= 100 then return ("%.0f"):format(v)
  elseif a >= 10 then return ("%.1f"):format(v)
  else return ("%.2f"):format(v) end
end

local function value(pid, m)
  if failed[pid][m.w] then return nil, failed[pid][m.w] end
  local s = samples[pid][m.w]
  return median(s and s[m.key])
end

-- Footnotes: every NOTE a script printed, numbered, marking its cells.
local footnotes, fn_index = {}, {}
local function marks(pid, w)
  local ns, out = notes[pid][w], {}
  if not ns then return "" end
  local texts = {}
  for t in pairs(ns) do texts[#texts + 1] = t end
  table.sort(texts)
  for _, t in ipairs(texts) do
    local key = pid .. "\0" .. t
    if not fn_index[key] then
      footnotes[#footnotes + 1] = ("[%d] %s: %s"):format(#footnotes + 1, pid, t)
      fn_index[key] = #footnotes
    end
    out[#out + 1] = ("[%d]"):format(fn_index[key])
  end
  return " " .. table.concat(out)
end

-- An n/a cell shows the reason's head (up to the first colon); the whole reason, when
-- longer, is listed once below the table as N<k>.
local na_reasons, na_index = {}, {}
local function na_cell(why)
  why = why:gsub("[|\r\n]", " ")
  local head = why:match("^([^:]*):") or why
  if head == why and #why <= 40 then return "n/a (" .. why .. ")" end
  if not na_index[why] then
    na_reasons[#na_reasons + 1] = why
    na_index[why] = #na_reasons
  end
  return ("n/a (%s) N%d"):format(head, na_index[why])
end

-- The Go peer's P rows also measure the pipeline with GOMAXPROCS=2 (key ns_procs2, in the
-- same process after the GOMAXPROCS=1 run): one line below the table, not a peer.
local extra_notes = {}
do
  local parts = {}
  for _, w in ipairs { "P1", "P2", "P4" } do
    local s = GO and not failed.go[w] and samples.go[w]
    local v = s and median(s.ns_procs2)
    if v then parts[#parts + 1] = ("%s %s"):format(w, fmt(v)) end
  end
  if #parts > 0 then
    extra_notes[#extra_notes + 1] = "Go with GOMAXPROCS=2, the same pipeline run again in the same process "
      .. "(medians, ns/number tested; not a peer, since conc runs on one thread): " .. table.concat(parts, ", ")
  end
end

local function cell(pid, m)
  local v, why = value(pid, m)
  if v == nil then return why and na_cell(why) or "n/a" end
  return fmt(v, m.int) .. marks(pid, m.w)
end

local function ratio(a_pid, b_pid, m)
  if m.no_ratio then return "–" end
  local a, b = value(a_pid, m), value(b_pid, m)
  if not a or not b or b <= 0 or a < 0 then return "n/a" end
  return ("%.2f"):format(a / b)
end

local selected = {}
for _, w in ipairs(WORKLOADS) do selected[w] = true end
local ROWS, FLOOR_ROWS = {}, {}
for _, m in ipairs(METRICS) do if selected[m.w] then ROWS[#ROWS + 1] = m end end
for _, m in ipairs(FLOOR) do if selected[m.w] then FLOOR_ROWS[#FLOOR_ROWS + 1] = m end end

local function table_md(header, rowfn, rows)
  local lines = { "| " .. table.concat(header, " | ") .. " |" }
  local sep = {}
  for i = 1, #header do sep[i] = i == 1 and "---" or "---:" end
  lines[#lines + 1] = "|" .. table.concat(sep, "|") .. "|"
  for _, m in ipairs(rows or ROWS) do lines[#lines + 1] = "| " .. table.concat(rowfn(m), " | ") .. " |" end
  return table.concat(lines, "\n")
end

-- Main table: medians, then each peer over Go.
local header = { "workload (unit)" }
for _, p in ipairs(PEERS) do header[#header + 1] = p.label end
local others = {}
for _, p in ipairs(PEERS) do if p ~= GO then others[#others + 1] = p end end
if GO then for _, p in ipairs(others) do header[#header + 1] = p.label .. " / Go" end end
local main_table = table_md(header, function(m)
  local r = { m.label }
  for _, p in ipairs(PEERS) do r[#r + 1] = cell(p.id, m) end
  if GO then for _, p in ipairs(others) do r[#r + 1] = ratio(p.id, "go", m) end end
  return r
end)

-- Second table: conc against the Lua peers.
local pairs_wanted = {
  { "conc54", "pure54", "conc 5.4 / pure 5.4" }, { "concjit", "purejit", "conc LuaJIT / pure LuaJIT" },
  { "conc54", "tarantool", "conc 5.4 / Tarantool" }, { "concjit", "tarantool", "conc LuaJIT / Tarantool" },
}
local have_peer = {}
for _, p in ipairs(PEERS) do have_peer[p.id] = true end
local h2, cols2 = { "workload (unit)" }, {}
for _, pw in ipairs(pairs_wanted) do
  if have_peer[pw[1]] and have_peer[pw[2]] then h2[#h2 + 1] = pw[3]; cols2[#cols2 + 1] = pw end
end
local conc_table = #cols2 > 0 and table_md(h2, function(m)
  local r = { m.label }
  for _, pw in ipairs(cols2) do r[#r + 1] = ratio(pw[1], pw[2], m) end
  return r
end)

-- A median by peer id, workload and key; nil when the peer did not run or failed.
local function med(pid, w, key)
  if not samples[pid] or failed[pid][w] then return nil end
  local s = samples[pid][w]
  return median(s and s[key])
end
local function over(a, b) if a and b and b > 0 then return a / b end end

-- Floor table: what the interpreter costs, one column per interpreter, and the W1 floor
-- it implies (2 switch pairs + 4 conc C calls) beside W1 as measured and Go's W1.
local floor_peers = {}
for _, p in ipairs(PEERS) do if p.floor and selected.Floor then floor_peers[#floor_peers + 1] = p end end
local function w1_floor(pid)
  local sw, call = med(pid, "Floor", "switch_ns"), med(pid, "Floor", "conc_call_ns")
  return sw and call and 2 * sw + 4 * call
end
local floor_table
if #floor_peers > 0 then
  local rows = {}
  for _, m in ipairs(FLOOR_ROWS) do
    rows[#rows + 1] = { m.label, function(pid) return med(pid, "Floor", m.key) end }
  end
  local w1go = function() return med("go", "W1", "ns") end
  for _, r in ipairs {
    { "W1 floor = 2 pairs + 4 conc calls (ns/round trip)", w1_floor },
    { "W1 as measured, conc (ns/round trip)", function(pid) return med(pid, "W1", "ns") end },
    { "W1 Go (ns/round trip)", w1go },
    { "**W1 floor / Go** (target for conc 5.4: W1 / Go ≤ 1.1)",
      function(pid) local v = over(w1_floor(pid), w1go()); return v and ("%.2f"):format(v) end },
  } do rows[#rows + 1] = r end
  local h = { "what the interpreter costs" }
  for _, p in ipairs(floor_peers) do h[#h + 1] = p.interp end
  floor_table = table_md(h, function(r)
    local out = { r[1] }
    for _, p in ipairs(floor_peers) do
      local v = r[2](p.id)
      out[#out + 1] = type(v) == "number" and fmt(v) or v or "–"
    end
    return out
  end, rows)
end

-- Targets table: conc's performance targets, checked against this run's medians. A
-- ratio is judged as printed (2 decimals); W5's early wake-ups count in any repetition.
local function max_of(pid, w, key)
  local s = samples[pid] and not failed[pid][w] and samples[pid][w]
  if not (s and s[key] and #s[key] > 0) then return nil end
  return math.max(table.unpack(s[key]))
end
local function rounded(v) return v and tonumber(("%.2f"):format(v)) end
local function verdict(ok) if ok == nil then return "n/a" end; return ok and "met" or "missed" end
-- Peer a over peer b on workload w (b's workload is wb when given); keys "ns".
local function ratio_target(name, a, b, w, limit, wb)
  local v = rounded(over(med(a, w, "ns"), med(b, wb or w, "ns")))
  return { name, v and ("%.2f"):format(v) or "n/a", ("≤ %.1f"):format(limit), verdict(v and v <= limit) }
end
local function targets_table()
  local heap, rss = med("conc54", "W4mem", "heap_bytes"), med("conc54", "W4mem", "rss_bytes")
  local c5, g5 = med("conc54", "W5", "overhead_ms"), med("go", "W5", "overhead_ms")
  local r5, early = rounded(over(c5, g5)), max_of("conc54", "W5", "early")
  local r1_faster = rounded(over(med("pure54", "R1", "ns"), med("conc54", "R1", "ns")))
  local k1 = med("conc54", "K1", "bytes")
  local c1 = rounded(over(med("conc54", "C1", "msgs_per_s"), med("go", "C1", "msgs_per_s")))
  local c1p99 = rounded(over(med("conc54", "C1", "p99_ms"), med("go", "C1", "p99_ms")))
  local rows = {
    ratio_target("W1 round trip, conc 5.4 / Go", "conc54", "go", "W1", 1.1),
    ratio_target("W2 per item, conc 5.4 / Go", "conc54", "go", "W2", 1.6),
    ratio_target("W3 per select, conc 5.4 / Go", "conc54", "go", "W3", 1.2),
    ratio_target("W4 spawn-and-finish, conc 5.4 / Go", "conc54", "go", "W4", 1.5),
    { "W4 parked task, conc 5.4 Lua heap (bytes/task)",
      heap and ("%s (RSS %s)"):format(fmt(heap), rss and fmt(rss) or "n/a") or "n/a", "≤ 1300",
      verdict(heap and heap <= 1300) },
    { "W5 overhead, conc 5.4 / Go; early wake-ups (most in one run)",
      r5 and early and ("%.2f (%s / %s ms); %d early"):format(r5, fmt(c5), fmt(g5), early) or "n/a",
      "≤ 1.0; 0 early", verdict(r5 and early and r5 <= 1 and early == 0) },
    ratio_target("X1 context create+cancel, conc 5.4 / Go", "conc54", "go", "X1", 2),
    ratio_target("X2 select with a ctx case / X2ref plain chan, conc 5.4", "conc54", "conc54", "X2", 1.2,
                 "X2ref"),
    ratio_target("M1 semaphore acquire+release, conc 5.4 / Go", "conc54", "go", "M1", 2),
    ratio_target("W1 round trip, conc LuaJIT / pure LuaJIT", "concjit", "purejit", "W1", 1),
    ratio_target("W3 per select, conc LuaJIT / pure LuaJIT", "concjit", "purejit", "W3", 1),
    ratio_target("W4 spawn-and-finish, conc LuaJIT / pure LuaJIT", "concjit", "purejit", "W4", 1),
    ratio_target("R1 rate allow(), conc 5.4 / Go", "conc54", "go", "R1", 1.5),
    { "R1 rate allow(), pure Lua 5.4 bucket / conc 5.4 (times faster)",
      r1_faster and ("%.2f"):format(r1_faster) or "n/a", "≥ 3.0", verdict(r1_faster and r1_faster >= 3) },
    { "K1 rate.keyed with 1e5 live keys, conc 5.4 Lua heap (bytes/key)",
      k1 and fmt(k1) or "n/a", "≤ 200", verdict(k1 and k1 <= 200) },
    { "C1 chat throughput (delivered msgs/s), conc 5.4 / Go",
      c1 and ("%.2f (%s / %s)"):format(c1, fmt(med("conc54", "C1", "msgs_per_s")), fmt(med("go", "C1", "msgs_per_s")))
        or "n/a", "≥ 0.6", verdict(c1 and c1 >= 0.6) },
    { "C1 chat p99 delivery latency, conc 5.4 / Go",
      c1p99 and ("%.2f (%s / %s ms)"):format(c1p99, fmt(med("conc54", "C1", "p99_ms")), fmt(med("go", "C1", "p99_ms")))
        or "n/a", "≤ 2.0", verdict(c1p99 and c1p99 <= 2) },
    ratio_target("E1 echo round trip (64 bytes, loopback), conc 5.4 / Go", "conc54", "go", "E1", 1.3),
  }
  return table_md({ "goal", "measured", "target", "result" }, function(r) return r end, rows)
end
local targets = targets_table()

local function raw_lines()
  local out, rows = {}, {}
  for _, m in ipairs(ROWS) do rows[#rows + 1] = m end
  for _, m in ipairs(FLOOR_ROWS) do rows[#rows + 1] = m end
  for _, m in ipairs(rows) do
    for _, p in ipairs(PEERS) do
      local s = samples[p.id][m.w]
      if s and s[m.key] and not failed[p.id][m.w] then
        local vals = {}
        for i, v in ipairs(s[m.key]) do vals[i] = fmt(v, m.int) end
        out[#out + 1] = ("- %s, %s: %s"):format(m.label, p.label, table.concat(vals, ", "))
      end
    end
  end
  return table.concat(out, "\n")
end

local function machine()
  local cpu = capture("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"):gsub("^%s+", "")
  return ("%s, %s cores, %s"):format(cpu ~= "" and cpu or "unknown CPU", capture("nproc"), capture("uname -srm"))
end

local versions = {
  { "lua5.4", "lua5.4 -v" }, { "luajit", "luajit -v" }, { "tarantool", "tarantool --version | head -1" },
  { "go", "go version" },
  { "golang.org/x/sync", "dpkg-query -W -f='${Version}' golang-golang-x-sync-dev" },
  { "golang.org/x/time", "dpkg-query -W -f='${Version}' golang-golang-x-time-dev" },
}

local doc = {}
local function add(s) doc[#doc + 1] = s end
add("# conc benchmarks\n")
add(("Generated by `make bench` (bench/run.sh) on %s, in %d s.  "):format(os.date("!%Y-%m-%d %H:%M UTC"), os.time() - t_start))
local rev = capture("git rev-parse --short HEAD")
local dirty = capture("git status --porcelain -- csrc lua bench") ~= ""
add(("Tree: %s%s. BENCH_REPS=%d, BENCH_SCALE=%s%s. Machine: %s.\n"):format(
    rev ~= "" and rev or "no commit yet", dirty and " with uncommitted changes" or "", REPS, tostring(SCALE),
    SCALE ~= 1 and " (**smoke run: N scaled down, numbers not comparable to full runs**)" or "", machine()))
add("Each cell is the median of BENCH_REPS runs, each run a separate process; repetitions are the")
add("outer loop, so every peer meets the same noise. Ratios are peer / Go from this same run")
add("(below 1: faster, or smaller, than Go). Lower is better everywhere but in the rows marked")
add("**higher is better** (R3's throughput).\n")
add(main_table .. "\n")
if conc_table then add("conc against the other Lua peers (same run):\n"); add(conc_table .. "\n") end
if #footnotes > 0 or #na_reasons > 0 or #extra_notes > 0 then
  add("Cell notes:\n")
  for _, f in ipairs(footnotes) do add("- " .. f) end
  for i, r in ipairs(na_reasons) do add(("- N%d: %s"):format(i, r)) end
  for _, e in ipairs(extra_notes) do add("- " .. e) end
  add("")
end
add("## Targets\n")
add("conc's performance targets, checked against the medians above (same run):\n")
add(targets .. "\n")
if floor_table then
  add("## What the interpreter costs here\n")
  add("bench/floor.lua, same run, medians. A W1 round trip in conc takes 2 coroutine switch")
  add("pairs and 4 calls into conc's C code; their cost here, beside Go's W1, shows whether")
  add("W1 ≤ 1.1 x Go is within reach on this machine. It is an estimate, a little high: conc")
  add("resumes tasks from C and yields inside its own C calls, so it does not pay the two")
  add("builtin calls (coroutine.resume, coroutine.yield) that each measured pair includes.\n")
  add(floor_table .. "\n")
end
add([[## What is measured

Same definitions in every peer (bench/conc_w.lua, bench/purelua.lua, bench/tarantool_w.lua,
bench/go/main.go); N below is for BENCH_SCALE=1.

- **W1**: two unbuffered channels; a task echoes each value from `ping` to `pong`; the main
  task does N = 1e6 round trips. Time / N.
- **W2**: one producer task sends N = 1e7 integers into a channel of capacity 128; the main
  task receives them. Time / N.
- **W3**: four unbuffered channels, each fed by its own producer task (N/4 values each); the
  main task does N = 1e6 selects receiving from any of the four. Time / N. Tarantool has no
  select; its cell is an emulation (see its note).
- **W4 spawn**: the main task spawns N = 1e6 tasks; each decrements a counter and the last
  one sends on a channel of capacity 1 that the main task waits on. Time from the first spawn
  until that receive, / N. conc, pure Lua and Go only schedule the task at spawn; Tarantool's
  idiomatic `fiber.create` runs it at once, so its fibers are recycled as they go.
- **W4 parked**: 100k tasks each block receiving on one shared channel (a counter and a
  capacity-1 channel tell the main task that all have parked). Bytes per task between a
  baseline and that point, both after full collections: **RSS** is the process's VmRSS
  (/proc/self/status), which sees everything (Lua heap, C mallocs, fiber stacks,
  goroutine stacks); **heap** is `collectgarbage("count")` for Lua peers (Tarantool: only
  its Lua side, not the fiber's C struct and stack) and HeapInuse+StackInuse from
  runtime.MemStats for Go.
- **W5**: 100k tasks each sleep a duration uniform in [0, 100] ms, drawn from the same
  Park-Miller minstd sequence (seed 42) in every peer, so all sleep the same list.
  **overhead** = wall time from before the first spawn until the last task woke (the main
  task is signalled by the last one) minus the longest requested sleep (99.99 ms at full
  N); it includes spawning. **early** counts tasks whose sleep, measured around the call
  with the peer's monotonic clock (conc.now, luasystem monotime, Tarantool clock.monotonic,
  Go time.Since), was shorter than requested; **lateness** is the mean over tasks of
  (measured sleep - requested sleep): timer resolution plus the time a due task waits
  behind other runnable tasks (at full N, mostly the 100k first runs that start the sleeps).
- **Floor** (bench/floor.lua, run by lua5.4 and luajit with conc loaded): ns per
  `coroutine.resume` of a coroutine that at once yields (N = 5e6), and ns per call of
  `ch:len()` on a conc channel, of the same C function from a local (`len(ch)`), of
  `string.len(s)` and of `rawlen(t)` (N = 2e7 each; LuaJIT 2.1
  has no rawlen, and compiles string.len inline, so its string.len is no C call). Each
  includes the step of its for loop.
- **X1 context**: a long-lived cancellable parent (`conc.with_cancel(conc.background())`,
  Go `context.WithCancel(context.Background())`); N = 1e6 times, create a child of it with
  `with_cancel` and cancel the child at once. Time / N.
- **X2 select with a ctx case**: a producer task sends N = 1e6 integers on an unbuffered
  channel; the main task receives each with `conc.select(ctx:done(), ch)` (Go: `select`
  on `<-ctx.Done()` and `<-ch`), ctx a live `with_cancel` context whose `done()` is called
  each time round, as Go code calls `ctx.Done()` in its loop. Time / N. **X2ref** is the
  same with an ordinary channel that is never ready in place of `ctx:done()`; X2 / X2ref,
  both conc 5.4 from this run, is what a ctx case costs over a plain one.
- **M1 semaphore, uncontended**: a semaphore of weight 1, N = 1e6 times `s:acquire()`
  then `s:release()` (Go: golang.org/x/sync/semaphore `Weighted`, `Acquire(ctx, 1)` with
  `context.Background()`, `Release(1)`). Time / N.
- **M2 semaphore, 2 tasks contending**: a semaphore of weight 1 and two tasks; each does
  N/2 times acquire, `conc.yield()` (Go: `runtime.Gosched()`) while holding it, release, so
  every acquire after the first finds the other task holding it and queues. Time from
  the first spawn until both are done (they signal on a channel of capacity 2), / N
  (N = 1e6 acquire+release pairs in all).
- **G1 group**: `conc.group()`, 1000 times `g:go(fn)` with `fn` a function that returns
  nothing, then `g:wait()`; repeated N/1000 times (N = 1e6 tasks). Go: a zero
  `errgroup.Group` (conc.group() without a ctx makes no gctx either), `g.Go` of a func
  returning nil, `g.Wait()`. Time / N.
- X1, X2, X2ref, M1, M2 and G1 are n/a for the pure-Lua scheduler and Tarantool, which have
  no contexts, semaphore or group.
- **R1 allow**: `lim:allow()` N = 1e7 times on `rate.limiter(1e12, 1e9)` (Go:
  `rate.NewLimiter(1e12, 1e9)`, `Allow()`): a bucket so large and so fast to refill that it
  never empties, yet every call reads the clock and goes through the refill arithmetic
  (`rate.inf` would skip it in every peer). Time / N.
- **R2 reserve+cancel**: a limiter of 10/s, burst 1, whose token is taken first; N = 1e6
  times `r = lim:reserve()` then `r:cancel()` (Go: `Reserve()`, `Cancel()`). Each
  reservation is booked about 0.1 s ahead and its cancel gives the token back, the whole
  restore path (a reservation due at once would make cancel a no-op). Time / N.
- **R3 wait throughput**: 100 tasks (goroutines) share a limiter of 1e5/s, burst 1, and call
  `lim:wait()` (Go: `Wait(context.Background())`) until N = 2e5 waits in all have returned.
  **waits/s** = N / the wall time from the first spawn until the last wait returned; the
  next row is that over 1e5/s; **CPU time** is the process's user+system time (os.clock,
  Go getrusage) / N.
- **K1 keyed**: `rate.keyed(0.01, 10)` and `k:allow("client-" .. i)` for i = 1..1e5, each key
  once, so 1e5 limiters are live (at 0.01/s no bucket refills during the run, so none is
  dropped: checked with `k:len()`). Bytes per key between before and after, both after full
  collections: `collectgarbage("count")` for Lua peers (the pure-Lua peer: a plain table of
  its buckets), HeapAlloc for Go (a `map[string]*rate.Limiter` filled on first use). The key
  strings count in every peer.
- R1, R2, R3 and K1 are n/a for Tarantool (no rate limiter; the pure LuaJIT column is what
  it would run). The pure-Lua peer's token bucket is golang.org/x/time/rate's Limiter
  transcribed into plain Lua (bench/purelua.lua), on luasystem's monotime, and its wait
  sleeps on the pure-Lua scheduler's timers.
- **P1, P2, P4 prime finder**: the fan-out/fan-in pipeline of Concurrency in Go ch. 4 with
  1, 2 and 4 map workers. `conc.repeat_fn` draws integers in [1, 5e7) from Park-Miller
  minstd (seed 42, as W5), `conc.take` passes the first N = 1e5 of them, and
  `conc.map(ctx, ch, fn, {workers = W, unordered = true})` (unordered, as the book's fan-in)
  tests each with a deliberately naive trial division by every odd number up to sqrt(n)
  (about 170 divisions per number on average) and sends on the number if it is prime, else
  false; the main task counts the primes until the output closes. Every peer and every W
  tests the same 1e5 numbers, which hold 5955 primes (checked at full N). Go
  (bench/go/pipeline.go): the book's repeatFn and take on `chan int`, W goroutines reading
  the one channel and sending on one shared channel that a WaitGroup closes, as conc.map
  does (the book's fanIn, a forwarding goroutine per finder, would add a hop conc does not
  have). Time from building the pipeline until its output closed / N. Go's cells are
  GOMAXPROCS=1 like the others; the same process then runs the pipeline again with
  GOMAXPROCS=2, listed under the table's notes. n/a for the pure-Lua scheduler and
  Tarantool (no pipeline stages or contexts).
- **C1 chat** (bench/chat_load, a Go program, the same for both servers): the conc server is
  `examples/chat/server.lua` itself, the Go one `bench/chatgo` (a goroutine per client
  reading lines, a writer goroutine per client draining a bounded channel of the same
  capacity, 256 lines, into one write per batch, rooms in maps under a RWMutex; the same
  protocol, bench/chat_load/PROTOCOL.md, and the same answers line for line). Each runs
  as its own process with its defaults but `--rate 0` (no per-client rate limit); Go with
  GOMAXPROCS=1, and the load generator is one epoll loop on one thread, so each has a core
  of this machine. 1,000 clients connect over 127.0.0.1 (10 at a time), and each `/join`s
  one of 10 rooms (100 members); then each sends a line `m <ns> xxx...` (48 characters) every 100 ms,
  staggered over the 100 ms, so 10,000 lines a second go in and, each to the 99 other
  members of its room, about 990,000 deliveries a second are offered. `<ns>` is the send
  time on the generator's monotonic clock, and the receiving client takes the **delivery
  latency** from it. After a 2 s warm-up, a window of 8 s counts the **delivered** messages
  (received in the window, msgs/s) and their latencies (p50, p99, from a log-linear
  histogram, 3% buckets); **delivered / offered** is that over what the lines sent in the
  window should produce (sent x 99); **disconnected** counts clients whose connection
  ended before the window's end (a server disconnects a client whose queue is full:
  "too slow"); **server CPU** is the server process's user+system time over the window's
  wall time (1 = one core busy). Then the generator sends SIGTERM and the server shuts
  down. When a server cannot keep up, lines wait in the kernel's socket buffers or its
  queues, and latency grows with the time the load has run: compare latencies only at
  the same window. conc LuaJIT is run only with BENCH_CHAT_JIT=1.
- **C1L** is C1 at a tenth of the load: a line a second per client, about 99,000
  deliveries a second offered, which both servers can carry; its latencies are those of
  a server that keeps up (no targets: context for C1's).
- **E1 echo**: one process (bench/conc_echo.lua; Go: `chatgo -w E1`, GOMAXPROCS=1), a task
  (goroutine) that accepts one connection on 127.0.0.1 and writes back each chunk it
  reads, and the main task that N = 5e4 times writes 64 bytes and reads the 64 back
  (`read_exactly`; Go `io.ReadFull`), after 1000 unmeasured round trips. Time / N.
- C1 and E1 are n/a for the pure-Lua scheduler and Tarantool (no network library here).

Go runs with GOMAXPROCS=1; golang.org/x/sync (M1, M2, G1) is Debian's
golang-golang-x-sync-dev, and golang.org/x/time (R1, R2, R3, K1) is Debian's
golang-golang-x-time-dev, both built in by bench/run.sh without any download (without them,
those cells read n/a). The pure-Lua peer is a small scheduler in plain Lua
(bench/purelua.lua: ring-buffer channels, FIFO wait queues, run queue, select with uniform
random choice, binary-heap timers); plain Lua has no monotonic clock and cannot sleep, so it
takes `system.monotime`/`system.sleep` from luasystem (Debian lua-system) and otherwise says so
and reports W5 as n/a.
]])
add("## Peers\n")
for _, v in ipairs(versions) do
  local s = capture(v[2])
  if s ~= "" then add(("- %s: %s"):format(v[1], s:match("^[^\n]*"))) end
end
for _, p in ipairs(PEERS) do
  if #infos[p.id] > 0 then add(("- %s: %s"):format(p.label, table.concat(infos[p.id], "; "))) end
end
-- The maintainers' reading of the numbers (bench/NOTES.md, written by hand) comes with every
-- report, so the table and its interpretation travel together.
local nf = io.open("bench/NOTES.md")
if nf then add("\n" .. nf:read("*a")); nf:close() end
add("\n## Raw samples (one per process, in run order)\n")
add(raw_lines())
add("")
local text = table.concat(doc, "\n")

local f = assert(io.open(OUT, "w"))
f:write(text)
f:close()

print(main_table)
if conc_table then print(); print(conc_table) end
if #footnotes > 0 or #na_reasons > 0 or #extra_notes > 0 then
  print()
  for _, fnote in ipairs(footnotes) do print(fnote) end
  for i, r in ipairs(na_reasons) do print(("N%d: %s"):format(i, r)) end
  for _, e in ipairs(extra_notes) do print(e) end
end
print("\nTargets:\n" .. targets)
if floor_table then print("\nWhat the interpreter costs here:\n" .. floor_table) end
print(("\nwritten to %s (BENCH_REPS=%d, BENCH_SCALE=%s)"):format(OUT, REPS, tostring(SCALE)))
