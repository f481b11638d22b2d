-- errors.lua: error propagation, the book's program (Concurrency in Go, ch. 5).
--
-- Three layers run a job. The low-level module checks that the job's binary exists and
-- fails with a raw error, the string io.open returns. The intermediate module runs the job:
-- it wraps what fails below it into a well-formed error (errors.wrap, with a message for
-- the user), because its callers should not have to know about files. The top level logs
-- the full record of any error (one JSON line on stderr, the default sink) and shows the
-- user one line with the log id that finds that record.
--   lua5.4 examples/errors.lua          a known error: the user reads the intermediate
--                                       module's message, with the log id
--   lua5.4 examples/errors.lua --bug    the intermediate module forgets to wrap: the raw
--                                       error reaches the top, which calls it a bug
local conc = require "conc"
local errors = conc.errors

local forget_to_wrap = arg and arg[1] == "--bug"

-- The low-level module: a raw error, as the standard library gives it.
local function is_globally_exec(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  f:close()
  return true
end

-- The intermediate module: errors leave it well-formed.
local function run_job(id)
  local path = "/bad/job/binary"
  local ok, err = is_globally_exec(path)
  if not ok then
    if forget_to_wrap then return nil, err end
    return nil, errors.wrap(err, ("cannot run job %q"):format(id), {
      kind = "job",
      user = ("Job %s cannot run: its binaries are not available."):format(id),
      transient = false,
      details = { job = id, path = path },
    })
  end
  return true
end

-- The top level: log everything, show the user one line.
local function handle_error(err)
  io.stdout:write("[user] ", errors.report(err), "\n")
end

conc.run(function()
  local task = conc.go(function()
    local ok, err = run_job("1")
    if not ok then
      if errors.is_bug(err) then
        io.stdout:write("[top] an unwrapped error reached the top: a bug\n")
      else
        io.stdout:write("[top] well-formed error of kind ", errors.kind(err), "\n")
      end
      handle_error(err)
    end
  end)
  task:name("job runner")
  task:wait()
end)
