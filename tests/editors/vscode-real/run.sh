#!/bin/sh
# Tests the VS Code extension in real VS Code: code-server 4.139.1 (VS Code's server and
# workbench, from npm) on loopback, its workbench in Debian's headless Chromium driven by
# playwright-core as a user would (test.mjs), the real hot-lsp server and a real C program.
#
#   tests/editors/vscode-real/run.sh
#
# Installs what it needs first (install.sh: apt packages when missing, Node 24, code-server and
# playwright-core cached under ~/.cache/hot-lsp-vscode). Environment: HOT_LSP (server binary;
# default <repo>/target/debug/hot-lsp, built with cargo if missing), HOT_LSP_VSIX (a packaged
# extension; default: `npm run package` in editors/vscode), HOT_LSP_VSCODE_ARTIFACTS (where
# screenshots, logs and the run's profiles go; default a new directory under $TMPDIR).
# Prints "ok - ..."/"not ok - ..." per step, then "# pass N" and "# fail N"; exits non-zero on
# failure. Every process the run starts carries HOT_LSP_VSCODE_RUN=<token> in its environment:
# whatever is left of them at the end (also after a failure or a signal) is killed, and a last
# check fails the run if any survived.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)

now() { date +%s; }

artifacts=${HOT_LSP_VSCODE_ARTIFACTS:-}
if [ -z "$artifacts" ]; then
    artifacts=$(mktemp -d "${TMPDIR:-/tmp}/hot-lsp-vscode-real.XXXXXX")
fi
mkdir -p "$artifacts"
artifacts=$(cd "$artifacts" && pwd -P)
echo "# artifacts (screenshots, logs): $artifacts"
token="hot-lsp-vscode-$$-$(now)"

# The pids of live processes of this run (zombies excluded: they are already dead).
run_processes() {
    for d in /proc/[0-9]*; do
        if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null | grep -qxF "HOT_LSP_VSCODE_RUN=$token" &&
            ! grep -q '^State:.*Z' "$d/status" 2>/dev/null; then
            echo "${d#/proc/}"
        fi
    done
}

# Ends every process of this run: SIGTERM, up to 10 s to exit, then SIGKILL.
kill_run_processes() {
    pids=$(run_processes)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086 # a list of pids
    kill -TERM $pids 2>/dev/null
    tries=0
    while [ -n "$(run_processes)" ] && [ $tries -lt 40 ]; do
        sleep 0.25
        tries=$((tries + 1))
    done
    pids=$(run_processes)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
}
trap 'kill_run_processes' EXIT
trap 'kill_run_processes; echo "not ok - VS Code (real): interrupted by a signal (the run'"'"'s processes were killed)"; echo "# pass 0"; echo "# fail 1"; exit 130' INT TERM

fail_early() {
    echo "not ok - VS Code (real): $1"
    echo "# pass 0"
    echo "# fail 1"
    exit 1
}

# --- install (cached) ----------------------------------------------------------------------
start=$(now)
if ! sh "$here/install.sh" >"$artifacts/install.env" 2>"$artifacts/install.log"; then
    cat "$artifacts/install.log"
    fail_early "installing code-server / Node 24 / playwright-core / chromium failed (see above)"
fi
install_seconds=$(($(now) - start))
NODE=$(sed -n 's/^NODE=//p' "$artifacts/install.env")
CODE_SERVER=$(sed -n 's/^CODE_SERVER=//p' "$artifacts/install.env")
PLAYWRIGHT_DIR=$(sed -n 's/^PLAYWRIGHT_DIR=//p' "$artifacts/install.env")
echo "# installed in ${install_seconds} s: node $("$NODE" --version), $CODE_SERVER"

# --- the server and the packaged extension ---------------------------------------------------
if [ -z "${HOT_LSP:-}" ]; then
    HOT_LSP="${CARGO_TARGET_DIR:-$repo/target}/debug/hot-lsp"
    if [ ! -x "$HOT_LSP" ]; then
        echo "# building hot-lsp (cargo build -p hot-lsp)"
        (cd "$repo" && cargo build -p hot-lsp) || fail_early "cargo build -p hot-lsp failed"
    fi
