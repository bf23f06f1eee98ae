#!/bin/sh
# Captures a text screenshot of Neovim with the hot-lsp plugin showing a compile-error diagnostic
# after a successful swap (statusline) and the program's output (hot-lsp://output), with tmux:
#   tests/editors/nvim/screenshot.sh [OUT]   (default: editors/nvim/screenshot.txt)
# Needs tmux, Neovim >= 0.11 ($NVIM or nvim) and the server ($HOT_LSP).
set -eu
# (tmux reads an argument ending in ";" as a command separator: hence "\;" below.)

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
out=${1:-$repo/editors/nvim/screenshot.txt}
nvim_bin=${NVIM:-nvim}
HOT_LSP=${HOT_LSP:-$repo/target/debug/hot-lsp}
export HOT_LSP HOT_LSP_REPO="$repo"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/hot-lsp-screenshot.XXXXXX")
session="hot-lsp-screenshot-$$"
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT INT TERM

project="$scratch/demo"
sh "$repo/tests/editors/fixture/make-workspace.sh" "$project"
export XDG_STATE_HOME="$scratch/state" XDG_CONFIG_HOME="$scratch/config" XDG_DATA_HOME="$scratch/data"

cat > "$scratch/init.lua" <<LUA
dofile('$here/init.lua')
vim.o.statusline = "%f %m%= %{v:lua.require'hot_lsp'.statusline()} "
vim.o.laststatus = 2
vim.o.number = true
vim.diagnostic.config({ virtual_text = true, signs = true })
LUA

# Trust the project's hot-lsp.toml in the temporary trust database, as :trust would.
"$nvim_bin" --headless --clean "$project/hot-lsp.toml" -c trust -c 'qa!' >/dev/null 2>&1
grep -q "$project/hot-lsp.toml" "$XDG_STATE_HOME/nvim/trust"

wait_for() {
    # Polls the pane (bounded: 120 s) until it shows the text.
    tries=0
    until tmux capture-pane -p -t "$session" | grep -q -- "$1"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ]; then
            echo "screenshot: timed out waiting for '$1'; screen:" >&2
            tmux capture-pane -p -t "$session" >&2
            exit 1
        fi
        sleep 0.2
    done
}

cd "$project"
tmux new-session -d -s "$session" -x 100 -y 32 \
    "$nvim_bin --clean -u '$scratch/init.lua' app.c"
wait_for 'hot-lsp: running'
tmux send-keys -t "$session" ':HotLsp output' Enter ':resize 9' Enter ':wincmd k' Enter
wait_for 'value=1 tick='
tmux send-keys -t "$session" ':%s/return 1\;/return 2\;/' Enter ':w' Enter
wait_for 'swapped'
wait_for 'value=2 tick='
tmux send-keys -t "$session" ':%s/return 2\;/return 2 +\;/' Enter ':w' Enter
wait_for 'expected expression'
tmux capture-pane -p -t "$session" > "$out"
tmux send-keys -t "$session" ':qa!' Enter
echo "wrote $out"
