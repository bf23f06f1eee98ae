-- Pure checks of the statusline and status formatting (no server needed).
local H = require('harness')
local format = require('hot_lsp.format')

local swap = {
  seq = 3,
  file = 'file:///w/src/main.c',
  swapped = { 'update', 'render', 'tick' },
  added = {},
  skipped = 4,
  micros = { compile = 48200, link = 900, swap = 412 },
}

H.step('durations', function()
  H.eq('85 µs', format.micros(85))
  H.eq('0.4 ms', format.micros(412))
  H.eq('48 ms', format.micros(48200))
  H.eq('1.3 s', format.micros(1340000))
end)

H.step('swap summary', function()
  H.eq('swapped 3 functions in 0.4 ms', format.swap(swap))
  H.eq('swapped 1 function, added 2 functions in 0.4 ms', format.swap(vim.tbl_extend('force', swap, { swapped = { 'f' }, added = { 'g', 'h' } })))
  H.eq('no changed functions', format.swap(vim.tbl_extend('force', swap, { swapped = {} })))
end)

H.step('statusline and states (JSON null arrives as vim.NIL)', function()
  local running = { workspace = 'file:///w', state = 'running', pid = 42, exitCode = vim.NIL, signal = vim.NIL, lastSwap = vim.NIL, message = vim.NIL }
  H.eq('hot-lsp: running (pid 42)', format.statusline(running))
  H.eq('hot-lsp: running (pid 42) · swapped 3 functions in 0.4 ms', format.statusline(vim.tbl_extend('force', running, { lastSwap = swap })))
  H.eq('exited (code 2)', format.state({ state = 'exited', pid = vim.NIL, exitCode = 2, signal = vim.NIL }))
  H.eq('exited (signal 9)', format.state({ state = 'exited', pid = vim.NIL, exitCode = vim.NIL, signal = 9 }))
  H.eq('failed: no such file', format.state({ state = 'failed', message = 'no such file' }))
  H.eq('hot-lsp', format.statusline(nil))
  local lines = format.describe(vim.tbl_extend('force', running, { lastSwap = swap }))
  H.eq('Last swap #3 (main.c): swapped 3 functions in 0.4 ms', lines[2])
end)

H.step('statusline() is empty without a hot-lsp client', function()
  H.eq('', require('hot_lsp').statusline())
end)

H.step(':HotLsp is defined and completes subcommands', function()
  H.eq(2, vim.fn.exists(':HotLsp'))
  local completions = vim.fn.getcompletion('HotLsp st', 'cmdline')
  H.eq({ 'stop', 'status' }, completions)
end)

H.step('the lsp config is found on the runtimepath', function()
  local config = vim.lsp.config.hot_lsp
  H.truthy(config, 'vim.lsp.config.hot_lsp is nil')
  H.eq({ 'c', 'cpp', 'objc', 'objcpp' }, config.filetypes)
  H.eq({ 'hot-lsp.toml', 'compile_commands.json', '.git' }, config.root_markers)
  H.eq('function', type(config.root_dir))
  H.eq('function', type(config.handlers['hot-lsp/status']))
  H.eq('function', type(config.handlers['hot-lsp/output']))
  H.eq(os.getenv('HOT_LSP'), config.cmd[1], 'the test overrides cmd')
  H.eq('1', config.cmd_env.NO_COLOR, 'the server log must not carry ANSI colours')
end)

H.step('output buffer joins partial lines and strips carriage returns', function()
  local hot_lsp = require('hot_lsp')
  hot_lsp.append_output('value=1 ')
  hot_lsp.append_output('tick=1\r\nvalue=1 tick=2\r\n')
  H.eq({ 'value=1 tick=1', 'value=1 tick=2', '' }, vim.api.nvim_buf_get_lines(hot_lsp.output_buffer(), 0, -1, false))
  H.eq('nofile', vim.bo[hot_lsp.output_buffer()].buftype)
  H.eq('hot-lsp://output', vim.fn.bufname(hot_lsp.output_buffer()))
end)

H.step('process list holds a child process with its arguments', function()
  local child = vim.system({ 'sleep', '41.5' })
  local found
  for _, process in ipairs(require('hot_lsp').list_processes()) do
    if process.pid == child.pid then
      found = process
    end
  end
  child:kill(9)
  H.eq({ pid = child.pid, cmdline = 'sleep 41.5' }, found)
end)

H.step(':HotLsp attach rejects a pid that is not a number', function()
  local count = #H.messages
  -- An error-level notification raises in a command run through vim.cmd; the user sees it.
  pcall(vim.cmd, 'HotLsp attach abc')
  H.truthy(H.messages[count + 1] and H.messages[count + 1].message:find('needs a process id', 1, true), 'no error message')
end)
