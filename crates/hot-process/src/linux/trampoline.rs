//! hot-lsp's own code in the target: one page, mapped by the first system call hot-lsp
//! injects into an image, through which every later injected system call and function call
//! finds its way back — in user mode, with no help from hot-lsp or the kernel. A thread
//! that runs injected code is never more than a few instructions away from its own: should
//! hot-lsp die at any moment (SIGKILL, the OOM killer, a crash), the kernel lets the thread
//! go, it runs on into this page, and the page puts back every register, the x87/SSE/AVX
//! state, the stack pointer and the program counter — restarting a system call the thread
//! was interrupted in exactly as the kernel would have (its restart block is untouched:
//! nothing here goes through `rt_sigreturn`).
//!
//! The thread's state goes into a block on its own stack, below its red zone (`B`, 16-byte
//! aligned; the XSAVE area, 64-byte aligned, above it):
//!
//! ```text
//!   B-8    return address of an injected call: CALL_RETURN
//!   B+0    r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi   (popped in order)
//!   B+120  rflags                                                        (popfq)
//!   B+128  this injection's tail in the page                             (jmp [rsp])
//!   B+136  the call's result
//!   B+144  the XSAVE area's address, or 0 when the state was not touched
//!   B+152  the signal mask
//! ```
//!
//! The page:
//!
//! ```text
//!   0x00   MAGIC                  a relaunched hot-lsp finds the page again by it
//!   0x10   tails in use           a bit each, set while some thread may still need it
//!   0x20   CALL_RETURN:  mov [rsp+136], rax ; mov eax, SYS_getpid
//!   0x2d   SYSCALL_AT:   syscall
//!   0x2f   RESTORE:      rcx = [rsp+144]; if rcx: xrstor64 [rcx] (all components)
//!                        rt_sigprocmask(SIG_SETMASK, rsp+152, NULL, 8)
//!                        pop r15 .. pop rdi ; popfq ; jmp [rsp]
//!   0xc0   tails, 32 bytes each: mov rsp, [rip+9] ; jmp [rip+11] ; int3 x3 ; rsp ; rip
//! ```
//!
//! An injected call returns into CALL_RETURN: the `getpid` is the system-call stop at which
//! a living hot-lsp takes the thread back itself (the result is on the stack by then). An
//! injected system call runs at SYSCALL_AT with the stack pointer at `B`; hot-lsp takes the
//! thread back at the call's exit stop. A thread let go before that runs the rest of the
//! page. The tail is per injection because the last two moves — the stack pointer, then the
//! program counter — can read nothing from the stack any more: a signal arriving between
//! them would build its frame right there. A tail's bit in the page is set when it is
//! handed out and cleared only once hot-lsp took its thread back itself, so a relaunched
//! hot-lsp never reuses the tail of a thread an earlier one let go mid-call; such a tail
//! stays retired. The mask is put back by the page (a call runs with the fault signals
//! unblocked) only on the way a thread takes without hot-lsp: hot-lsp takes a thread back
//! before it reaches RESTORE.

use super::frame::{resumed_regs, Context, Restart};
use super::memory::ProcMem;
use crate::{Mapping, ProcessError};

pub(crate) const PAGE_SIZE: u64 = 4096;
const MAGIC: &[u8; 16] = b"hot-lsp:tramp:02";
/// The bitmap of tails in use (16 bytes: one bit per tail).
const IN_USE_AT: u64 = 0x10;
const CALL_RETURN: u64 = 0x20;
const SYSCALL_AT: u64 = 0x2d;
const TAILS_AT: u64 = 0xc0;
const TAIL_SIZE: u64 = 32;
const TAIL_COUNT: u32 = ((PAGE_SIZE - TAILS_AT) / TAIL_SIZE) as u32;

/// Offsets in the block (see the module doc).
const BLOCK_TAIL: u64 = 128;
const BLOCK_RESULT: u64 = 136;
const BLOCK_XSAVE: u64 = 144;
const BLOCK_MASK: u64 = 152;
const BLOCK_SIZE: u64 = 160;
/// RESTORE, and where its `jz` lands: after the extended state's restore.
const RESTORE: u64 = 0x2f;
#[cfg(test)]
const RESTORE_MASK: u64 = 0x4a;

