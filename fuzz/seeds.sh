#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from real compiler
# output: the hostile-input fixtures of crates/hot-link/tests/fixtures compiled by cc/c++ at
# several flags, the executable and shared library linked from them, their DWARF sections,
# and LSP message streams. Run it once before `cargo +nightly fuzz run <target>`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fixtures=$here/../crates/hot-link/tests/fixtures
corpus=$here/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in object_parse image_read dwarf link_plan lsp_framing; do
    mkdir -p "$corpus/$t"
done
cp "$fixtures/hostile_prog.c" "$work/prog.c"
cp "$fixtures/hostile_lib.c" "$work/fz.c"
cp "$fixtures/hostile_shape.cc" "$work/shape.cc"
cd "$work"

patch_flags="-c -g -ffunction-sections -fdata-sections"
i=0
for flags in "-O0" "-O2" "-O2 -fPIC" "-O1 -gz" "-O0 -gdwarf-4" "-Og -fcf-protection"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    cc $patch_flags $flags prog.c -o "prog$i.o"
    cp "prog$i.o" "$corpus/object_parse/prog$i.o"
    cp "prog$i.o" "$corpus/link_plan/prog$i.o"
done
cc $patch_flags -O2 -fPIC fz.c -o fz.o
c++ $patch_flags -O0 -fexceptions shape.cc -o shape0.o
c++ $patch_flags -O2 -fPIC shape.cc -o shape2.o
cp fz.o shape0.o shape2.o "$corpus/object_parse/"

cc -shared -fPIC -O2 -g fz.c -o libfz.so
cc -O0 -g -ffunction-sections -fdata-sections prog.c -L. -lfz -o prog
cc -O2 -g -no-pie -fno-pie prog.c -L. -lfz -o prog-nopie
strip -o prog-stripped prog
cp libfz.so prog prog-nopie prog-stripped "$corpus/image_read/"

# DWARF seeds: records [selector u8][length u32 LE][bytes] of the sections the dwarf target
# knows, in its order (fuzz/fuzz_targets/dwarf.rs).
sections=(.debug_abbrev .debug_info .debug_line .debug_str .debug_line_str .debug_rnglists
    .debug_addr .debug_str_offsets)
le32() {
    local n=$1
    printf "\\x$(printf %02x $((n & 255)))\\x$(printf %02x $(((n >> 8) & 255)))"
    printf "\\x$(printf %02x $(((n >> 16) & 255)))\\x$(printf %02x $(((n >> 24) & 255)))"
}
for input in prog1.o prog2.o prog5.o shape0.o prog libfz.so; do
    objcopy --decompress-debug-sections "$input" plain
    out="$corpus/dwarf/$input.dwarf"
    : >"$out"
    for s in "${!sections[@]}"; do
        objcopy --dump-section "${sections[$s]}=section.bin" plain junk 2>/dev/null || true
        if [ -s section.bin ]; then
            printf "\\x$(printf %02x "$s")" >>"$out"
            le32 "$(stat -c %s section.bin)" >>"$out"
            cat section.bin >>"$out"
        fi
        rm -f section.bin junk
    done
done

# LSP streams: the first byte is the chunk size minus one, then framed messages.
frame() {
    printf 'Content-Length: %d\r\n\r\n%s' "${#1}" "$1"
}
{
    printf '\x07'
    frame '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}'
    frame '{"jsonrpc":"2.0","method":"initialized","params":{}}'
    frame '{"jsonrpc":"2.0","id":2,"method":"workspace/executeCommand","params":{"command":"hot-lsp.status","arguments":[]}}'
} >"$corpus/lsp_framing/session"
{
    printf '\xff'
    frame '{"jsonrpc":"2.0","method":"textDocument/didSave","params":{"textDocument":{"uri":"file:///w/main.c"}}}'
    frame '{"jsonrpc":"2.0","id":"a","result":null}'
} >"$corpus/lsp_framing/save"
{
    printf '\x00'
    printf 'Content-Length: 99999999999\r\n\r\n{}'
    frame '{oops'
    frame '{"jsonrpc":"2.0","id":3,"method":"shutdown"}'
} >"$corpus/lsp_framing/hostile"

for t in object_parse image_read dwarf link_plan lsp_framing; do
    echo "$t: $(find "$corpus/$t" -type f | wc -l) seeds"
done
