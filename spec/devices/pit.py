"""The 8254 PIT and port 0x61, as Xen 3.0.4 emulates them in the hypervisor.

Room: the three counters of the PC's PIT (ports 0x40-0x43), the NMI status
and control port 0x61 that gates counter 2, and the *periodic time* that
drives IRQ0, as Xen 3.0.4 had them (``xen/arch/x86/hvm/i8254.c``, its
periodic-time layer in ``xen/arch/x86/hvm/intercept.c``, ``io.c``,
``xen/include/asm-x86/hvm/vpt.h``; tag ``3.0.4-branched`` of the Xen tree),
on the virtual clock of :mod:`spec.clock`. Imports nothing else of the
model: the VMM (:mod:`spec.vmm`) owns the device.

Where it lives. Xen 3.0.4's ``pit_init`` registers both with the
hypervisor's port intercept::

    register_portio_handler(v->domain, PIT_BASE, 4, handle_pit_io);
    /* register the speaker port */
    register_portio_handler(v->domain, 0x61, 1, handle_speaker_io);

and qemu-dm of 3.0.4 does not build its own (``tools/ioemu/hw/pc.c``:
``#ifndef CONFIG_DM pit = pit_init(0x40, 0); pcspk_init(pit); #endif``).
So an access to 0x40-0x43 or 0x61 never becomes an ioreq: the VMM performs
it at once, as it does the vPIC's (``hvm_portio_intercept`` in
``send_pio_req``), and IRQ0 never travels through qemu-dm.

Time. The counters count at :data:`PIT_HZ` (``vpt.h``: ``#define PIT_FREQ
1193181``). Xen counted on the guest's TSC (``hvm_get_clock``); the model
counts on the virtual clock (``clock_ns``): a counter loaded at ``t0`` has
seen ``(t - t0) * PIT_HZ // 10**9`` input clocks at ``t``.

Register rules (``i8254.c``; the QEMU 0.8 logic Xen copied, and where it
differs from a real 82C54 or from today's QEMU, Xen's is followed):

* the control word (0x43) sets the counter's access mode, ``mode = (val >>
  1) & 7`` (6 and 7 kept as such) and BCD; it does not stop the counter nor
  drop a latch ("XXX: update irq timer ?"); access 0 latches the count;
  channel 3 is the read-back command (count and status, each only if not
  latched already; the status has no null-count bit: "XXX: add BCD and
  null count");
* writing the count (LSB, MSB or LSB then MSB) loads it at once
  (``pit_load_count``; 0 means 0x10000): the counter restarts;
* the count read: modes 0, 1, 4, 5 ``(count - d) & 0xffff``; mode 3
  ``count - (2*d) % count``; any other mode ``count - d % count``
  (``pit_get_count``);
* OUT (``pit_get_out1``): mode 0 (and any unknown mode) ``d >= count``;
  mode 1 ``d < count``; mode 2 ``d % count == 0 and d != 0``; mode 3
  ``d % count < (count + 1) >> 1``; modes 4 and 5 ``d == count``. Modes 1
  and 2 are QEMU 0.8's, not the data sheet's (today's QEMU has mode 1
  ``d >= count`` and mode 2 ``d % count != count - 1``);
* a rising GATE (counter 2, port 0x61 bit 0) restarts counting in modes
  1, 2, 3, 5 (``pit_set_gate``);
* at reset every counter is loaded with 0x10000 at time 0 in "the init
  mode" 0xff, counters 0 and 1 with GATE high, counter 2 low (``pit_reset``);
* reading 0x43 is not supported (``printk("HVM_PIT: read A1:A0=3!\\n")``):
  the ioreq's data stays what it was, which for an IN is (E)AX
  (``send_pio_req(port, 1, size, regs->eax, ...)``), so AL is unchanged;
* an access that is not one byte, or is a string form
  (``p->size != 1 || p->data_is_ptr``), is claimed and ignored: "HVM_PIT:
  wrong PIT IO!" (``handle_pit_io``, ``handle_speaker_io``).

Port 0x61 (``speaker_ioport_read``/``write``): a write sets the speaker
data enable (bit 1) and counter 2's GATE (bit 0); a read returns bit 0 =
GATE 2, bit 1 = speaker data enable, bit 4 = the refresh toggle, bit 5 =
counter 2's OUT, the other bits 0. Xen computed the refresh bit from the
host's time::

    /* Refresh clock toggles at about 15us. We approximate as 2^14ns. */
    unsigned int refresh_clock = ((unsigned int)NOW() >> 14) & 1;

The model applies the same approximation to the virtual clock:
``(clock_ns >> 14) & 1``, a toggle every 16,384 ns. A firmware delay loop
that counts toggles (rombios' ``delay_ms``) therefore makes the number of
reads the clock's bus-time rule predicts (:mod:`spec.clock`: each read
costs :data:`~spec.platform.PORT_ACCESS_NS` plus the loop's instructions),
whatever the host.

IRQ0: Xen's periodic time (``create_periodic_time``, ``pt_timer_fn``,
``missed_ticks``, ``hvm_interrupt_post``; :class:`PeriodicTime`):

1. only counter 0 drives a timer, and only loading its count in mode 2 or
   mode 1 creates one (``pit_load_count``: ``if (s != ch0) return;``,
   ``case 2: /* create periodic time */``, ``case 1: /* create one shot
   time */`` which is periodic too: "No support for one shot platform time
   yet"). Any other mode creates none: **mode 3 (square wave) raises no
   IRQ0 under Xen 3.0.4**, and loading counter 0 in another mode leaves an
   existing timer running;
2. its period is ``DIV_ROUND(count * 10**9, PIT_FREQ)`` ns, at least 0.9
   ms (``if (period < 900000) ... period = 900000; /* force to 0.9ms */``);
   the first tick is due one period after the load (``pt->scheduled =
   NOW() + period``); creating a timer drops the previous one and its
   pending ticks;
3. when the clock reaches the tick's time the timer fires: one more tick
   pending, the next one a period later; ticks missed beyond that (the
   clock ran past more than the next tick's time) are added too, one per
   period, or just one if more than 1000 were missed (``pt_timer_fn``,
   ``missed_ticks``). The model's vcpu exits at every tick's time (the
   VMM's deadline, :meth:`PeriodicTime.deadline`), so ticks are missed only
   when one access or instruction outlasts a period;
4. at every VM entry of vcpu 0 while ticks are pending the VMM lowers and
   raises ISA line 0 on its vPIC: an edge, IRR bit 0 (``vmx_intr_assist``:
   ``hvm_isa_irq_deassert(...); hvm_isa_irq_assert(...)``);
5. when the vPIC's IRQ0 vector is injected (``hvm_interrupt_post``): the
   first time, the pending ticks are dropped and the timer restarts a
   period from now; afterwards one pending tick is consumed (a backlog is
   delivered tick after tick: Xen's catch-up). Either way counter 0 is
   reloaded at that moment (``pit_time_fired``: ``s->count_load_time =
   hvm_get_clock(v)``). Xen also set the guest's TSC back to the tick's
   nominal time (``hvm_set_guest_time(v, pt->last_plt_gtime)``); the
   model's clock is not set back (:mod:`spec.clock`), so counter 0
   restarts at the injection's time on the virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass

PIT_HZ = 1_193_181
NS = 1_000_000_000
PORTS = range(0x40, 0x44)
PORT_61 = 0x61
#: every port the VMM's PIT claims
XEN_PORTS = (0x40, 0x41, 0x42, 0x43, PORT_61)
#: the refresh toggle of port 0x61: bit 14 of the clock in ns
REFRESH_SHIFT = 14
#: the shortest period of the periodic time (``create_periodic_time``)
MIN_PERIOD_NS = 900_000
#: more missed ticks than this count as one (``missed_ticks``)
MAX_MISSED = 1000
#: the mode of a counter after reset (``pit_reset``: "the init mode")
INIT_MODE = 0xFF

RW_LATCH, RW_LSB, RW_MSB, RW_WORD = 0, 1, 2, 3


def ticks(ns: int) -> int:
    """Input clocks in ``ns`` nanoseconds."""
    return ns * PIT_HZ // NS


def period_ns(count: int) -> int:
    """``DIV_ROUND(count * 10**9, PIT_FREQ)``, before the 0.9 ms floor."""
    return (count * NS + PIT_HZ // 2) // PIT_HZ


@dataclass
class Counter:
    """One counter: its programming, the count, when it was loaded, and
    the read/write byte sequencing."""

    gate: bool
    mode: int = INIT_MODE
    rw: int = RW_WORD
    bcd: bool = False
    count: int = 0x10000
    load_ns: int = 0
    write_msb_next: bool = False
    write_latch: int = 0
    read_msb_next: bool = False
    latched: list[int] | None = None     # latched count bytes still to read
    status: int | None = None            # latched status byte

    def elapsed(self, now: int) -> int:
        return ticks(now - self.load_ns)

    def value(self, now: int) -> int:
        """``pit_get_count``."""
        d = self.elapsed(now)
        if self.mode in (0, 1, 4, 5):
            return (self.count - d) & 0xFFFF
        if self.mode == 3:
            return self.count - (2 * d) % self.count
        return self.count - d % self.count

    def out(self, now: int) -> bool:
        """The OUT pin (``pit_get_out1``)."""
        d, n = self.elapsed(now), self.count
        if self.mode == 1:
            return d < n
        if self.mode == 2:
            return d % n == 0 and d != 0
        if self.mode == 3:
            return d % n < (n + 1) >> 1
        if self.mode in (4, 5):
            return d == n
        return d >= n                   # mode 0, and the init mode

    def status_byte(self, now: int) -> int:
        return (self.out(now) << 7 | self.rw << 4 | self.mode << 1 | self.bcd) & 0xFF


@dataclass
class PeriodicTime:
    """Xen's ``struct periodic_time`` for the PIT (rules 1-5 of the module
    docstring), on the virtual clock."""

    enabled: bool = False
    period: int = 0
    scheduled: int = 0
    pending: int = 0
    first_injected: bool = False

    def create(self, count: int, now: int) -> None:
        """``create_periodic_time(period, 0, one_shot, ...)``."""
        self.enabled = True
        self.period = max(period_ns(count), MIN_PERIOD_NS)
        self.scheduled = now + self.period
        self.pending = 0
        self.first_injected = False

    def deadline(self) -> int | None:
        """When the timer fires next (the vcpu's deadline), or None."""
        return self.scheduled if self.enabled else None

    def update(self, now: int) -> int:
        """Fire the timer for every tick due by ``now`` (``pt_timer_fn``
        and ``missed_ticks``); returns how many ticks became pending."""
        before = self.pending
        while self.enabled and now >= self.scheduled:
            self.pending += 1
            self.scheduled += self.period
            late = now - self.scheduled
            if late > 0:
                missed = late // self.period + 1
                self.pending += 1 if missed > MAX_MISSED else missed
                self.scheduled += missed * self.period
        return self.pending - before

    def injected(self, now: int) -> None:
        """``hvm_interrupt_post`` for the timer's vector."""
        if not self.first_injected:
            self.pending = 0
            self.scheduled = now + self.period
            self.first_injected = True
        else:
            self.pending -= 1


class VirtualPit:
    """Xen's PIT, port 0x61 and periodic time; ``clock`` gives the virtual
    time in ns."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.counters = [Counter(gate=True), Counter(gate=True), Counter(gate=False)]
        self.speaker_data = False
        self.pt = PeriodicTime()

    def claims(self, port: int) -> bool:
        return port in XEN_PORTS

    # --- ports 0x40-0x43 ---------------------------------------------------------------

    def io_write(self, port: int, value: int) -> None:
        """A one-byte write to 0x40-0x43 (``pit_ioport_write``)."""
        now, value = self.clock(), value & 0xFF
        offset = port & 3
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
        self._load(offset, count or 0x10000, now)

    def _load(self, channel: int, count: int, now: int) -> None:
        """``pit_load_count``: the counter restarts; counter 0 in mode 2 or
        1 (re)creates the periodic time (rule 1)."""
        c = self.counters[channel]
        c.count, c.load_ns = count, now
        if channel == 0 and c.mode in (1, 2):
            self.pt.create(count, now)

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
        c.rw, c.mode, c.bcd = rw, (value >> 1) & 7, bool(value & 1)
        c.write_msb_next = c.read_msb_next = False

    def io_read(self, port: int) -> int | None:
        """A one-byte read of 0x40-0x42 (``pit_ioport_read``); None for
        0x43, which Xen does not answer (the datum stays as it was)."""
        offset = port & 3
        if offset == 3:
            return None
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
            return (count >> 8) & 0xFF
        value = (count >> 8) & 0xFF if c.read_msb_next else count & 0xFF
        c.read_msb_next = not c.read_msb_next
        return value

    # --- port 0x61 ---------------------------------------------------------------------------

    def port61_read(self) -> int:
        now, c2 = self.clock(), self.counters[2]
        refresh = (now >> REFRESH_SHIFT) & 1
        return (c2.gate | self.speaker_data << 1 | refresh << 4 | c2.out(now) << 5)

    def port61_write(self, value: int) -> None:
        c2, gate = self.counters[2], bool(value & 1)
        if gate and not c2.gate and c2.mode in (1, 2, 3, 5):
            c2.load_ns = self.clock()                  # a rising GATE restarts the count
        c2.gate = gate
        self.speaker_data = bool(value & 2)

    # --- one access, as the VMM's intercept sees it -------------------------------------------

    def access(self, port: int, size: int, direction: str, value: int) -> int | None:
        """``handle_pit_io`` / ``handle_speaker_io`` for a non-string
        access: the datum read (None: left as it was), or None for a write.
        A wider access is claimed and ignored."""
        if size != 1:
            return None
        if port == PORT_61:
            if direction == "in":
                return self.port61_read()
            self.port61_write(value)
            return None
        if direction == "in":
            return self.io_read(port)
        self.io_write(port, value)
        return None

    # --- the timer ----------------------------------------------------------------------------

    def injected(self, now: int) -> None:
        """IRQ0's vector was injected (rule 5): the periodic time counts
        it and counter 0 restarts (``pit_time_fired``)."""
        if self.pt.enabled:
            self.pt.injected(now)
            self.counters[0].load_ns = now


def _bytes_of(count: int, rw: int) -> list[int]:
    if rw == RW_LSB:
        return [count & 0xFF]
    if rw == RW_MSB:
        return [(count >> 8) & 0xFF]
    return [count & 0xFF, (count >> 8) & 0xFF]