/// Stack space left untouched below the thread's stack pointer: the red zone and more.
const STACK_GAP: u64 = super::frame::STACK_GAP;

/// The code of the page, up to the tails. `xsave`: the extended state is restored with
/// `xrstor64` (an XSAVE layout, what `PTRACE_GETREGSET` gives on every CPU since 2008),
/// else with `fxrstor64`.
fn code(xsave: bool) -> Vec<u8> {
    let mut page = vec![0xccu8; TAILS_AT as usize];
    page[..16].copy_from_slice(MAGIC);
    page[16..32].fill(0);
    let mut at = CALL_RETURN as usize;
    let mut emit = |bytes: &[u8]| {
        page[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    // CALL_RETURN: mov [rsp+136], rax ; mov eax, 39 (getpid)
    emit(&[0x48, 0x89, 0x84, 0x24]);
    emit(&(BLOCK_RESULT as u32).to_le_bytes());
    emit(&[0xb8]);
    emit(&(libc::SYS_getpid as u32).to_le_bytes());
    // SYSCALL_AT: syscall
    emit(&[0x0f, 0x05]);
    // RESTORE: mov rcx, [rsp+144] ; test rcx, rcx ; jz +14
    emit(&[0x48, 0x8b, 0x8c, 0x24]);
    emit(&(BLOCK_XSAVE as u32).to_le_bytes());
    emit(&[0x48, 0x85, 0xc9, 0x74, 0x0e]);
    // mov eax, -1 ; mov edx, -1 ; xrstor64 [rcx] (or fxrstor64 [rcx])
    emit(&[0xb8, 0xff, 0xff, 0xff, 0xff, 0xba, 0xff, 0xff, 0xff, 0xff]);
    emit(&[0x48, 0x0f, 0xae, if xsave { 0x29 } else { 0x09 }]);
    // mov eax, 14 (rt_sigprocmask) ; mov edi, 2 (SIG_SETMASK) ; lea rsi, [rsp+152] ;
    // xor edx, edx ; mov r10d, 8 ; syscall
    emit(&[0xb8, 0x0e, 0x00, 0x00, 0x00, 0xbf, 0x02, 0x00, 0x00, 0x00]);
    emit(&[0x48, 0x8d, 0xb4, 0x24]);
    emit(&(BLOCK_MASK as u32).to_le_bytes());
    emit(&[0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05]);
    // pop r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi
    emit(&[
        0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0x41, 0x5b, 0x41, 0x5a, 0x41,
        0x59, 0x41, 0x58, 0x58, 0x59, 0x5a, 0x5e, 0x5f,
    ]);
    // popfq ; jmp [rsp]
    emit(&[0x9d, 0xff, 0x24, 0x24]);
    page
}

/// One tail: `mov rsp, [rip+9] ; jmp [rip+11] ; int3 x3 ; rsp ; rip`.
fn tail(rsp: u64, rip: u64) -> [u8; TAIL_SIZE as usize] {
    let mut bytes = [0xccu8; TAIL_SIZE as usize];
    bytes[..7].copy_from_slice(&[0x48, 0x8b, 0x25, 9, 0, 0, 0]);
    bytes[7..13].copy_from_slice(&[0xff, 0x25, 11, 0, 0, 0]);
    bytes[16..24].copy_from_slice(&rsp.to_le_bytes());
    bytes[24..32].copy_from_slice(&rip.to_le_bytes());
    bytes
}

/// Whether `mapping` is a trampoline page: one anonymous executable page starting with
/// [`MAGIC`].
pub(crate) fn is_trampoline(mem: &ProcMem, mapping: &Mapping) -> bool {
    let mut magic = [0u8; 16];
    mapping.executable
        && mapping.path.is_empty()
        && mapping.range.end - mapping.range.start == PAGE_SIZE
        && mem.read_exact(mapping.range.start, &mut magic).is_ok()
        && &magic == MAGIC
}

/// The trampoline page of the current image.
#[derive(Debug)]
pub(crate) struct Trampoline {
    pub(crate) base: u64,
}

impl Trampoline {
    /// Writes the code into a freshly mapped page at `base` (readable and executable;
    /// `/proc/PID/mem` writes it all the same).
    pub(crate) fn install(
        mem: &ProcMem,
        base: u64,
        xsave: bool,
    ) -> Result<Trampoline, ProcessError> {
        mem.write_all(base, &code(xsave)).map_err(|e| {
            ProcessError::Other(format!("write the trampoline page at {base:#x}: {e}"))
        })?;
        Ok(Trampoline { base })
    }

    /// The page an earlier hot-lsp installed in this image, if any.
    pub(crate) fn find(mem: &ProcMem, maps: &[Mapping]) -> Option<Trampoline> {
        maps.iter()
            .find(|m| is_trampoline(mem, m))
            .map(|m| Trampoline {
                base: m.range.start,
            })
    }

    pub(crate) fn syscall_at(&self) -> u64 {
        self.base + SYSCALL_AT
    }

    pub(crate) fn call_return(&self) -> u64 {
        self.base + CALL_RETURN
    }

    /// Where a thread with its stack pointer at a block goes to be put back by the page.
    pub(crate) fn restore(&self) -> u64 {
        self.base + RESTORE
    }

    /// A tail no thread can be using (its bit clear), marked in use.
    fn take_tail(&mut self, mem: &ProcMem) -> Result<u32, ProcessError> {
        let mut bits = [0u8; 16];
        let at = self.base + IN_USE_AT;
        mem.read_exact(at, &mut bits)
            .map_err(|e| ProcessError::Other(format!("read the trampoline page: {e}")))?;
        let used = u128::from_le_bytes(bits);
        let Some(index) = (0..TAIL_COUNT).find(|&i| used & (1 << i) == 0) else {
            return Err(ProcessError::Other(format!(
                "the trampoline page at {:#x} has no free tail left: {TAIL_COUNT} threads were \
                 let go while they ran injected code, and each may still need its own",
                self.base
            )));
        };
        mem.write_all(at, &(used | 1 << index).to_le_bytes())
            .map_err(|e| ProcessError::Other(format!("write the trampoline page: {e}")))?;
        Ok(index)
    }

    /// Marks a tail free again (its thread was taken back by hot-lsp).
    fn free_tail(&mut self, mem: &ProcMem, index: u32) {
        let mut bits = [0u8; 16];
        let at = self.base + IN_USE_AT;
        if mem.read_exact(at, &mut bits).is_ok() {
            let used = u128::from_le_bytes(bits) & !(1 << index);
            let _ = mem.write_all(at, &used.to_le_bytes());
        }
    }

    /// Whether the page is still there and still ours (the program could have unmapped it).
    pub(crate) fn still_mapped(&self, mem: &ProcMem) -> bool {
        let mut magic = [0u8; 16];
        mem.read_exact(self.base, &mut magic).is_ok() && &magic == MAGIC
    }

    /// Writes the block that brings the thread of `context` back where it was, and its tail.
    /// `extended`: whether the injected code may change the x87/SSE/AVX state (a call), so
    /// the block restores it too. The thread's stack pointer goes to [`Block::addr`].
    pub(crate) fn write_block(
        &mut self,
        mem: &ProcMem,
        tid: i32,
        context: &Context,
        extended: bool,
    ) -> Result<Block, ProcessError> {
        let xsize = if extended {
            context.extended.len() as u64
        } else {
            0
        };
        let top = context.regs.rsp.wrapping_sub(STACK_GAP);
        let xsave = top.wrapping_sub(xsize) & !63;
        let addr = xsave.wrapping_sub(BLOCK_SIZE) & !15;
        // From the return address below the block to the end of the XSAVE area.
        let start = addr - 8;
        let len = (xsave + xsize - start) as usize;
        check_stack(tid, context.regs.rsp, start..start + len as u64)?;
        let stack_error = |e: std::io::Error| {
            ProcessError::Other(format!(
                "the stack of thread {tid} has no room at {start:#x} ({len} bytes below its \
                 stack pointer {:#x}) for injected code to return through: {e}",
                context.regs.rsp
            ))
        };
        let mut covered = vec![0u8; len];
        mem.read_exact(start, &mut covered).map_err(stack_error)?;
        let index = self.take_tail(mem)?;
        let tail_at = self.base + TAILS_AT + u64::from(index) * TAIL_SIZE;
        let r = resumed_regs(&context.regs, Restart::Kernel);
        let mut bytes = vec![0u8; len];
        let mut put = |offset: u64, value: u64| {
            let at = (offset + 8) as usize;
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        let popped = [
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx,
            r.rdx, r.rsi, r.rdi, r.eflags,
        ];
        for (i, value) in popped.into_iter().enumerate() {
            put(8 * i as u64, value);
        }
        put(BLOCK_TAIL, tail_at);
        put(BLOCK_RESULT, 0);
        put(BLOCK_XSAVE, if extended { xsave } else { 0 });
        put(BLOCK_MASK, context.mask);
        bytes[..8].copy_from_slice(&self.call_return().to_le_bytes());
        if extended {
            let at = (xsave - start) as usize;
            bytes[at..at + context.extended.len()].copy_from_slice(&context.extended);
        }
        let written = mem
            .write_all(tail_at, &tail(context.regs.rsp, r.rip))
            .map_err(|e| ProcessError::Other(format!("write a trampoline tail: {e}")))
            .and_then(|()| mem.write_all(start, &bytes).map_err(stack_error));
        if let Err(e) = written {
            self.free_tail(mem, index);
            return Err(e);
        }
        Ok(Block {
            addr,
            tail: index,
            tail_at,
            covered,
        })
    }

    /// The thread of `block` is back where it was, taken back by hot-lsp: its tail can be
    /// handed out again and the stack bytes put back.
    pub(crate) fn release(&mut self, mem: &ProcMem, block: Block) {
        self.free_tail(mem, block.tail);
        // Below the stack pointer of a thread that is stopped: nothing reads it. Best effort.
        let _ = mem.write_all(block.addr - 8, &block.covered);
    }
}

/// Refuses a block or frame at `region` unless it lies in the mapping the thread's stack
/// pointer is in, and that mapping is a stack (`[stack]` or anonymous read-write memory,
/// where threads' stacks live): a coroutine running on a heap buffer has no spare room below
/// its stack pointer, only other objects.
pub(crate) fn check_stack(
    tid: i32,
    rsp: u64,
    region: std::ops::Range<u64>,
) -> Result<(), ProcessError> {
    let maps = super::memory::read_mappings(tid)?;
    let stack = maps.iter().find(|m| m.range.contains(&rsp));
    match stack {
        Some(m)
            if m.readable
                && m.writable
                && (m.path.is_empty() || m.path == "[stack]")
                && m.range.start <= region.start
                && region.end <= m.range.end =>
        {
            Ok(())
        }
        _ => Err(ProcessError::Other(format!(
            "thread {tid}'s stack pointer {rsp:#x} is not in a stack with {} bytes of room \
             below it ({}): no code is injected into that thread",
            region.end - region.start,
            stack.map_or("unmapped".to_string(), |m| format!(
                "in {:#x}..{:#x} {}",
                m.range.start,
                m.range.end,
                if m.path.is_empty() {
                    "(anonymous)"
                } else {
                    &m.path
                }
            ))
        ))),
    }
}

/// The block of one injection on its thread's stack.
#[derive(Debug)]
pub(crate) struct Block {
    /// Where the stack pointer of an injected system call goes (that of a call: 8 below).
    pub(crate) addr: u64,
    tail: u32,
    tail_at: u64,
    covered: Vec<u8>,
}

impl Block {
    /// The result an injected call stored on its way back.
    pub(crate) fn result(&self, mem: &ProcMem) -> Result<u64, ProcessError> {
        let mut word = [0u8; 8];
        mem.read_exact(self.addr + BLOCK_RESULT, &mut word)
            .map_err(|e| ProcessError::Other(format!("read an injected call's result: {e}")))?;
        Ok(u64::from_le_bytes(word))
    }

    /// Makes the way back end the system call the thread was interrupted in with `rax`
    /// (EINTR) at `rip`, instead of restarting it.
    pub(crate) fn end_interrupted_call(
        &self,
        mem: &ProcMem,
        rip: u64,
        rax: u64,
    ) -> Result<(), ProcessError> {
        // rax is the 11th word popped.
        mem.write_all(self.addr + 80, &rax.to_le_bytes())
            .and_then(|()| mem.write_all(self.tail_at + 24, &rip.to_le_bytes()))
            .map_err(|e| ProcessError::Other(format!("rewrite an injected call's way back: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

    /// Decodes `bytes` at `ip` into (address, mnemonic, first operand register or memory base).
    fn listing(bytes: &[u8], ip: u64) -> Vec<(u64, Mnemonic, Register)> {
        let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
        let mut out = Vec::new();
        while decoder.can_decode() {
            let insn = decoder.decode();
            let first = match insn.op_count() {
                0 => Register::None,
                _ => match insn.op0_kind() {
                    OpKind::Register => insn.op0_register(),
                    OpKind::Memory => insn.memory_base(),
                    _ => Register::None,
                },
            };
            out.push((insn.ip(), insn.mnemonic(), first));
        }
        out
    }

    #[test]
    fn the_page_decodes_to_the_documented_code() {
        use Mnemonic::*;
        let page = code(true);
        let got = listing(&page[CALL_RETURN as usize..0x81], CALL_RETURN);
        let pops = [
            Register::R15,
            Register::R14,
            Register::R13,
            Register::R12,
            Register::RBP,
            Register::RBX,
            Register::R11,
            Register::R10,
            Register::R9,
            Register::R8,
            Register::RAX,
            Register::RCX,
            Register::RDX,
            Register::RSI,
            Register::RDI,
        ];
        let mut expected = vec![
            (0x20, Mov, Register::RSP),
            (0x28, Mov, Register::EAX),
            (SYSCALL_AT, Syscall, Register::None),
            (0x2f, Mov, Register::RCX),
            (0x37, Test, Register::RCX),
            (0x3a, Je, Register::None),
            (0x3c, Mov, Register::EAX),
            (0x41, Mov, Register::EDX),
            (0x46, Xrstor64, Register::RCX),
            (0x4a, Mov, Register::EAX),
            (0x4f, Mov, Register::EDI),
            (0x54, Lea, Register::RSI),
            (0x5c, Xor, Register::EDX),
            (0x5e, Mov, Register::R10D),
            (0x64, Syscall, Register::None),
        ];
        let mut at = 0x66;
        for register in pops {
            expected.push((at, Pop, register));
            // r8..r15 need a REX prefix.
            at += if register.number() >= Register::R8.number() {
                2
            } else {
                1
            };
        }
        expected.push((at, Popfq, Register::None));
        expected.push((at + 1, Jmp, Register::RSP));
        assert_eq!(got, expected);
        // The jz skips exactly the three instructions of the restore.
        let mut decoder = Decoder::with_ip(64, &page[0x3a..], 0x3a, DecoderOptions::NONE);
        assert_eq!(decoder.decode().near_branch_target(), RESTORE_MASK);
        // The displacements reach the result and XSAVE slots.
        let mut decoder = Decoder::with_ip(64, &page[0x20..], 0x20, DecoderOptions::NONE);
        assert_eq!(decoder.decode().memory_displacement64(), BLOCK_RESULT);
        let mut decoder = Decoder::with_ip(64, &page[0x2f..], 0x2f, DecoderOptions::NONE);
        assert_eq!(decoder.decode().memory_displacement64(), BLOCK_XSAVE);
        let mut decoder = Decoder::with_ip(64, &page[0x54..], 0x54, DecoderOptions::NONE);
        assert_eq!(decoder.decode().memory_displacement64(), BLOCK_MASK);
        assert_eq!(listing(&code(false)[0x46..0x4a], 0)[0].1, Fxrstor64);
    }

    #[test]
    fn a_tail_loads_its_stack_pointer_and_jumps_to_its_program_counter() {
        let base = 0x7000_0000_0080;
        let bytes = tail(0x1111, 0x2222);
        let mut decoder = Decoder::with_ip(64, &bytes, base, DecoderOptions::NONE);
        let load = decoder.decode();
        assert_eq!(
            (load.mnemonic(), load.op0_register()),
            (Mnemonic::Mov, Register::RSP)
        );
        assert_eq!(load.memory_displacement64(), base + 16);
        let jump = decoder.decode();
        assert_eq!(jump.mnemonic(), Mnemonic::Jmp);
        assert_eq!(jump.memory_displacement64(), base + 24);
        assert_eq!(&bytes[16..24], &0x1111u64.to_le_bytes());
        assert_eq!(&bytes[24..32], &0x2222u64.to_le_bytes());
    }
}
