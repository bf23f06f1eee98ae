//! Knowing what changed without a baseline: compare a function of the new object with the
//! running image at instruction level (DESIGN.md section 4).
//!
//! Both sides are decoded. An instruction of the new object equals the image's when their
//! bytes are equal outside relocated fields and every relocated field designates, in the
//! image, what the linker would bind its relocation to: a function's stable entry, a bound
//! variable, the executable's or a library's symbol (a library function through the
//! executable's PLT entry), the same string or constant (compared by contents, since ld merges
//! them), or the same place of a split `.cold` part or IPA clone (compared along with the
//! function). The forms ld and gas produce from the same instruction are accepted: a GOT load
//! relaxed to `lea` or `mov $imm` (`GOTPCRELX`), `call *foo@GOTPCREL(%rip)` relaxed to a direct
//! call or `jmp *` to `jmp; nop`, initial-exec TLS relaxed to local-exec, and jumps gas
//! shortened between functions of one section (which shift everything behind them, so branch
//! targets are compared through the instruction pairing, and alignment nops are skipped on both
//! sides). Anything not understood counts as changed: the worst case is that every function is
//! swapped, as without this comparison.

use std::collections::{HashMap, HashSet};

use hot_object::{AtomId, AtomKind, Binding, GotSlotKind, Reloc, RelocKind, SymbolDef, SymbolKind};
use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic,
    OpAccess, OpKind, Register,
};

use crate::image::Vaddr;
use crate::link::Link;
use crate::resolve::{
    exe_definition, is_pc_relative, lookup_external, AtomRole, External, StableEntry, TargetClass,
};
use crate::x86_64::{self, store, Field};
use crate::RuntimeAddr;

/// Per-link facts shared by the comparisons of all functions.
pub(crate) struct ImageDiff {
    /// Positions of each anonymous read-only atom that a symbol or a reference designates:
    /// an object there runs up to the next one.
    labels: HashMap<AtomId, Vec<u64>>,
}

/// One code atom of the new object paired with its range in the image.
struct CodeMatch {
    /// The compared range of the new atom's offsets (`new_hi`: its end), and the image's.
    new_hi: u64,
    img_lo: u64,
    img_hi: u64,
    /// The new atom's instructions (ip = atom offset), and for each the image address of the
    /// instruction it was paired with (for a nop: of the next paired instruction).
    new_ips: Vec<u64>,
    new_nop: Vec<bool>,
    paired: Vec<u64>,
    /// The image's instructions, and whether each is a nop.
    img_ips: Vec<u64>,
    img_nop: Vec<bool>,
}

/// The comparison of one function with its image counterpart, including the code atoms it
/// reaches (its `.cold` part, clones).
struct Unit<'d, 'l, 'a> {
    cx: &'l Link<'a>,
    diff: &'d mut ImageDiff,
    /// Code atoms under comparison: the image address their `new_lo` corresponds to.
    code: HashMap<AtomId, CodeMatch>,
    queue: Vec<(AtomId, u64, u64, u64, u64)>,
    /// Code atoms queued, with the image address of their first compared byte.
    queued: HashMap<AtomId, u64>,
    /// "Offset `.1` of code atom `.0` is image address `.2`", checked once every code atom
    /// of the unit is paired (branches go forward too).
    pending: Vec<(AtomId, i64, u64)>,
    /// Anonymous data compared already (atom, offset, image address).
    data_done: HashSet<(AtomId, i64, u64)>,
}

impl ImageDiff {
    pub(crate) fn new() -> ImageDiff {
        ImageDiff {
            labels: HashMap::new(),
        }
    }

    /// Whether function atom `atom`, whose stable entry is the image's `entry` (a function
    /// symbol of `size` bytes), is what the image runs at that entry.
    pub(crate) fn unchanged(
        &mut self,
        cx: &Link<'_>,
        atom: AtomId,
        entry: RuntimeAddr,
        size: u64,
    ) -> bool {
        if cx.alloc.redirect(entry).is_some() {
            // An earlier patch runs there: the image's bytes are not what runs.
            return false;
        }
        let AtomRole::Function { sym, offset } = *cx.info.role(atom) else {
            return false;
        };
        let a = cx.info.obj.atom(atom);
        let sym_size = cx.info.obj.symbol(sym).size;
        let new_hi = if sym_size > 0 {
            offset.saturating_add(sym_size).min(a.size)
        } else {
            a.size
        };
        let mut unit = Unit {
            cx,
            diff: self,
            code: HashMap::new(),
            queue: vec![(atom, offset, new_hi, entry.0, entry.0.wrapping_add(size))],
            queued: HashMap::from([(atom, entry.0)]),
            pending: Vec::new(),
            data_done: HashSet::new(),
        };
        unit.run()
    }

    /// Whether the whole named read-only data atom `atom` (a vtable), which the image has at
    /// `addr`, holds what the image holds there: equal bytes outside its relocated words, and
    /// each word designating what the image's word does.
    pub(crate) fn data_unchanged(
        &mut self,
        cx: &Link<'_>,
        atom: AtomId,
        addr: RuntimeAddr,
    ) -> bool {
        let size = cx.info.obj.atom(atom).size;
        let mut unit = Unit {
            cx,
            diff: self,
            code: HashMap::new(),
            queue: Vec::new(),
            queued: HashMap::new(),
            pending: Vec::new(),
            data_done: HashSet::new(),
        };
        unit.data_range(atom, 0, size, addr.0) && unit.run()
    }

