#!/usr/bin/env bash
# Fetches one corpus program's C sources from a package registry and builds it with its own
# build system and flags, recording the compile commands with bear.
#
#   tests/corpus/fetch.sh NAME DIR
#
# NAME is lua (Debian source package lua5.4), mawk (Debian source package mawk, built by its
# configure), mawk-debian (the same, built with Debian's dpkg-buildflags), jq (the PyPI
# sdist of the `jq` bindings, which ships jq's own release tarball) or jq-onig (the same
# with its bundled oniguruma regular expression library), jsoncpp (Debian source package
# libjsoncpp, a C++ library, built by its CMake with a driver, jsoncpp-work.cpp, linked
# against it) or sqlite (the npm tarball of the `sqlite3` bindings, which ships SQLite's own
# amalgamation tarball: sqlite3.c, about 270,000 lines in one file, and the shell) or lz4
# (Debian source package lz4: its library, whose lz4hc.c includes lz4.c, built by its
# makefile with a driver, lz4-work.c, linked against it) or zstd (Debian source package
# libzstd: its static library built by its lib/Makefile with the hot-reload -O2 flags, and a
# driver, zstd-work.c, linked against it). The program is
# unpacked into DIR/NAME, built there, and DIR/NAME/compile_commands.json is written. Every
# failure (no registry, no package, a failed build) exits non-zero: the corpus test fails
# rather than skips. Used by server/tests/corpus.rs.
set -euo pipefail

name=${1:?usage: fetch.sh NAME DIR}
dir=${2:?usage: fetch.sh NAME DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
downloads="$dir/downloads"
mkdir -p "$downloads"

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    # Several corpus tests may run at once: wait for dpkg's lock instead of failing on it.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 "$2" >/dev/null
}

# Debian source packages without touching the machine's apt configuration: a private
# sources list, package lists and cache under DIR.
debian_source() {
    local package=$1
    local apt="$dir/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    local suite
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    echo "deb-src http://deb.debian.org/debian $suite main" >"$apt/sources.list"
    local options=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -q)
    apt-get "${options[@]}" update >/dev/null
    (cd "$downloads" && apt-get "${options[@]}" source --download-only "$package" >/dev/null 2>&1) || {
        echo "fetch.sh: apt-get source $package failed" >&2
        exit 1
    }
}

# Unpacks the upstream release tarball of a Debian source package (without Debian's patches,
# whose build system for lua5.4 builds a libtool shared library); gzip or xz (libzstd).
unpack_orig() {
    local pattern=$1
    local target=$2
    local tarball
    tarball=$(ls "$downloads"/$pattern 2>/dev/null | head -n 1)
    [ -n "$tarball" ] || {
        echo "fetch.sh: no $pattern downloaded" >&2
        exit 1
    }
    rm -rf "$target"
    mkdir -p "$target"
    tar xf "$tarball" -C "$target" --strip-components=1
}

need bear bear
need make make

case "$name" in
lua)
    debian_source lua5.4
    unpack_orig 'lua5.4_*.orig.tar.gz' "$dir/lua"
    # Lua's own makefile and flags: gcc -std=gnu99 -O2 -Wall -Wextra -DLUA_COMPAT_5_3
    # -DLUA_USE_LINUX, no -g.
    (cd "$dir/lua" && bear -- make -j2 linux >build.log 2>&1) || {
        tail -n 30 "$dir/lua/build.log" >&2
        exit 1
    }
    ;;
mawk)
    debian_source mawk
    unpack_orig 'mawk_*.orig.tar.gz' "$dir/mawk"
    # mawk's own configure: -g -O2 and its defines.
    (cd "$dir/mawk" && ./configure >configure.log 2>&1 && bear -- make -j2 >build.log 2>&1) || {
        tail -n 30 "$dir/mawk/configure.log" "$dir/mawk/build.log" >&2 2>/dev/null
        exit 1
    }
    ;;
