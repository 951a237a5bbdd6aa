"""Translated blocks: how impl's vcpu counts retired instructions.

Room: the Python side of impl's instruction clock (the C side is
:mod:`impl.clock`): each translated block Unicorn runs, decoded once and
remembered with the decode context it was decoded in; the stop points put
on instructions that exit or cast an interrupt shadow, and where a budget
ends; the pages of code the clock write-protects, to notice code that the
guest rewrites. It is one part of :class:`impl.vcpu.Vcpu`
(:class:`BlockAccounting`), whose registers and RAM it reads. Imports
Unicorn, :mod:`impl.clock`, :mod:`impl.registers`,
:mod:`impl.guest_linear`, :mod:`impl.exits` and, of ``spec``, the
hardware (:mod:`spec.physical_cpu`: dropping translated code).

How it stays fast and exact
---------------------------

The reference model calls Python on every instruction. Here the clock runs
once per *translated block* (``UC_HOOK_BLOCK``), and in C
(``impl/_clock.c``, through :mod:`impl.clock`): a table holds, per block
already decoded, its linear address, size, instruction count and the
*decode context* it was decoded in (CR0.PE and PG, CS in protected mode;
with paging also CR3, CR4.PSE/PAE, EFER.LMA and a count of TLB flushes).
A known block, whose bytes are still those it was decoded from and inside
which the budget does not end, is counted without calling Python: the clock
advances by its count when the next block starts. Any other block comes to
Python (:meth:`BlockAccounting._on_block`), which decodes it with capstone (cached by
address, mode and bytes) and fills the table. Instructions that exit — IN,
OUT, INS, OUTS, HLT and VMCALL, with any prefixes — get a code hook on
their address alone. The first time a block containing such an instruction
is seen, the hook is added, Unicorn's translation of that address is
dropped and the block restarts (its first instruction has not run yet when
the block hook is called), so the retranslated block stops exactly there.
Where a budget ends inside a block, the same is done for the instruction at
which it ends, and that stop point is taken away again when the run stops.

A block decoded in another decode context is found again without Python
when only the translation differs (another CR3, or a TLB flush since): the
C clock walks the guest's page tables itself, as the CPU does on a TLB
miss, and if they map the block's pages to the frames it was decoded from,
the block is known in this context too (its bytes are write-protected or
compared, so they are the same; ``refill`` in ``impl/_clock.c``). And a
block on pages that the page tables map global (the G bit, with CR4.PGE)
is kept under a second, *global* context, which a MOV to CR3 does not
change, as a MOV to CR3 keeps global translations (SDM vol. 3A 4.10.4.1).
An operating system switches CR3 at every process switch, at every patch
of its text through a temporary mm, and, with page-table isolation, at
every entry from user mode: Debian's Linux patched its text at 25 thousand
instructions a second before, in about 20 seconds after (16,764 CR3
switches, 1.3 million blocks found by the walk).

The decode context can change only through an instruction that Unicorn
ends its block after: MOV to CR0, CR3 or CR4, LMSW, INVLPG, WRMSR, RSM, far
JMP/CALL/RET, IRET, INT, SYSCALL, SYSRET, SYSENTER, SYSEXIT. A block
holding one is marked, and the block after it goes to Python, which reads
the context again (and counts a TLB flush for MOV to CR0, CR3 or CR4,
LMSW, INVLPG, RSM and far JMP/CALL, which may switch tasks; not for an
INVLPG of a linear page that holds no block seen so far, which changes
no known block's bytes and leaves the context as it was: an operating
system flushes its data pages one by one); so does the first block of every run,
as the VMM may have changed the context in between (an interrupt
delivered, an instruction emulated). Code the guest rewrites is noticed
as Xen notices writes to page tables it shadows: a page that holds a known
block is write-protected (``mem_protect``), and the guest's first store to
it stops the run before the store; the page is then made writable for good,
its blocks are forgotten, the run starts again at the store, and from then
on each block on that page has its bytes compared with the copy the table
keeps before it is counted (the guest's RAM is this process's memory).
Pages are protected in aligned chunks of 64 KiB (:data:`CHUNK_PAGES`):
the first code found in a chunk of plain RAM protects the whole chunk in
one call, as a kernel's text fills whole chunks; a store into a page of
the chunk that holds no code makes all such pages of the chunk writable
again, and code found later in it is protected page by page.
Xen's own writes to RAM (an ``IN`` string's data, qemu-dm's DMA) forget
the blocks of the pages they touch.

A REP string instruction ends its block, and each iteration re-enters it, so
counting blocks counts each iteration once, as the reference does. A fault
stops the block part-way; Unicorn reports the faulting instruction's EIP,
and the clock counts the instructions of the block before it.

Interrupts. The interrupt shadow (after an STI that set IF, a MOV SS or a
POP SS) is tracked without a hook per instruction: those three instructions
get a code hook like the exiting ones, which notes the instruction count at
which their shadow holds. While the VMM asks for interrupt-window exiting
(an interrupt is pending and IF = 0) the vcpu runs at full speed: IF can
become 1 only through an instruction that Unicorn ends its block after.
STI and POPF mark their block (``SETS_IF``), and while a window is
awaited the C clock sends the block after one to Python, as it does after
every block that may change the decode context (IRET, far transfers,
SYSRET, RSM, INT n: a task switch loads EFLAGS). Python reads IF at the
start of each block it sees in a window; where IF = 1, the run stops
there, before the block, and :meth:`impl.vcpu.Vcpu._run_exit` exits at that
boundary, or, in the shadow of an STI, steps one more instruction through
a budget stop point. The preemption timer is a second budget: the run
stops at whichever comes first.

A store into the very block that is executing makes QEMU abandon the
block before the store and run the storing instruction again as a block of
its own: a block that lies inside the one before it and ends before it
comes to Python (from the C clock too, on a page the guest writes), which
takes back what the clock counted of the abandoned block. A store that
Unicorn refuses inside one of its helpers (a far CALL's pushes, for one)
is dropped while the instruction completes; the registers as they were
when the store was refused (before the instruction) are put back before
the run starts again (:meth:`impl.exits.ExitHooks._fault`).

Known limits: a store into its own block that straddles two pages, where
the block that QEMU runs again lies on a page the guest has not written,
is counted by the C clock whole. A guest that
changes a page-table entry of its code and runs the page again without a
TLB flush (architecturally undefined: the old translation may be used)
gets the translation that the table holds. An IRET that switches tasks
(NT set) is not counted as a TLB flush.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import unicorn
from unicorn import x86_const as X

from impl import clock
from impl.exits import (IO_FORMS, POPF, STI, Exit, IoExit, casts_shadow, decode_io, is_exiting,
                        split_prefixes)
from impl.guest_linear import PAGE, LinearFault, pfns
from impl.registers import (BASE_MSR, CR0, CR0_PG, CR4_PGE, EFER_LMA, EFLAGS_IF, EFLAGS_VM,
                            RFLAGS, RIP)
from spec import physical_cpu


@dataclass
class Block:
    """One translated block as the clock sees it."""

    addresses: tuple[int, ...]
    index: dict[int, int]
    exiting: tuple[int, ...]        # addresses of instructions that exit
    shadowing: tuple[int, ...] = ()  # STI, MOV SS, POP SS
    mode: int = 32                   # the code segment's size it was decoded in
    context: bool = False            # the decode context may differ after it
    flush: bool = False              # it may flush the TLB
    stops: frozenset = frozenset()   # exiting and shadowing, for lookups
    #: I/O instructions (no LOCK): address -> (exit information with port 0
    #: where DX names it, length), decoded once with the block
    io: dict = field(default_factory=dict)
    sets_if: bool = False            # STI or POPF, which Unicorn ends its block after
    raw: bytes = b""                 # the bytes it was decoded from
    #: its RDTSCs: (byte offset, instruction index), which the C clock answers
    tsc: tuple[tuple[int, int], ...] = ()


_EMPTY = Block((), {}, ())

#: code is write-protected in aligned chunks of this many pages (64 KiB):
#: each ``mem_protect`` splits Unicorn's RAM region and costs time in
#: proportion to the regions there are (3 ms at 200, 28 ms at 2,200), so a
#: page at a time made an operating system's thousands of pages of code
#: cost a quarter of its boot (Linux's CD: 2,538 calls, 50.8 s of 214 s;
#: in 64 KiB chunks 1,910 calls, 13.2 s of 160 s; 512 KiB and 2 MiB chunks
#: took more calls, as a chunk of code and data is released a run at a time)
CHUNK_PAGES = 16

_CONTEXT, _FLUSH = 1, 2
#: one-byte opcodes that may load CS (far transfers, IRET, software
#: interrupts), with _FLUSH where a task switch may also load CR3
_CS_LOADS = {0x9A: _CONTEXT | _FLUSH, 0xEA: _CONTEXT | _FLUSH, 0xCA: _CONTEXT, 0xCB: _CONTEXT,
             0xCF: _CONTEXT, 0xCC: _CONTEXT, 0xCD: _CONTEXT, 0xCE: _CONTEXT, 0xF1: _CONTEXT}
#: 0F xx: MOV to CRn and RSM flush; WRMSR may change EFER (LMA is in the
#: decode context; NXE changes no byte a linear address names); SYSCALL,
#: SYSRET, SYSENTER and SYSEXIT load CS (LMSW and INVLPG are 0F 01 /6 and /7)
_TWO_BYTE = {0x22: _CONTEXT | _FLUSH, 0x30: _CONTEXT, 0xAA: _CONTEXT | _FLUSH,
             0x05: _CONTEXT, 0x07: _CONTEXT, 0x34: _CONTEXT, 0x35: _CONTEXT}


def _context_effect(insn: bytes, prefixes: bytes, opcode: int | None) -> int:
    """Whether the instruction may change how the next bytes decode (CR0,
    CR4, EFER, CS) or which bytes a linear address names (CR3, a TLB
    flush): _CONTEXT, with _FLUSH for the latter. Unicorn ends its block
    after each of these."""
    i = len(prefixes)
    if opcode in _CS_LOADS:
        return _CS_LOADS[opcode]
    if opcode == 0xFF and i + 1 < len(insn) and insn[i + 1] >> 3 & 7 in (3, 5):
        return _CONTEXT | _FLUSH                        # CALL/JMP far through memory
    if opcode != 0x0F or i + 1 >= len(insn):
        return 0
    second = insn[i + 1]
    if second == 0x01 and i + 2 < len(insn):
        modrm = insn[i + 2]
        if modrm >> 3 & 7 == 6 or (modrm >> 3 & 7 == 7 and modrm < 0xC0):
            return _CONTEXT | _FLUSH                    # LMSW, INVLPG (a memory operand)
    return _TWO_BYTE.get(second, 0)


class BlockAccounting:
    """The clock's Python side: blocks the C fast path (``impl/_clock.c``)
    sends here. A part of :class:`impl.vcpu.Vcpu`, which owns the tables
    (``_blocks``, ``_hooked``, ``_budget_hooks``, ``_contexts``,
    ``_code_pages``, ``_mixed``, ``_slot_block``) and the C clock
    (``_clock``, its state ``_c``)."""

    def _context(self) -> int:
        """The decode context id, probed again if it may have changed: a
        block that may change it ran (the C clock set it to 0), or the VMM
        changed the vcpu's state (``_stale``). A block that ended with an
        INVLPG of a page without code changed nothing of it: the context is
        the one it ran in (:meth:`_flushes_no_code`)."""
        c = self._c
        if not c.context or self._stale:
            if not self._stale and self._probed[0] and self._flushes_no_code():
                c.context, c.global_context = self._probed
            else:
                self._probe_context(not c.context and self._current().flush)
                self._probed = c.context, c.global_context
        return c.context

    def _probe_context(self, flush: bool) -> None:
        """The decode context ids now: what decides how the bytes at a
        linear address decode (CR0.PE and PG, EFLAGS.VM, the code segment's
        size and base) and, with paging, which bytes they are (CR3, CR4's
        PSE and PAE, EFER.LMA, and a count of TLB flushes: ``flush`` starts
        a new one). The code segment's size and base are kept for
        :meth:`mode` and :meth:`seg_base`.

        With CR4.PGE set there is a second id, the *global* context, for
        blocks whose every page the page tables map global (the G bit of
        the leaf entry): a MOV to CR3 flushes no global translation (SDM
        vol. 3A 4.10.4.1), so the global context leaves out CR3 and counts
        only the flushes that do drop global translations (MOV to CR0 or
        CR4, LMSW, INVLPG of a page of code, a task switch). An operating
        system maps its kernel global and switches CR3 at every process
        switch, and with page-table isolation at every entry from user
        mode: without it every block of the kernel would be decoded again
        after each."""
        cr0 = self._reg(CR0)
        self._stale = False
        mode, extra = 16, ()
        if cr0 & 1:
            low, high = self._descriptor("cs")
            if high >> 21 & 1 and self.long_mode():
                mode, self._cs_base = 64, 0
            else:
                mode = 32 if high >> 22 & 1 else 16
                self._cs_base = (low >> 16) | (high & 0xFF) << 16 | (high & 0xFF000000)
            extra = (self._cs_base, self._reg(RFLAGS) & EFLAGS_VM)
        self._cs_mode = mode
        key: tuple = (cr0 & (1 | CR0_PG), mode) + extra
        c = self._c
        # what the C clock needs to place an RDTSC (clock.answer_rdtsc)
        c.cs_base = self._cs_base if cr0 & 1 else self._reg(X.UC_X86_REG_CS) << 4
        c.linear_mask = (1 << 64) - 1 if mode == 64 else 0xFFFFFFFF
        if not cr0 & CR0_PG:
            c.context, c.global_context = self._context_id(key, 0), 0
            c.paging = 0
            return
        if flush and not self._flushes_no_code():
            self._epoch += 1
            if not self._loads_cr3():
                self._global_epoch += 1
        cr4, cr3 = self._reg(X.UC_X86_REG_CR4), self._reg(X.UC_X86_REG_CR3)
        lma = self._efer() & EFER_LMA
        key += (cr4 & 0x30, lma)
        c.context = self._context_id(key + (cr3,), self._epoch)
        c.global_context = (self._context_id(key + ("global",), self._global_epoch)
                            if cr4 & CR4_PGE else 0)
        # what the C clock needs to walk the page tables itself (refill)
        c.mode = self._modes.setdefault(key, len(self._modes) + 1)
        c.cr3 = cr3
        c.paging = (4 if lma else 3 if cr4 & 0x20 else 2) | (0x10 if cr4 & 0x10 else 0)

    def _context_id(self, key: tuple, epoch: int) -> int:
        """The id of decode context ``key`` in TLB-flush epoch ``epoch``: the
        same id as long as no flush came between, a new one after. Only the
        last epoch of each key is kept (an id of an older one never comes
        back), so the table does not grow with the number of flushes."""
        known = self._contexts.get(key)
        if known is None or known[0] != epoch:
            self._context_ids += 1
            known = self._contexts[key] = (epoch, self._context_ids)
        return known[1]

    def _loads_cr3(self) -> bool:
        """Whether the block just run ended with a MOV to CR3 (0F 22 /3),
        which flushes only the translations that are not global."""
        _, code, i, opcode = self._last_instruction()
        return opcode == 0x0F and code[i + 1:i + 2] == b"\x22" and len(code) > i + 2 \
            and code[i + 2] >> 3 & 7 == 3

    def _last_instruction(self) -> tuple[Block, bytes, int, int | None]:
        """The block just run, the bytes of its last instruction (to the
        block's end), the length of its prefixes and its opcode (None for
        an empty block)."""
        prev = self._current()
        if not prev.addresses:
            return prev, b"", 0, None
        code = prev.raw[prev.addresses[-1] - prev.addresses[0]:]
        prefixes, opcode = split_prefixes(code, prev.mode)
        return prev, code, len(prefixes), opcode

    def _flushes_no_code(self) -> bool:
        """Whether the flush that ended the block just run was an INVLPG of
        a linear page that holds no block the clock has seen: then no
        decoded block can name other bytes now, and the decode context
        stays (Linux flushes page by page while it maps and unmaps its
        data; a new context for each made every block after one go through
        Python again)."""
        prev, code, i, opcode = self._last_instruction()
        if opcode != 0x0F or code[i + 1:i + 2] != b"\x01" or len(code) < i + 3 \
                or code[i + 2] >> 3 & 7 != 7 or code[i + 2] >= 0xC0:
            return False
        linear = self._operand_linear(code, prev.addresses[-1], prev.mode)
        return linear is not None and linear >> 12 not in self._code_linear

    def _operand_linear(self, code: bytes, at: int, mode: int) -> int | None:
        """The linear address of the memory operand of the instruction
        ``code`` at ``at``, which has just retired without changing a
        register (RIP is after it); None if it cannot be told."""
        # called while the decode context is probed: the code segment's
        # size and base are the ones just read (_cs_mode, _cs_base)
        mask = (1 << 64) - 1 if self._cs_mode == 64 else 0xFFFFFFFF
        insn = next(self._detail[mode].disasm(code, at, 1), None)
        if insn is None or len(insn.operands) != 1 \
                or self._cs_base + self._reg(RIP) & mask != at + insn.size:
            return None                     # the vcpu has moved on since (an event)
        mem = insn.operands[0].mem
        value = 0
        for reg, scale in ((mem.base, 1), (mem.index, mem.scale)):
            if reg:
                name = insn.reg_name(reg)
                if name == "rip":
                    value += at + insn.size
                else:
                    value += self._reg(getattr(X, "UC_X86_REG_" + name.upper())) * scale
        value += mem.disp
        if insn.addr_size != 8:
            value &= (1 << 8 * insn.addr_size) - 1
        seg = insn.reg_name(mem.segment) if mem.segment else (
            "ss" if mem.base and insn.reg_name(mem.base) in ("rbp", "rsp", "ebp", "esp", "bp",
                                                               "sp") else "ds")
        if self._cs_mode == 64:
            base = self._reg(BASE_MSR[seg]) if seg in BASE_MSR else 0
        else:
            low, high = self._descriptor(seg)
            base = (low >> 16) | (high & 0xFF) << 16 | (high & 0xFF000000)
        return base + value & mask

    def _current(self) -> Block:
        """The block executing now (the one the clock last counted)."""
        index = self._c.current
        return _EMPTY if index < 0 else self._slot_block[index]

    def python_calls(self) -> int:
        """How many times the clock has called Python so far: blocks the C
        fast path could not count, and stop points reached."""
        return self._c.slow + self._stop_calls

    def _block_start(self, block: Block) -> int:
        """The instruction count at the start of ``block``, the current one
        (the clock counted it whole when it began)."""
        c = self._c
        return c.end - c.left - len(block.addresses)

    def _on_block(self, address: int, size: int) -> None:
        """A block the C fast path could not account for: new, changed, in a
        new decode context, or one inside which the budget ends."""
        try:
            self._account(address, size)
        except BaseException as exc:        # noqa: BLE001 - re-raised after emu_start
            self._hook_error = exc
            self.uc.emu_stop()

    def _account(self, address: int, size: int) -> None:
        c = self._c
        self._context()
        prev = self._current()
        at = prev.index.get(address)
        if at is not None and address + size < prev.addresses[0] + len(prev.raw):
            # A block inside the one before it, ending before it ends: that
            # one stored into its own bytes, and Unicorn (QEMU) abandoned
            # it at the store, which it runs again as a block of its own
            # instruction (this one). The clock had counted it whole.
            c.left += len(prev.addresses) - at
        base = c.end - c.left
        if c.window and self._reg(RFLAGS) & EFLAGS_IF:
            # the instruction before this block set IF: the window may open
            # here (or, in a shadow, one instruction later): _run_exit decides
            self._stop(Exit("limit", address, 0, base))
            return
        block = self._decode(address, size)
        missing = [a for a in block.exiting + block.shadowing if a not in self._hooked]
        if self._budget_hooks:
            # a stop point placed where a budget ends, at what this block
            # decodes as an exiting instruction, stays: dropped with the
            # budget's, it would leave the instruction to run in Unicorn
            # (a HLT that ends the run by itself)
            for a in block.stops:
                if a in self._budget_hooks:
                    self._budget_hooks.remove(a)
        end = self._budget_end - base
        if end < len(block.addresses):
            if end <= 0:
                self._stop(Exit("limit", address, 0, base))
                return
            at = block.addresses[end]
            if at not in self._hooked and at not in missing:
                missing.append(at)
                self._budget_hooks.append(at)
        if missing:
            for a in missing:
                self._hooked[a] = self.uc.hook_add(unicorn.UC_HOOK_CODE, self._on_stop_point,
                                                   begin=a, end=a)
                self._drop(self.uc.ctl_remove_cache, a, a + 1)
            self.icount = base
            c.current = -1
            self._restart = True
            self.uc.emu_stop()
            return
        index = self._remember(address, size, block)
        self._slot_block[index] = block
        if self._stray_dirty:
            # write-protecting the block's page left a stray fault (_drop):
            # the block restarts once the run has stopped and it is taken back
            self.icount = base
            c.current = -1
            self._restart = True
            self.uc.emu_stop()
            return
        c.left -= len(block.addresses)
        c.current = index
        if block.context or (block.sets_if and c.window):
            c.context = c.global_context = 0

    def _remember(self, address: int, size: int, block: Block) -> int:
        """Put ``block`` in the C table if its bytes are RAM; its slot, or
        the spare slot that only Python reads."""
        index = clock.slot(address)
        try:
            spans = self._code_spans(address, size)
        except LinearFault:
            return clock.SLOTS
        hosts = []
        for gpa, n in spans:
            host = self._host_address(gpa, n)
            if host is None:
                return clock.SLOTS
            hosts.append((host, n))
        self._code_linear.update(range(address >> 12, (address + size - 1 >> 12) + 1))
        flags = (clock.CONTEXT if block.context else 0) | (clock.SETS_IF if block.sets_if else 0)
        pfns = {gpa >> 12 for gpa, _ in spans}
        if pfns & self._mixed:
            flags |= clock.VERIFY
        else:
            for pfn in pfns:
                slots = self._code_pages.get(pfn)
                if slots is None:
                    self._protect_code(pfn)
                    slots = self._code_pages[pfn] = set()
                slots.add(index)
        context = self._c.context
        if self._c.global_context and self._global_pages(address, size):
            context = self._c.global_context
        self._clock.put(index, address, size, len(block.addresses), context, flags, hosts,
                        block.raw,
                        self._c.mode if self._c.paging else 0,
                        tuple(gpa >> 12 for gpa, _ in spans), block.tsc)
        return index

    def _global_pages(self, linear: int, size: int) -> bool:
        """Whether the guest's page tables map every page of ``[linear,
        linear + size)`` global (the G bit, bit 8, of the entry that maps
        it: SDM vol. 3A 4.10.2.4): a MOV to CR3 keeps such translations."""
        return all(self._code_page(page)[1] >> 8 & 1
                   for page in range(linear >> 12, (linear + size - 1 >> 12) + 1))

    def _code_page(self, page: int) -> tuple[int, int]:
        """The guest-physical address of linear page ``page`` (paging on)
        and the entry that maps it, from the clock's own TLB of code pages:
        it holds what a walk found in the decode context now, and a new
        context (after any TLB flush, a MOV to CR3 among them, or an INVLPG
        of a page of code) empties it. A walk that faults is not kept. Each
        new block of an operating system's kernel walked the page tables
        three times (to read its bytes, to find its frames, to see the G
        bit): a fifth of the time of Linux's boot, after its decompression."""
        context = self._c.context
        if self._tlb_context != context:
            self._tlb.clear()
            self._tlb_context = context
        known = self._tlb.get(page)
        if known is None:
            gpa, entry = self._walk(page << 12, False)
            known = self._tlb[page] = (gpa & ~0xFFF, entry)
            self._code_linear.add(page)     # an INVLPG of it is then a flush
        return known

    def _code_spans(self, linear: int, size: int) -> list[tuple[int, int]]:
        """Where the bytes of a block at ``linear`` are in guest-physical
        RAM, a span per page (:meth:`_spans`, through :meth:`_code_page`
        with paging on). Raises :class:`LinearFault`."""
        if not self._c.paging:
            return self._spans(linear, size, False)
        return self._spans(linear, size, False,
                           lambda at: self._code_page(at >> 12)[0] | at & 0xFFF)

    def _protect_code(self, pfn: int) -> None:
        """Write-protect page ``pfn``, which now holds a known block: with
        the whole aligned chunk of :data:`CHUNK_PAGES` around it, the first
        time code is found in a chunk that is all plain RAM and that the
        guest has not written as code; the page alone otherwise."""
        if pfn in self._ro_pages:
            return
        chunk = pfn // CHUNK_PAGES
        pages = range(chunk * CHUNK_PAGES, (chunk + 1) * CHUNK_PAGES)
        if chunk not in self._chunked and self._plain_ram(pages.start, CHUNK_PAGES):
            self._chunked.add(chunk)
        else:
            pages = range(pfn, pfn + 1)
        self._drop(self.uc.mem_protect, pages.start << 12, len(pages) * PAGE,
                   unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
        self._ro_pages.update(pages)

    def _plain_ram(self, first: int, count: int) -> bool:
        """Whether pages ``[first, first + count)`` are the domain's own RAM,
        in one host piece, with no hole and no page of code the guest writes."""
        pages = range(first, first + count)
        if any(p in self._mixed or p in self.holes for p in pages):
            return False
        return self._host_address(first << 12, count * PAGE) is not None

    def release_written(self, pfn: int) -> None:
        """The guest stores into write-protected page ``pfn``: release it as
        a page of code (:meth:`release_code_page`) or, if it holds none, as
        a page its chunk's code protected with it (:meth:`_release_chunk`)."""
        if pfn in self._code_pages:
            self.release_code_page(pfn)
        elif pfn in self._ro_pages:
            self._release_chunk(pfn)

    def release_code_page(self, pfn: int) -> None:
        """Make a write-protected page of code writable again, for good: the
        guest writes it, so its blocks' bytes are compared before each count
        from now on (and the ones known so far are forgotten)."""
        slots = self._code_pages.pop(pfn, set())
        for index in slots:
            self._clock.forget(index)
        self._mixed.add(pfn)
        self._ro_pages.discard(pfn)
        self._drop(self.uc.mem_protect, pfn << 12, PAGE, unicorn.UC_PROT_ALL)

    def _release_chunk(self, pfn: int) -> None:
        """The guest writes a page that was write-protected only because
        its chunk holds code: code and data share the chunk, so every page
        of it without code is made writable, a run of pages per call; the
        pages of code stay protected."""
        first = pfn // CHUNK_PAGES * CHUNK_PAGES
        run: list[int] = []
        for p in range(first, first + CHUNK_PAGES + 1):
            if p < first + CHUNK_PAGES and p in self._ro_pages and p not in self._code_pages:
                run.append(p)
            elif run:
                self._drop(self.uc.mem_protect, run[0] << 12, len(run) * PAGE,
                           unicorn.UC_PROT_ALL)
                self._ro_pages.difference_update(run)
                run = []

    def make_writable(self, gpa: int, length: int) -> None:
        """Release the write-protected pages in ``[gpa, gpa + length)``
        (:meth:`release_written`): the VMM is about to let the guest write them."""
        for pfn in pfns(gpa, length):
            if pfn in self._ro_pages:
                self.release_written(pfn)

    def _forget_code(self, gpa: int, length: int) -> None:
        """Xen (not the guest) wrote RAM: forget the blocks on those pages
        (Unicorn lets the VMM write a write-protected page)."""
        for pfn in pfns(gpa, length):
            slots = self._code_pages.get(pfn)
            if slots:
                for index in slots:
                    self._clock.forget(index)
                slots.clear()

    def _host_address(self, gpa: int, n: int) -> int | None:
        """Where RAM ``[gpa, gpa + n)`` (backed: see :meth:`_spans`) lies in
        this process, if it is the domain's own (not a mapped dom0 buffer)."""
        for start, size, _host, view in self.host_ram.pieces:
            if start <= gpa and gpa + n <= start + size:
                return ctypes.addressof(view) + (gpa - start)
        return None

    def _drop(self, call, *args) -> None:
        """Make a Unicorn ``call`` that drops translated code, taking back
        the page fault Unicorn may raise in it
        (:func:`spec.physical_cpu.drop_translations`): the fault left
        pending is discarded by :meth:`impl.exits.ExitHooks._on_intr`; made
        from a hook while the guest runs, the run is to stop
        (``_stray_dirty``) and the CPU forgets the fault once it has."""
        if physical_cpu.drop_translations(self.uc, call, *args, running=self._running):
            self._stray = True
            self._stray_dirty |= self._running

    def _drop_budget_hooks(self) -> None:
        """The stop points placed only where a budget ended go, with their
        translations: left in place, each would call Python on every pass."""
        for a in self._budget_hooks:
            handle = self._hooked.pop(a, None)
            if handle is not None:
                self._drop(self.uc.hook_del, handle)
                self._drop(self.uc.ctl_remove_cache, a, a + 1)
        self._budget_hooks.clear()

    def _decode(self, address: int, size: int) -> Block:
        # the bytes are compared, so the key needs only what else decides
        # how they decode: the code segment's size
        self._context()
        key = (address, size, self._cs_mode)
        raw = (b"".join(self.read(g, k) for g, k in self._code_spans(address, size))
               if self._c.paging else self.read(address, size))
        cached = self._blocks.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        mode = self.mode()
        addresses, exiting, shadowing = [], [], []
        io_forms: dict[int, tuple[IoExit, int]] = {}
        offset = effect = 0
        sets_if = False
        tsc = []
        while offset < size:
            for _addr, length, _mn, _ops in self._disasm[mode].disasm_lite(
                    raw[offset:], address + offset):
                addresses.append(address + offset)
                insn = raw[offset:offset + length]
                prefixes, opcode = split_prefixes(insn, mode)
                if is_exiting(insn, prefixes, opcode):
                    exiting.append(address + offset)
                    if opcode in IO_FORMS and 0xF0 not in prefixes:
                        io_forms[address + offset] = decode_io(insn, mode, 0)
                elif casts_shadow(insn, prefixes, opcode):
                    shadowing.append(address + offset)
                    sets_if |= opcode == STI
                else:
                    sets_if |= opcode == POPF
                    effect |= _context_effect(insn, prefixes, opcode)
                    if opcode == 0x0F and insn[len(prefixes) + 1:len(prefixes) + 2] == b"\x31":
                        tsc.append((offset, len(addresses) - 1))
                offset += length
            if offset >= size:
                break
            # capstone refuses some forms the CPU still decodes, LOCK on
            # IN/OUT among them: those exit (as #UD), so they are ours.
            insn = raw[offset:offset + 15]
            prefixes, opcode = split_prefixes(insn, mode)
            addresses.append(address + offset)
            if not is_exiting(insn, prefixes, opcode):
                break                               # undecodable: the block ends here
            exiting.append(address + offset)
            offset += len(prefixes) + (3 if opcode == 0x0F else
                                       1 + (opcode in (0xE4, 0xE5, 0xE6, 0xE7)))
        block = Block(tuple(addresses), {a: i for i, a in enumerate(addresses)}, tuple(exiting),
                      tuple(shadowing), mode, bool(effect & _CONTEXT), bool(effect & _FLUSH),
                      frozenset(exiting + shadowing), io_forms, sets_if, raw, tuple(tsc))
        self._blocks[key] = (raw, block)
        return block
