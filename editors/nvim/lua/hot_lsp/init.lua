--- hot-lsp for Neovim: status, program output, commands and the trust check used by
--- lsp/hot_lsp.lua.
---
--- Public API:
---   require('hot_lsp').statusline()      -- "hot-lsp: running (pid 42) · swapped 1 function in 0.4 ms"
---   require('hot_lsp').status(bufnr?)     -- the last `hot-lsp/status` payload for the buffer
---   require('hot_lsp').exec(name, extra?, callback?)  -- run a server command (launch, stop, ...)
---   require('hot_lsp').open_output()      -- show the program's output buffer (hot-lsp://output)
--- The `User HotLspStatus` autocommand fires on every status change (data = the status).

local format = require('hot_lsp.format')
local trust = require('hot_lsp.trust')

local M = {}

--- The name of the client, as registered by lsp/hot_lsp.lua.
M.client_name = 'hot_lsp'
--- Files that mark a project root, most significant first.
M.root_markers = { 'hot-lsp.toml', 'compile_commands.json', '.git' }
--- The name of the scratch buffer that collects the program's stdout and stderr.
M.output_buffer_name = 'hot-lsp://output'
--- Lines kept in the output buffer; older ones are dropped.
M.max_output_lines = 10000
--- Subcommands of :HotLsp.
M.subcommands = { 'launch', 'attach', 'detach', 'stop', 'restart', 'undo', 'status', 'output' }

--- Latest status per client id, then per workspace uri.
---@type table<integer, table<string, table>>
local statuses = {}
--- Paths of hot-lsp.toml files we already told the user about (one notice per file per session).
--- They are checked again when the user returns to a source file, so that `:trust` takes effect
--- without reopening anything.
local notified_untrusted = {}

local function notify(message, level)
  vim.notify(message, level or vim.log.levels.INFO, { title = 'hot-lsp' })
end

-- Root detection and trust ---------------------------------------------------------------------

--- True when the user's own configuration gives the server settings: then a project without a
--- hot-lsp.toml opts in too (the user trusts their own init.lua).
local function has_client_settings()
  local config = vim.lsp.config[M.client_name]
  if not config then
    return false
  end
  local init_options = config.init_options
  local settings = type(config.settings) == 'table' and config.settings['hot-lsp'] or nil
  return (type(init_options) == 'table' and not vim.tbl_isempty(init_options))
    or (type(settings) == 'table' and not vim.tbl_isempty(settings))
end

--- The `root_dir` function of lsp/hot_lsp.lua: calls on_dir(root) only for a root whose
--- hot-lsp.toml is trusted (or, without a hot-lsp.toml, when the user configured the server).
---@param bufnr integer
---@param on_dir fun(root: string?)
function M.root_dir(bufnr, on_dir)
  local root = vim.fs.root(bufnr, M.root_markers)
  if not root then
    return
  end
  local toml = vim.fs.joinpath(root, 'hot-lsp.toml')
  if vim.uv.fs_stat(toml) then
    local trusted, reason = trust.check(toml)
    if trusted then
      on_dir(root)
    elseif not notified_untrusted[toml] then
      notified_untrusted[toml] = true
      notify(trust.notice(toml, reason), vim.log.levels.WARN)
    end
    return
  end
  if has_client_settings() then
    on_dir(root)
  end
end

-- Clients and status ---------------------------------------------------------------------------

--- The hot-lsp client of a buffer, else the only (or first) running hot-lsp client.
---@param bufnr integer?
---@return vim.lsp.Client?
function M.client(bufnr)
  local attached = vim.lsp.get_clients({ name = M.client_name, bufnr = bufnr or 0 })
  if #attached > 0 then
    return attached[1]
  end
  return vim.lsp.get_clients({ name = M.client_name })[1]
end

--- The workspace uri a client's commands apply to (its first workspace folder).
---@param client vim.lsp.Client
---@return string?
function M.workspace_uri(client)
  local folders = client.workspace_folders
  if type(folders) == 'table' and folders[1] then
    return folders[1].uri
  end
  return client.root_dir and vim.uri_from_fname(client.root_dir) or nil
end

local function same_uri(a, b)
  return type(a) == 'string' and type(b) == 'string' and a:gsub('/$', '') == b:gsub('/$', '')
end

local function store_status(client_id, status)
  if type(status) ~= 'table' or type(status.state) ~= 'string' then
    return false
  end
  statuses[client_id] = statuses[client_id] or {}
  statuses[client_id][tostring(status.workspace)] = status
  statuses[client_id].__latest = status
  vim.schedule(function()
    vim.cmd.redrawstatus({ bang = true })
    vim.api.nvim_exec_autocmds('User', { pattern = 'HotLspStatus', data = status, modeline = false })
  end)
  return true
