//! The program's life in a session: launch (after the build command), attach, adopt (read
//! its image, queue the baselines, re-apply this session's changes to a relaunch), stop.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hot_process::{Debuggee, LaunchSpec, ProcessEvent};

use super::pipeline::{ProgramLeft, Refused};
use super::{risky_optimisation, Worker, HOT_RELOAD_FLAGS};
use crate::config;
use crate::program::{Program, SourceMap};
use crate::{SessionEvent, Severity, State};

/// How long after an adoption idle time keeps looking whether the libraries are loaded;
/// after that the linker is prepared by the first save.
const PREPARE_WAIT: Duration = Duration::from_secs(5);

impl Worker {
    /// Map the arenas and index the image as soon as the dynamic linker is done, so the
    /// first save pays only for its own change. A failure shows again, and is reported, on
    /// the first save.
    pub(super) fn try_prepare_linker(&mut self) {
        let Some(until) = self.prepare_linker_until else {
            return;
        };
        let Some(program) = self.program.as_mut() else {
            self.prepare_linker_until = None;
            return;
        };
        if program.linker.is_some() || Instant::now() >= until {
            self.prepare_linker_until = None;
            return;
        }
        if program.libraries_ready() {
            self.prepare_linker_until = None;
            let started = Instant::now();
            match program.linker() {
                // What scripts/bench counts as launch-to-ready: a save now pays only for
                // its own compile, link and swap (baselines may still be compiling).
                Ok(_) => tracing::info!(
                    took = ?started.elapsed(),
                    "ready for saves: the image is read and indexed"
                ),
                Err(e) => tracing::debug!("preparing the linker: {e}"),
            }
            self.snapshot_library_files();
        }
    }

    pub(super) fn launch(&mut self) {
        if !self.config_errors.is_empty() {
            // Launching with the defaults instead would only add a false "path is not set".
            self.fail(self.config_error_summary());
            return;
        }
        let Some(path) = self.config.program.path.clone() else {
            self.fail(format!(
                "{}: [program] path is not set, so there is nothing to launch",
                self.options.root.join(config::CONFIG_FILE).display()
            ));
            return;
        };
        self.build_started = None;
        if let Some(build) = self.config.program.build.clone() {
            self.set_state(State::Building, Some(format!("running `{build}`")));
            self.build_started = Some(std::time::SystemTime::now());
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(&build)
                .current_dir(&self.options.root)
                .stdin(std::process::Stdio::null())
                .output();
            match output {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    let tail = String::from_utf8_lossy(&out.stderr);
                    let tail: Vec<&str> = tail.lines().rev().take(10).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    self.fail(format!(
                        "the build command `{build}` failed ({}):\n{}",
                        out.status,
                        tail.join("\n")
                    ));
                    return;
                }
                Err(e) => {
                    self.fail(format!("cannot run the build command `{build}`: {e}"));
                    return;
                }
            }
        }
        let root = &self.options.root;
        let spec = LaunchSpec {
            path: root.join(&path),
            args: self.config.program.args.iter().map(Into::into).collect(),
            cwd: root.join(&self.config.program.cwd),
            env: self
                .config
                .program
                .env
                .iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            disable_aslr: self.config.program.disable_aslr,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        match Debuggee::launch(&spec, tx) {
            Ok(debuggee) => self.adopt(debuggee, rx),
            Err(e) => self.fail_process(&e, ""),
        }
    }

    pub(super) fn attach(&mut self, pid: i32) {
        if self.program.is_some() {
            self.stop_program(true);
        }
        self.build_started = None;
        let (tx, rx) = crossbeam_channel::unbounded();
        match Debuggee::attach(pid, tx) {
            Ok(debuggee) => self.adopt(debuggee, rx),
            Err(e) => self.fail_process(&e, ""),
        }
    }

