--- hot-lsp for Neovim: the :HotLsp command. The LSP configuration itself is lsp/hot_lsp.lua.

if vim.g.loaded_hot_lsp then
  return
end
vim.g.loaded_hot_lsp = 1

vim.api.nvim_create_user_command('HotLsp', function(opts)
  require('hot_lsp').command(opts.fargs)
end, {
  nargs = '+',
  desc = 'hot-lsp: launch | attach [PID] | detach | stop | restart | undo | status | output',
  complete = function(arg_lead, cmdline)
    -- Only the first argument is a subcommand; `attach` takes a pid.
    if #vim.split(vim.trim(cmdline), '%s+') > (arg_lead == '' and 1 or 2) then
      return {}
    end
    return vim.tbl_filter(function(name)
      return vim.startswith(name, arg_lead)
    end, require('hot_lsp').subcommands)
  end,
})
