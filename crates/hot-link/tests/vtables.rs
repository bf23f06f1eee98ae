//! C++ vtables of a program built by `c++` and `clang++` and linked by GNU ld, as a PIE (the
//! running program's vtable words are `RELATIVE` relocations) and without PIE (absolute
//! addresses in the file): a vtable whose layout changed (a virtual function added, two
//! swapped, a base class added, also through a secondary base with its `this`-adjusting
//! thunks) is refused with `layout-changed` naming the class; the same vtable with another
//! body or an override added is linked, the latter as an in-place update of the vtable.

mod support;

use hot_link::{LinkErrorCode, LinkRequest, Linker, Patch, UnitRef};
use hot_object::TranslationUnitId;
use support::*;

/// `Shape` has two polymorphic bases: `Other` is a secondary base, so `Shape::b` is also
/// reached through a thunk in the secondary vtable. `d` is overridden by nobody.
const SHAPES: &str = r#"
struct Base {
    virtual ~Base() {}
    virtual int a() const { return 1; }
    virtual int d() const { return 4; }
};
struct Other {
    virtual int b() const { return 2; }
};
struct Shape : Base, Other {
    int a() const override;
    int b() const override;
    virtual int c() const { return 3; }
};
int Shape::a() const { return 10; }
int Shape::b() const { return 20; }
Shape *make() { return new Shape; }
int main() {
    Shape *s = make();
    return s->a() + s->b() + s->c() + s->d();
}
"#;

/// What linking an edit must give.
enum Expect {
    /// Linked; `in_place` says whether the vtable of `Shape` is rewritten in place.
    Linked { in_place: bool },
    /// Refused with `layout-changed` naming each of these classes.
    Refused(&'static [&'static str]),
}

/// Build SHAPES with `compiler` (PIE or not), apply `edits` to a copy, compile it and link it
/// against the image with the original object as baseline.
fn link_edit(compiler: &str, pie: bool, edits: &[(&str, &str)]) -> Result<Patch, Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    // No RTTI: the typeinfo objects point at libstdc++'s vtables, which this image without
    // libraries does not have (the session tests cover type information).
    let flags = ["-O0", "-fno-rtti", if pie { "-fPIE" } else { "-fno-pie" }];
    let built = compile_with(compiler, dir.path(), "shapes.cpp", SHAPES, &flags);
    let exe = ld(
        dir.path(),
        std::slice::from_ref(&built),
        &[],
        &[
            if pie { "-pie" } else { "-no-pie" },
            "--unresolved-symbols=ignore-all",
        ],
    )
    .exe;
    let baseline = parse_object(&built);
    let mut text = SHAPES.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in the fixture");
        text = text.replacen(from, to, 1);
    }
    let sub = dir.path().join("new");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let object = parse_object(&compile_with(compiler, &sub, "shapes.cpp", &text, &flags));
    let (bias, arenas) = if pie {
        (BIAS, arenas_below_image())
    } else {
        (0, low_arenas())
    };
    let linker = Linker::new(image_model(module(&exe, bias), vec![]), arenas);
    let image = &linker.image().exe.image;
    let unit = UnitRef {
        tu: image
            .translation_units
            .iter()
            .position(|n| n == "shapes.cpp")
            .map(|i| TranslationUnitId(i as u32)),
        compile_unit: image
            .compile_units
            .iter()
            .position(|cu| cu.name.ends_with("shapes.cpp")),
        source: "shapes.cpp".into(),
    };
    linker
        .link(&LinkRequest {
            object: &object,
            baseline: Some(&baseline),
            unit,
            applied: &[],
        })
        .map_err(|errors| {
            errors
                .into_iter()
                .filter(|e| e.code == LinkErrorCode::LayoutChanged)
                .map(|e| e.message)
                .collect()
        })
}

/// What a row shows, its replacements in SHAPES, and what linking them must give.
type Row = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Expect,
);

#[test]
fn vtable_layout_changes_are_refused_and_same_layout_edits_link() {
    let rows: [Row; 6] = [
        (
            "a body edited",
            &[("return 20;", "return 21;")],
            Expect::Linked { in_place: false },
        ),
        (
            "an override added",
            &[(
                "    virtual int c() const",
                "    int d() const override { return 40; }\n    virtual int c() const",
            )],
            Expect::Linked { in_place: true },
        ),
        (
            "a virtual function added to the secondary base",
            &[(
                "    virtual int b() const { return 2; }",
                "    virtual int b() const { return 2; }\n    virtual int e() const { return 5; }",
            )],
            Expect::Refused(&["Other", "Shape"]),
        ),
        (
            "two virtual functions of the primary base swapped",
            &[
                ("    virtual int a() const { return 1; }\n", ""),
                (
                    "    virtual int d() const { return 4; }\n",
                    "    virtual int d() const { return 4; }\n    virtual int a() const { return 1; }\n",
                ),
            ],
            Expect::Refused(&["Base", "Shape"]),
        ),
        (
            "a polymorphic base class added",
            &[(
                "struct Shape : Base, Other {",
                "struct Extra {\n    virtual int x() const { return 9; }\n};\nstruct Shape : Base, Extra, Other {",
            )],
            Expect::Refused(&["Shape"]),
        ),
        (
            "an own virtual function renamed",
            &[("virtual int c() const { return 3; }", "virtual int k() const { return 3; }"), ("s->c()", "s->k()")],
            Expect::Refused(&["Shape"]),
        ),
    ];
    for compiler in ["c++", "clang++"] {
        for pie in [true, false] {
            for (what, edits, expect) in &rows {
                let context = format!("{compiler}, pie {pie}, {what}");
                let result = link_edit(compiler, pie, edits);
                match (expect, result) {
                    (Expect::Linked { in_place }, Ok(patch)) => {
                        let vtable_written =
                            patch.in_place.iter().any(|w| w.function == "_ZTV5Shape");
                        assert_eq!(vtable_written, *in_place, "{context}: {patch:#?}");
                    }
                    (Expect::Refused(classes), Err(messages)) => {
                        for class in *classes {
                            assert!(
                                messages
                                    .iter()
                                    .any(|m| m.contains(&format!("vtable of `{class}`"))),
                                "{context}: {class} not named in {messages:#?}"
                            );
                        }
                    }
                    (Expect::Linked { .. }, Err(messages)) => {
                        panic!("{context}: refused: {messages:#?}")
                    }
                    (Expect::Refused(_), Ok(patch)) => {
                        panic!("{context}: linked: {:?}", patch.swapped)
                    }
                }
            }
        }
    }
}