    fn labels(&mut self, cx: &Link<'_>, target: AtomId) -> &[u64] {
        self.labels.entry(target).or_insert_with(|| {
            let obj = cx.info.obj;
            let mut v: Vec<u64> = obj
                .atom(target)
                .symbols
                .iter()
                .filter_map(|&s| match obj.symbol(s).def {
                    SymbolDef::Atom { offset, .. } => Some(offset.0),
                    _ => None,
                })
                .collect();
            for (i, a) in obj.atoms.iter().enumerate() {
                for r in &a.relocs {
                    if let SymbolDef::Atom { atom, offset } = obj.symbol(r.symbol).def {
                        if atom == target {
                            let adj = if is_pc_relative(r.kind) {
                                cx.info
                                    .pc_adjust(AtomId(i as u32), r.offset)
                                    .min(i64::MAX as u64) as i64
                            } else {
                                0
                            };
                            let d = (offset.0 as i64).wrapping_add(r.addend).wrapping_add(adj);
                            if d >= 0 {
                                v.push(d as u64);
                            }
                        }
                    }
                }
            }
            v.sort_unstable();
            v.dedup();
            v
        })
    }
}

/// Width in bytes of the field a relocation writes, for the kinds compared here.
fn field_width(kind: RelocKind) -> Option<u64> {
    Some(match kind {
        RelocKind::Abs64
        | RelocKind::Pc64
        | RelocKind::Size64
        | RelocKind::TpOff64
        | RelocKind::DtpOff64
        | RelocKind::GotPcRel64 => 8,
        RelocKind::Abs32
        | RelocKind::Abs32S
        | RelocKind::Pc32
        | RelocKind::Plt32
        | RelocKind::GotPcRel
        | RelocKind::GotPcRelX
        | RelocKind::RexGotPcRelX
        | RelocKind::TpOff32
        | RelocKind::DtpOff32
        | RelocKind::Size32
        | RelocKind::GotTpOff
        | RelocKind::TlsGd
        | RelocKind::TlsLd
        | RelocKind::GotPc32TlsDesc => 4,
        RelocKind::Abs16 | RelocKind::Pc16 => 2,
        RelocKind::Abs8 | RelocKind::Pc8 => 1,
        RelocKind::TlsDescCall | RelocKind::None => 0,
        _ => return None,
    })
}

fn is_got(kind: RelocKind) -> bool {
    matches!(
        kind,
        RelocKind::GotPcRel | RelocKind::GotPcRelX | RelocKind::RexGotPcRelX
    )
}

/// The little-endian value of `width` bytes, sign-extended if `signed`.
fn read_field(bytes: &[u8], width: u64, signed: bool) -> Option<u64> {
    let b = bytes.get(..width as usize)?;
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    let v = u64::from_le_bytes(buf);
    if !signed || width == 8 {
        return Some(v);
    }
    let shift = 64 - 8 * width;
    Some((((v << shift) as i64) >> shift) as u64)
}

fn decode(bytes: &[u8], ip: u64) -> Option<Vec<Instruction>> {
    let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            return None;
        }
        out.push(instr);
    }
    Some(out)
}

/// Whether operand 0 of `ins` is written, not read (`mov`, `movzx`, `movsx`, `lea`...).
fn writes_only_op0(ins: &Instruction) -> bool {
    let mut factory = InstructionInfoFactory::new();
    factory.info(ins).op0_access() == OpAccess::Write
}

fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

/// Whether 64-bit register `reg` holds nothing anyone reads once `first` has run, judged
/// from the straight-line code `first, rest...` up to the first change of flow: a full
/// write (32 or 64 bits) kills it; a call clobbers `%rax` and `%r11` (which carry no
/// argument: `%al` of a variadic call is set right before it, a write seen here), and so
/// does a tail call (a `jmp` to a function's entry, or through its GOT slot); a return
/// leaves the caller-saved registers but `%rax`/`%rdx` dead. Anything else, or a read, keeps
/// it alive.
fn register_dead_after(
    reg: Register,
    first: &Instruction,
    rest: &[Instruction],
    tail_call: impl Fn(&Instruction) -> bool,
) -> bool {
    let mut factory = InstructionInfoFactory::new();
    for (k, ins) in std::iter::once(first).chain(rest).enumerate() {
        let info = factory.info(ins);
        let mut killed = false;
        for used in info.used_registers() {
            if used.register().full_register() != reg {
                continue;
            }
            match used.access() {
                // The first instruction's own read of it is the dereference.
                OpAccess::Read | OpAccess::CondRead if k == 0 => {}
                OpAccess::Write if used.register().size() >= 4 && used.register().is_gpr() => {
                    killed = true
                }
                OpAccess::CondWrite | OpAccess::Write | OpAccess::NoMemAccess | OpAccess::None => {}
                _ => return false,
            }
        }
        if killed {
            return true;
        }
        match ins.flow_control() {
            FlowControl::Next => {}
            FlowControl::Call | FlowControl::IndirectCall => {
                return matches!(reg, Register::RAX | Register::R11)
            }
            // A tail call: the callee's result replaces `%rax`.
            FlowControl::UnconditionalBranch | FlowControl::IndirectBranch
                if (ins.op0_kind() == OpKind::NearBranch64 || ins.is_ip_rel_memory_operand())
                    && tail_call(ins) =>
            {
                return matches!(reg, Register::RAX | Register::R11)
            }
            FlowControl::Return => {
                return matches!(
                    reg,
                    Register::RCX
                        | Register::RSI
                        | Register::RDI
                        | Register::R8
                        | Register::R9
                        | Register::R10
                        | Register::R11
                )
            }
            _ => return false,
        }
    }
    false
}

