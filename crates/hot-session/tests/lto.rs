//! Programs built with link-time optimization (fixture `lto`, built by each row with real gcc
//! or clang, GNU ld or lld): the launch warns once naming the executable, a save of a file
//! that went through LTO is refused with one `lto-build` error on its first line and nothing
//! written, and in a program only partly built with -flto the other files still swap.

mod common;

use common::Fixture;
use hot_session::Severity;

/// One way to build the fixture and one save.
struct Row {
    /// The compiler (`cc`, `clang`).
    cc: &'static str,
    /// The LTO options of the files in `lto_files`, and of the link.
    lto: &'static str,
    /// Extra link options (`-fuse-ld=lld`).
    ld: &'static str,
    lto_files: &'static [&'static str],
    /// The file saved, with `calc=7`/`other=1` changed to `calc=70`/`other=10`.
    save: &'static str,
    /// Refused (`lto-build`), or swapped.
    refused: bool,
}

const FILES: &[&str] = &["main.c", "calc.c", "other.c"];

/// Write the row's build command and compile database into the copied fixture.
fn configure(f: &Fixture, row: &Row) {
    let flags = |file: &str| {
        let lto = if row.lto_files.contains(&file) {
            row.lto
        } else {
            ""
        };
        format!("{} -O0 -g {lto}", row.cc)
    };
    let objects: Vec<String> = FILES.iter().map(|f| f.replace(".c", ".o")).collect();
    let mut build: Vec<String> = FILES
        .iter()
        .map(|file| format!("{} -c {file} -o {}", flags(file), file.replace(".c", ".o")))
        .collect();
    build.push(format!(
        "{} {} {} -o app {}",
        row.cc,
        row.lto,
        row.ld,
        objects.join(" ")
    ));
    f.write(
        "hot-lsp.toml",
        &format!(
            "[program]\npath = \"app\"\nbuild = \"{}\"\n",
            build.join(" && ")
        ),
    );
    let dir = f.dir.path().display().to_string();
    let entries: Vec<String> = FILES
        .iter()
        .map(|file| {
            let args: Vec<String> = flags(file)
                .split_whitespace()
                .chain(["-c", file, "-o", &file.replace(".c", ".o")])
                .map(|a| format!("{a:?}"))
                .collect();
            format!(
                "{{\"directory\": {dir:?}, \"file\": {file:?}, \"arguments\": [{}]}}",
                args.join(", ")
            )
        })
        .collect();
    f.write(
        "compile_commands.json",
        &format!("[\n{}\n]\n", entries.join(",\n")),
    );
}

/// Build and launch as the row says: a warning names the executable and -flto; the save is
/// refused with exactly one `lto-build` error on line 1 and the program goes on unchanged,
/// or (a file built without -flto) it swaps.
fn check(row: &Row) {
    let mut f = Fixture::copy("lto");
    configure(&f, row);
    f.start();
    f.wait_launched();
    f.wait_output("calc=7 other=1");
    let warning = f.wait_message(Severity::Warning);
    let app = f.path("app").display().to_string();
    for needle in [
        app.as_str(),
        "-flto",
        "hot reload needs a build without -flto",
    ] {
        assert!(warning.contains(needle), "{needle:?} not in {warning:?}");
    }
    let (from, to, after) = match row.save {
        "calc.c" => (
            "return v * 0 + base();",
            "return v * 0 + base() * 10;",
            "calc=70",
        ),
        _ => ("return v * 0 + 1;", "return v * 0 + 10;", "other=10"),
    };
    f.edit(row.save, from, to);
    f.save(row.save);
    if !row.refused {
        let swap = f.wait_swap();
        assert!(!swap.swapped.is_empty(), "{swap:?}");
        f.wait_output(after);
        f.assert_same_process();
        return;
    }
    let diagnostics = f.wait_diagnostics(row.save);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    let d = &diagnostics[0];
    assert_eq!(
        (d.code.as_str(), d.line, d.severity),
        ("lto-build", 1, Severity::Error),
        "{d:#?}"
    );
    for needle in [
        app.as_str(),
        "built with -flto",
        row.save,
        "Nothing was written",
        "hot reload needs a build without -flto",
    ] {
        assert!(
            d.message.contains(needle),
            "{needle:?} not in {:?}",
            d.message
        );
    }
    f.assert_unchanged(0, "calc=7 other=1", 3);
}

/// Every build and save: a row each (`ld` and the partial rows as the tests below say).
const ROWS: &[Row] = &[
    row("cc", "-flto", "", FILES, "calc.c", true),
    row(
        "cc",
        "-flto=auto -ffat-lto-objects",
        "",
        FILES,
        "calc.c",
        true,
    ),
    row("clang", "-flto", "", FILES, "calc.c", true),
    row("clang", "-flto=thin", "", FILES, "calc.c", true),
    // lld keeps every file's name in a ThinLTO link: the compile command tells.
    row("clang", "-flto=thin", "-fuse-ld=lld", FILES, "calc.c", true),
    // Only main.c and calc.c went through LTO: calc.c is refused, other.c swaps.
    row("cc", "-flto", "", PARTIAL, "calc.c", true),
    row("cc", "-flto", "", PARTIAL, "other.c", false),
    row("clang", "-flto", "", PARTIAL, "calc.c", true),
    row("clang", "-flto", "", PARTIAL, "other.c", false),
];

const PARTIAL: &[&str] = &["main.c", "calc.c"];

const fn row(
    cc: &'static str,
    lto: &'static str,
    ld: &'static str,
    lto_files: &'static [&'static str],
    save: &'static str,
    refused: bool,
) -> Row {
    Row {
        cc,
        lto,
        ld,
        lto_files,
        save,
        refused,
    }
}

#[test]
fn gcc_flto_is_refused() {
    check(&ROWS[0]);
}

#[test]
fn gcc_flto_auto_with_fat_objects_is_refused() {
    check(&ROWS[1]);
}

#[test]
fn clang_flto_is_refused() {
    check(&ROWS[2]);
}

#[test]
fn clang_thin_lto_is_refused() {
    check(&ROWS[3]);
}

#[test]
fn clang_thin_lto_linked_by_lld_is_refused() {
    check(&ROWS[4]);
}

#[test]
fn gcc_partial_lto_refuses_only_the_lto_files() {
    check(&ROWS[5]);
    check(&ROWS[6]);
}

#[test]
fn clang_partial_lto_refuses_only_the_lto_files() {
    check(&ROWS[7]);
    check(&ROWS[8]);
}
