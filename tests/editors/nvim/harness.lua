-- A small test harness for headless Neovim: named steps, waits with deadlines (vim.wait keeps
-- the event loop and so the LSP client running), fixture workspaces, and a TAP-like report.

local H = {}

H.repo = assert(os.getenv('HOT_LSP_REPO'))
H.make_workspace = H.repo .. '/tests/editors/fixture/make-workspace.sh'
--- Generous: CI is a busy 2-core machine.
H.startup_timeout = 60000
H.swap_timeout = 90000

--- Every vim.notify message, newest last.
H.messages = {}
local original_notify = vim.notify
vim.notify = function(message, level, opts)
  H.messages[#H.messages + 1] = { message = message, level = level }
  io.stderr:write('[notify] ' .. tostring(message) .. '\n')
  return original_notify(message, level, opts)
end

local results = { passed = 0, failed = 0 }

local function out(line)
  io.stdout:write(line .. '\n')
  io.stdout:flush()
end

--- Runs one named step; a failure is recorded and later steps of the same file are skipped
--- (they depend on the earlier ones).
local skipping = false
function H.step(name, fn)
  if skipping then
    results.failed = results.failed + 1
    out('not ok - ' .. name .. ' # skipped: an earlier step failed')
    return
  end
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    results.passed = results.passed + 1
    out('ok - ' .. name)
  else
    results.failed = results.failed + 1
    skipping = true
    out('not ok - ' .. name)
    for line in tostring(err):gmatch('[^\n]+') do
      out('#   ' .. line)
    end
    out('#   recent messages:')
    for index = math.max(1, #H.messages - 5), #H.messages do
      out('#     ' .. tostring(H.messages[index].message):gsub('\n', ' | '))
    end
  end
end

--- Waits until fn() returns a truthy value, or fails with the description (and details()).
function H.wait(description, timeout, fn, details)
  local value
  local ok = vim.wait(timeout, function()
    value = fn()
    return value
  end, 50)
  if not ok then
    error(string.format('timed out after %d ms waiting for %s%s', timeout, description, details and ('\n' .. details()) or ''), 2)
  end
  return value
end

--- Runs every callback already scheduled (vim.schedule is FIFO) before returning.
function H.drain_scheduled()
  local done = false
  vim.schedule(function()
    done = true
  end)
  vim.wait(5000, function()
    return done
  end, 10)
end

function H.eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(string.format('%s: expected %s, got %s', what or 'value', vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

function H.truthy(value, what)
  if not value then
    error(what or 'expected a truthy value', 2)
  end
  return value
end

--- Temporary directories made by the test, removed by H.finish().
local temporary_directories = {}

--- A fresh temporary directory (real path).
function H.tempdir(prefix)
  local base = vim.uv.os_tmpdir() .. '/' .. prefix .. 'XXXXXX'
  local dir = vim.uv.fs_realpath(assert(vim.uv.fs_mkdtemp(base)))
  temporary_directories[#temporary_directories + 1] = dir
  return dir
end

--- Creates the fixture workspace (tests/editors/fixture/make-workspace.sh) and returns its dir.
function H.workspace(options)
  options = options or {}
  local dir = H.tempdir('hot-lsp-nvim-')
  local command = { 'sh', H.make_workspace, dir, '--launch', options.launch or 'auto' }
  if options.toml == false then
    command[#command + 1] = '--no-toml'
  end
  local result = vim.system(command, { text = true }):wait()
  if result.code ~= 0 then
    error('make-workspace.sh failed: ' .. tostring(result.stderr))
  end
  return dir
end

--- Marks a file as trusted in Neovim's trust database (XDG_STATE_HOME points to a temp dir).
--- vim.secure.trust() allows only a buffer, not a path, for the 'allow' action.
function H.trust(path)
  vim.cmd.edit(vim.fn.fnameescape(path))
  local buf = vim.api.nvim_get_current_buf()
  local ok, message = vim.secure.trust({ action = 'allow', bufnr = buf })
  assert(ok, message)
  vim.cmd.bwipeout(buf)
end

function H.hot_lsp_clients(bufnr)
  return vim.lsp.get_clients({ name = 'hot_lsp', bufnr = bufnr })
end

--- The text of the program-output buffer.
function H.output_text()
  local buf = vim.fn.bufnr('hot-lsp://output')
  if buf == -1 then
    return ''
  end
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n')
end

--- Waits until the output buffer, from character `from` on, matches a Lua pattern.
function H.wait_output(pattern, timeout, from)
  return H.wait('program output matching ' .. pattern, timeout, function()
    return H.output_text():sub((from or 0) + 1):match(pattern)
  end, function()
    return 'output so far (tail):\n' .. H.output_text():sub(-600)
  end)
end

--- Replaces the `return N;` line of current_value() in a buffer; returns its 0-based line.
function H.set_return(bufnr, statement)
  local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  for index, line in ipairs(lines) do
    if line:match('^%s*return ') and not line:match('return 0;') then
      vim.api.nvim_buf_set_lines(bufnr, index - 1, index, false, { '    ' .. statement })
      return index - 1
    end
  end
  error('no return line in current_value()')
end

--- Stops every LSP client and waits for them to go away.
function H.stop_clients()
  local clients = vim.lsp.get_clients()
  for _, client in ipairs(clients) do
    client:stop()
  end
  vim.wait(20000, function()
    return #vim.lsp.get_clients() == 0
  end, 50)
end

function H.process_alive(pid)
  return vim.uv.kill(pid, 0) == 0
end

--- Prints the totals and exits Neovim with 0 only if every step passed.
local finish_hooks = {}

--- Registers cleanup to run at the end of the file, whether its steps passed or not.
function H.on_finish(fn)
  finish_hooks[#finish_hooks + 1] = fn
end

function H.finish()
  H.stop_clients()
  for _, hook in ipairs(finish_hooks) do
    pcall(hook)
  end
  for _, dir in ipairs(temporary_directories) do
    pcall(vim.fs.rm, dir, { recursive = true, force = true })
  end
  out(string.format('%d passed, %d failed', results.passed, results.failed))
  if results.failed > 0 then
    vim.cmd('cquit 1')
  else
    vim.cmd('qall!')
  end
end

--- Runs a test file (tests/editors/nvim/test_*.lua) and exits.
function H.run(file)
  local ok, err = xpcall(function()
    dofile(file)
  end, debug.traceback)
  if not ok then
    results.failed = results.failed + 1
    out('not ok - ' .. file .. ' raised an error')
    for line in tostring(err):gmatch('[^\n]+') do
      out('#   ' .. line)
    end
  end
  H.finish()
end

return H
