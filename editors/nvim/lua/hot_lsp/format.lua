--- Formats hot-lsp's status for people: the statusline text and the :HotLsp status message.
--- Pure functions of the `hot-lsp/status` payload, shared with the VS Code extension's wording.

local M = {}

--- A duration in microseconds as a short string: "85 µs", "0.4 ms", "12 ms", "1.3 s".
---@param micros number
---@return string
function M.micros(micros)
  if type(micros) ~= 'number' or micros ~= micros or micros < 0 then
    return '? ms'
  elseif micros < 100 then
    return string.format('%d µs', math.floor(micros + 0.5))
  elseif micros < 10000 then
    return string.format('%.1f ms', micros / 1000)
  elseif micros < 1000000 then
    return string.format('%d ms', math.floor(micros / 1000 + 0.5))
  end
  return string.format('%.1f s', micros / 1000000)
end

local function plural(count, word)
  return string.format('%d %s%s', count, word, count == 1 and '' or 's')
end

--- "swapped 3 functions in 0.4 ms": the time is the swap phase, how long the program was stopped.
---@param swap table the `lastSwap` of a status
---@return string
function M.swap(swap)
  local swapped = type(swap.swapped) == 'table' and #swap.swapped or 0
  local added = type(swap.added) == 'table' and #swap.added or 0
  if swapped == 0 and added == 0 then
    return 'no changed functions'
  end
  local parts = {}
  if swapped > 0 then
    parts[#parts + 1] = 'swapped ' .. plural(swapped, 'function')
  end
  if added > 0 then
    parts[#parts + 1] = 'added ' .. plural(added, 'function')
  end
  local micros = type(swap.micros) == 'table' and swap.micros.swap or 0
  return table.concat(parts, ', ') .. ' in ' .. M.micros(micros)
end

local function present(value)
  return value ~= nil and value ~= vim.NIL
end

--- "running (pid 42)", "exited (code 1)", "failed: <message>".
---@param status table
---@return string
function M.state(status)
  local state = status.state
  if (state == 'running' or state == 'swapping') and present(status.pid) then
    return string.format('%s (pid %d)', state, status.pid)
  elseif state == 'exited' then
    if present(status.signal) then
      return string.format('exited (signal %d)', status.signal)
    elseif present(status.exitCode) then
      return string.format('exited (code %d)', status.exitCode)
    end
    return 'exited'
  elseif state == 'failed' and present(status.message) then
    return 'failed: ' .. status.message
  end
  return tostring(state)
end

--- The statusline text: "hot-lsp: running (pid 42) · swapped 1 function in 0.4 ms".
---@param status table?
---@return string
function M.statusline(status)
  if not status then
    return 'hot-lsp'
  end
  local state = status.state == 'failed' and 'failed' or M.state(status)
  local text = 'hot-lsp: ' .. state
  if present(status.lastSwap) then
    text = text .. ' · ' .. M.swap(status.lastSwap)
  end
  return text
end

--- The lines of :HotLsp status.
---@param status table
---@return string[]
function M.describe(status)
  local lines = { 'Program: ' .. M.state(status) }
  if present(status.message) and status.state ~= 'failed' then
    lines[#lines + 1] = 'Message: ' .. status.message
  end
  local swap = status.lastSwap
  if present(swap) then
    local file = type(swap.file) == 'string' and vim.fs.basename(vim.uri_to_fname(swap.file)) or '?'
    lines[#lines + 1] = string.format('Last swap #%s (%s): %s', tostring(swap.seq), file, M.swap(swap))
    local micros = type(swap.micros) == 'table' and swap.micros or {}
    lines[#lines + 1] = string.format(
      '  compile %s, link %s, swap %s',
      M.micros(micros.compile or 0),
      M.micros(micros.link or 0),
      M.micros(micros.swap or 0)
    )
    if type(swap.swapped) == 'table' and #swap.swapped > 0 then
      lines[#lines + 1] = '  swapped: ' .. table.concat(swap.swapped, ', ')
    end
    if type(swap.added) == 'table' and #swap.added > 0 then
      lines[#lines + 1] = '  added: ' .. table.concat(swap.added, ', ')
    end
  else
    lines[#lines + 1] = 'No swap yet: save a source file of the running program.'
  end
  lines[#lines + 1] = 'Workspace: ' .. tostring(status.workspace)
  return lines
end

return M
