"""The physical CPU both engines run guests on: Unicorn, opened for x86-64.

Room: the hardware boundary of DESIGN.md, not behaviour of the model. It
owns how a Unicorn instance is opened, put into the reset state and made to
load a segment register; nothing here decides *what* is loaded. Both
:mod:`spec.vmx` and :mod:`impl.vcpu` use it, as both run on the same CPU.
It also reads the CPU's memory quickly (:func:`read_memory`). Imports
Unicorn, ``mmap``, ``ctypes`` (host memory) and ``threading`` only.

Why it exists. A guest may switch to long mode, so the CPU is opened in
Unicorn's 64-bit mode: only that mode's register interface reads and writes
RAX..R15 and RIP in full. That interface, however, cannot *load* CS, DS,
ES or SS: a write there changes only the selector, not the hidden base,
limit and attributes that the CPU caches when it loads a segment (SDM vol.
3A, 3.4.3). Unicorn's 32-bit interface does load them, through the
descriptor table as the CPU does. So a segment load is made on a second,
32-bit instance that holds a copy of the vcpu's state, then the state is
copied back; the copy is a whole register context, taken and restored by
Unicorn. The second instance has its own small memory with a private
descriptor table, into which the caller places the descriptor it read and
checked; the guest's own table is never touched except to set the
descriptor's accessed bit, as the CPU does, which the caller writes back.

Instructions the hardware boundary answers itself (CPUID, RDTSC, RDTSCP:
:mod:`spec.cpuid`, :mod:`spec.clock`) are caught with Unicorn's
instruction hooks (:func:`hook_insn`). Unicorn 2.1.4's C library accepts
``UC_HOOK_INSN`` for ``UC_X86_INS_RDTSC`` and ``UC_X86_INS_RDTSCP``
(``x86_insn_hook_validate`` in ``qemu/target/i386/unicorn.c``;
``helper_rdtsc`` calls the hook with the guest's RIP synchronised, after
the CR4.TSD check, and skips its own TSC when the hook returns 1), but
its Python binding refuses them (``UcIntel.hook_add`` knows only IN, OUT,
SYSCALL, SYSENTER and CPUID), so the hook is registered through the C
entry point.
"""

from __future__ import annotations

import ctypes
import mmap
import threading

import unicorn
from unicorn import x86_const as X

#: Register names as Xen's ``struct cpu_user_regs`` spells them -> Unicorn ids.
REGS = {
    "rax": X.UC_X86_REG_RAX, "rcx": X.UC_X86_REG_RCX, "rdx": X.UC_X86_REG_RDX,
    "rbx": X.UC_X86_REG_RBX, "rsp": X.UC_X86_REG_RSP, "rbp": X.UC_X86_REG_RBP,
    "rsi": X.UC_X86_REG_RSI, "rdi": X.UC_X86_REG_RDI,
    "r8": X.UC_X86_REG_R8, "r9": X.UC_X86_REG_R9, "r10": X.UC_X86_REG_R10,
    "r11": X.UC_X86_REG_R11, "r12": X.UC_X86_REG_R12, "r13": X.UC_X86_REG_R13,
    "r14": X.UC_X86_REG_R14, "r15": X.UC_X86_REG_R15,
    "rip": X.UC_X86_REG_RIP, "rflags": X.UC_X86_REG_RFLAGS,
    "cr0": X.UC_X86_REG_CR0, "cr2": X.UC_X86_REG_CR2, "cr3": X.UC_X86_REG_CR3,
    "cr4": X.UC_X86_REG_CR4,
}
SEGMENT_REGS = {"es": X.UC_X86_REG_ES, "cs": X.UC_X86_REG_CS, "ss": X.UC_X86_REG_SS,
                "ds": X.UC_X86_REG_DS, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS}
MSR_EFER = 0xC0000080

_LOADER_TABLE = 0x10000      # the loader's private descriptor table: 8192 entries
_loader: unicorn.Uc | None = None
#: the reset state for a CS:IP, built once on a 32-bit CPU
_reset_states: dict[tuple[int, int], object] = {}


