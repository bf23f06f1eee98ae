-- A trusted but invalid hot-lsp.toml: the server starts, reports a config-error diagnostic on
-- the bad key's line of hot-lsp.toml, and launches nothing.
local H = require('harness')
local hot_lsp = require('hot_lsp')

local dir = H.workspace({ launch = 'manual' })
local toml = dir .. '/hot-lsp.toml'
local file = assert(io.open(toml, 'w'))
file:write('[program]\npath = "app"\nlaunch = 42\n')
file:close()

H.step('the config-error shows on hot-lsp.toml at the bad key', function()
  H.trust(toml)
  vim.cmd.edit(vim.fn.fnameescape(dir .. '/app.c'))
  local buf = vim.api.nvim_get_current_buf()
  H.wait('a hot_lsp client', H.startup_timeout, function()
    return H.hot_lsp_clients(buf)[1]
  end)
  local diagnostic = H.wait('a config-error diagnostic on hot-lsp.toml', H.startup_timeout, function()
    local toml_buf = vim.fn.bufnr(toml)
    if toml_buf == -1 then
      return nil
    end
    for _, candidate in ipairs(vim.diagnostic.get(toml_buf)) do
      if candidate.code == 'config-error' then
        return candidate
      end
    end
  end, function()
    return vim.inspect(vim.diagnostic.get())
  end)
  H.eq(2, diagnostic.lnum, 'line of `launch = 42` (0-based)')
  H.eq('hot-lsp', diagnostic.source)
end)

H.step('nothing was launched', function()
  local answered
  hot_lsp.exec('status', nil, function(err, result)
    answered = { err = err, result = result or {} }
  end)
  H.wait('the status answer', H.startup_timeout, function()
    return answered
  end)
  H.eq(nil, answered.result.pid)
end)