mawk-debian)
    # The same sources built the way Debian packages are: dpkg-buildflags adds
    # -ffile-prefix-map=$PWD=. (reproducible builds: DWARF names "." instead of the build
    # folder), -fstack-protector-strong and -D_FORTIFY_SOURCE=2.
    need dpkg-buildflags dpkg-dev
    debian_source mawk
    unpack_orig 'mawk_*.orig.tar.gz' "$dir/mawk-debian"
    (cd "$dir/mawk-debian" &&
        CFLAGS="$(dpkg-buildflags --get CFLAGS)" CPPFLAGS="$(dpkg-buildflags --get CPPFLAGS)" \
            LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" ./configure >configure.log 2>&1 &&
        bear -- make -j2 >build.log 2>&1) || {
        tail -n 30 "$dir/mawk-debian/configure.log" "$dir/mawk-debian/build.log" >&2 2>/dev/null
        exit 1
    }
    ;;
jq | jq-onig)
    (cd "$downloads" && pip download -q --disable-pip-version-check --no-deps --no-binary jq \
        -d . 'jq==1.13.0' >/dev/null) || {
        echo "fetch.sh: pip download jq failed" >&2
        exit 1
    }
    rm -rf "$dir/jq-sdist" "$dir/$name"
    mkdir -p "$dir/jq-sdist" "$dir/$name"
    tar xzf "$downloads"/jq-1.13.0.tar.gz -C "$dir/jq-sdist" --strip-components=1
    tar xzf "$dir"/jq-sdist/deps/jq-*.tar.gz -C "$dir/$name" --strip-components=1
    # jq's own configure: -g -O2 plus its warnings; a static executable (no libtool wrapper
    # script around a shared libjq). jq-onig also builds the bundled oniguruma (regular
    # expressions, about half a minute more); jq goes without.
    onig=--without-oniguruma
    [ "$name" = jq-onig ] && onig=--with-oniguruma=builtin
    (cd "$dir/$name" && ./configure --disable-shared "$onig" --disable-docs \
        >configure.log 2>&1 && bear -- make -j2 >build.log 2>&1) || {
        tail -n 30 "$dir/$name/configure.log" "$dir/$name/build.log" >&2 2>/dev/null
        exit 1
    }
    ;;
jsoncpp)
    # A C++ library: classes with virtual members, exceptions, the standard library's
    # templates. jsoncpp's own CMake build (RelWithDebInfo: -O2 -g -DNDEBUG and its warnings),
    # static library only, then the corpus driver linked against it with the same flags.
    need cmake cmake
    need c++ g++
    debian_source libjsoncpp
    unpack_orig 'libjsoncpp_*.orig.tar.gz' "$dir/jsoncpp"
    cp "$(dirname "$0")/jsoncpp-work.cpp" "$dir/jsoncpp/work.cpp"
    (cd "$dir/jsoncpp" && cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DBUILD_SHARED_LIBS=OFF -DBUILD_STATIC_LIBS=ON -DBUILD_OBJECT_LIBS=OFF \
        -DJSONCPP_WITH_TESTS=OFF -DJSONCPP_WITH_POST_BUILD_UNITTEST=OFF \
        -DJSONCPP_WITH_PKGCONFIG_SUPPORT=OFF -DJSONCPP_WITH_CMAKE_PACKAGE=OFF \
        >configure.log 2>&1 &&
        bear -- cmake --build build -j2 >build.log 2>&1 &&
        bear --append -- c++ -Iinclude -O2 -g -DNDEBUG -std=c++11 -o work work.cpp \
            build/lib/libjsoncpp.a >>build.log 2>&1) || {
        tail -n 30 "$dir/jsoncpp/configure.log" "$dir/jsoncpp/build.log" >&2 2>/dev/null
        exit 1
    }
    ;;
