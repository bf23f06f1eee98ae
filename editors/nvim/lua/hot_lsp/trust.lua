--- Decides whether a project's hot-lsp.toml is trusted, with Neovim's own trust database
--- (|vim.secure|, `:trust`), without prompting.
---
--- vim.secure.read() asks interactively about an unknown file. Opening a C file should not pop
--- up a question, so we first look the file up in the database the same way vim.secure does
--- (real path, sha256 of the contents) and only call vim.secure.read() for a file that the
--- database already trusts, which then returns without a prompt and has the last word.

local M = {}

--- The trust database: full path -> sha256 of the trusted contents, or "!" for denied.
---@return table<string, string>
local function read_database()
  local database = {}
  local file = io.open(vim.fs.joinpath(vim.fn.stdpath('state'), 'trust'), 'r')
  if not file then
    return database
  end
  for line in file:lines() do
    local hash, path = line:match('^(%S+) (.+)$')
    if hash then
      database[path] = hash
    end
  end
  file:close()
  return database
end

---@param path string
---@return string? contents
local function read_file(path)
  local file = io.open(path, 'rb')
  if not file then
    return nil
  end
  local contents = file:read('*a')
  file:close()
  return contents
end

--- Whether a file is trusted, and if not, why.
---@param path string
---@return boolean trusted
---@return 'trusted'|'missing'|'unknown'|'denied'|'changed' reason
function M.check(path)
  local fullpath = vim.uv.fs_realpath(vim.fs.normalize(path))
  if not fullpath then
    return false, 'missing'
  end
  local recorded = read_database()[fullpath]
  if recorded == nil then
    return false, 'unknown'
  elseif recorded == '!' then
    return false, 'denied'
  end
  local contents = read_file(fullpath)
  if not contents or vim.fn.sha256(contents) ~= recorded then
    return false, 'changed'
  end
  if vim.secure.read(fullpath) == nil then
    return false, 'changed'
  end
  return true, 'trusted'
end

--- One line telling the user how to trust the file.
---@param path string
---@param reason string
---@return string
function M.notice(path, reason)
  local why = ({
    unknown = 'is not trusted',
    denied = 'is marked as denied in the trust database',
    changed = 'changed since it was trusted',
    missing = 'cannot be read',
  })[reason] or 'is not trusted'
  return string.format(
    'hot-lsp is off for this project: %s %s. To enable it, open that file, check it and run :trust; hot-lsp starts when you return to a source file.',
    path,
    why
  )
end

return M
