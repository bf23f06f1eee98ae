-- Neovim init for the hot-lsp plugin tests: the plugin from editors/nvim on the runtimepath from
-- startup (so plugin/ and lsp/ load as for a user), the server binary from $HOT_LSP.
local repo = assert(os.getenv('HOT_LSP_REPO'), 'HOT_LSP_REPO is not set')
local server = assert(os.getenv('HOT_LSP'), 'HOT_LSP is not set')

vim.opt.runtimepath:prepend(repo .. '/editors/nvim')
package.path = repo .. '/tests/editors/nvim/?.lua;' .. package.path
vim.o.swapfile = false
vim.o.shortmess = vim.o.shortmess .. 'F'

vim.lsp.config('hot_lsp', { cmd = { server, '--stdio' } })
vim.lsp.enable('hot_lsp')