class SegmentLoadRefused(Exception):
    """The CPU would not load the selector (its own checks failed)."""


def open_cpu() -> unicorn.Uc:
    """A fresh x86-64 CPU, in the reset state (:func:`reset`)."""
    global _offsets
    if _offsets is None:            # found before any guest runs (not inside a hook)
        _offsets = _exception_offsets()
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    # No exit address: a run ends only when a hook stops it. Without this,
    # Unicorn looks the ``until`` address of ``emu_start`` up in the guest's
    # page tables at the start and end of every run; where it is not mapped
    # that walk is a page fault that Unicorn keeps to itself, except that it
    # overwrites CR2 and counts as a first fault, so that the guest's next
    # real #PF or #GP arrives as #DF (and then a silent shutdown).
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([])
    reset(uc)
    return uc


#: the largest piece of guest RAM mapped at once: the host kernel refuses one
#: anonymous mapping larger than its memory (heuristic overcommit), however
#: little of it is ever touched
RAM_PIECE = 1 << 30


class HostMemoryError(Exception):
    """The host cannot back the guest's memory (the message says how much)."""


class HostRam:
    """The host frames behind one domain's guest-physical RAM.

    Each range is backed by anonymous host memory of its own (``mmap``,
    never reserved up front), in pieces of at most :data:`RAM_PIECE`, and
    mapped into the CPU at its guest-physical address; the host allocates a
    page only when it is first touched. A page range can be taken out of the
    guest's physical address space (:meth:`release`: unmapped from the CPU,
    its host frames freed) and put back (:meth:`restore`: the same host
    addresses, now fresh zeroed frames), which is what Xen's p2m does when a
    guest gives memory back and takes it again. Unicorn's own allocator
    cannot do this cheaply: carving a page out of a region it allocated
    copies the whole region first."""

    def __init__(self, uc: unicorn.Uc) -> None:
        self.uc = uc
        #: (gpa, size, mmap, ctypes view): every piece, kept alive with the CPU
        self.pieces: list[tuple[int, int, mmap.mmap, object]] = []

    def map(self, start: int, end: int) -> None:
        """Back guest-physical ``[start, end)``, in pieces of at most
        :data:`RAM_PIECE`; raises :class:`HostMemoryError`."""
        at = start
        try:
            while at < end:
                size = min(RAM_PIECE - at % RAM_PIECE, end - at)
                host = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                                 | getattr(mmap, "MAP_NORESERVE", 0))
                view = (ctypes.c_char * size).from_buffer(host)
                self.uc.mem_map_ptr(at, size, unicorn.UC_PROT_ALL, view)
                self.pieces.append((at, size, host, view))
                at += size
        except (OSError, unicorn.UcError) as exc:
            raise HostMemoryError(f"the host cannot map guest memory at {at:#x} "
                                  f"({(end - start) >> 20} MiB from {start:#x}): {exc}") from None

    def _piece(self, gpa: int, length: int) -> tuple[int, int, mmap.mmap, object]:
        for piece in self.pieces:
            if piece[0] <= gpa and gpa + length <= piece[0] + piece[1]:
                return piece
        raise ValueError(f"{gpa:#x}+{length:#x} is not one piece of guest RAM")

    def release(self, gpa: int, length: int) -> None:
        """Take page-aligned ``[gpa, gpa + length)`` out of the guest's
        physical address space and free its host frames."""
        start, _size, host, _view = self._piece(gpa, length)
        self.uc.mem_unmap(gpa, length)
        host.madvise(mmap.MADV_DONTNEED, gpa - start, length)

    def restore(self, gpa: int, length: int) -> None:
        """Put released ``[gpa, gpa + length)`` back, with zeroed frames."""
        start, _size, _host, view = self._piece(gpa, length)
        self.uc.mem_map_ptr(gpa, length, unicorn.UC_PROT_ALL,
                            ctypes.addressof(view) + (gpa - start))