fn is_nop(i: &Instruction) -> bool {
    i.mnemonic() == Mnemonic::Nop
}

/// The 64-bit register a destination register belongs to (`%eax` and `%rax` are one).
fn full_register(r: iced_x86::Register) -> iced_x86::Register {
    r.full_register()
}

impl Unit<'_, '_, '_> {
    fn run(&mut self) -> bool {
        while let Some((atom, new_lo, new_hi, img_lo, img_hi)) = self.queue.pop() {
            if !self.compare_code(atom, new_lo, new_hi, img_lo, img_hi) {
                return false;
            }
        }
        let pending = std::mem::take(&mut self.pending);
        pending.iter().all(|&(atom, off, img)| {
            self.code
                .get(&atom)
                .is_some_and(|m| m.new_to_image(off) == Some(m.canonical_image(img)))
        })
    }

    /// Pair the instructions of `atom[new_lo..new_hi]` with the image's `[img_lo, img_hi)`.
    fn compare_code(
        &mut self,
        atom: AtomId,
        new_lo: u64,
        new_hi: u64,
        img_lo: u64,
        img_hi: u64,
    ) -> bool {
        let cx = self.cx;
        let exe = &cx.model.exe;
        let a = cx.info.obj.atom(atom);
        if a.kind != AtomKind::Text || new_hi > a.bytes.len() as u64 || new_lo > new_hi {
            return false;
        }
        let Some(img_len) = img_hi.checked_sub(img_lo).filter(|&l| l > 0) else {
            return false;
        };
        let Some(img_bytes) = exe
            .image
            .bytes_at(img_lo.wrapping_sub(exe.bias), img_len as usize)
        else {
            return false;
        };
        // The new bytes with the TLS relaxations ld makes (and values that need no address)
        // already applied; the relocations they consume are not compared again.
        let mut bytes = a.bytes.to_vec();
        let mut relocs: Vec<&Reloc> = Vec::new();
        let mut consumed_until = 0u64;
        for r in &a.relocs {
            if r.offset.0 < consumed_until || r.offset.0 < new_lo || r.offset.0 >= new_hi {
                continue;
            }
            match self.prefill(atom, r, &mut bytes) {
                Prefill::Done(until) => consumed_until = consumed_until.max(until),
                Prefill::Compare => relocs.push(r),
                Prefill::Unknown => return false,
            }
        }
        let Some(new) = decode(&bytes[new_lo as usize..new_hi as usize], new_lo) else {
            return false;
        };
        // Bytes of the atom past its function's size would be copied with it: only padding
        // may be left out of the comparison.
        let tail_is_padding = bytes[new_hi as usize..].iter().all(|&b| b == 0xcc)
            || decode(&bytes[new_hi as usize..], new_hi).is_some_and(|t| t.iter().all(is_nop));
        if !tail_is_padding || a.relocs.iter().any(|r| r.offset.0 >= new_hi) {
            return false;
        }
        let Some(img) = decode(img_bytes, img_lo) else {
            return false;
        };
        let mut m = CodeMatch {
            new_hi,
            img_lo,
            img_hi,
            new_ips: new.iter().map(Instruction::ip).collect(),
            new_nop: Vec::with_capacity(new.len()),
            paired: vec![img_hi; new.len()],
            img_ips: img.iter().map(Instruction::ip).collect(),
            img_nop: img.iter().map(is_nop).collect(),
        };
        let mut next_reloc = 0usize;
        let mut j = 0usize;
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        // The second instruction of a GOT load fused with its dereference: nothing may
        // branch there.
        let mut fused: Vec<u64> = Vec::new();
        let relocs_in = |from: usize, n: &Instruction| {
            let mut to = from;
            while relocs.get(to).is_some_and(|r| r.offset.0 < n.next_ip()) {
                to += 1;
            }
            to
        };
        let mut i = 0usize;
        while let Some(n) = new.get(i) {
            let first = next_reloc;
            next_reloc = relocs_in(first, n);
            let own = &relocs[first..next_reloc];
            let nop = own.is_empty() && is_nop(n);
            m.new_nop.push(nop);
            if nop {
                i += 1;
                continue;
            }
            while img.get(j).is_some_and(is_nop) {
                j += 1;
            }
            let Some(im) = img.get(j) else {
                return false;
            };
            let nb = &bytes[n.ip() as usize..n.next_ip() as usize];
            let ib_start = (im.ip() - img_lo) as usize;
            let ib = &img_bytes[ib_start..ib_start + im.len()];
            if self.pair(atom, n, nb, own, im, ib) {
                pairs.push((i, j));
            } else {
                // `mov foo@GOTPCREL(%rip), %reg; op (%reg), ...` (-mno-direct-extern-access)
                // where the image has `op foo(%rip), ...`.
                let second = new
                    .get(i + 1)
                    .filter(|n2| relocs_in(next_reloc, n2) == next_reloc);
                match (own, second) {
                    (&[r], Some(n2)) if self.fuse_got_deref(atom, r, n, n2, im, &new[i + 2..]) => {
                        pairs.push((i, j));
                        m.new_nop.push(false);
                        fused.push(n2.ip());
                        i += 1;
                    }
                    _ => return false,
                }
            }
            j += 1;
            i += 1;
        }
        if next_reloc != relocs.len() || img[j..].iter().any(|i| !is_nop(i)) {
            return false;
        }
        // Nops map to the next paired instruction (or the end).
        let mut next = img_hi;
        let mut pi = pairs.len();
        for i in (0..new.len()).rev() {
            if pi > 0 && pairs[pi - 1].0 == i {
                pi -= 1;
                next = img[pairs[pi].1].ip();
            }
            m.paired[i] = next;
        }
        for ip in fused {
            if let Ok(k) = m.new_ips.binary_search(&ip) {
                m.paired[k] = u64::MAX;
            }
        }
        self.code.insert(atom, m);
        true
    }

    /// Pre-apply what needs no comparison of addresses: TLS relaxations (as ld makes them in
    /// an executable) and offsets, sizes.
    fn prefill(&self, atom: AtomId, r: &Reloc, bytes: &mut [u8]) -> Prefill {
        let cx = self.cx;
        let off = r.offset.0 as usize;
        let class = cx.info.classify(atom, r);
        let tpoff = || cx.tpoff(class, r).ok();
        let ok = |res: Result<(), x86_64::ApplyError>, until: u64| match res {
            Ok(()) => Prefill::Done(until),
            Err(_) => Prefill::Unknown,
        };
        match r.kind {
            RelocKind::None => Prefill::Done(0),
            RelocKind::TpOff32 | RelocKind::DtpOff32 => match tpoff() {
                Some(t) => ok(
                    store(bytes, off, Field::Signed32, t as i128 + r.addend as i128)
                        .map_err(|_| x86_64::ApplyError::OutOfBounds),
                    0,
                ),
                None => Prefill::Unknown,
            },
            RelocKind::GotTpOff => match tpoff() {
                Some(t) => ok(x86_64::relax_gottpoff(bytes, off, t), 0),
                None => Prefill::Unknown,
            },
            RelocKind::TlsGd => match tpoff() {
                Some(t) => ok(x86_64::relax_tlsgd(bytes, off, t), r.offset.0 + 12),
                None => Prefill::Unknown,
            },
            RelocKind::TlsLd => ok(x86_64::relax_tlsld(bytes, off), r.offset.0 + 10),
            RelocKind::GotPc32TlsDesc => match tpoff() {
                Some(t) => ok(x86_64::relax_tlsdesc(bytes, off, t), 0),
                None => Prefill::Unknown,
            },
            RelocKind::TlsDescCall => ok(x86_64::relax_tlsdesc_call(bytes, off), 0),
            RelocKind::Size32 => {
                let z = cx.info.obj.symbol(r.symbol).size as i128;
                ok(
                    store(bytes, off, Field::Unsigned32, z + r.addend as i128)
                        .map_err(|_| x86_64::ApplyError::OutOfBounds),
                    0,
                )
            }
            k if field_width(k).is_some() => Prefill::Compare,
            _ => Prefill::Unknown,
        }
    }

    /// Whether new instruction `n` (bytes `nb`, relocations `relocs`) of `atom` does what
    /// image instruction `im` (bytes `ib`) does.
    fn pair(
        &mut self,
        atom: AtomId,
        n: &Instruction,
        nb: &[u8],
        relocs: &[&Reloc],
        im: &Instruction,
        ib: &[u8],
    ) -> bool {
        // Direct branches: gas may have chosen the short form in the image.
        if n.op0_kind() == OpKind::NearBranch64 {
            if im.op0_kind() != OpKind::NearBranch64
                || im.code().as_near_branch() != n.code().as_near_branch()
            {
                return false;
            }
            let target = im.near_branch_target();
            return match relocs {
                [] => {
                    self.pending
                        .push((atom, n.near_branch_target() as i64, target));
                    true
                }
                [r] if matches!(r.kind, RelocKind::Pc32 | RelocKind::Plt32) => {
                    let adj = n.next_ip() as i64 - r.offset.0 as i64;
                    // Addends come from the file: wrap rather than trust them to be small.
                    self.designates(atom, r, r.addend.wrapping_add(adj), target)
                }
                _ => false,
            };
        }
        if let [r] = relocs {
            if is_got(r.kind) {
                return self.got_load(atom, r, n, nb, im, ib);
            }
        }
        if n.code() != im.code() || nb.len() != ib.len() {
            return false;
        }
        // Bytes outside the relocated fields are equal; each field designates the same.
        let mut covered = vec![false; nb.len()];
        for r in relocs {
            let Some(width) = field_width(r.kind) else {
                return false;
            };
            let start = (r.offset.0 - n.ip()) as usize;
            let end = start + width as usize;
            if end > nb.len() {
                return false;
            }
            covered[start..end].iter_mut().for_each(|c| *c = true);
            let signed = !matches!(
                r.kind,
                RelocKind::Abs32 | RelocKind::Abs16 | RelocKind::Abs8
            );
            let Some(value) = read_field(&ib[start..], width, signed) else {
                return false;
            };
            let (d, extra) = if is_pc_relative(r.kind) {
                let p_img = im.ip() + start as u64;
                let adj = n.next_ip() - r.offset.0;
                (
                    value.wrapping_add(p_img).wrapping_add(adj),
                    r.addend.wrapping_add(adj as i64),
                )
            } else {
                (value, r.addend)
            };
            if !self.designates(atom, r, extra, d) {
                return false;
            }
        }
        if relocs.is_empty() && n.is_ip_rel_memory_operand() {
            // A reference inside this section that gas resolved (a label of the function):
            // its displacement depends on the layout, its target must correspond.
            // The offsets come from the decoder's state after decoding this very instruction
            // (iced-x86 reads them there), so decode it again from its own bytes.
            let mut decoder = Decoder::with_ip(64, nb, n.ip(), DecoderOptions::NONE);
            let again = decoder.decode();
            let offsets = decoder.get_constant_offsets(&again);
            if offsets.has_displacement() {
                let s = offsets.displacement_offset();
                let e = s + offsets.displacement_size();
                if let Some(field) = covered.get_mut(s..e) {
                    field.iter_mut().for_each(|c| *c = true);
                }
            }
            self.pending.push((
                atom,
                n.ip_rel_memory_address() as i64,
                im.ip_rel_memory_address(),
            ));
        }
        nb.iter()
            .zip(ib)
            .zip(&covered)
            .all(|((x, y), covered)| *covered || x == y)
    }

    /// `mov foo@GOTPCREL(%rip), %reg` (`n`) then `op k(%reg), ...` (`n2`) in the new object,
    /// `op foo+k(%rip), ...` (`im`) in the image: the same access if `foo + k` designates what
    /// the image accesses, the operations are the same, and `%reg` is dead after `n2` (in the
    /// image it keeps its older value), which `rest` (the instructions after `n2`) must show
    /// before any branch.
    fn fuse_got_deref(
        &mut self,
        atom: AtomId,
        r: &Reloc,
        n: &Instruction,
        n2: &Instruction,
        im: &Instruction,
        rest: &[Instruction],
    ) -> bool {
        if !is_got(r.kind)
            || n.code() != Code::Mov_r64_rm64
            || !n.is_ip_rel_memory_operand()
            || !im.is_ip_rel_memory_operand()
            || n2.code() != im.code()
            || n2.op_count() != im.op_count()
        {
            return false;
        }
        let reg = n.op0_register();
        if n2.memory_base() != reg
            || n2.memory_index() != Register::None
            || n2.segment_prefix() != im.segment_prefix()
            || n2.has_lock_prefix() != im.has_lock_prefix()
            || n2.has_rep_prefix() != im.has_rep_prefix()
            || n2.has_repne_prefix() != im.has_repne_prefix()
        {
            return false;
        }
        for k in 0..n2.op_count() {
            let same = match (n2.op_kind(k), im.op_kind(k)) {
                (OpKind::Memory, OpKind::Memory) => true,
                // The new instruction must not read the GOT address as a value.
                (OpKind::Register, OpKind::Register) => {
                    n2.op_register(k) == im.op_register(k)
                        && (n2.op_register(k).full_register() != reg
                            || k == 0 && n2.op_count() == 2 && writes_only_op0(n2))
                }
                (a, b) if a == b && is_immediate(a) => n2.immediate(k) == im.immediate(k),
                _ => false,
            };
            if !same {
                return false;
            }
        }
        // Nor use it implicitly (`mulq (%rax)` multiplies by %rax too): the GOT address may
        // only be the memory base (read) or the destination the instruction writes.
        let mut info = iced_x86::InstructionInfoFactory::new();
        let implicit = info.info(n2).used_registers().iter().any(|u| {
            u.register().full_register() == reg.full_register()
                && !matches!(
                    u.access(),
                    iced_x86::OpAccess::Read | iced_x86::OpAccess::Write
                )
        });
        if implicit {
            return false;
        }
        // A jump whose relocation designates a function's entry is a tail call.
        let a = self.cx.info.obj.atom(atom);
        let tail_call = |ins: &Instruction| {
            a.relocs.iter().any(|t| {
                (ins.ip()..ins.next_ip()).contains(&t.offset.0)
                    && (matches!(t.kind, RelocKind::Plt32 | RelocKind::Pc32) || is_got(t.kind))
                    && matches!(
                        self.cx.info.classify(atom, t),
                        TargetClass::Entry { .. } | TargetClass::External
                    )
            })
        };
        if !register_dead_after(reg, n2, rest, tail_call) {
            return false;
        }
        // `lea 16(%reg), %reg` after the load of a vtable's address (its address point) is
        // `lea vtable+16(%rip), %reg`: the displacement designates that much further.
        let extra = n2.memory_displacement64() as i64;
        self.designates(atom, r, extra, im.ip_rel_memory_address())
    }

    /// A GOT load or indirect call of the new object against the image's form of it: the
    /// same instruction through a slot holding the target, or what ld relaxed it to.
    fn got_load(
        &mut self,
        atom: AtomId,
        r: &Reloc,
        n: &Instruction,
        nb: &[u8],
        im: &Instruction,
        ib: &[u8],
    ) -> bool {
        if !n.is_ip_rel_memory_operand() {
            return false;
        }
        let start = (r.offset.0 - n.ip()) as usize;
        if n.code() == im.code() && nb.len() == ib.len() && im.is_ip_rel_memory_operand() {
            let same_rest = nb
                .iter()
                .zip(ib)
                .enumerate()
                .all(|(k, (x, y))| (start..start + 4).contains(&k) || x == y);
            let slot = im.ip_rel_memory_address();
            if same_rest && self.is_exe_slot_of(atom, r, slot) {
                return true;
            }
            let Some(content) = self
                .cx
                .image_contents(RuntimeAddr(slot), 8)
                .and_then(|b| read_field(&b, 8, false))
            else {
                return false;
            };
            return same_rest && self.designates(atom, r, 0, content);
        }
        match (n.mnemonic(), im.mnemonic()) {
            // `mov foo@GOTPCREL(%rip), %reg` -> `lea foo(%rip), %reg`.
            (Mnemonic::Mov, Mnemonic::Lea) => {
                im.is_ip_rel_memory_operand()
                    && im.op0_register() == n.op0_register()
                    && self.designates(atom, r, 0, im.ip_rel_memory_address())
            }
            // -> `mov $foo, %reg` (a non-PIE executable).
            (Mnemonic::Mov, Mnemonic::Mov) => {
                matches!(im.op1_kind(), OpKind::Immediate32 | OpKind::Immediate32to64)
                    && full_register(im.op0_register()) == full_register(n.op0_register())
                    && self.designates(atom, r, 0, im.immediate(1))
            }
            // `call *foo@GOTPCREL(%rip)` -> `addr32 call foo`; `jmp *` -> `jmp foo; nop`.
            (Mnemonic::Call, Mnemonic::Call) | (Mnemonic::Jmp, Mnemonic::Jmp) => {
                n.op0_kind() == OpKind::Memory
                    && im.op0_kind() == OpKind::NearBranch64
                    && self.designates(atom, r, 0, im.near_branch_target())
            }
            _ => false,
        }
    }

    /// The named object of `target` that holds `off`: from the last symbol at or before it
    /// to the next one after it (`None` when the atom has no named symbol).
    fn symbol_bounds(&self, target: AtomId, off: u64) -> Option<(u64, u64)> {
        let obj = self.cx.info.obj;
        let a = obj.atom(target);
        let mut named = false;
        let mut start = 0;
        let mut next = a.size;
        for &s in &a.symbols {
            let sym = obj.symbol(s);
            if sym.name.is_empty() || matches!(sym.kind, SymbolKind::Section | SymbolKind::File) {
                continue;
            }
            named = true;
            if let SymbolDef::Atom { offset, .. } = sym.def {
                if offset.0 > off {
                    next = next.min(offset.0);
                } else {
                    start = start.max(offset.0);
                }
            }
        }
        named.then_some((start, next))
    }

    /// Whether image address `slot` is the executable's own GOT slot for the undefined
    /// symbol of `r`: the dynamic linker fills it with what the name resolves to (an IFUNC's
    /// implementation included).
    fn is_exe_slot_of(&self, atom: AtomId, r: &Reloc, slot: u64) -> bool {
        let cx = self.cx;
        if cx.info.classify(atom, r) != TargetClass::External {
            return false;
        }
        let name = cx.info.symbol_name(r.symbol);
        cx.index
            .exe_got_slot(&name, &[GotSlotKind::GlobDat])
            .is_some_and(|v| cx.model.exe.runtime(v).0 == slot)
    }

    /// Whether relocation `r` of `atom`, designating its symbol's byte `extra` further,
    /// designates image address `d` as the linker binds it.
    fn designates(&mut self, atom: AtomId, r: &Reloc, extra: i64, d: u64) -> bool {
        let cx = self.cx;
        let sym_offset = cx.info.symbol_offset(r.symbol) as i64;
        let at = |base: u64| base.wrapping_add_signed(extra) == d;
        match cx.info.classify(atom, r) {
            TargetClass::Entry { atom: target, .. } => match cx.entries.get(&target) {
                Some(StableEntry::Image(s)) => {
                    let sym = s.get(cx.model);
                    // A shared library calls its own exported functions through its PLT
                    // (they may be interposed): the entry for the name is the function.
                    cx.model.exe.runtime(Vaddr(sym.vaddr)).0 == d
                        || (cx.model.home != crate::Home::Executable
                            && cx
                                .index
                                .exe_plt(&sym.name)
                                .is_some_and(|p| cx.model.exe.runtime(p).0 == d))
                }
                _ => false,
            },
            TargetClass::Placed { atom: target } => {
                let off = sym_offset + extra;
                match cx.info.role(target) {
                    AtomRole::Function { .. } | AtomRole::Code => self.code_ref(target, off, d),
                    AtomRole::AnonReadOnly | AtomRole::CompilerTable => {
                        self.data_ref(target, off, d)
                    }
                    _ => false,
                }
            }
            TargetClass::Bound { atom: target } => {
                !cx.fresh_data.contains(&target)
                    && cx
                        .bound
                        .get(&target)
                        .is_some_and(|b| at(b.0.wrapping_add(sym_offset as u64)))
            }
            TargetClass::Absolute(v) => at(v),
            TargetClass::Unsupported => false,
            TargetClass::External => {
                let name = cx.info.symbol_name(r.symbol);
                let weak = cx.info.obj.symbol(r.symbol).binding == Binding::Weak;
                let plt = || {
                    cx.index
                        .exe_plt(&name)
                        .is_some_and(|p| at(cx.model.exe.runtime(p).0))
                };
                match lookup_external(cx.model, cx.index, &cx.alloc, &name, weak) {
                    External::ExeFunction(a) | External::ExeData(a) | External::LibData(a) => {
                        at(a.0)
                    }
                    External::LibFunction { addr, .. } => at(addr.0) || plt(),
                    External::LibIfunc { .. } => plt(),
                    // ld's `call 0`, or in a PIE its `call name@plt` (where the link sends
                    // a branch to an undefined weak too); an address taken is 0.
                    External::WeakZero => {
                        let branch = r.kind == RelocKind::Plt32
                            || (r.kind == RelocKind::Pc32
                                && cx.info.is_rel32_branch(atom, r.offset));
                        at(0) || (branch && plt())
                    }
                    _ => false,
                }
            }
        }
    }

    /// A reference to offset `off` of code atom `target`: compared along with this function.
    fn code_ref(&mut self, target: AtomId, off: i64, d: u64) -> bool {
        if !self.queued.contains_key(&target) {
            let Some((new_lo, new_hi, img_lo, img_hi)) = self.image_range(target) else {
                return false;
            };
            self.queued.insert(target, img_lo);
            self.queue.push((target, new_lo, new_hi, img_lo, img_hi));
        }
        self.pending.push((target, off, d));
        true
    }

    /// Where code atom `target` (a function reached inside its body, a `.cold` part, a
    /// clone) lies in the image: by its function's stable entry, else by the name of its
    /// symbol among the unit's locals.
    fn image_range(&self, target: AtomId) -> Option<(u64, u64, u64, u64)> {
        let cx = self.cx;
        let obj = cx.info.obj;
        let a = obj.atom(target);
        let (sym, new_lo) = match *cx.info.role(target) {
            AtomRole::Function { sym, offset } => (sym, offset),
            _ => {
                let sym = a.symbols.iter().copied().find(|&s| {
                    let s = obj.symbol(s);
                    matches!(s.kind, SymbolKind::Function) && !s.name.is_empty()
                })?;
                let SymbolDef::Atom { offset, .. } = obj.symbol(sym).def else {
                    return None;
                };
                (sym, offset.0)
            }
        };
        let s = obj.symbol(sym);
        let new_hi = if s.size > 0 {
            new_lo.saturating_add(s.size).min(a.size)
        } else {
            a.size
        };
        let image_sym = match (cx.info.role(target), cx.entries.get(&target)) {
            (AtomRole::Function { .. }, Some(StableEntry::Image(r))) => *r,
            (AtomRole::Function { .. }, _) => return None,
            _ => cx
                .unit
                .tu
                .and_then(|tu| cx.index.exe_local(tu, &s.name))
                .or_else(|| exe_definition(cx.model, cx.index, Some(cx.unit), &s.name))?,
        };
        let is = image_sym.get(cx.model);
        if !matches!(is.kind, SymbolKind::Function | SymbolKind::NoType) || is.size == 0 {
            return None;
        }
        let img_lo = cx.model.exe.runtime(Vaddr(is.vaddr)).0;
        Some((new_lo, new_hi, img_lo, img_lo.wrapping_add(is.size)))
    }

    /// A reference to offset `off` of anonymous read-only atom `target`, which the image
    /// has at `d`: the designated object's contents must be equal (a string up to its NUL, a
    /// merged constant, else up to the next label), and its relocations designate the same.
    fn data_ref(&mut self, target: AtomId, off: i64, d: u64) -> bool {
        if !self.data_done.insert((target, off, d)) {
            return true;
        }
        let cx = self.cx;
        let a = cx.info.obj.atom(target);
        if off < 0 || off as u64 >= a.size || a.bytes.is_empty() {
            return false;
        }
        let off = off as u64;
        let (lo, hi) = if a.merge_strings {
            let char_size = entry_size(&a.section_name, ".str").unwrap_or(1);
            if !off.is_multiple_of(char_size) {
                return false;
            }
            let mut end = off;
            loop {
                let Some(c) = a.bytes.get(end as usize..(end + char_size) as usize) else {
                    return false;
                };
                end += char_size;
                if c.iter().all(|&b| b == 0) {
                    break;
                }
            }
            (off, end)
        } else if let Some(n) = entry_size(&a.section_name, ".cst") {
            let lo = off - off % n;
            (lo, (lo + n).min(a.size))
        } else if let Some(bounds) = self.symbol_bounds(target, off) {
            // Named objects (`table.0`, `CSWTCH.3`): the whole object, from its start to the
            // next one, however the code points into it (`t[i + 1]` designates t + 4, and an
            // edit of t[0] must still count).
            bounds
        } else {
            // One block of a file's literals (gcc -O0's `.rodata`, strings reached from their
            // start): each object runs from the last position anything designates at or
            // before `off` to the next one after it. (An indexed table has a symbol of its
            // own, `t.0`, and is compared whole above.)
            let labels = self.diff.labels(cx, target);
            let next = labels
                .iter()
                .copied()
                .find(|&l| l > off)
                .unwrap_or(a.size)
                .min(a.size);
            let start = labels
                .iter()
                .copied()
                .filter(|&l| l <= off)
                .max()
                .unwrap_or(off);
            (start, literal_end(&a.bytes, start, next))
        };
        self.data_range(target, lo, hi, d.wrapping_sub(off - lo))
    }

    /// Bytes `lo..hi` of data atom `target` against the image's at `img_lo`: equal outside
    /// the relocated fields, and each field designating what the image's does.
    fn data_range(&mut self, target: AtomId, lo: u64, hi: u64, img_lo: u64) -> bool {
        let cx = self.cx;
        let a = cx.info.obj.atom(target);
        if hi < lo || hi > a.bytes.len() as u64 {
            return false;
        }
        let Some(img) = cx.image_contents(RuntimeAddr(img_lo), (hi - lo) as usize) else {
            return false;
        };
        let mut covered = vec![false; (hi - lo) as usize];
        for r in &a.relocs {
            if r.offset.0 + 8 <= lo || r.offset.0 >= hi {
                continue;
            }
            let Some(width) = field_width(r.kind).filter(|&w| w > 0) else {
                return false;
            };
            if r.offset.0 < lo || r.offset.0 + width > hi || is_got(r.kind) {
                return false;
            }
            let start = (r.offset.0 - lo) as usize;
            covered[start..start + width as usize]
                .iter_mut()
                .for_each(|c| *c = true);
            let signed = !matches!(
                r.kind,
                RelocKind::Abs32 | RelocKind::Abs16 | RelocKind::Abs8
            );
            let Some(value) = read_field(&img[start..], width, signed) else {
                return false;
            };
            let into_code = matches!(
                cx.info.classify(target, r),
                TargetClass::Placed { atom } if cx.info.obj.atom(atom).kind == AtomKind::Text
            );
            let (extra, dv) = if is_pc_relative(r.kind) && into_code {
                // A jump table's `.long .L5-.L4`: relative to the table's start (the
                // referenced position), not to the field.
                let skew = (r.offset.0 - lo) as i64;
                (r.addend.wrapping_sub(skew), value.wrapping_add(img_lo))
            } else if is_pc_relative(r.kind) {
                (r.addend, value.wrapping_add(img_lo + start as u64))
            } else {
                (r.addend, value)
            };
            if !self.designates(target, r, extra, dv) {
                return false;
            }
        }
        a.bytes[lo as usize..hi as usize]
            .iter()
            .zip(&img)
            .zip(&covered)
            .all(|((x, y), covered)| *covered || x == y)
    }
}

