"""Delivery of interrupts and exceptions: what the CPU does without a VM exit.

Room: the rules of Intel SDM vol. 3A chapter 6 ("Interrupt and Exception
Handling") and 20.1.4 (real mode), at the hardware boundary of
``DESIGN.md``: how an event (an external interrupt the VMM injects, an
INT n / INT3 / INTO / INT1 the guest executes, an exception its code
raises) reaches its handler through the IVT or the IDT, and how a fault
during that delivery becomes a double fault, then a triple fault. It reads
and writes the vcpu only through :class:`Cpu` (implemented by
:class:`spec.vmx.HardwareVcpu`); it imports nothing but :mod:`spec.paging`'s
page-fault type. The physical CPU (Unicorn) reports *that* an event
happened (:mod:`spec.vmx`); everything from there on is defined here.

Events (SDM 6.4, 6.5)
---------------------

``external``
    an interrupt the VMM injects at VM entry (from the virtual PIC).
``software``
    INT n (``CD ib``): a trap; the saved instruction pointer is the next
    instruction's. The gate's DPL is checked against CPL (6.12.1.1).
``software_exception``
    INT3 (``CC``, vector 3) and INTO (``CE``, vector 4, when OF = 1): traps,
    DPL checked like INT n.
``icebp``
    INT1 (``F1``, vector 1): a trap, *not* DPL checked, delivered as a
    hardware-generated #DB would be (6.15 "Interrupt 1", vol. 2 "INT n").
``fault``
    an exception the guest's own instruction raised: the saved instruction
    pointer is the faulting instruction's, so that returning re-executes it
    (6.5 "Exception Classifications"). #DF is an abort; the model saves the
    instruction pointer of the event that caused it.

Error codes (6.13, table 6-1): #DF, #TS, #NP, #SS, #GP, #PF and #AC push
one (#DF's and #AC's are 0); no other vector does, and in real mode none
does. A selector error code is ``index | TI | IDT | EXT`` with bit 0 (EXT)
set when the fault happened while delivering an event that is not a
software interrupt (an external interrupt or an earlier exception), and
bit 1 (IDT) when the index names an IDT gate (``vector * 8 + 2``). #PF
also loads CR2 with the faulting linear address.

Real mode (20.1.4): the IVT entry ``IDTR.base + 4 * vector`` (beyond the
IDTR limit: #GP) holds IP then CS. The CPU pushes FLAGS, CS and IP (16
bits each) on SS:SP, clears IF, TF, AC and RF, and loads CS:IP.

Protected mode (6.10-6.12). In order:

1. The gate ``IDTR.base + 8 * vector`` must lie within the limit, else
   #GP(vector * 8 + 2 + EXT).
2. Its type must be a 16- or 32-bit interrupt gate (6, 0xE) or trap gate
   (7, 0xF), else #GP(vector * 8 + 2 + EXT). A task gate (5) would switch
   tasks; the model does not switch tasks and reports it as not modelled.
3. For ``software`` and ``software_exception`` events: the gate's DPL must
   be >= CPL, else #GP(vector * 8 + 2).
4. The gate must be present, else #NP(vector * 8 + 2 + EXT).
5. Its selector must be non-null (else #GP(EXT)), within the GDT (else
   #GP(selector + EXT)), a code segment (else #GP(selector + EXT)) with
   DPL <= CPL (else #GP(selector + EXT)), present (else #NP(selector +
   EXT)).
6. A non-conforming code segment with DPL < CPL changes privilege (6.12.1,
   "stack switching"): the new SS:ESP for that DPL come from the current
   TSS (32-bit TSS: ESP at ``4 + 8 * DPL``, SS at ``8 + 8 * DPL``; 16-bit
   TSS: SP at ``2 + 4 * DPL``, SS at ``4 + 4 * DPL``; beyond the TSS's
   limit: #TS(TR selector + EXT)). The new SS must be non-null (else
   #TS(EXT)), its RPL and DPL equal to the new CPL and it a writable data
   segment (else #TS(SS selector + EXT)), present (else #SS(SS selector +
   EXT)). The CPU pushes the old SS and ESP on the new stack, then the
   frame. Otherwise the frame goes on the current stack.
7. The frame: EFLAGS, CS, EIP and the error code, 4 bytes each through a
   32-bit gate, 2 through a 16-bit gate. A fault writing it (a #PF) is a
   fault of this delivery. The EFLAGS image of a fault-class exception
   has RF set (6.12.1, 17.3.1.1: "the processor sets RF in the EFLAGS
   image ... for all faults other than instruction-breakpoint #DB").
8. TF, NT, RF and VM are cleared, and IF for an interrupt gate; CS:EIP
   are loaded from the gate (CPL becomes the code segment's DPL).

IA-32e mode (6.14): gates are 16 bytes at ``IDTR.base + 16 * vector``;
only types 0xE and 0xF are valid; the code segment must be a 64-bit one
(L = 1, D = 0), else #GP(selector + EXT). The new RSP is, in order of
precedence: ``IST[n]`` of the TSS when the gate's IST field n is non-zero
(at ``0x24 + 8 * (n - 1)``), whatever the privilege; ``RSP[DPL]`` (at
``4 + 8 * DPL``) on a privilege change; the current RSP otherwise. On a
privilege change SS becomes the null selector with RPL = the new CPL. RSP
is aligned down to 16 bytes, then SS, RSP, RFLAGS, CS, RIP and the error
code are pushed, 8 bytes each (always, privilege change or not).

Double and triple faults (6.15, tables 6-4 and 6-5). A fault during the
delivery of an event is the *second* event. The classes are: benign
(every vector but the ones below, and every external interrupt and INT n),
contributory (#DE, #TS, #NP, #SS, #GP) and page faults (#PF). A
contributory second fault after a contributory first, and a contributory
or page-fault second after a page-fault first, becomes #DF (error code 0);
any other pair is handled serially: the second fault is delivered instead
of the first. A fault while delivering #DF is a triple fault: the CPU
enters shutdown, which in VMX non-root operation is a VM exit (exit reason
2, SDM vol. 3C 27.1; :func:`raise_event` returns ``"triple_fault"``).

Not modelled (reported as :class:`NotModelled`, which the VMM answers by
crashing the domain): task gates and task switches, LDT selectors, virtual-
8086 mode, and segment limits of the stack (the stack is taken as flat).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from spec import platform
from spec.paging import PageFault

# --- vectors (SDM vol. 3A table 6-1) --------------------------------------------------

DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17)
NAMES = platform.EXCEPTION_NAMES
#: the exceptions that push an error code (table 6-1)
ERROR_CODE = frozenset({DF, TS, NP, SS, GP, PF, AC})
#: table 6-4
CONTRIBUTORY = frozenset({DE, TS, NP, SS, GP})

#: event sources (module docstring, "Events")
EXTERNAL, SOFTWARE, SOFTWARE_EXCEPTION, ICEBP, FAULT = (
    "external", "software", "software_exception", "icebp", "fault")

RFLAGS_TF, RFLAGS_IF, RFLAGS_NT, RFLAGS_RF, RFLAGS_VM, RFLAGS_AC = (
    1 << 8, 1 << 9, 1 << 14, 1 << 16, 1 << 17, 1 << 18)
CR0_PE = 1


@dataclass(frozen=True)
class Event:
    """An event to deliver: its vector, where it came from, the error code
    the CPU pushes with it (None: none), the linear address a #PF loads
    into CR2, and the instruction pointer (CS-relative) the frame saves."""

    vector: int
    source: str
    return_ip: int
    error_code: int | None = None
    cr2: int | None = None

    def benign(self) -> bool:
        return self.source in (EXTERNAL, SOFTWARE) or (
            self.vector not in CONTRIBUTORY and self.vector != PF)

    def external(self) -> bool:
        """The EXT bit of an error code for a fault while delivering this."""
        return self.source not in (SOFTWARE, SOFTWARE_EXCEPTION)


class Fault(Exception):
    """A fault raised while delivering an event (vector, error code, CR2)."""

    def __init__(self, vector: int, error_code: int | None, why: str, cr2: int | None = None):
        super().__init__(f"{NAMES.get(vector, vector)}({error_code if error_code is not None else ''})"
                         f": {why}")
        self.vector, self.error_code, self.cr2 = vector, error_code, cr2


class NotModelled(Exception):
    """Delivery needs something the model does not do (a task switch, an
    LDT, virtual-8086 mode), or memory no RAM backs: the VMM crashes the
    domain with this diagnostic."""


class Unreachable(Exception):
    """Memory that delivery reads or writes is not reachable: ``page_fault``
    is the guest's #PF (or #GP for a non-canonical address) when its page
    tables say so; None when no RAM backs it (not modelled: the VMM crashes
    the domain)."""

    def __init__(self, message: str, page_fault: PageFault | None = None) -> None:
        super().__init__(message)
        self.page_fault = page_fault


class Cpu(Protocol):
    """What delivery reads and writes of the vcpu."""

    def reg(self, name: str) -> int: ...
    def set_reg(self, name: str, value: int) -> None: ...
    def long_mode(self) -> bool: ...
    def idtr(self) -> tuple[int, int]: ...
    def gdtr(self) -> tuple[int, int]: ...
    def tss(self) -> tuple[int, int, int]: ...          # TR selector, base, limit
    def selector(self, seg: str) -> int: ...
    def stack_32bit(self) -> bool: ...
    def segment_base(self, seg: str) -> int: ...
    def read_linear(self, linear: int, length: int) -> bytes: ...   # raises Unreachable
    def write_linear(self, linear: int, data: bytes) -> None: ...
    def reachable(self, linear: int, length: int, write: bool) -> None: ...   # Unreachable
    def load_segment(self, seg: str, selector: int, descriptor: bytes | None) -> None: ...


@dataclass
class Outcome:
    """What :func:`raise_event` did: every event delivered or attempted, in
    order (the first is the one raised), and ``"delivered"`` or
    ``"triple_fault"``."""

    result: str
    events: list[Event] = field(default_factory=list)


def second_is_double(first: Event, second: Fault) -> bool:
    """Table 6-5: whether ``second``, raised while delivering ``first``,
    becomes a double fault."""
    if first.benign():
        return False
    if first.vector == PF:
        return second.vector in CONTRIBUTORY or second.vector == PF
    return second.vector in CONTRIBUTORY        # first contributory


def raise_event(cpu: Cpu, event: Event) -> Outcome:
    """Deliver ``event``, and what faults during its delivery turn into
    (module docstring, "Double and triple faults"). A :class:`NotModelled`
    raised on the way carries the outcome so far (``outcome``)."""
    outcome = Outcome("delivered")
    while True:
        outcome.events.append(event)
        try:
            deliver(cpu, event)
            return outcome
        except NotModelled as exc:
            exc.outcome = outcome
            raise
        except Unreachable as exc:
            pf = exc.page_fault
            if pf is None:
                error = NotModelled(f"event delivery: {exc}")
                error.outcome = outcome
                raise error from None
            second = Fault(pf.vector, pf.error_code if pf.vector == PF else 0, str(pf),
                           pf.linear if pf.vector == PF else None)
        except Fault as exc:
            second = exc
        if event.vector == DF and event.source == FAULT:
            outcome.result = "triple_fault"
            return outcome
        if second_is_double(event, second):
            if second.cr2 is not None:          # the #PF was detected: CR2 holds it
                cpu.set_reg("cr2", second.cr2)
            event = Event(DF, FAULT, event.return_ip, 0)
        else:
            event = Event(second.vector, FAULT, event.return_ip, second.error_code, second.cr2)


def deliver(cpu: Cpu, event: Event) -> None:
    """One delivery attempt; raises :class:`Fault` (or a page fault) and
    then leaves the vcpu's registers as they were (memory of a partly
    written frame aside, as on hardware)."""
    if event.cr2 is not None:
        cpu.set_reg("cr2", event.cr2)
    if not cpu.reg("cr0") & CR0_PE:
        _deliver_real(cpu, event)
    elif cpu.reg("rflags") & RFLAGS_VM:
        raise NotModelled("event delivery in virtual-8086 mode")
    elif cpu.long_mode():
        _deliver_long(cpu, event)
    else:
        _deliver_protected(cpu, event)


# --- real mode ----------------------------------------------------------------------

def _deliver_real(cpu: Cpu, event: Event) -> None:
    base, limit = cpu.idtr()
    v = event.vector
    if 4 * v + 3 > limit:
        raise Fault(GP, 8 * v + 2 + event.external(), f"vector {v:#x} is beyond the IVT limit")
    entry = int.from_bytes(cpu.read_linear(base + 4 * v, 4), "little")
    flags = cpu.reg("rflags")
    sp = cpu.reg("rsp") & 0xFFFF
    ss = cpu.selector("ss") << 4
    frame = []
    for value in (flags, cpu.selector("cs"), event.return_ip):
        sp = (sp - 2) & 0xFFFF
        frame.append((ss + sp, (value & 0xFFFF).to_bytes(2, "little")))
    for at, data in frame:
        cpu.write_linear(at, data)
    cpu.set_reg("rsp", cpu.reg("rsp") & ~0xFFFF | sp)
    cpu.set_reg("rflags", flags & ~(RFLAGS_IF | RFLAGS_TF | RFLAGS_AC | RFLAGS_RF))
    cpu.load_segment("cs", entry >> 16, None)
    cpu.set_reg("rip", entry & 0xFFFF)


# --- descriptors ----------------------------------------------------------------------

def _field(d: int, shift: int, bits: int) -> int:
    return (d >> shift) & ((1 << bits) - 1)


def _base(d: int) -> int:
    return _field(d, 16, 24) | _field(d, 56, 8) << 24


def _descriptor(cpu: Cpu, selector: int, vector: int, code: int) -> int:
    """The GDT descriptor of ``selector``: raises #``vector``(``code``)
    beyond the GDT's limit."""
    if selector & 4:
        raise NotModelled(f"selector {selector:#x} is in an LDT")
    base, limit = cpu.gdtr()
    if (selector & ~7) + 7 > limit:
        raise Fault(vector, code, f"selector {selector:#x} is beyond the GDT limit {limit:#x}")
    return int.from_bytes(cpu.read_linear(base + (selector & ~7), 8), "little")


