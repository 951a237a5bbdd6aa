"""The virtual clock: what a nanosecond is, what an I/O access costs, and the TSC.

Room: the rules of time at the hardware boundary. Both engines follow them;
the devices of :mod:`spec.devices` read the clock (``clock_ns``) and arm
their deadlines on it. Imports :mod:`spec.platform` and the CPU
(:mod:`spec.physical_cpu`, for the RDTSC hooks).

The clock
---------

Time is virtual and deterministic (``DESIGN.md``). A vcpu's clock, in
nanoseconds since the domain was built, is the sum of two counts:

``icount``
    One per guest instruction retired (counted as :mod:`spec.vmx` says),
    plus the nanoseconds the vcpu spent halted: a halted vcpu with
    interrupts enabled and nothing pending jumps its clock to the next
    timer deadline (an ``idle`` event). Trace events carry it.
``io_ns``
    The bus time of the vcpu's I/O accesses: :data:`~spec.platform.PORT_ACCESS_NS`
    for every port access, :data:`~spec.platform.MMIO_ACCESS_NS` for every
    access to MMIO.

So ``clock_ns = icount + io_ns``. Without I/O an instruction takes a
nanosecond, as before; a loop that polls a port takes about a microsecond
per iteration, as on a PC, so a firmware's delay loop counting port 0x61's
refresh toggles (bit 14 of this clock, :mod:`spec.devices.pit`) or waiting
for the PIT's counter 2 to run out ends after the number of iterations the
hardware would make, whatever the host's speed.

The rule of I/O time, exactly:

* every element of a port access made on the guest's behalf costs
  :data:`~spec.platform.PORT_ACCESS_NS`: an IN or OUT one element, an INS
  or OUTS ioreq as many as its ``count``, every element of a string access
  to a port Xen emulates itself (the virtual PIC; the PIT and port 0x61,
  which ignore string forms but still charge each element), an IN or OUT
  to one of those ports, and an IN or OUT at a
  port whose intercept Xen clears (0x80, 0xED: no exit, but the bus cycle
  still happens; that is what makes ``outb %al, $0x80`` an I/O delay);
  a REP INS/OUTS with a count of 0 makes no access and costs nothing;
* every element of an MMIO ioreq (``IOREQ_TYPE_COPY``) costs
  :data:`~spec.platform.MMIO_ACCESS_NS`;
* the charge is added when the access *completes*: when the VMM takes the
  device model's response (or, for Xen's own devices and the pass-through
  ports, when it performs the access). The device therefore sees the
  clock as it was when the exit happened; the instruction after the
  access sees it later by the access's bus time;
* nothing else costs time: not the exit itself (the VM exit, the ioreq
  round trip through the event channel and qemu-dm, which under real Xen
  took several microseconds of wall time), not a hypercall, not an
  interrupt injection, not the emulation of an MMIO instruction beyond its
  accesses. The model's clock is a PC's, not a host's.

Preemption-timer deadlines are on the clock: the vcpu runs until
``icount + io_ns`` reaches the deadline (the run converts it to an
instruction count, ``deadline - io_ns``, again after every pass-through
access).

The TSC
-------

RDTSC reads ``tsc(clock_ns)`` (:func:`tsc`): :data:`~spec.platform.TSC_HZ`
ticks per second of the clock (2.4 per nanosecond), from 0 when the domain
is built, where ``clock_ns`` is the clock at the instruction boundary
*before* the RDTSC (the instructions retired before it, plus idle and
bus time). EDX:EAX receive it, the upper halves of RAX and RDX are
cleared. RDTSCP does the same and loads ECX with the low 32 bits of the
IA32_TSC_AUX MSR (``0xC0000103``). The TSC is a function of the virtual
clock alone, so two runs of a guest, and the two engines, read the same
values.

What Xen did. Xen 3.0.4 ran HVM guests with VT-x's *TSC offsetting*
(``CPU_BASED_USE_TSC_OFFSETING`` in ``xen/arch/x86/hvm/vmx/vmcs.c``; RDTSC
exiting off): the guest read the host's TSC plus a per-vcpu offset, which
``hvm_set_guest_time`` (``xen/arch/x86/hvm/hvm.c``) computes as the
wanted guest time minus the host's TSC. It sets the guest's TSC to 0 when
the vcpu is created (``hvm_vcpu_initialise``), to the value a guest writes to the IA32_TSC MSR
(``vmx_do_msr_write``), and, while the PIT's periodic timer is running,
freezes the guest's time when the vcpu is descheduled
(``hvm_freeze_time``) and sets it back to the time of the last timer
tick it injected (``hvm_interrupt_post`` in ``hvm/io.c``:
``hvm_set_guest_time(v, pt->last_plt_gtime)``), so that the TSC does not run
ahead of the ticks the guest has seen. So the guest's TSC counted at the
host's rate, from zero, in the guest's own time: the model keeps all of
that, with the host's wall time replaced by the virtual clock, and makes
it exact rather than approximate. Later Xen made the choice explicit:
Xen 4.0's ``tsc_mode`` (``docs/misc/tscmode.txt``, December 2009) has a mode in which
every RDTSC is emulated at a fixed rate ("always emulate"), which is what
the model does.

Differences, written down:

* RDTSCP is not in the CPUID table (the Core 2 of :mod:`spec.cpuid` has
  no RDTSCP, CPUID 0x80000001 EDX bit 27 clear), so on that host it would
  raise #UD; Unicorn's CPU executes it, and the model answers it with the
  virtual TSC as above rather than fault. A guest that checks CPUID before
  using it never sees the difference.
* A write to IA32_TSC (WRMSR 0x10) changes Unicorn's own TSC, which RDTSC
  no longer reads; it does not move the virtual TSC (Xen would offset the
  guest's TSC). RDMSR of IA32_TSC reads Unicorn's, which follows the
  host's.
* CR4.TSD: with CR4.TSD set, RDTSC and RDTSCP at CPL > 0 raise #GP(0)
  (SDM vol. 2B, "RDTSC"). The CPU (Unicorn's ``helper_rdtsc``) makes that
  check before it calls the hook, so the #GP is the hardware's, raised
  the same way on both engines; at CPL 0, or with CR4.TSD clear, the
  virtual TSC is read. Xen 3.0.4 did not intercept RDTSC either, so the
  hardware made the same check for its guests.
"""

