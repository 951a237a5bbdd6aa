"""The 8254 programmable interval timer, and port 0x61, as qemu-dm emulates them.

Room: the three counters of the PC's PIT (ports 0x40-0x43, Intel 82C54 data
sheet, order no. 231244) and the NMI status and control port 0x61 that
gates counter 2 (QEMU's ``hw/i8254.c`` and ``hw/pcspk.c``), running on the
virtual clock of ``DESIGN.md``. Imports :mod:`spec.platform`.

Time. The counters count at :data:`PIT_HZ`. The virtual clock is in
nanoseconds (``clock_ns``, :mod:`spec.clock`): one per retired guest
instruction plus the bus time of every port and MMIO access (a microsecond
each, so a read of port 0x61 or of a counter moves the clock on by about
what it takes on a PC's ISA bus). A counter
loaded at time ``t0`` has seen ``ticks(t) = (t - t0) * PIT_HZ // 10**9``
input clocks at time ``t``.

Counting, per mode (``N`` is the count written, 0 meaning 65536):

* mode 0 (interrupt on terminal count): OUT low, goes high when ``N``
  clocks have passed and stays high: one rising edge;
* mode 2 (rate generator): OUT high, low for one clock when the counter
  reaches 1, then high again as ``N`` reloads: a rising edge every ``N``
  clocks;
* mode 3 (square wave): OUT high for the first half of each period of ``N``
  clocks, low for the second: a rising edge every ``N`` clocks;
* mode 4 (software strobe): OUT high, low for the one clock after ``N``: one
  rising edge at ``N + 1``;
* modes 1 and 5 count from a rising edge of the GATE input (counter 2 only:
  counters 0 and 1 have GATE tied high), like 0 and 4.

Counter 0's OUT is wired to IRQ0. qemu-dm raises the line at each rising
edge of OUT and lowers it again at once (a pulse): the 8259 is edge
triggered there. So the edges are the timer's *deadlines*: the vcpu exits
at each one (a preemption-timer exit), qemu-dm's timer fires, and the
interrupt is injected at the next VM entry, at the exact instruction count.
"""

from __future__ import annotations

from dataclasses import dataclass

PIT_HZ = 1_193_182
NS = 1_000_000_000
PORTS = range(0x40, 0x44)
PORT_61 = 0x61
# qemu's pcspk: bit 4 of port 0x61 toggles with the DRAM refresh (15.085 us)
REFRESH_NS = 15_085

RW_LATCH, RW_LSB, RW_MSB, RW_WORD = 0, 1, 2, 3


def ticks(ns: int) -> int:
    """Input clocks in ``ns`` nanoseconds."""
    return ns * PIT_HZ // NS


