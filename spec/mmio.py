"""MMIO emulation: how the VMM carries out an instruction that touched a device
(Xen's ``xen/arch/x86/hvm/emulate.c``).

Room: the bridge between the instruction emulator (:mod:`spec.x86`) and the
ioreq protocol: the guest memory the emulator sees while the VMM emulates one
instruction, and the retry of that emulation as device responses arrive.
Imports :mod:`spec.x86`, :mod:`spec.ioreq`, :mod:`spec.platform`.

Every guest-physical address that no RAM backs belongs to the device model.
When the guest touches one, the hardware exits with the address only
(``ept_violation``). The VMM then fetches the instruction at RIP from guest
RAM and emulates it. The emulator's memory accesses go:

* to **RAM** directly — but writes are held back until the instruction
  completes, so that an emulation that has to stop and wait leaves no trace;
* to **MMIO** as ioreqs of type COPY: ``addr`` = the guest-physical address,
  ``size`` = the access size (accesses wider than 8 bytes, which the ioreq's
  ``data`` cannot hold, go as 8-byte pieces), ``dir``, and for a write the
  value in ``data``.

A device read cannot be answered at once: the vcpu must wait for qemu-dm.
So, as Xen does, emulation is *retried*. The first attempt runs until its
first MMIO access; that access is sent and the attempt is abandoned
(registers, flags and held-back RAM writes are dropped). When the response
arrives the instruction is emulated again from the start; this time the
completed accesses are *replayed* from a per-vcpu cache, in order, without
new ioreqs, and the attempt runs to the next access not yet done. When an
attempt completes, its register, flag and RAM effects are committed and RIP
moves on. A read-modify-write of a device therefore gives exactly one read
ioreq and then one write ioreq of the same address and size.

String moves between RAM and MMIO go as one ioreq per page-clipped chunk
(:mod:`spec.x86.string`) with ``data_is_ptr = 1``, ``data`` = the RAM
address and ``count`` = the number of elements; ``rep stos`` to MMIO sends
the value once with ``count``. A replayed access that does not match the
cache (another address, size or direction: the guest changed the
instruction's inputs under the VMM's feet) crashes the domain.

**Faults.** Before the first attempt sends anything, the VMM runs a *probe*
attempt: the same emulation, in which every device access that has not
completed reads 0 and sends nothing. It finds the faults the instruction's
own addressing raises: a #PF where the guest's page tables do not map the
RAM side of a string move, a stack, or the second page of an access that
crosses a page boundary (CR2 is then the start of that page, which is where
the CPU's walk of it begins); a #GP or #SS past a real-mode segment limit.
Such a fault is injected into the guest as the CPU would have raised it
(:mod:`spec.delivery`) and no ioreq goes out: the instruction is restarted
after the guest's handler, and its device accesses happen once. This is
Xen 3.x's ``handle_mmio`` for ``INSTR_MOVS`` ("The guest does not have the
non-mmio address mapped. Need to send in a page fault"), applied to every
form. (That Xen passed only the write bit as the #PF error code; the model
gives the error code of the walk, as the CPU and later Xen's
``hvmemul_linear_to_phys`` do.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from spec import bv, ioreq
from spec.x86.emulate import execute
from spec.x86.operands import Insn
from spec.x86.state import PAGE, Cpu, Unhandleable


class Pending(Exception):
    """The attempt stopped at a device access that has been sent as an ioreq."""


@dataclass
class Completed:
    """One finished device access: what the attempt asked and what it got."""

    key: tuple              # (dir, addr, size, count, data_is_ptr, data-or-gpa)
    value: int


@dataclass
class Emulation:
    """The VMM's state for the instruction one vcpu is emulating."""

    rip: int
    code: bytes
    done: list[Completed] = field(default_factory=list)