def _gate(cpu: Cpu, event: Event, size: int, kinds: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Steps 1-4: the checked gate's (type, selector, offset, IST)."""
    base, limit = cpu.idtr()
    v, ext = event.vector, event.external()
    idt_code = 8 * v + 2 + ext
    if size * v + size - 1 > limit:
        raise Fault(GP, idt_code, f"vector {v:#x} is beyond the IDT limit {limit:#x}")
    raw = int.from_bytes(cpu.read_linear(base + size * v, size), "little")
    kind = _field(raw, 40, 5)
    if kind == 0x05 and size == 8:
        raise NotModelled(f"IDT gate {v:#x} is a task gate (task switches are not modelled)")
    if kind not in kinds:
        raise Fault(GP, idt_code, f"IDT gate {v:#x} has type {kind & 0xF:#x}, not an interrupt "
                                  f"or trap gate{' of IA-32e mode' if size == 16 else ''}")
    cpl = cpu.selector("cs") & 3
    if event.source in (SOFTWARE, SOFTWARE_EXCEPTION) and _field(raw, 45, 2) < cpl:
        raise Fault(GP, 8 * v + 2, f"IDT gate {v:#x}: DPL {_field(raw, 45, 2)} < CPL {cpl}")
    if not _field(raw, 47, 1):
        raise Fault(NP, idt_code, f"IDT gate {v:#x} is not present")
    offset = _field(raw, 0, 16) | _field(raw, 48, 16) << 16 | _field(raw, 64, 32) << 32
    return kind, _field(raw, 16, 16), offset, _field(raw, 32, 3)


def _handler(cpu: Cpu, event: Event, selector: int, long_mode: bool) -> int:
    """Step 5: the handler's code-segment descriptor, checked."""
    ext = event.external()
    if selector & ~3 == 0:
        raise Fault(GP, ext, f"IDT gate {event.vector:#x} has a null selector")
    code = (selector & 0xFFFC) + ext
    d = _descriptor(cpu, selector, GP, code)
    if not _field(d, 44, 1) or not _field(d, 43, 1):
        raise Fault(GP, code, f"selector {selector:#x} is not a code segment")
    if _field(d, 45, 2) > (cpu.selector("cs") & 3):
        raise Fault(GP, code, f"code segment {selector:#x} has DPL > CPL")
    if not _field(d, 47, 1):
        raise Fault(NP, code, f"code segment {selector:#x} is not present")
    if long_mode and (not _field(d, 53, 1) or _field(d, 54, 1)):
        raise Fault(GP, code, f"code segment {selector:#x} is not a 64-bit one")
    return d


def _new_cpl(cpu: Cpu, d: int) -> int:
    """The CPL the handler runs at: the code segment's DPL, unless it is
    conforming (the CPL stays)."""
    conforming = _field(d, 42, 1)
    return cpu.selector("cs") & 3 if conforming else _field(d, 45, 2)


def _tss_read(cpu: Cpu, offset: int, size: int, event: Event) -> int:
    tr, base, limit = cpu.tss()
    if offset + size - 1 > limit:
        raise Fault(TS, (tr & 0xFFFC) + event.external(),
                    f"TSS offset {offset:#x} is beyond its limit {limit:#x}")
    return int.from_bytes(cpu.read_linear(base + offset, size), "little")


def _flags_image(cpu: Cpu, event: Event) -> int:
    flags = cpu.reg("rflags")
    if event.source == FAULT and event.vector != DB:
        flags |= RFLAGS_RF
    return flags


# --- protected mode --------------------------------------------------------------------

def _deliver_protected(cpu: Cpu, event: Event) -> None:
    kind, selector, offset, _ist = _gate(cpu, event, 8, (0x06, 0x07, 0x0E, 0x0F))
    d = _handler(cpu, event, selector, False)
    cpl, new = cpu.selector("cs") & 3, _new_cpl(cpu, d)
    width = 4 if kind & 0x08 else 2
    flags = cpu.reg("rflags")
    values = [_flags_image(cpu, event), cpu.selector("cs"), event.return_ip]
    if event.vector in ERROR_CODE and event.error_code is not None:
        values.append(event.error_code)
    if new < cpl:
        tr, _base_, _limit = cpu.tss()
        tss32 = _tss_is_32bit(cpu, tr)
        if tss32:
            esp = _tss_read(cpu, 4 + 8 * new, 4, event)
            ss = _tss_read(cpu, 8 + 8 * new, 2, event)
        else:
            esp = _tss_read(cpu, 2 + 4 * new, 2, event)
            ss = _tss_read(cpu, 4 + 4 * new, 2, event)
        ext = event.external()
        if ss & ~3 == 0:
            raise Fault(TS, ext, "the TSS's stack selector is null")
        sd = _descriptor(cpu, ss, TS, (ss & 0xFFFC) + ext)
        writable_data = _field(sd, 44, 1) and not _field(sd, 43, 1) and _field(sd, 41, 1)
        if ss & 3 != new or _field(sd, 45, 2) != new or not writable_data:
            raise Fault(TS, (ss & 0xFFFC) + ext, f"stack segment {ss:#x} is not a writable "
                                                 f"data segment at privilege {new}")
        if not _field(sd, 47, 1):
            raise Fault(SS, (ss & 0xFFFC) + ext, f"stack segment {ss:#x} is not present")
        big = bool(_field(sd, 54, 1))
        values = [cpu.selector("ss"), cpu.reg("rsp")] + values
        top = _push_frame(cpu, _base(sd), esp, big, width, values)
        new_stack = (ss, sd.to_bytes(8, "little"), top & (0xFFFF_FFFF if big else 0xFFFF))
    else:
        big = cpu.stack_32bit()
        base = cpu.segment_base("ss")
        top = _push_frame(cpu, base, cpu.reg("rsp"), big, width, values)
        mask = 0xFFFF_FFFF if big else 0xFFFF
        new_stack = (None, None, cpu.reg("rsp") & ~mask | top)
    cleared = RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM
    if kind in (0x06, 0x0E):
        cleared |= RFLAGS_IF
    cpu.set_reg("rflags", flags & ~cleared)
    cpu.load_segment("cs", selector & ~3 | new, d.to_bytes(8, "little"))
    ss, descriptor, rsp = new_stack
    if ss is not None:
        cpu.load_segment("ss", ss, descriptor)
    cpu.set_reg("rsp", rsp)
    cpu.set_reg("rip", offset & (0xFFFF_FFFF if width == 4 else 0xFFFF))


def _tss_is_32bit(cpu: Cpu, tr: int) -> bool:
    """A 16-bit TSS has system type 1 or 3; a 32-bit one 9 or 0xB."""
    try:
        d = _descriptor(cpu, tr, TS, tr & 0xFFFC)
    except (Fault, NotModelled, Unreachable):
        return True
    return bool(_field(d, 43, 1))


def _push_frame(cpu: Cpu, base: int, sp: int, big: bool, width: int, values: list[int]) -> int:
    """Write ``values`` as pushed in order below ``sp`` (wrapping at the
    stack's size); nothing is written unless every slot is reachable.
    Returns the new stack pointer."""
    mask = 0xFFFF_FFFF if big else 0xFFFF
    slots = []
    for value in values:
        sp = (sp - width) & mask
        slots.append(((base + sp) & 0xFFFF_FFFF,
                      (value & ((1 << 8 * width) - 1)).to_bytes(width, "little")))
    for at, data in slots:                      # a #PF before anything is written,
        cpu.reachable(at, len(data), True)      # at the first push that faults
    for at, data in slots:
        cpu.write_linear(at, data)
    return sp


# --- IA-32e mode ------------------------------------------------------------------------

def _deliver_long(cpu: Cpu, event: Event) -> None:
    kind, selector, offset, ist = _gate(cpu, event, 16, (0x0E, 0x0F))
    d = _handler(cpu, event, selector, True)
    cpl, new = cpu.selector("cs") & 3, _new_cpl(cpu, d)
    old_ss, old_rsp, flags = cpu.selector("ss"), cpu.reg("rsp"), cpu.reg("rflags")
    if ist:
        rsp = _tss_read(cpu, 0x24 + 8 * (ist - 1), 8, event)
    elif new < cpl:
        rsp = _tss_read(cpu, 4 + 8 * new, 8, event)
    else:
        rsp = old_rsp
    values = [old_ss, old_rsp, _flags_image(cpu, event), cpu.selector("cs"), event.return_ip]
    if event.vector in ERROR_CODE and event.error_code is not None:
        values.append(event.error_code)
    top = (rsp & ~0xF) - 8 * len(values)
    frame = b"".join((v & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little") for v in reversed(values))
    for i in range(len(values)):                # pushed from the top down
        cpu.reachable(top + len(frame) - 8 * (i + 1), 8, True)
    cpu.write_linear(top, frame)
    cleared = RFLAGS_TF | RFLAGS_NT | RFLAGS_RF
    if kind == 0x0E:
        cleared |= RFLAGS_IF
    cpu.set_reg("rflags", flags & ~cleared)
    cpu.load_segment("cs", selector & ~3 | new, d.to_bytes(8, "little"))
    if new < cpl:
        cpu.load_segment("ss", new, None)       # the null selector, RPL = new CPL
    cpu.set_reg("rsp", top)
    cpu.set_reg("rip", offset)