#: the buffer of :func:`read_memory`, one per thread
_read_buffer = threading.local()


def read_memory(uc: unicorn.Uc, address: int, size: int) -> bytes:
    """``size`` bytes of the CPU's physical memory at ``address``, as
    ``uc.mem_read`` reads them, through a buffer kept for the thread (the
    binding's own allocates one for every read). Raises ``UcError`` where
    nothing is mapped."""
    from unicorn.unicorn_py3.unicorn import uclib
    buffer = getattr(_read_buffer, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _read_buffer.buffer = ctypes.create_string_buffer(max(size, 8192))
    status = uclib.uc_mem_read(uc._uch, address, buffer, size)
    if status != unicorn.UC_ERR_OK:
        raise unicorn.UcError(status)
    return buffer[:size]


#: ``uc_cb_insn_cpuid_t``: the hook of CPUID, RDTSC and RDTSCP; returning 1
#: skips the CPU's own answer
INSN_HOOK = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p)
#: the C callbacks registered by :func:`hook_insn`, kept alive with their CPU
_insn_hooks: dict[int, list[object]] = {}


def hook_insn(uc: unicorn.Uc, insn: int, callback) -> int:
    """Call ``callback()`` whenever the CPU executes ``insn``
    (``UC_X86_INS_CPUID``, ``UC_X86_INS_RDTSC`` or ``UC_X86_INS_RDTSCP``),
    with RIP at the instruction; the callback writes the result registers
    itself, and the CPU's own answer is skipped. Returns the hook handle."""
    from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

    def trampoline(_uc, _data) -> int:
        callback()
        return 1

    fptr = INSN_HOOK(trampoline)
    handle = uc_hook_h()
    status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), unicorn.UC_HOOK_INSN,
                               ctypes.cast(fptr, ctypes.c_void_p), None,
                               ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(insn))
    if status != unicorn.UC_ERR_OK:
        raise unicorn.UcError(status)
    _insn_hooks.setdefault(id(uc), []).append(fptr)
    return handle.value


def _loader_cpu() -> unicorn.Uc:
    global _loader
    if _loader is None:
        _loader = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
        _loader.mem_map(0, _LOADER_TABLE + _LOADER_PAGING)
    return _loader


#: the loader's own page tables, after its descriptor table (four pages)
_LOADER_PAGING = 0x4000


def _loader_paging(loader: unicorn.Uc) -> int | None:
    """With paging on, the loader would read its descriptor table through
    the guest's page tables, which are not in its memory (the walk faults
    outside any run, and Unicorn crashes the process): give it tables of
    its own, of the guest's kind (4-level with EFER.LMA, PAE, or 32-bit),
    that map its descriptor table's 64 KiB at their own addresses. Returns
    the guest's CR3, to be put back; None without paging."""
    if not loader.reg_read(X.UC_X86_REG_CR0) & 0x80000000:
        return None
    cr3 = loader.reg_read(X.UC_X86_REG_CR3)
    at = _LOADER_TABLE
    pages = range(0, _LOADER_TABLE, 0x1000)
    if loader.msr_read(MSR_EFER) & 0x400:               # LMA: PML4, PDPT, PD, PT
        entry = 8
        links = [(at, at + 0x1000 | 3), (at + 0x1000, at + 0x2000 | 3),
                 (at + 0x2000, at + 0x3000 | 3)]
        table = at + 0x3000
    elif loader.reg_read(X.UC_X86_REG_CR4) & 0x20:       # PAE: PDPT, PD, PT
        entry = 8
        links = [(at, at + 0x1000 | 1), (at + 0x1000, at + 0x2000 | 3)]
        table = at + 0x2000
    else:                                               # 32-bit: PD, PT
        entry = 4
        links = [(at, at + 0x1000 | 3)]
        table = at + 0x1000
    loader.mem_write(at, bytes(_LOADER_PAGING))
    for where, value in links:
        loader.mem_write(where, value.to_bytes(entry, "little"))
    loader.mem_write(table, b"".join((p | 3).to_bytes(entry, "little") for p in pages))
    loader.reg_write(X.UC_X86_REG_CR3, at)
    return cr3


