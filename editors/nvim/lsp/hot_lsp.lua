--- hot-lsp for Neovim 0.11+: the `vim.lsp.config` of the hot-lsp language server, which hot-swaps
--- changed C/C++ functions into the running program when a file is saved.
---
--- Enable it with `vim.lsp.enable('hot_lsp')`; override fields with
--- `vim.lsp.config('hot_lsp', { cmd = { '/path/to/hot-lsp', '--stdio' } })`.
---
--- The server runs the workspace's compile commands and launches its program, so it starts for a
--- project only when the project's hot-lsp.toml is trusted (`:trust` on the file, see
--- |vim.secure|), or when your own config gives it `init_options`.

local hot_lsp = require('hot_lsp')

---@type vim.lsp.Config
return {
  cmd = { 'hot-lsp', '--stdio' },
  -- The server's stderr log ends up in Neovim's LSP log: no ANSI colours there.
  cmd_env = { NO_COLOR = '1' },
  filetypes = { 'c', 'cpp', 'objc', 'objcpp' },
  root_markers = hot_lsp.root_markers,
  root_dir = function(bufnr, on_dir)
    hot_lsp.root_dir(bufnr, on_dir)
  end,
  handlers = {
    ['hot-lsp/status'] = function(err, result, ctx)
      hot_lsp.on_status(err, result, ctx)
    end,
    ['hot-lsp/output'] = function(err, result, ctx)
      hot_lsp.on_output(err, result, ctx)
    end,
  },
}
