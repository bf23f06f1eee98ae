//! The backend for platforms not supported yet (macOS: Mach; other architectures): every
//! operation fails with a clear error.

use std::ops::Range;

use crossbeam_channel::Sender;

use crate::{ApplyReport, LaunchSpec, Mapping, ProcessError, ProcessEvent, Protection, WritePlan};

pub(crate) struct Debuggee {
    never: std::convert::Infallible,
}

fn unsupported() -> ProcessError {
    ProcessError::Other(format!(
        "hot-process supports only Linux x86-64 so far (this is {} {})",
        std::env::consts::OS,
        std::env::consts::ARCH
    ))
}

impl Debuggee {
    pub(crate) fn launch(
        _spec: &LaunchSpec,
        _events: Sender<ProcessEvent>,
    ) -> Result<Debuggee, ProcessError> {
        Err(unsupported())
    }
    pub(crate) fn attach(
        _pid: i32,
        _events: Sender<ProcessEvent>,
    ) -> Result<Debuggee, ProcessError> {
        Err(unsupported())
    }
    pub(crate) fn pid(&self) -> i32 {
        match self.never {}
    }
    pub(crate) fn launched(&self) -> bool {
        match self.never {}
    }
    pub(crate) fn mappings(&self) -> Result<Vec<Mapping>, ProcessError> {
        match self.never {}
    }
    pub(crate) fn read_memory(&self, _addr: u64, _len: usize) -> Result<Vec<u8>, ProcessError> {
        match self.never {}
    }
    pub(crate) fn is_trampoline(&self, _mapping: &crate::Mapping) -> bool {
        match self.never {}
    }
    pub(crate) fn debugger(&self) -> Option<crate::Debugger> {
        match self.never {}
    }
    pub(crate) fn write_memory(
        &self,
        _addr: u64,
        _bytes: &[u8],
        _what: &str,
    ) -> Result<(), ProcessError> {
        match self.never {}
    }
    pub(crate) fn auxv(&self) -> Result<Vec<(u64, u64)>, ProcessError> {
        match self.never {}
    }
    pub(crate) fn image_range(&self) -> Result<Range<u64>, ProcessError> {
        match self.never {}
    }
    pub(crate) fn map_arena(
        &self,
        _near: Range<u64>,
        _size: (u64, u64),
        _prot: Protection,
    ) -> Result<Range<u64>, ProcessError> {
        match self.never {}
    }
    pub(crate) fn apply(&self, _plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        match self.never {}
    }
    pub(crate) fn check(&self, _plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        match self.never {}
    }
    pub(crate) fn call_function(
        &self,
        _function: u64,
        _args: &[u64],
        _limits: crate::CallLimits,
        _what: &str,
        _blocked_only: bool,
    ) -> Result<u64, ProcessError> {
        match self.never {}
    }
    pub(crate) fn stop(self) {
        match self.never {}
    }
    pub(crate) fn detach(self) {
        match self.never {}
    }
}
