-- :HotLsp attach PID on a process started outside hot-lsp (launch = "manual"), a swap into it
-- on :write, and :HotLsp detach leaving it running.
local H = require('harness')
local hot_lsp = require('hot_lsp')

local dir = H.workspace({ launch = 'manual' })
local program_output = ''
local program = vim.system({ dir .. '/app' }, {
  cwd = dir,
  stdout = function(_, data)
    if data then
      program_output = program_output .. data
    end
  end,
})
H.on_finish(function()
  program:kill(9)
end)
local buf

local function wait_program_output(pattern, from)
  return H.wait('the attached program printing ' .. pattern, H.swap_timeout, function()
    return program_output:sub(from + 1):match(pattern)
  end, function()
    return 'program output (tail): ' .. program_output:sub(-300)
  end)
end

H.step('the project starts hot-lsp without launching anything', function()
  H.trust(dir .. '/hot-lsp.toml')
  vim.cmd.edit(vim.fn.fnameescape(dir .. '/app.c'))
  buf = vim.api.nvim_get_current_buf()
  H.wait('a hot_lsp client', H.startup_timeout, function()
    return H.hot_lsp_clients(buf)[1]
  end)
  wait_program_output('value=1 tick=%d+', 0)
end)

H.step(':HotLsp attach PID attaches to the process', function()
  vim.cmd('HotLsp attach ' .. program.pid)
  H.wait('a running status with the attached pid', H.startup_timeout, function()
    local status = hot_lsp.status(buf)
    return status and status.state == 'running' and status.pid == program.pid
  end, function()
    return vim.inspect(hot_lsp.status(buf))
  end)
end)

H.step(':write swaps the edit into the attached process', function()
  local from = #program_output
  H.set_return(buf, 'return 5;')
  vim.cmd.write()
  wait_program_output('value=5 tick=%d+', from)
end)

H.step(':HotLsp detach leaves the process running with the swapped code', function()
  vim.cmd('HotLsp detach')
  H.wait('a status without the pid', H.startup_timeout, function()
    local status = hot_lsp.status(buf)
    return status and status.pid ~= program.pid
  end)
  local from = #program_output
  wait_program_output('value=5 tick=%d+', from)
  H.stop_clients()
  H.truthy(H.process_alive(program.pid), 'stopping the server killed a process it had only attached to')
  program:kill(9)
end)
