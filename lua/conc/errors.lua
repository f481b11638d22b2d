--- conc.errors: the errors conc hands to users.
-- This first version holds what the runtime needs: the error a failed task becomes, and
-- the report of an error nobody waits for. The full model (errors.new, wrap, is, report to
-- a sink) grows here.
local M = {}

local Error = {}
Error.__index = Error
Error.__name = "conc.error"

function Error:__tostring()
  local parts = { tostring(self.message) }
  if self.task then
    parts[#parts + 1] = ("in %s"):format(self.task.name and ("task#%d (%s)"):format(self.task.id, self.task.name)
      or ("task#%d"):format(self.task.id))
    if self.spawned_at then parts[#parts] = parts[#parts] .. " started at " .. self.spawned_at end
  end
  if self.stack then parts[#parts + 1] = self.stack end
  return table.concat(parts, "\n")
end

--- errors.new(msg [, fields]): a well-formed error with message msg; fields (kind, user,
-- transient, details) are copied onto it.
function M.new(msg, fields)
  local err = { message = msg }
  for k, v in pairs(fields or {}) do err[k] = v end
  return setmetatable(err, Error)
end

--- Whether v is a conc error.
function M.is_error(v)
  return getmetatable(v) == Error
end

--- The conc error for a value raised in a task: a raised conc error is kept (and told
-- which task it failed), anything else becomes a bug whose cause is the raw value.
-- `task` is the task handle (nil at the top level), `site` where conc.go was called and
-- `stack` the traceback of the raise.
function M.raised(raw, task, site, stack)
  local err = raw
  if getmetatable(raw) ~= Error then
    err = setmetatable({
      message = type(raw) == "string" and raw or tostring(raw),
      cause = raw,
      bug = true,
    }, Error)
  end
  if err.task == nil and task ~= nil then
    err.task = { id = task:id(), name = task:name() }
    err.spawned_at = site
    err.stack = stack
  end
  return err
end

--- The same for a task that failed: `co` is its coroutine, which keeps the traceback.
function M.from_task(raw, task, co, site)
  return M.raised(raw, task, site, debug.traceback(co))
end

--- errors.join(...): one error that holds the non-nil errors given (its `errors` list), its
-- message theirs one per line, as Go's errors.Join; nil when none is given.
function M.join(...)
  local list, lines = {}, {}
  for i = 1, select("#", ...) do
    local e = select(i, ...)
    if e ~= nil then
      list[#list + 1] = e
      lines[#lines + 1] = getmetatable(e) == Error and tostring(e.message) or tostring(e)
    end
  end
  if #list == 0 then return nil end
  return setmetatable({ message = table.concat(lines, "\n"), kind = "joined", errors = list }, Error)
end

--- The errors of a context that ended (ctx:err()): cancelled, or its deadline passed.
M.canceled = setmetatable({ message = "context canceled", kind = "canceled" }, Error)
M.deadline_exceeded = setmetatable({
  message = "context deadline exceeded", kind = "deadline_exceeded", transient = true,
}, Error)

--- Writes an error nobody waits for to stderr, at once.
function M.report(err)
  io.stderr:write("conc: unhandled error: ", tostring(err), "\n")
end

return M