end

--- Handler of the `hot-lsp/status` notification.
function M.on_status(_, result, ctx)
  if not store_status(ctx.client_id, result) then
    vim.lsp.log.warn('hot-lsp: ignored a malformed hot-lsp/status', result)
  end
end

--- The last known status of the buffer's hot-lsp workspace.
---@param bufnr integer?
---@return table?
function M.status(bufnr)
  local client = M.client(bufnr)
  if not client then
    return nil
  end
  local by_workspace = statuses[client.id]
  if not by_workspace then
    return nil
  end
  local workspace = M.workspace_uri(client)
  for uri, status in pairs(by_workspace) do
    if uri ~= '__latest' and same_uri(uri, workspace) then
      return status
    end
  end
  return by_workspace.__latest
end

--- For 'statusline': "" when hot-lsp is not running for the current buffer.
---@return string
function M.statusline()
  local client = M.client(0)
  if not client then
    return ''
  end
  return format.statusline(M.status(0))
end

-- Program output -------------------------------------------------------------------------------

--- The output scratch buffer, created on first use.
---@return integer
function M.output_buffer()
  local existing = vim.fn.bufnr(M.output_buffer_name)
  if existing ~= -1 and vim.api.nvim_buf_is_valid(existing) then
    return existing
  end
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_name(buf, M.output_buffer_name)
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'hide'
  vim.bo[buf].swapfile = false
  vim.bo[buf].modifiable = false
  vim.bo[buf].filetype = 'hotlspoutput'
  return buf
end

--- Appends program output. The buffer's last line is the line still being written (often
--- empty): text continues it, so output split across notifications joins up correctly.
---@param text string
function M.append_output(text)
  local buf = M.output_buffer()
  text = (text:gsub('\r\n', '\n'):gsub('\r', '\n'))
  local line_count = vim.api.nvim_buf_line_count(buf)
  local last_line = vim.api.nvim_buf_get_lines(buf, line_count - 1, line_count, false)[1] or ''
  local lines = vim.split(last_line .. text, '\n', { plain = true })

  -- Windows that showed the end of the output keep following it.
  local following = {}
  for _, win in ipairs(vim.fn.win_findbuf(buf)) do
    if vim.api.nvim_win_get_cursor(win)[1] >= line_count then
      following[#following + 1] = win
    end
  end

  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, line_count - 1, line_count, false, lines)
  local total = vim.api.nvim_buf_line_count(buf)
  if total > M.max_output_lines then
    vim.api.nvim_buf_set_lines(buf, 0, total - M.max_output_lines, false, {})
    total = M.max_output_lines
  end
  vim.bo[buf].modifiable = false
  for _, win in ipairs(following) do
    vim.api.nvim_win_set_cursor(win, { total, 0 })
  end
end

--- Handler of the `hot-lsp/output` notification.
function M.on_output(_, result)
  if type(result) ~= 'table' or type(result.text) ~= 'string' then
    vim.lsp.log.warn('hot-lsp: ignored a malformed hot-lsp/output', result)
    return
  end
  M.append_output(result.text)
end

--- Shows the output buffer in a split (or focuses the window that shows it).
function M.open_output()
  local buf = M.output_buffer()
  local win = vim.fn.win_findbuf(buf)[1]
  if win then
    vim.api.nvim_set_current_win(win)
  else
    vim.cmd('botright sbuffer ' .. buf)
  end
  vim.api.nvim_win_set_cursor(0, { vim.api.nvim_buf_line_count(buf), 0 })
end

-- Processes (for :HotLsp attach without a pid) -------------------------------------------------

