"""impl's runner for instruction test vectors, on Unicorn.

Room: running one vector case (:mod:`spec.vectors`) on Unicorn: flat
segments, RAM mapped page by page as it is touched, the case's MMIO regions
``mmio_map``-ped with every access logged as the hardware makes it
(:mod:`impl.accesses`). Imports capstone, Unicorn, :mod:`impl.accesses` and,
for the format, :mod:`spec.vectors`.

The instruction runs one step at a time (``count=1``: one iteration of a
repeated string instruction) until RIP leaves it or it faults; before each
step the memory operands are taken from the decoded instruction and the
current registers, so that each element of a string form is its own access.
"""

from __future__ import annotations

import capstone
from capstone import x86 as cx
import unicorn
from unicorn import x86_const as X

from impl.accesses import PAGE, Pieces, bit_string_operand
from spec.vectors import REGISTERS, Case, Outcome

MAX_STEPS = 1 << 16
_UC_MODE = {16: unicorn.UC_MODE_16, 32: unicorn.UC_MODE_32, 64: unicorn.UC_MODE_64}
_CS_MODE = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
_R64 = {r: getattr(X, "UC_X86_REG_" + r.upper()) for r in REGISTERS}
_R32 = {r: getattr(X, "UC_X86_REG_E" + r[1:].upper()) for r in REGISTERS[:8]}