/// The end of the literal at `start` in a block of a file's literals, where the next
/// designated position is `next`: a string of printable text and its NUL, when only zeros
/// follow it up to `next` — the padding gas put before an aligned literal (gcc -O0 aligns a
/// long format string to 8), which the image holds for another literal's bytes when the
/// edit removed one in between. Anything else runs to `next`.
fn literal_end(bytes: &[u8], start: u64, next: u64) -> u64 {
    let (Ok(lo), Ok(hi)) = (usize::try_from(start), usize::try_from(next)) else {
        return next;
    };
    let Some(block) = bytes.get(lo..hi) else {
        return next;
    };
    let Some(nul) = block.iter().position(|&b| b == 0) else {
        return next;
    };
    let text = &block[..nul];
    let printable = !text.is_empty()
        && text
            .iter()
            .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\t' || b == b'\n');
    if printable && block[nul..].iter().all(|&b| b == 0) {
        start + nul as u64 + 1
    } else {
        next
    }
}

/// What [`Unit::prefill`] did with a relocation.
enum Prefill {
    /// Applied to the bytes; relocations before this offset belong to the same sequence.
    Done(u64),
    /// To be compared against the image instruction.
    Compare,
    /// Not a form hot-link knows how the image holds: changed.
    Unknown,
}

