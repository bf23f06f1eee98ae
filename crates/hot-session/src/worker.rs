//! The session worker: one thread, a loop over a closed set of events.

use std::sync::{Arc, Mutex};

use crate::{Command, SessionEvent, SessionOptions, Status};

pub(crate) fn run(
    _options: SessionOptions,
    commands: crossbeam_channel::Receiver<Command>,
    _events: crossbeam_channel::Sender<SessionEvent>,
    _status: Arc<Mutex<Status>>,
) {
    for command in commands {
        if command == Command::Shutdown {
            break;
        }
    }
}