from __future__ import annotations

from typing import Callable

from unicorn import x86_const as X

from spec import physical_cpu, platform

NS_PER_S = 1_000_000_000
#: IA32_TSC_AUX, which RDTSCP returns in ECX (SDM vol. 4, table 2-2)
MSR_TSC_AUX = 0xC0000103


def tsc(clock_ns: int) -> int:
    """The TSC after ``clock_ns`` nanoseconds of virtual time: the whole
    ticks of :data:`spec.platform.TSC_HZ` (it wraps at 2**64)."""
    return clock_ns * platform.TSC_HZ // NS_PER_S & 0xFFFF_FFFF_FFFF_FFFF


def port_time(elements: int) -> int:
    """The bus time of ``elements`` port accesses."""
    return elements * platform.PORT_ACCESS_NS


def mmio_time(elements: int) -> int:
    """The bus time of ``elements`` MMIO accesses."""
    return elements * platform.MMIO_ACCESS_NS


def attach(uc, clock_before: Callable[[], int]) -> None:
    """Answer RDTSC and RDTSCP on ``uc`` with the virtual TSC;
    ``clock_before()`` gives the clock at the boundary before the
    instruction being executed."""

    def rdtsc() -> int:
        value = tsc(clock_before())
        uc.reg_write(X.UC_X86_REG_RAX, value & 0xFFFF_FFFF)
        uc.reg_write(X.UC_X86_REG_RDX, value >> 32)
        return value

    def rdtscp() -> None:
        rdtsc()
        uc.reg_write(X.UC_X86_REG_RCX, uc.msr_read(MSR_TSC_AUX) & 0xFFFF_FFFF)

    physical_cpu.hook_insn(uc, X.UC_X86_INS_RDTSC, rdtsc)
    physical_cpu.hook_insn(uc, X.UC_X86_INS_RDTSCP, rdtscp)