sqlite)
    # SQLite's amalgamation as its authors ship it (sqlite-autoconf: sqlite3.c, shell.c and
    # a configure), here from the npm tarball of the `sqlite3` bindings. The shell is built
    # by its own makefile from both files; CFLAGS is the hot-reload profile -g -O1 instead
    # of the default -g -O2, because every save recompiles all of sqlite3.c (at -O2 about
    # 100 s of CPU each on the 2-core machine, at -O1 about 35 s).
    need npm npm
    (cd "$downloads" && npm pack --silent sqlite3@6.0.1 >/dev/null 2>&1) || {
        echo "fetch.sh: npm pack sqlite3 failed" >&2
        exit 1
    }
    rm -rf "$dir/sqlite-npm" "$dir/sqlite"
    mkdir -p "$dir/sqlite-npm" "$dir/sqlite"
    tar xzf "$downloads"/sqlite3-6.0.1.tgz -C "$dir/sqlite-npm" --strip-components=1
    tar xzf "$dir"/sqlite-npm/deps/sqlite-autoconf-*.tar.gz -C "$dir/sqlite" --strip-components=1
    (cd "$dir/sqlite" && ./configure --disable-shared CFLAGS="-g -O1" >configure.log 2>&1 &&
        bear -- make -j2 sqlite3 >build.log 2>&1) || {
        tail -n 30 "$dir/sqlite/configure.log" "$dir/sqlite/build.log" >&2 2>/dev/null
        exit 1
    }
    ;;
lz4)
    # lz4's library: lz4hc.c includes lz4.c (#include "lz4.c" with LZ4_COMMONDEFS_ONLY) for
    # its common static inline code, so lz4hc.o carries copies of lz4.c's functions. Its own
    # makefile and flags (-O3 and its warnings, no -g: the library's files are known by their
    # STT_FILE groups), a static library, then the corpus driver (lz4-work.c, with -g) linked
    # against it.
    debian_source lz4
    unpack_orig 'lz4_*.orig.tar.gz' "$dir/lz4"
    cp "$(dirname "$0")/lz4-work.c" "$dir/lz4/work.c"
    (cd "$dir/lz4" && bear -- make -j2 -C lib liblz4.a >build.log 2>&1 &&
        bear --append -- cc -O2 -g -Ilib -o work work.c lib/liblz4.a >>build.log 2>&1) || {
        tail -n 30 "$dir/lz4/build.log" >&2 2>/dev/null
        exit 1
    }
    ;;
zstd)
    # zstd 1.5.4's library by its own lib/Makefile, static, with the hot-reload profile for
    # -O2 (README: -fno-ipa-ra -fno-ipa-icf -fno-ipa-sra) and -g in place of its default -O3;
    # the makefile adds its warnings and defines. Without the legacy decoders and the
    # dictionary builder (its own switches; the driver uses neither): 26 files instead of 33,
    # fewer for the build and for hot-lsp's idle baselines. Its trace hooks
    # ZSTD_trace_compress_begin/end are weak functions nothing defines (zstd_trace.h). Then
    # the corpus driver (zstd-work.c), same flags.
    need xz xz-utils
    debian_source libzstd
    unpack_orig 'libzstd_*.orig.tar.*z' "$dir/zstd"
    cp "$(dirname "$0")/zstd-work.c" "$dir/zstd/work.c"
    flags="-O2 -g -fno-ipa-ra -fno-ipa-icf -fno-ipa-sra"
    (cd "$dir/zstd" && CFLAGS="$flags" bear -- make -j2 -C lib libzstd.a ZSTD_LEGACY_SUPPORT=0 \
        ZSTD_LIB_DICTBUILDER=0 >build.log 2>&1 &&
        bear --append -- cc $flags -Ilib -o work work.c lib/libzstd.a >>build.log 2>&1) || {
        tail -n 30 "$dir/zstd/build.log" >&2 2>/dev/null
        exit 1
    }
    ;;
*)
    echo "fetch.sh: unknown corpus program $name (lua, mawk, mawk-debian, jq, jq-onig, jsoncpp," \
        "sqlite, lz4 or zstd)" >&2
    exit 2
    ;;
esac

[ -s "$dir/$name/compile_commands.json" ] || {
    echo "fetch.sh: bear wrote no compile_commands.json for $name" >&2
    exit 1
}