fi
[ -x "$HOT_LSP" ] || fail_early "HOT_LSP=$HOT_LSP is not an executable"
echo "# server: $HOT_LSP"

start=$(now)
vsix=${HOT_LSP_VSIX:-}
if [ -z "$vsix" ]; then
    vsix=$repo/editors/vscode/hot-lsp.vsix
    rm -f "$vsix"
    if ! (cd "$repo/editors/vscode" && { [ -d node_modules ] || npm ci --no-audit --no-fund; } &&
        npm run package) >"$artifacts/package.log" 2>&1 || [ ! -f "$vsix" ]; then
        cat "$artifacts/package.log"
        fail_early "npm run package (editors/vscode) did not produce hot-lsp.vsix"
    fi
fi
[ -f "$vsix" ] || fail_early "HOT_LSP_VSIX=$vsix does not exist"
echo "# extension: $vsix (packaged in $(($(now) - start)) s)"

# --- the test --------------------------------------------------------------------------------
start=$(now)
# 25 minutes at most: a hung browser must not hang CI (the steps have their own timeouts).
NODE=$NODE CODE_SERVER=$CODE_SERVER PLAYWRIGHT_DIR=$PLAYWRIGHT_DIR HOT_LSP=$HOT_LSP VSIX=$vsix \
    ARTIFACTS=$artifacts REPO=$repo HOT_LSP_VSCODE_RUN=$token \
    timeout 1500 "$NODE" "$here/test.mjs" </dev/null >"$artifacts/test.txt" 2>"$artifacts/test-stderr.txt" &
# In the background and waited for, so that a signal to this script runs its trap at once.
wait $!
status=$?
test_seconds=$(($(now) - start))
# Its own totals are left out: the totals below (which add the leftover check) are the ones to sum.
grep -v '^# \(pass\|fail\) [0-9]*$' "$artifacts/test.txt"
if [ -s "$artifacts/test-stderr.txt" ]; then
    sed 's/^/# stderr: /' "$artifacts/test-stderr.txt"
fi

# --- nothing may be left running -------------------------------------------------------------
left=$(run_processes)
extra_pass=0
extra_fail=0
if [ -z "$left" ]; then
    echo "ok - VS Code (real): no process left behind (code-server, Chromium, hot-lsp, the program)"
    extra_pass=1
else
    echo "not ok - VS Code (real): processes left behind:"
    for pid in $left; do
        echo "#   $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)"
    done
    extra_fail=1
    kill_run_processes
fi

passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$artifacts/test.txt" | tail -n 1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$artifacts/test.txt" | tail -n 1)
if [ -z "$passed" ] || [ -z "$failed" ]; then
    echo "not ok - VS Code (real): test.mjs did not finish (exit status $status; see $artifacts/test-stderr.txt)"
    passed=${passed:-0}
    failed=$((${failed:-0} + 1))
elif [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "not ok - VS Code (real): test.mjs exited with status $status"
    failed=$((failed + 1))
fi
passed=$((passed + extra_pass))
failed=$((failed + extra_fail))
echo "# times: install ${install_seconds} s, test ${test_seconds} s"
if [ "$failed" -eq 0 ]; then
    # Keep the screenshots; the profiles, workspaces and logs are only needed to diagnose.
    for d in "$artifacts"/*/; do
        [ "$d" = "$artifacts/screenshots/" ] || rm -rf "$d"
    done
else
    echo "# kept for diagnosis: $artifacts (screenshots/, */code-server.log, */user-data/logs/)"
    # The extension's log channel (the server's stderr and the client's messages) as VS Code
    # stored it: usually the quickest way to see why a step failed.
    for channel in "$artifacts"/*/user-data/logs/*/exthost*/output_logging_*/*-hot-lsp.log; do
        [ -f "$channel" ] || continue
        echo "# last lines of $channel:"
        tail -n 30 "$channel" | sed 's/^/#   /'
    done
fi
echo "# pass $passed"
echo "# fail $failed"
[ "$failed" -eq 0 ]