def ns_for_ticks(n: int) -> int:
    """The first time (ns after the load) at which ``n`` clocks have passed."""
    return -(-n * NS // PIT_HZ)


@dataclass
class Counter:
    """One counter: its programming (``rw``, ``mode``), the count, when it
    was loaded, and the read/write byte sequencing."""

    gate: bool
    mode: int = 0
    rw: int = RW_WORD
    bcd: bool = False
    count: int = 0x10000
    load_ns: int | None = None      # None: no count written since the control word
    write_msb_next: bool = False
    write_latch: int = 0
    read_msb_next: bool = False
    latched: list[int] | None = None     # latched count bytes still to read
    status: int | None = None            # latched status byte

    def elapsed(self, now: int) -> int:
        return ticks(now - self.load_ns) if self.load_ns is not None else 0

    def value(self, now: int) -> int:
        """The counting element's value (QEMU's ``pit_get_count``)."""
        if self.load_ns is None:
            return self.count & 0xFFFF
        d = self.elapsed(now)
        if self.mode in (0, 1, 4, 5):
            return (self.count - d) & 0xFFFF
        if self.mode == 3:
            return (self.count - (2 * d) % self.count) & 0xFFFF
        return (self.count - d % self.count) & 0xFFFF

    def out(self, now: int) -> bool:
        """The OUT pin."""
        if self.load_ns is None:
            return self.mode != 0
        d, n = self.elapsed(now), self.count
        if self.mode in (0, 1):
            return d >= n if self.mode == 0 else d >= n or not self.gate
        if self.mode == 2:
            return d % n != n - 1
        if self.mode == 3:
            return d % n < (n + 1) // 2
        return d != n                   # 4, 5: strobe for one clock

    def next_edge(self, now: int) -> int | None:
        """The time of OUT's next rising edge strictly after ``now``, or None."""
        if self.load_ns is None or (self.mode in (1, 5) and not self.gate):
            return None
        d, n = self.elapsed(now), self.count
        if self.mode in (2, 3):
            edge = (d // n + 1) * n
        elif self.mode in (0, 1):
            edge = n
        else:
            edge = n + 1
        if edge <= d:
            return None
        return self.load_ns + ns_for_ticks(edge)

    def status_byte(self, now: int) -> int:
        null = self.load_ns is None
        return (self.out(now) << 7 | null << 6 | self.rw << 4 | self.mode << 1 | self.bcd)


class Pit8254:
    """The PIT and port 0x61; ``clock`` gives the virtual time in ns."""

    sizes = (1,)

    def __init__(self, clock) -> None:
        self.name = "pit"
        self.clock = clock
        self.counters = [Counter(gate=True), Counter(gate=True), Counter(gate=False)]
        self.speaker_data = False

    # --- ports 0x40-0x43 ---------------------------------------------------------------

    def io_write(self, offset: int, size: int, value: int) -> None:
        now = self.clock()
        if offset == 3:
            self._control(value, now)
            return
        c = self.counters[offset]
        if c.rw == RW_WORD and not c.write_msb_next:
            c.write_latch, c.write_msb_next = value, True
            return
        if c.rw == RW_WORD:
            count = c.write_latch | value << 8
            c.write_msb_next = False
        elif c.rw == RW_MSB:
            count = value << 8
        else:
            count = value
        c.count = count or 0x10000
        c.load_ns = now

    def _control(self, value: int, now: int) -> None:
        channel = value >> 6
        if channel == 3:                               # read-back command
            for i, c in enumerate(self.counters):
                if not value & (2 << i):
                    continue
                if not value & 0x20 and c.latched is None:
                    c.latched = _bytes_of(c.value(now), c.rw)
                if not value & 0x10 and c.status is None:
                    c.status = c.status_byte(now)
            return
        c = self.counters[channel]
        rw = (value >> 4) & 3
        if rw == RW_LATCH:                             # counter latch command
            if c.latched is None:
                c.latched = _bytes_of(c.value(now), c.rw)
            return
        mode = (value >> 1) & 7
        c.rw, c.mode, c.bcd = rw, mode - 4 if mode >= 6 else mode, bool(value & 1)
        c.load_ns, c.write_msb_next, c.read_msb_next = None, False, False
        c.latched = c.status = None

    def io_read(self, offset: int, size: int) -> int:
        if offset == 3:
            return 0xFF                                # the control word is write-only
        c, now = self.counters[offset], self.clock()
        if c.status is not None:
            value, c.status = c.status, None
            return value
        if c.latched is not None:
            value = c.latched.pop(0)
            if not c.latched:
                c.latched = None
            return value
        count = c.value(now)
        if c.rw == RW_LSB:
            return count & 0xFF
        if c.rw == RW_MSB:
            return count >> 8
        value = count >> 8 if c.read_msb_next else count & 0xFF
        c.read_msb_next = not c.read_msb_next
        return value

    # --- port 0x61 ---------------------------------------------------------------------------

    def port61_read(self) -> int:
        now, c2 = self.clock(), self.counters[2]
        refresh = (now // REFRESH_NS) & 1
        return (c2.gate | self.speaker_data << 1 | refresh << 4 | c2.out(now) << 5)

    def port61_write(self, value: int) -> None:
        c2, gate = self.counters[2], bool(value & 1)
        if gate and not c2.gate and c2.mode in (1, 2, 3, 5) and c2.load_ns is not None:
            c2.load_ns = self.clock()                  # a rising GATE (re)starts the count
        c2.gate = gate
        self.speaker_data = bool(value & 2)

    # --- the timer ----------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        """When counter 0's OUT next rises (the next IRQ0), or None."""
        return self.counters[0].next_edge(self.clock())


class Port61:
    """Port 0x61 as its own bus device, backed by the PIT."""

    sizes = (1,)

    def __init__(self, pit: Pit8254) -> None:
        self.name = "port61"
        self.pit = pit

    def io_read(self, offset: int, size: int) -> int:
        return self.pit.port61_read()

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.pit.port61_write(value)


def _bytes_of(count: int, rw: int) -> list[int]:
    if rw == RW_LSB:
        return [count & 0xFF]
    if rw == RW_MSB:
        return [count >> 8]
    return [count & 0xFF, count >> 8]