    /// Take a started or attached program under management: read its image, compile the
    /// baselines of its translation units, report it running.
    pub(super) fn adopt(&mut self, debuggee: Debuggee, events: Receiver<ProcessEvent>) {
        let started = Instant::now();
        let pid = debuggee.pid();
        self.process_events = events;
        // An event kept from the process this one replaces is not about this one.
        self.deferred = None;
        // Saves held back by a debugger, and compiles ahead, were for the previous process.
        self.held_saves.clear();
        // Saves held for a library not loaded yet are kept: a relaunch has not loaded it
        // either, and gets them when it does.
        self.moved_files.clear();
        self.ahead.forget_process();
        self.exe_modified = debuggee.executable_modified();
        // Where the image's compile units are in this workspace (the build may have run
        // elsewhere): the build is done, so the compile database is the one it left.
        let (root, path_map) = (
            self.options.root.clone(),
            self.config.compile.path_map.clone(),
        );
        let sources = SourceMap::new(&root, &path_map, self.database());
        self.program = Some(Program::new(debuggee, sources));
        self.baselines.clear();
        self.forget_baselines();
        let announce = |worker: &Worker| {
            worker.emit(SessionEvent::Launched { pid });
            worker.update_status(|s| {
                s.state = State::Running;
                s.pid = Some(pid);
                s.exit_code = None;
                s.signal = None;
                s.message = None;
            });
        };
        let image_error = self.program.as_mut().and_then(|p| p.image().err());
        let image_read = started.elapsed();
        if let Some(e) = image_error {
            announce(self);
            self.fail(e);
            return;
        }
        self.warn_about_optimisation();
        self.warn_about_lto();
        let build_id = self
            .program
            .as_ref()
            .and_then(|p| p.image.as_ref())
            .and_then(|i| i.exe.image.build_id.clone());
        // Dependency lists survive a relaunch of the very same executable only: another
        // build (or one without a build-id, which cannot be told apart) may include others.
        if build_id.is_none() || build_id != self.dependencies_build_id {
            self.dependencies.clear();
            self.dependencies_build_id = build_id.clone();
        }
        let replay = if build_id.is_some() && build_id == self.replay_build_id {
            std::mem::take(&mut self.replay)
        } else {
            self.replay.clear();
            Vec::new()
        };
        // The sources are read before the launch is announced, so an edit made as soon as
        // the program shows up is never mistaken for the text it was built from.
        self.queue_baselines(&replay);
        tracing::debug!(
            ?image_read,
            snapshots = ?started.elapsed().saturating_sub(image_read),
            "adopted: the image read, the sources snapshotted"
        );
        announce(self);
        self.report_baselines();
        // Prepare the linker now if the dynamic linker is done, else in idle time soon.
        self.prepare_linker_until = Some(Instant::now() + PREPARE_WAIT);
        self.try_prepare_linker();
        if !replay.is_empty() {
            // No baseline: the fresh process runs the executable's original code, and each
            // file is compared with it (hot-link's image_diff) to find what the session changed.
            // All in one swap (one link, parallel compiles, one atomic commit: the
            // includers of a header swapped together are never seen half re-applied); if
            // that is refused, file by file, so one file that no longer swaps does not hold
            // back the others.
            let together = match replay.as_slice() {
                [first, _, ..] => Some(self.swap_files(first, &replay)),
                _ => None,
            };
            let applied = match together {
                Some(Ok(Some(summary))) => summary.files.len(),
                Some(Ok(None)) => 0,
                // The files are not tried one by one in a program that is gone (after an
                // exec they are, in its new image: its adoption had no replay list to apply).
                Some(Err(Refused::Left(ProgramLeft::Exited))) => 0,
                _ => replay
                    .iter()
                    .filter(|file| matches!(self.compile_link_swap(file), Ok(Some(_))))
                    .count(),
            };
            // Files of a library the relaunch has not loaded yet are held for its load
            // (`held.rs`), not counted as re-applied or lost.
            let held = replay
                .iter()
                .filter(|file| self.awaiting_load.iter().any(|h| h.files.contains(file)))
                .count();
            let waiting = match held {
                0 => String::new(),
                n => format!(
                    "; {n} file(s) of a library it has not loaded yet are applied when it \
                     loads it"
                ),
            };
            self.message(
                Severity::Information,
                format!(
                    "re-applied this session's changes to {applied} of {} file(s) in the \
                     relaunched program{waiting}",
                    replay.len() - held
                ),
            );
        }
    }

    /// The program called `exec`: the same process runs a new image. Everything read from
    /// the old one (image, linker and arenas, journal, baselines) is dropped and the new
    /// image adopted as if just launched; a program that re-executes itself gets this
    /// session's changes again (same build-id), as a relaunch would.
    pub(super) fn on_exec(&mut self, path: &str) {
        let Some(program) = self.program.take() else {
            return;
        };
        let pid = program.debuggee.pid();
        self.message(
            Severity::Warning,
            format!(
                "pid {pid} called exec and now runs {path}: the functions swapped into its \
                 previous image are gone with it; hot-lsp reads the new image"
            ),
        );
        let events = std::mem::replace(&mut self.process_events, crossbeam_channel::never());
        self.adopt(program.debuggee, events);
    }

    pub(super) fn stop_program(&mut self, detach: bool) {
        let Some(program) = self.program.take() else {
            return;
        };
        self.process_events = crossbeam_channel::never();
        // Its exit or exec kept while the worker waited is over with it: delivered after a
        // relaunch, it would drop the new program.
        self.deferred = None;
        self.forget_baselines();
        if detach || !program.debuggee.launched() {
            program.debuggee.detach();
            self.update_status(|s| {
                s.state = State::Idle;
                s.pid = None;
                s.message = Some("detached".into());
            });
        } else {
            program.debuggee.stop();
            self.update_status(|s| {
                s.state = State::Exited;
                s.pid = None;
            });
        }
    }

    pub(super) fn warn_about_optimisation(&mut self) {
        if self.warned_optimisation {
            return;
        }
        let Some(image) = self.program.as_ref().and_then(|p| p.image.as_ref()) else {
            return;
        };
        let risky = image
            .exe
            .image
            .compile_units
            .iter()
            .find(|cu| cu.producer.as_deref().is_some_and(risky_optimisation));
        if let Some(cu) = risky {
            let text = format!(
                "{} was built with {} and without -fno-ipa-ra: callers may rely on which registers \
                 the old callee clobbered, so a swapped function can corrupt them. Build with the \
                 hot-reload flags ({HOT_RELOAD_FLAGS}).",
                cu.name,
                cu.producer.as_deref().unwrap_or("optimisation"),
            );
            self.warned_optimisation = true;
            self.message(Severity::Warning, text);
        }
    }
}