def reset(uc: unicorn.Uc, cs: int = 0xF000, ip: int = 0xFFF0) -> None:
    """The reset state of SDM vol. 3A table 9-1 that matters here: real
    mode (CR0 = 0x10: PE and PG clear, ET set; EFER = 0), CS:IP = ``cs``:``ip``
    with the CS base ``cs`` * 16, DS/ES/SS/FS/GS = 0, RFLAGS = 2, every
    general-purpose register 0, GDTR and IDTR with base 0 and limit 0xFFFF
    (the IVT at address 0). Any translation the CPU cached is dropped."""
    state = _reset_states.get((cs, ip))
    if state is None:
        cpu = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
        cpu.reg_write(X.UC_X86_REG_CR0, 0x10)
        cpu.reg_write(X.UC_X86_REG_CS, cs)
        for seg in ("ds", "es", "ss", "fs", "gs"):
            cpu.reg_write(SEGMENT_REGS[seg], 0)
        cpu.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        cpu.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
        cpu.reg_write(X.UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
        cpu.reg_write(X.UC_X86_REG_EIP, ip)
        state = _reset_states[(cs, ip)] = cpu.context_save()
    uc.context_restore(state)
    uc.ctl(unicorn.unicorn_const.UC_CTL_TLB_FLUSH, unicorn.unicorn_const.UC_CTL_IO_WRITE)


def load_segment(uc: unicorn.Uc, seg: str, selector: int,
                 descriptor: bytes | None = None, privilege: int | None = None) -> bytes | None:
    """Load segment register ``seg`` with ``selector`` as the CPU does: in
    real mode the base becomes ``selector`` * 16; in protected or long mode
    the hidden part comes from ``descriptor``, the 8 bytes of the selector's
    GDT entry that the caller read (and checked). Returns the descriptor as
    the CPU leaves it (its accessed bit set), or None in real mode.

    ``privilege`` 0: the load is event delivery's, into ring 0 from an outer
    ring. No instruction loads CS into an inner ring, and neither does
    Unicorn's register interface; so the loading CPU is first brought to
    CPL 0 (QEMU keeps CPL as SS's DPL: a real-mode load of SS makes it 0),
    and the caller loads SS right after CS. Rings 1 and 2 are not modelled.

    Raises :class:`SegmentLoadRefused` when the CPU's own checks reject
    the load (a non-readable code segment for a data register, a
    privilege mismatch, an absent segment)."""
    loader = _loader_cpu()
    loader.context_restore(uc.context_save())
    # GDTR and CR3 as the guest's (64-bit) CPU holds them: the loader is a
    # 32-bit CPU, whose register interface cuts a base to 32 bits, and a
    # segment load never changes either (only LGDT and MOV to CR3 do: SDM
    # vol. 3A 2.4.1, 3.5.1); in IA-32e mode both are 64-bit addresses
    # (Linux's GDT is at 0xfffffe0000001000)
    full_gdtr = uc.reg_read(X.UC_X86_REG_GDTR)
    full_cr3 = uc.reg_read(X.UC_X86_REG_CR3)
    guest_cr3 = _loader_paging(loader)
    protected = loader.reg_read(X.UC_X86_REG_CR0) & 1
    gdtr = loader.reg_read(X.UC_X86_REG_GDTR)
    loaded = None
    if protected and privilege is not None:
        if privilege != 0:
            raise SegmentLoadRefused(f"entering ring {privilege} is not modelled")
        cr0 = loader.reg_read(X.UC_X86_REG_CR0)
        loader.reg_write(X.UC_X86_REG_CR0, cr0 & ~1)
        loader.reg_write(X.UC_X86_REG_SS, 0)
        loader.reg_write(X.UC_X86_REG_CR0, cr0)
    if protected and descriptor is None and not selector & ~3:
        descriptor = bytes(8)                   # a null selector (64-bit SS)
    if protected:
        if descriptor is None or len(descriptor) != 8 or selector & 4:
            raise SegmentLoadRefused(f"selector {selector:#x} needs its 8-byte GDT descriptor")
        index = selector & 0xFFF8
        loader.mem_write(index, descriptor)
        loader.reg_write(X.UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
    try:
        loader.reg_write(SEGMENT_REGS[seg], selector)
    except unicorn.UcError as exc:
        raise SegmentLoadRefused(f"the CPU refuses to load {seg.upper()} with selector "
                                 f"{selector:#x}: {exc}") from None
    finally:
        if protected:
            loaded = bytes(loader.mem_read(selector & 0xFFF8, 8))
            loader.reg_write(X.UC_X86_REG_GDTR, gdtr)
        if guest_cr3 is not None:
            loader.reg_write(X.UC_X86_REG_CR3, guest_cr3)
    uc.context_restore(loader.context_save())
    if uc.reg_read(X.UC_X86_REG_GDTR) != full_gdtr:
        uc.reg_write(X.UC_X86_REG_GDTR, full_gdtr)
    if uc.reg_read(X.UC_X86_REG_CR3) != full_cr3:
        uc.reg_write(X.UC_X86_REG_CR3, full_cr3)
    return loaded


# --- what the CPU reports with an exception ------------------------------------------

#: where the CPU state that ``context_save`` copies keeps the error code of the
#: exception being raised, and the vector of the last one it did not see
#: delivered (found once by :func:`_exception_offsets`)
_offsets: tuple[int, int] | None = None


def _fault_state(selector: int, present: bool) -> tuple[int, bytes]:
    """Raise #GP(selector) (or, for ``present`` False, #NP(selector)) on a
    scratch CPU: the vector and the state saved in ``UC_HOOK_INTR``."""
    cpu = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    cpu.mem_map(0, 0x4000)
    data = 0x00CF92000000FFFF if present else 0x00CF12000000FFFF
    gdt = b"".join(d.to_bytes(8, "little") for d in
                   (0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF, data))
    cpu.mem_write(0x100, gdt)
    cpu.reg_write(X.UC_X86_REG_GDTR, (0, 0x100, 31, 0))
    cpu.reg_write(X.UC_X86_REG_CR0, 0x11)
    cpu.reg_write(X.UC_X86_REG_CS, 8)
    cpu.reg_write(X.UC_X86_REG_SS, 16)
    cpu.mem_write(0x3000, selector.to_bytes(2, "little"))
    cpu.mem_write(0x1000, b"\x8e\x1d\x00\x30\x00\x00")     # mov ds, [0x3000]
    seen: list[tuple[int, bytes]] = []

    def on_intr(uc, vector, _data):
        seen.append((vector, uc.context_save().__getstate__()[0]))
        uc.emu_stop()
    cpu.hook_add(unicorn.UC_HOOK_INTR, on_intr)
    cpu.emu_start(0x1000, 0x1006, count=1)
    return seen[0]


def _exception_offsets() -> tuple[int, int]:
    """Find the error code and QEMU's ``old_exception`` in Unicorn's saved
    CPU state: segment loads that fault with #GP(0x1238), #GP(0x2340) and
    #NP(0x18); the one offset holding each selector in turn is the error
    code's, the one holding 13 then 11 the vector's."""
    import struct

    def where(blob: bytes, value: int) -> set[int]:
        return {i for i in range(0, len(blob) - 3, 4)
                if struct.unpack_from("<i", blob, i)[0] == value}
    code: set[int] | None = None
    vector: set[int] | None = None
    for selector, present in ((0x1238, True), (0x2340, True), (0x18, False)):
        raised, blob = _fault_state(selector, present)
        code = where(blob, selector) if code is None else code & where(blob, selector)
        vector = where(blob, raised) if vector is None else vector & where(blob, raised)
    if not code or len(code) != 1 or not vector or len(vector) != 1:
        raise RuntimeError("cannot find the exception state in Unicorn's CPU state")
    return code.pop(), vector.pop()


def error_code(uc: unicorn.Uc) -> int:
    """In the ``UC_HOOK_INTR`` callback: the error code of the exception the
    CPU is raising, the one the hardware would push (Unicorn reports only
    the vector; the code stays in its state)."""
    global _offsets
    if _offsets is None:
        _offsets = _exception_offsets()
    blob = uc.context_save().__getstate__()[0]
    return int.from_bytes(blob[_offsets[0]:_offsets[0] + 4], "little")


def exception_delivered(uc: unicorn.Uc) -> None:
    """After the run that raised an exception has stopped: tell the CPU the
    exception was delivered.

    This corrects Unicorn: QEMU, which it derives from, keeps the vector of
    an exception being delivered (``old_exception``) to turn a second fault
    into #DF, and forgets it once delivery succeeds. With ``UC_HOOK_INTR``
    Unicorn never delivers, so it never forgets, and the next #DE, #TS, #NP,
    #SS, #GP or #PF arrives as #DF. Delivery is the boundary's job
    (:mod:`spec.delivery`), so the CPU's memory of it is cleared here. (A
    context restored inside the hook would end the run with an error.)"""
    global _offsets
    if _offsets is None:
        _offsets = _exception_offsets()
    context = uc.context_save()
    state = list(context.__getstate__())
    blob = bytearray(state[0])
    blob[_offsets[1]:_offsets[1] + 4] = (-1).to_bytes(4, "little", signed=True)
    state[0] = bytes(blob)
    context.__setstate__(tuple(state))
    uc.context_restore(context)


#: CR2 while a call that drops translated code runs: not canonical, so no
#: page fault can leave it there (:func:`drop_translations`)
_CR2_MARK = 0xDEAD_0000_0000_0001


def drop_translations(uc: unicorn.Uc, call, *args, running: bool = False) -> bool:
    """Make a Unicorn ``call`` that drops translated code (``mem_protect``,
    ``mem_map``, ``mem_unmap``, ``hook_del`` of a ranged hook,
    ``ctl_remove_cache``) and take back the page fault it may leave.

    This corrects Unicorn 2.1.4: such a call invalidates the translations
    of a range (``uc_invalidate_tb`` in ``qemu/accel/tcg/translate-all.c``)
    by first looking the range's start up *as a linear address* in the
    guest's page tables (``get_page_addr_code``), even where the start is a
    guest-physical address (a memory region's, for the first four). Where
    the guest's paging does not map that address, the walk raises #PF
    inside Unicorn, which ignores it, except that it has already set CR2,
    counted the fault as a first fault for #DF (``old_exception``) and left
    it pending (``exception_index``): the next run begins by raising that
    #PF, and the guest's next real #PF or #GP arrives as #DF. On the
    hardware nothing of this exists: changing the EPT or the host's code
    cache raises nothing in the guest. (Debian's Linux, whose early page
    tables map its kernel only high, met this at its first page of code.)

    CR2 is put back here; the fault's count for #DF is forgotten as
    :func:`exception_delivered` does, unless the CPU is ``running`` (the
    call is made from a hook: then the caller stops the run and calls
    :func:`exception_delivered` once it has stopped). The pending fault
    cannot be taken back from outside: the result says it is there (True),
    and the caller's ``UC_HOOK_INTR`` discards the next event it receives,
    which is that fault, raised before any instruction runs.
    """
    cr2 = uc.reg_read(X.UC_X86_REG_CR2)
    uc.reg_write(X.UC_X86_REG_CR2, _CR2_MARK)
    try:
        call(*args)
    finally:
        stray = uc.reg_read(X.UC_X86_REG_CR2) != _CR2_MARK
        uc.reg_write(X.UC_X86_REG_CR2, cr2)
    if stray and not running:
        exception_delivered(uc)
    return stray
