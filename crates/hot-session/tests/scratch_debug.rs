#[test]
fn scratch() {
    let p = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
    let img = hot_object::LinkedImage::parse(p, &std::fs::read(p).unwrap()).unwrap();
    for s in img.symbols.iter().filter(|s| ["fprintf", "stderr", "strlen"].contains(&s.name.as_str())) {
        eprintln!("{s:?}");
    }
}