class GuestMemory:
    """Guest memory for one emulation attempt (the emulator's
    :class:`spec.x86.state.Memory`)."""

    def __init__(self, emulation: Emulation, is_ram: Callable[[int, int], bool],
                 read_ram: Callable[[int, int], bytes],
                 send: Callable[[ioreq.Ioreq], None],
                 translate: Callable[[int, bool], int] | None = None,
                 probe: bool = False) -> None:
        self.emulation = emulation
        #: a probe attempt sends nothing: a device access not yet completed
        #: reads 0 (see :meth:`_device`)
        self.probe = probe
        #: linear -> guest-physical (the guest's page tables, :mod:`spec.paging`);
        #: raises :class:`spec.x86.state.Fault` (#PF, #GP) when the walk fails
        self.translate = translate or (lambda linear, write: linear)
        self.is_ram = is_ram
        self.read_ram = read_ram
        self.send = send
        self.held: list[tuple[int, bytes]] = []     # RAM writes, applied on completion
        self.replayed = 0

    # --- RAM, with the attempt's own writes on top -----------------------------

    def _ram_read(self, addr: int, size: int) -> bytes:
        data = bytearray(self.read_ram(addr, size))
        for where, held in self.held:
            for i, byte in enumerate(held):
                if addr <= where + i < addr + size:
                    data[where + i - addr] = byte
        return bytes(data)

    # --- the emulator's interface ---------------------------------------------------

    def _physical(self, linear: int, size: int, write: bool) -> int:
        """The guest-physical address of an access that the emulator made by
        linear address; an access whose pages are not contiguous in
        guest-physical memory is beyond the model."""
        gpa = self.translate(linear, write)
        last = linear + size - 1
        if last // PAGE != linear // PAGE:
            second = last - last % PAGE         # the CPU walks the second page from its start
            if self.translate(second, write) != gpa + (second - linear):
                raise Unhandleable(f"access at linear {linear:#x}+{size} spans two pages that "
                                   f"are not contiguous in guest-physical memory")
        return gpa

    def read(self, addr: int, size: int) -> bv.Word:
        addr = self._physical(addr, size, False)
        if self.is_ram(addr, size):
            return int.from_bytes(self._ram_read(addr, size), "little")
        if not self.is_ram(addr, 1) and not self.is_ram(addr + size - 1, 1):
            value = None
            for off in range(0, size, 8):
                part = min(8, size - off)
                piece = self._device(ioreq.IOREQ_READ, addr + off, part)
                value = piece if value is None else bv.concat(piece, value, 8 * off, 8 * part)
            return value
        raise Unhandleable(f"access at {addr:#x}+{size} is part RAM, part MMIO")

    def write(self, addr: int, size: int, value: bv.Word) -> None:
        addr = self._physical(addr, size, True)
        if self.is_ram(addr, size):
            self.held.append((addr, bv.concrete(value).to_bytes(size, "little")))
            return
        if not self.is_ram(addr, 1) and not self.is_ram(addr + size - 1, 1):
            for off in range(0, size, 8):
                part = min(8, size - off)
                self._device(ioreq.IOREQ_WRITE, addr + off, part,
                             data=bv.extract(value, 8 * (off + part) - 1, 8 * off))
            return
        raise Unhandleable(f"access at {addr:#x}+{size} is part RAM, part MMIO")

    def rep_movs(self, dst: int, src: int, size: int, count: int, backwards: bool) -> bool:
        """A chunk of ``rep movs`` as one ioreq when exactly one side is MMIO;
        False to let the emulator move element by element."""
        low = lambda a: a - (count - 1) * size if backwards else a      # noqa: E731
        # each chunk lies within one page on both sides (spec.x86.string)
        src, dst = self.translate(src, False), self.translate(dst, True)
        src_ram = self.is_ram(low(src), count * size)
        dst_ram = self.is_ram(low(dst), count * size)
        if src_ram == dst_ram:
            return False
        if src_ram:         # RAM -> device: qemu-dm reads the data from guest RAM
            self._flush_held()
            self._device(ioreq.IOREQ_WRITE, dst, size, count=count, ptr=src, df=backwards)
        else:               # device -> RAM: qemu-dm writes guest RAM
            self._device(ioreq.IOREQ_READ, src, size, count=count, ptr=dst, df=backwards)
        return True

    def rep_stos(self, dst: int, size: int, count: int, backwards: bool, value: int) -> bool:
        """A chunk of ``rep stos`` to MMIO: the value once, with ``count``."""
        dst = self.translate(dst, True)
        low = dst - (count - 1) * size if backwards else dst
        if self.is_ram(low, count * size) or self.is_ram(low, 1):
            return False
        self._device(ioreq.IOREQ_WRITE, dst, size, count=count, df=backwards,
                     data=bv.concrete(value))
        return True

    # --- device accesses: replay, or send and stop ------------------------------------

    def _device(self, direction: int, addr: int, size: int, count: int = 1,
                ptr: int | None = None, df: bool = False, data: bv.Word = 0) -> bv.Word:
        req = ioreq.Ioreq(addr=addr, size=size, count=count, type=ioreq.IOREQ_TYPE_COPY,
                          dir=direction, df=int(df), data_is_ptr=int(ptr is not None),
                          data=ptr if ptr is not None else data)
        key = access_key(req)
        done = self.emulation.done
        if self.replayed < len(done):
            entry = done[self.replayed]
            if not _same(entry.key, key):
                raise Unhandleable(f"replayed device access {key} does not match the one "
                                   f"completed before {entry.key}")
            self.replayed += 1
            return entry.value
        if self.probe:
            return 0
        self.send(req)
        self.pending_key = key
        raise Pending

    def _flush_held(self) -> None:
        """RAM the device model will read must hold the attempt's writes."""
        if self.held:
            raise Unhandleable("a string move from RAM after RAM writes in one instruction")


def access_key(req: ioreq.Ioreq) -> tuple:
    """What identifies a device access for its replay: ``(dir, addr, size,
    count, data_is_ptr, data)`` (``data`` is the RAM address of a
    ``data_is_ptr`` request, and a write's value otherwise)."""
    return (req.dir, req.addr, req.size, req.count, bool(req.data_is_ptr), req.data)


def _same(a: tuple, b: tuple) -> bool:
    """Two access keys name the same access. Their fields are ints when the
    VMM runs; when a proof runs the VMM on Z3 data, a write's value is a Z3
    term, and it is the same when it is the same term."""
    return len(a) == len(b) and all(
        x.eq(y) if bv.is_symbolic(x) and bv.is_symbolic(y)
        else not bv.is_symbolic(x, y) and x == y for x, y in zip(a, b))


def attempt(emulation: Emulation, insn: Insn, new_cpu: Callable[[], Cpu],
            new_memory: Callable[[bool], GuestMemory]) -> tuple[Cpu, GuestMemory]:
    """One attempt at the instruction, as the VMM makes one when the exit
    arrives and again after each device response: a probe attempt first while
    no device access has completed (the module's "Faults"), then the real one,
    each on a fresh copy of the vcpu's registers (``new_cpu()``) and a fresh
    :class:`GuestMemory` (``new_memory(probe)``). Returns the registers and
    the memory (with its held-back RAM writes) of an attempt that completed;
    raises :class:`Pending` when it stopped at a device access it sent, and
    the emulator's :class:`~spec.x86.state.Fault` or
    :class:`~spec.x86.state.Unhandleable`."""
    for probe in ([True, False] if not emulation.done else [False]):
        cpu, memory = new_cpu(), new_memory(probe)
        execute(cpu, memory, insn)
    return cpu, memory
