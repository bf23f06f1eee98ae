-- A project without hot-lsp.toml opts in through the user's own config (init_options), with
-- launch = "manual": the program starts only on :HotLsp launch.
local H = require('harness')
local hot_lsp = require('hot_lsp')

local dir = H.workspace({ toml = false })
vim.lsp.config('hot_lsp', {
  init_options = {
    program = { path = 'app', launch = 'manual', args = { 'green' } },
    compile = { command = 'cc -O0 -g -c {file} -o {output}' },
  },
})
local buf

H.step('the server starts for a project configured in init.lua', function()
  vim.cmd.edit(vim.fn.fnameescape(dir .. '/app.c'))
  buf = vim.api.nvim_get_current_buf()
  H.wait('a hot_lsp client', H.startup_timeout, function()
    return H.hot_lsp_clients(buf)[1]
  end)
end)

H.step('launch = "manual": nothing runs before :HotLsp launch', function()
  local answered
  hot_lsp.exec('status', nil, function(err, result)
    answered = { err = err, result = result }
  end)
  H.wait('the status answer', H.startup_timeout, function()
    return answered
  end)
  H.eq(nil, answered.err)
  -- Neovim's LSP client decodes JSON null in objects as nil.
  H.eq(nil, answered.result.pid, 'pid before launch')
  H.truthy(answered.result.state ~= 'running', 'state before launch: ' .. tostring(answered.result.state))
end)

H.step(':HotLsp launch runs the program with the configured arguments', function()
  vim.cmd('HotLsp launch')
  H.wait_output('started arg=green', H.startup_timeout)
  H.wait_output('value=1 tick=%d+', H.startup_timeout)
end)