--- The current user's processes from /proc, newest first: { pid = n, cmdline = s }.
---@return { pid: integer, cmdline: string }[]
function M.list_processes()
  local uid = vim.uv.getuid()
  local own = vim.fn.getpid()
  local processes = {}
  for name, kind in vim.fs.dir('/proc') do
    local pid = tonumber(name)
    if kind == 'directory' and pid and pid ~= own then
      local status_file = io.open('/proc/' .. name .. '/status', 'r')
      local status_text = status_file and status_file:read('*a') or ''
      if status_file then
        status_file:close()
      end
      local cmdline_file = io.open('/proc/' .. name .. '/cmdline', 'rb')
      local cmdline = cmdline_file and cmdline_file:read('*a') or ''
      if cmdline_file then
        cmdline_file:close()
      end
      cmdline = vim.trim((cmdline:gsub('%z', ' ')))
      if tonumber(status_text:match('\nUid:%s+(%d+)')) == uid and cmdline ~= '' then
        processes[#processes + 1] = { pid = pid, cmdline = cmdline }
      end
    end
  end
  table.sort(processes, function(a, b)
    return a.pid > b.pid
  end)
  return processes
end

-- Commands -------------------------------------------------------------------------------------

--- Runs a server command (`launch`, `attach`, `detach`, `stop`, `restart`, `undo`, `status`) for
--- the current buffer's workspace. `extra` goes into the argument object (e.g. { pid = 42 }).
---@param name string
---@param extra table?
---@param callback fun(err: table?, result: any)?
function M.exec(name, extra, callback)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    notify('hot-lsp is not running for this buffer (is its hot-lsp.toml trusted?)', vim.log.levels.ERROR)
    return
  end
  local argument = vim.tbl_extend('force', extra or {}, { workspace = M.workspace_uri(client) })
  client:exec_cmd({
    title = 'hot-lsp ' .. name,
    command = 'hot-lsp.' .. name,
    arguments = { argument },
  }, { bufnr = bufnr }, function(err, result)
    if err then
      notify(string.format('hot-lsp.%s failed: %s', name, err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif type(result) == 'table' and type(result.state) == 'string' then
      store_status(client.id, result)
    end
    if callback then
      callback(err, result)
    end
  end)
end

--- :HotLsp status — asks the server and shows the answer.
function M.show_status()
  M.exec('status', nil, function(err, result)
    if not err and type(result) == 'table' and result.state then
      notify('hot-lsp: ' .. table.concat(format.describe(result), '\n'))
    end
  end)
end

--- :HotLsp attach [PID] — without a pid, pick one of the user's processes.
---@param pid string?
function M.attach(pid)
  if pid then
    local number = tonumber(pid)
    if not number or number <= 0 or number % 1 ~= 0 then
      notify('hot-lsp: attach needs a process id, got ' .. pid, vim.log.levels.ERROR)
      return
    end
    M.exec('attach', { pid = number })
    return
  end
  vim.ui.select(M.list_processes(), {
    prompt = 'Attach hot-lsp to which process?',
    format_item = function(item)
      return string.format('%d  %s', item.pid, item.cmdline)
    end,
  }, function(choice)
    if choice then
      M.exec('attach', { pid = choice.pid })
    end
  end)
end

--- Entry point of :HotLsp.
---@param args string[]
function M.command(args)
  local subcommand = args[1]
  if subcommand == 'status' then
    M.show_status()
  elseif subcommand == 'output' then
    M.open_output()
  elseif subcommand == 'attach' then
    M.attach(args[2])
  elseif vim.tbl_contains({ 'launch', 'detach', 'stop', 'restart', 'undo' }, subcommand) then
    M.exec(subcommand)
  else
    notify(
      string.format('hot-lsp: unknown subcommand %q; use one of: %s', tostring(subcommand), table.concat(M.subcommands, ', ')),
      vim.log.levels.ERROR
    )
  end
end

-- After `:trust` on a hot-lsp.toml we told the user about, entering a source file of that project
-- starts hot-lsp: run vim.lsp.enable's FileType handler for the buffer again.
vim.api.nvim_create_autocmd('BufEnter', {
  group = vim.api.nvim_create_augroup('hot_lsp_trust', { clear = true }),
  callback = function(event)
    if next(notified_untrusted) == nil or vim.bo[event.buf].buftype ~= '' then
      return
    end
    local root = vim.fs.root(event.buf, M.root_markers)
    local toml = root and vim.fs.joinpath(root, 'hot-lsp.toml')
    if not toml or not notified_untrusted[toml] or not trust.check(toml) then
      return
    end
    notified_untrusted[toml] = nil
    local ok = pcall(vim.api.nvim_exec_autocmds, 'FileType', { group = 'nvim.lsp.enable', buffer = event.buf, modeline = false })
    if not ok then
      vim.api.nvim_exec_autocmds('FileType', { buffer = event.buf, modeline = false })
    end
  end,
})

-- Forget a client's status when it stops, so the statusline does not show a dead server's state.
vim.api.nvim_create_autocmd('LspDetach', {
  group = vim.api.nvim_create_augroup('hot_lsp_status', { clear = true }),
  callback = function(event)
    local client = vim.lsp.get_client_by_id(event.data.client_id)
    if client and client.name == M.client_name and #vim.lsp.get_buffers_by_client_id(client.id) <= 1 then
      statuses[client.id] = nil
    end
  end,
})

return M