/// The entry size `N` of a `.rodata.cstN` / `.rodata.strN.M` section (`marker` `.cst` or
/// `.str`).
fn entry_size(section_name: &str, marker: &str) -> Option<u64> {
    let rest = &section_name[section_name.rfind(marker)? + marker.len()..];
    rest.split('.').next()?.parse().ok().filter(|&n| n > 0)
}

impl CodeMatch {
    /// The image address new-object offset `off` corresponds to: the paired instruction's,
    /// a nop's next paired one, the end of the range, or inside an instruction by its start.
    fn new_to_image(&self, off: i64) -> Option<u64> {
        let off = u64::try_from(off).ok()?;
        if off == self.new_hi {
            return Some(self.img_hi);
        }
        if off > self.new_hi {
            return None;
        }
        match self.new_ips.binary_search(&off) {
            Ok(k) => Some(self.paired[k]).filter(|&a| a != u64::MAX),
            Err(0) => None,
            Err(k) => {
                let start = self.new_ips[k - 1];
                (!self.new_nop[k - 1] && self.paired[k - 1] != u64::MAX)
                    .then(|| self.paired[k - 1] + (off - start))
            }
        }
    }

    /// An image address in the range, moved past nops (a branch into alignment padding
    /// lands on the next instruction).
    fn canonical_image(&self, addr: u64) -> u64 {
        if addr < self.img_lo || addr >= self.img_hi {
            return addr;
        }
        match self.img_ips.binary_search(&addr) {
            Ok(mut k) => {
                while k < self.img_ips.len() && self.img_nop[k] {
                    k += 1;
                }
                self.img_ips.get(k).copied().unwrap_or(self.img_hi)
            }
            Err(_) => addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insns(bytes: &[u8]) -> Vec<Instruction> {
        decode(bytes, 0).expect("valid code")
    }

    fn dead(reg: Register, bytes: &[u8]) -> bool {
        let v = insns(bytes);
        register_dead_after(reg, &v[0], &v[1..], |_| false)
    }

    #[test]
    fn a_got_address_register_is_dead_only_when_nothing_can_read_it() {
        // mov (%rax),%rax: overwritten by the dereference itself.
        assert!(dead(Register::RAX, &[0x48, 0x8b, 0x00]));
        // mov (%rax),%rdi; call f: %rax is clobbered by the call.
        assert!(dead(Register::RAX, &[0x48, 0x8b, 0x38, 0xe8, 0, 0, 0, 0]));
        // mov (%rax),%rdi; xor %eax,%eax... : written before any read.
        assert!(dead(Register::RAX, &[0x48, 0x8b, 0x38, 0x31, 0xc0, 0xc3]));
        // mov (%rdx),%eax; ret: %rdx may be half of a returned pair.
        assert!(!dead(Register::RDX, &[0x8b, 0x02, 0xc3]));
        // mov (%rax),%edi; mov %rax,%rsi: read afterwards.
        assert!(!dead(Register::RAX, &[0x8b, 0x38, 0x48, 0x89, 0xc6, 0xc3]));
        // mov (%rbx),%edi; call f: %rbx survives the call.
        assert!(!dead(Register::RBX, &[0x8b, 0x3b, 0xe8, 0, 0, 0, 0]));
        // mov (%rax),%edi; jmp somewhere (not a tail call): unknown.
        assert!(!dead(Register::RAX, &[0x8b, 0x38, 0xeb, 0x00]));
        // mov (%rax),%al: a partial write keeps the address in the upper bits.
        assert!(!dead(Register::RAX, &[0x8a, 0x00, 0xc3]));
    }
}
