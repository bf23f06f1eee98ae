//! Times parsing and diffing one object: `cargo run --release --example parse_time -p
//! hot-object -- file.o` (a profiling aid for the save path, not a benchmark of record).
fn main() {
    let path = std::env::args().nth(1).expect("object path");
    let bytes = std::fs::read(&path).expect("read");
    let p = std::path::Path::new(&path);
    let mut times = Vec::new();
    let mut obj = None;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        obj = Some(hot_object::Object::parse(p, &bytes).expect("parse"));
        times.push(t.elapsed().as_micros());
    }
    times.sort();
    println!("parse median {} us", times[10]);
    let obj = obj.expect("parsed");
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = std::time::Instant::now();
        let d = hot_object::changed_functions(&obj, &obj);
        std::hint::black_box(d);
        times.push(t.elapsed().as_micros());
    }
    times.sort();
    println!("diff median {} us", times[10]);
}
