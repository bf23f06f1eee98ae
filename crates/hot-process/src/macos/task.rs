//! A Mach task port and the [`Task`] operations on it: one Mach call each.

use std::ops::Range;

use mach2::kern_return::{kern_return_t, KERN_SUCCESS};
use mach2::mach_port::mach_port_deallocate;
use mach2::mach_types::{thread_act_array_t, thread_act_t};
use mach2::message::mach_msg_type_number_t;
use mach2::port::{mach_port_t, MACH_PORT_NULL};
use mach2::task::{task_resume, task_suspend, task_threads};
use mach2::thread_act::thread_get_state;
use mach2::thread_status::thread_state_t;
use mach2::traps::{mach_task_self, task_for_pid};
use mach2::vm::{
    mach_vm_deallocate, mach_vm_protect, mach_vm_read_overwrite, mach_vm_region, mach_vm_write,
};
use mach2::vm_attributes::{
    vm_machine_attribute_t, vm_machine_attribute_val_t, MATTR_CACHE, MATTR_VAL_CACHE_FLUSH,
};
use mach2::vm_region::{vm_region_basic_info_64, vm_region_info_t, VM_REGION_BASIC_INFO_64};
use mach2::vm_types::{mach_vm_address_t, mach_vm_size_t, vm_map_t};

use crate::task_apply::{task_for_pid_error, Region, Task, ThreadState};
use crate::ProcessError;

extern "C" {
    // `mach/vm_map.h`; not in mach2 0.4.
    fn vm_machine_attribute(
        target_task: vm_map_t,
        address: mach_vm_address_t,
        size: mach_vm_size_t,
        attribute: vm_machine_attribute_t,
        value: *mut vm_machine_attribute_val_t,
    ) -> kern_return_t;
}

/// The task port of a process, from `task_for_pid`; released on drop.
pub(crate) struct MachTask {
    pid: i32,
    port: mach_port_t,
    page: u64,
}

fn check(what: &str, addr: u64, kr: kern_return_t) -> Result<(), ProcessError> {
    if kr == KERN_SUCCESS {
        Ok(())
    } else {
        Err(ProcessError::Other(format!(
            "{what} at {addr:#x} failed: kern_return {kr}"
        )))
    }
}

