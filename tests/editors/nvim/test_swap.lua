-- The main flow against the real server: a trusted project launches its program, an edit saved
-- with :write is hot-swapped (seen in hot-lsp://output and the statusline), a compile error
-- becomes a `compile-error` diagnostic on its line, :HotLsp status / undo / stop work.
local H = require('harness')
local hot_lsp = require('hot_lsp')

local dir = H.workspace({ launch = 'auto' })
local buf
local pid

H.step('a trusted project starts hot-lsp when a C file is opened', function()
  H.trust(dir .. '/hot-lsp.toml')
  vim.cmd.edit(vim.fn.fnameescape(dir .. '/app.c'))
  buf = vim.api.nvim_get_current_buf()
  local client = H.wait('a hot_lsp client attached to app.c', H.startup_timeout, function()
    return H.hot_lsp_clients(buf)[1]
  end)
  H.eq(dir, client.root_dir, 'root_dir')
end)

H.step('the program runs and its output reaches hot-lsp://output', function()
  H.wait_output('value=1 tick=%d+\n', H.startup_timeout)
  -- Every output line is its own buffer line (the buffer's last line is the one being written).
  local lines = vim.api.nvim_buf_get_lines(vim.fn.bufnr('hot-lsp://output'), 0, -1, false)
  H.eq('started arg=-', lines[1], 'first output line')
  H.truthy(lines[2]:match('^value=1 tick=%d+$'), 'second output line: ' .. tostring(lines[2]))
  local status = H.wait('a running status', H.startup_timeout, function()
    local status = hot_lsp.status(buf)
    return status and status.state == 'running' and status
  end)
  pid = status.pid
  H.truthy(H.process_alive(pid), 'the pid of the status is not alive')
  H.truthy(hot_lsp.statusline():find('hot-lsp: running (pid ' .. pid .. ')', 1, true), hot_lsp.statusline())
end)

H.step(':write of an edit swaps it in; the program keeps its state', function()
  local from = #H.output_text()
  local before = tonumber(H.output_text():match('.*value=1 tick=(%d+)'))
  H.set_return(buf, 'return 2;')
  vim.cmd.write()
  local after = tonumber(H.wait_output('value=2 tick=(%d+)', H.swap_timeout, from))
  H.truthy(after > before, string.format('tick restarted (%d after %d): relaunched, not swapped', after, before))
  local status = H.wait('a status whose last swap has current_value', H.swap_timeout, function()
    local status = hot_lsp.status(buf)
    local swap = status and status.lastSwap
    return swap and vim.tbl_contains(swap.swapped or {}, 'current_value') and status
  end, function()
    return vim.inspect(hot_lsp.status(buf))
  end)
  local line = hot_lsp.statusline()
  H.truthy(line:find('^hot%-lsp: running %(pid %d+%) · swapped %d+ functions? in [%d.]+ [mµ]?s$'), 'statusline: ' .. line)
  H.eq(#status.lastSwap.swapped, tonumber(line:match('swapped (%d+) function')))
  H.eq(pid, hot_lsp.status(buf).pid, 'pid after the swap')
end)

H.step(':HotLsp status shows the state and the last swap', function()
  local count = #H.messages
  vim.cmd('HotLsp status')
  local message = H.wait('the :HotLsp status message', H.startup_timeout, function()
    for index = count + 1, #H.messages do
      if H.messages[index].message:find('Program: running', 1, true) then
        return H.messages[index].message
      end
    end
  end)
  H.truthy(message:find('current_value', 1, true), message)
end)

H.step('a compile error shows as a compile-error diagnostic on its line', function()
  local line = H.set_return(buf, 'return 2 +;')
  vim.cmd.write()
  local diagnostic = H.wait('a compile-error diagnostic', H.swap_timeout, function()
    for _, candidate in ipairs(vim.diagnostic.get(buf)) do
      if candidate.code == 'compile-error' then
        return candidate
      end
    end
  end, function()
    return vim.inspect(vim.diagnostic.get(buf))
  end)
  H.eq(line, diagnostic.lnum, 'diagnostic line (0-based)')
  H.eq(vim.diagnostic.severity.ERROR, diagnostic.severity)
  H.eq('hot-lsp', diagnostic.source)
  H.truthy(H.process_alive(pid), 'the program must survive a compile error')
end)

H.step('fixing it clears the diagnostic and swaps the fix in', function()
  local from = #H.output_text()
  H.set_return(buf, 'return 3;')
  vim.cmd.write()
  H.wait('the diagnostics to clear', H.swap_timeout, function()
    return #vim.diagnostic.get(buf) == 0
  end, function()
    return vim.inspect(vim.diagnostic.get(buf))
  end)
  H.wait_output('value=3 tick=%d+', H.swap_timeout, from)
end)

H.step(':HotLsp undo reverts the last swap', function()
  local from = #H.output_text()
  vim.cmd('HotLsp undo')
  H.wait_output('value=2 tick=%d+', H.swap_timeout, from)
end)

H.step(':HotLsp stop ends the program', function()
  vim.cmd('HotLsp stop')
  H.wait('an exited status', H.startup_timeout, function()
    local state = (hot_lsp.status(buf) or {}).state
    return state == 'exited' or state == 'idle'
  end)
  H.wait('the program to be gone', 10000, function()
    return not H.process_alive(pid)
  end)
end)

H.step(':HotLsp launch starts it again', function()
  local from = #H.output_text()
  vim.cmd('HotLsp launch')
  H.wait_output('value=%d+ tick=%d+', H.startup_timeout, from)
  pid = hot_lsp.status(buf).pid
end)

H.step('stopping the client leaves no orphaned program', function()
  H.stop_clients()
  H.wait('the program to be gone after the server', 10000, function()
    return not H.process_alive(pid)
  end)
end)
