"""The ACPI PM timer, as Xen 3.0.4 emulates it in the hypervisor.

Room: the 32-bit power-management timer at port 0x1F48 (``PM_TMR_BLK`` of
the FADT) on the virtual clock. Imports :mod:`spec.clock` (the TSC) and
:mod:`spec.platform`. The VMM (:mod:`spec.vmm`) owns it.

Where it lives. Xen 3.0.4 moved the PM timer into the hypervisor
("[HVM] Move ACPI timer to HV, which is the last platform timer in Qemu",
October 2006): ``pmtimer_init(v, ACPI_PM_TMR_BLK_ADDRESS)`` in
``xen/arch/x86/hvm/hvm.c`` and, in ``xen/arch/x86/hvm/pmtimer.c``::

    register_portio_handler(v->domain, base, 4, handle_pmt_io);

so ports 0x1F48-0x1F4B are Xen's: an access there never becomes an ioreq.
qemu-dm's PIIX4 ACPI function still registers the PM1a blocks at 0x1F40
(:mod:`spec.devices.acpi`) and its own copy of the timer at 0x1F48, which
Xen's intercept shadows.

Rules (``handle_pmt_io``):

* any access to 0x1F48-0x1F4B that is not 4 bytes, or is a string form, is
  claimed and ignored ("HVM_PMT: wrong PM timer IO"): a read leaves the
  datum as it was (for an IN, (E)AX unchanged), a write is dropped;
* a 4-byte write is ignored ("PM_TMR_BLK is read-only");
* a 4-byte read, at any of the four ports, returns the counter, advanced
  first by the guest time since the last read::

      curr_gtime = hvm_get_guest_time(s->vcpu);
      s->pm1_timer += ((curr_gtime - s->last_gtime) * s->scale) >> 32;
      p->data = s->pm1_timer;
      s->last_gtime = curr_gtime;

  with ``scale = (FREQUENCE_PMTIMER << 32) / ticks_per_sec(v)``
  (``FREQUENCE_PMTIMER`` 3579545, ``ticks_per_sec`` the guest's TSC rate)
  and ``pm1_timer`` a ``uint32_t`` that starts at 0 with the guest's TSC.
  The guest time is the model's TSC (:func:`spec.clock.tsc` of the clock,
  :data:`~spec.platform.TSC_HZ`). The fraction of a tick is dropped at
  every read, as Xen dropped it, so a guest that reads often sees the
  timer run slightly slow (a loss of less than one tick per read): the
  counter is Xen's, exact on the virtual clock, not an ideal 3.579545 MHz
  count.

Where firmware moves it (a deliberate difference from Xen 3.0.4). When the
guest points the PIIX4 PM function's PMBA elsewhere (:mod:`spec.devices.pci`),
qemu-dm tells Xen and the claimed ports move to PMBA's base + 8, with the
count kept: Xen 3.0.4 had no such call (its block could not move), Xen 4
has it as ``HVM_PARAM_ACPI_IOPORTS_LOCATION``, whose ``pmtimer_change_ioport``
relocates the handler between the version-0 (0x1F48) and version-1
(0xB008) layouts. Here any base qemu-dm accepts is followed, not just those
two; the ports at the old place are then nobody's in Xen.

Xen also set a ``TMR_STS`` bit of its own every 2**31 ticks
(``pmt_update_status``, "TODO: When TMR_EN == 1, generate a SCI event");
the guest reads PM1a_STS from qemu-dm, never that bit, so the model has
none.
"""

from __future__ import annotations

from spec import clock, platform

PM_TIMER_HZ = 3_579_545
#: the ports Xen claims after reset (``register_portio_handler(d, base, 4, ...)``)
PORTS = range(platform.ACPI_PM_TMR_BLK, platform.ACPI_PM_TMR_BLK + 4)
#: ``s->scale``
SCALE = (PM_TIMER_HZ << 32) // platform.TSC_HZ


class PmTimer:
    """Xen's PM timer; ``clock`` gives the virtual time in ns."""

    def __init__(self, clock_ns) -> None:
        self.clock_ns = clock_ns
        self.pm1_timer = 0
        self.last_gtime = 0
        #: the first of the four ports claimed (moves with PMBA, below)
        self.base = platform.ACPI_PM_TMR_BLK

    def claims(self, port: int) -> bool:
        return 0 <= port - self.base < 4

    def move(self, base: int) -> None:
        """Claim ``base`` .. ``base + 3`` instead (``relocate_portio_handler``
        of Xen 4's ``pmtimer_change_ioport``); the count is unaffected."""
        self.base = base

    def access(self, size: int, direction: str) -> int | None:
        """``handle_pmt_io`` for a non-string access: the datum of a 4-byte
        read, or None (left as it was, or a write)."""
        if size != 4 or direction != "in":
            return None
        gtime = clock.tsc(self.clock_ns())
        self.pm1_timer = (self.pm1_timer + ((gtime - self.last_gtime) * SCALE >> 32)) \
            & 0xFFFF_FFFF
        self.last_gtime = gtime
        return self.pm1_timer