impl MachTask {
    /// `task_for_pid`: `KERN_FAILURE` is a permission-denied diagnostic that explains the
    /// debugger entitlement and code signing.
    pub(crate) fn open(pid: i32) -> Result<MachTask, ProcessError> {
        let mut port: mach_port_t = MACH_PORT_NULL;
        // SAFETY: out-pointer to a local; the call only writes a port name there.
        let kr = unsafe { task_for_pid(mach_task_self(), pid, &mut port) };
        if kr != KERN_SUCCESS {
            return Err(task_for_pid_error(pid, kr));
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(MachTask {
            pid,
            port,
            page: u64::try_from(page).unwrap_or(4096),
        })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The task port itself, for calls `task.rs` does not wrap (`task_info`).
    pub(crate) fn port(&self) -> mach_port_t {
        self.port
    }

    /// The first VM region at or after `addr` (`mach_vm_region`), `None` past the last.
    fn region_from(&self, addr: u64) -> Option<Region> {
        let mut address: mach_vm_address_t = addr;
        let mut size: mach_vm_size_t = 0;
        // SAFETY: plain-old-data out structure.
        let mut info: vm_region_basic_info_64 = unsafe { std::mem::zeroed() };
        let mut info_count = vm_region_basic_info_64::count();
        let mut object_name: mach_port_t = MACH_PORT_NULL;
        // SAFETY: out-pointers to locals of the sizes the flavor asks.
        let kr = unsafe {
            mach_vm_region(
                self.port,
                &mut address,
                &mut size,
                VM_REGION_BASIC_INFO_64,
                (&mut info as *mut vm_region_basic_info_64) as vm_region_info_t,
                &mut info_count,
                &mut object_name,
            )
        };
        // KERN_INVALID_ADDRESS: no region at or after `addr`.
        (kr == KERN_SUCCESS).then(|| Region {
            range: address..address.saturating_add(size),
            protection: info.protection as u32,
            max_protection: info.max_protection as u32,
        })
    }

    /// Every VM region of the task in address order.
    pub(crate) fn regions(&self) -> Result<Vec<Region>, ProcessError> {
        let mut out = Vec::new();
        let mut address = 0;
        while let Some(region) = self.region_from(address) {
            address = region.range.end;
            let last = address == u64::MAX || region.range.is_empty();
            out.push(region);
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// `mach_vm_allocate` of `size` bytes exactly at `at` (`VM_FLAGS_FIXED`): zero-filled,
    /// read + write. `false` when the range is not free.
    pub(crate) fn allocate_at(&self, at: u64, size: u64) -> bool {
        let mut address: mach_vm_address_t = at;
        // SAFETY: allocates in the target only; `address` is an in-out local.
        let kr = unsafe {
            mach2::vm::mach_vm_allocate(
                self.port,
                &mut address,
                size,
                mach2::vm_statistics::VM_FLAGS_FIXED,
            )
        };
        kr == KERN_SUCCESS && address == at
    }
}

impl Drop for MachTask {
    fn drop(&mut self) {
        // SAFETY: the port name is ours (from task_for_pid) and dropped once.
        unsafe {
            mach_port_deallocate(mach_task_self(), self.port);
        }
    }
}

impl Task for MachTask {
    fn page_size(&self) -> u64 {
        self.page
    }

    fn suspend(&mut self) -> Result<(), ProcessError> {
        // SAFETY: a valid task port.
        check("task_suspend", 0, unsafe { task_suspend(self.port) })
    }

    fn resume(&mut self) -> Result<(), ProcessError> {
        // SAFETY: a valid task port.
        check("task_resume", 0, unsafe { task_resume(self.port) })
    }

    fn threads(&mut self) -> Result<Vec<ThreadState>, ProcessError> {
        let mut list: thread_act_array_t = std::ptr::null_mut();
        let mut count: mach_msg_type_number_t = 0;
        // SAFETY: out-pointers to locals; the kernel allocates the array in our space.
        check("task_threads", 0, unsafe {
            task_threads(self.port, &mut list, &mut count)
        })?;
        let mut out = Vec::with_capacity(count as usize);
        let mut failure = None;
        for i in 0..count as usize {
            // SAFETY: `list` holds `count` thread ports.
            let thread: thread_act_t = unsafe { *list.add(i) };
            match thread_state(thread) {
                Ok(state) => out.push(state),
                Err(e) => failure = Some(e),
            }
            // SAFETY: each port name in the list is ours to release once.
            unsafe {
                mach_port_deallocate(mach_task_self(), thread);
            }
        }
        // SAFETY: the array task_threads allocated, released once.
        unsafe {
            mach_vm_deallocate(
                mach_task_self(),
                list as mach_vm_address_t,
                (count as usize * std::mem::size_of::<thread_act_t>()) as mach_vm_size_t,
            );
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn region(&mut self, addr: u64) -> Result<Region, ProcessError> {
        // mach_vm_region gives the first region at or *after* `addr`.
        match self.region_from(addr) {
            Some(region) if region.range.start <= addr => Ok(region),
            _ => Err(ProcessError::Other(format!("{addr:#x} is not mapped"))),
        }
    }

    fn protect(&mut self, range: Range<u64>, protection: u32) -> Result<(), ProcessError> {
        // SAFETY: changes the target's memory protection only.
        check("mach_vm_protect", range.start, unsafe {
            mach_vm_protect(
                self.port,
                range.start,
                range.end - range.start,
                0,
                protection as i32,
            )
        })
    }

    fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, ProcessError> {
        let mut buf = vec![0u8; len];
        let mut got: mach_vm_size_t = 0;
        // SAFETY: `buf` has `len` writable bytes.
        check("mach_vm_read_overwrite", addr, unsafe {
            mach_vm_read_overwrite(
                self.port,
                addr,
                len as mach_vm_size_t,
                buf.as_mut_ptr() as mach_vm_address_t,
                &mut got,
            )
        })?;
        if got as usize != len {
            return Err(ProcessError::Other(format!(
                "read {got} of {len} bytes at {addr:#x}"
            )));
        }
        Ok(buf)
    }

    fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<(), ProcessError> {
        // SAFETY: `bytes` is readable for its length; the kernel copies it.
        check("mach_vm_write", addr, unsafe {
            mach_vm_write(
                self.port,
                addr,
                bytes.as_ptr() as usize,
                bytes.len() as mach_msg_type_number_t,
            )
        })
    }

    fn flush_code(&mut self, range: Range<u64>) -> Result<(), ProcessError> {
        if cfg!(not(target_arch = "aarch64")) {
            // x86-64 keeps instruction fetch coherent with stores.
            return Ok(());
        }
        let mut value: vm_machine_attribute_val_t = MATTR_VAL_CACHE_FLUSH;
        // SAFETY: flushes caches over the target's range; `value` is a local.
        check("vm_machine_attribute(MATTR_CACHE)", range.start, unsafe {
            vm_machine_attribute(
                self.port,
                range.start,
                range.end - range.start,
                MATTR_CACHE,
                &mut value,
            )
        })
    }
}

/// Program counter, stack pointer (and arm64 link register) of a thread.
fn thread_state(thread: thread_act_t) -> Result<ThreadState, ProcessError> {
    #[cfg(target_arch = "aarch64")]
    {
        use mach2::structs::arm_thread_state64_t;
        use mach2::thread_status::ARM_THREAD_STATE64;
        let mut state = arm_thread_state64_t::new();
        let mut count = arm_thread_state64_t::count();
        // SAFETY: `state` has room for `count` words of this flavor.
        check("thread_get_state", 0, unsafe {
            thread_get_state(
                thread,
                ARM_THREAD_STATE64,
                (&mut state as *mut arm_thread_state64_t) as thread_state_t,
                &mut count,
            )
        })?;
        // Pointer authentication: strip the signature bits of pc/lr (user space addresses
        // fit 47 bits on macOS).
        let strip = |v: u64| v & ((1u64 << 47) - 1);
        Ok(ThreadState {
            id: thread as u64,
            pc: strip(state.__pc),
            sp: state.__sp,
            lr: Some(strip(state.__lr)),
        })
    }
    #[cfg(target_arch = "x86_64")]
    {
        use mach2::structs::x86_thread_state64_t;
        use mach2::thread_status::x86_THREAD_STATE64;
        let mut state = x86_thread_state64_t::new();
        let mut count = x86_thread_state64_t::count();
        // SAFETY: `state` has room for `count` words of this flavor.
        check("thread_get_state", 0, unsafe {
            thread_get_state(
                thread,
                x86_THREAD_STATE64,
                (&mut state as *mut x86_thread_state64_t) as thread_state_t,
                &mut count,
            )
        })?;
        Ok(ThreadState {
            id: thread as u64,
            pc: state.__rip,
            sp: state.__rsp,
            lr: None,
        })
    }
}