class _Machine:
    def __init__(self, case: Case) -> None:
        self.case = case
        self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, _UC_MODE[case.mode])
        self.regs = _R64 if case.mode == 64 else _R32
        self.ops: list[dict] = []
        self.regions = [(a, a + len(d)) for a, d in case.mmio]
        self.device_pages: dict[int, bytearray] = {}
        for addr, data in case.mmio:
            for page in range(addr - addr % PAGE, addr + len(data), PAGE):
                self.device_pages.setdefault(page, bytearray(PAGE))
        self.pieces: Pieces | None = None
        self.mapped: set[int] = set()       # RAM pages mapped so far
        for page in self.device_pages:
            self.uc.mmio_map(page, PAGE, self._read, page, self._write, page)
        for addr, data in case.ram + case.mmio:
            self.poke(addr, data)
        self.poke(case.regs.get("rip", 0), case.code)
        self.uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._map_on_touch)
        self.vector: int | None = None
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._interrupt)
        md = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODE[case.mode])
        md.detail = True
        self.md = md

    # --- memory -----------------------------------------------------------------------

    def _ensure(self, lo: int, hi: int) -> None:
        """Map the RAM pages of [lo, hi) that are not mapped yet, each run of
        them with one call (a set of pages, not a scan of Unicorn's regions)."""
        run = None
        for page in range(lo - lo % PAGE, hi, PAGE):
            if page in self.device_pages or page in self.mapped:
                if run is not None:
                    self.uc.mem_map(run, page - run)
                    run = None
                continue
            self.mapped.add(page)
            run = page if run is None else run
        if run is not None:
            self.uc.mem_map(run, page + PAGE - run)

    def _chunks(self, addr: int, size: int):
        """[addr, addr + size) cut at page boundaries: (address, length, page)."""
        end = addr + size
        while addr < end:
            page = addr - addr % PAGE
            n = min(end, page + PAGE) - addr
            yield addr, n, page
            addr += n

    def poke(self, addr: int, data: bytes) -> None:
        self._ensure(addr, addr + len(data))
        view = memoryview(data)
        ram_from = None           # the start of the run of RAM bytes not yet written
        for a, n, page in self._chunks(addr, len(data)):
            if page in self.device_pages:
                if ram_from is not None:
                    self.uc.mem_write(ram_from, bytes(view[ram_from - addr:a - addr]))
                    ram_from = None
                self.device_pages[page][a - page:a - page + n] = view[a - addr:a - addr + n]
            elif ram_from is None:
                ram_from = a
        if ram_from is not None:
            self.uc.mem_write(ram_from, bytes(view[ram_from - addr:]))

    def peek(self, addr: int, size: int) -> bytes:
        out = bytearray()
        for a, n, page in self._chunks(addr, size):
            if page in self.device_pages:
                out += self.device_pages[page][a - page:a - page + n]
            elif page in self.mapped:
                out += self.uc.mem_read(a, n)
            else:
                out += bytes(n)
        return bytes(out)

    def _map_on_touch(self, uc, access, address, size, value, _data) -> bool:
        if access == unicorn.UC_MEM_FETCH_UNMAPPED:
            return False
        self._ensure(address, address + size)
        return True

    def _interrupt(self, uc, intno, _data) -> None:
        self.vector = intno
        uc.emu_stop()

    # --- device pages, as the hardware accesses them -----------------------------------------

    def _is_device(self, addr: int, size: int) -> bool:
        return any(lo < addr + size and addr < hi for lo, hi in self.regions)

    def _device_read(self, addr: int, size: int) -> int:
        value = int.from_bytes(self.peek(addr, size), "little")
        self.ops.append({"op": "read", "addr": addr, "size": size, "value": value})
        return value

    def _device_write(self, addr: int, size: int, value: int) -> None:
        self.poke(addr, value.to_bytes(size, "little"))
        self.ops.append({"op": "write", "addr": addr, "size": size, "value": value})

    def _read(self, uc, offset, size, page) -> int:
        return self.pieces.on_read(uc, offset, size, page)

    def _write(self, uc, offset, size, value, page) -> None:
        self.pieces.on_write(uc, offset, size, value, page)

    # --- running ------------------------------------------------------------------------------

    def _operands(self) -> list[tuple[int, int]]:
        pc = self.uc.reg_read(X.UC_X86_REG_RIP if self.case.mode == 64 else X.UC_X86_REG_EIP)
        insn = next(self.md.disasm(self.case.code, pc), None)
        if insn is None:
            return []
        width = 8 * insn.addr_size
        out = []
        for op in insn.operands:
            if op.type != cx.X86_OP_MEM:
                continue
            m = op.mem
            addr = m.disp
            for reg, scale in ((m.base, 1), (m.index, m.scale)):
                if reg:
                    name = self.md.reg_name(reg)
                    addr += (pc + insn.size if name in ("rip", "eip") else
                             self.uc.reg_read(getattr(X, "UC_X86_REG_" + name.upper()))) * scale
            addr &= (1 << width) - 1
            last = insn.operands[-1]
            if insn.mnemonic.split()[-1] in ("bt", "bts", "btr", "btc") \
                    and last.type == cx.X86_OP_REG:
                offset = self.uc.reg_read(getattr(X, "UC_X86_REG_" +
                                                  self.md.reg_name(last.reg).upper()))
                addr = bit_string_operand(addr, op.size, offset & ((1 << 8 * op.size) - 1))
                addr &= (1 << width) - 1      # the effective address wraps
            # an operand is read unless only written (capstone leaves some reads at 0)
            out.append((addr, op.size, op.access != capstone.CS_AC_WRITE))
        return out

    def run(self) -> Outcome:
        uc, case = self.uc, self.case
        for name, reg in self.regs.items():
            uc.reg_write(reg, case.regs.get(name, 0))
        start = case.regs.get("rip", 0)
        flags_reg = X.UC_X86_REG_RFLAGS if case.mode == 64 else X.UC_X86_REG_EFLAGS
        pc_reg = X.UC_X86_REG_RIP if case.mode == 64 else X.UC_X86_REG_EIP
        uc.reg_write(flags_reg, case.rflags)
        uc.reg_write(pc_reg, start)
        fault = None
        for _ in range(MAX_STEPS):
            self.pieces = Pieces(self._operands(), self._is_device, self._device_read,
                                 self._device_write, lambda a: self.peek(a, 1)[0],
                                 lambda a, b: self.poke(a, bytes([b])))
            uc.ctl_remove_cache(start, start + len(case.code))
            try:
                uc.emu_start(uc.reg_read(pc_reg), 1 << 40, count=1)
            except unicorn.UcError as exc:
                fault = {"vector": 6} if exc.errno == unicorn.UC_ERR_INSN_INVALID else \
                    {"error": str(exc)}
                break
            if self.vector is not None:
                fault = {"vector": self.vector}
                uc.reg_write(pc_reg, start)
                break
            if uc.reg_read(pc_reg) != start:
                break
        else:
            fault = {"error": f"still repeating after {MAX_STEPS} steps"}
        regs = {name: uc.reg_read(reg) for name, reg in self.regs.items()}
        regs.update({r: 0 for r in REGISTERS if r not in regs})
        regs["rip"] = uc.reg_read(pc_reg)
        return Outcome(regs, uc.reg_read(flags_reg), self.peek, self.ops, fault)


def run_case(case: Case) -> Outcome:
    """Run one case on Unicorn (a case as :func:`spec.vectors.parse` checked it:
    a 16-bit case's code, for one, lies below 64 KiB)."""
    return _Machine(case).run()
