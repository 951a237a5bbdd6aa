"""CPUID and the TSC, answered at the boundary without a VM exit.

Room: impl's answers to CPUID, RDTSC and RDTSCP, registered as Unicorn
instruction hooks on a :class:`impl.vcpu.Vcpu`. Imports the CPU both
engines share (:mod:`spec.physical_cpu`, for the hook plumbing) and the
platform's constants: the CPUID table :data:`spec.platform.HVM_CPUID`
and the TSC's rate :data:`spec.platform.TSC_HZ`. The rules are spec's
(:mod:`spec.cpuid`, :mod:`spec.clock`); the code is this module's.

CPUID: the table by (leaf, sub-leaf), the sub-leaf counting for leaf 4
only (from sub-leaf 3 on, zeros); any leaf not in the table reads
:data:`spec.platform.HVM_CPUID_OUT_OF_RANGE`.

RDTSC: ``clock * TSC_HZ / 10**9`` at the boundary before the instruction,
where the clock is the vcpu's instruction count there (the block clock's
count at the start of the current block plus the RDTSC's index in it)
plus its bus time ``io_ns``. RDTSCP adds ECX = IA32_TSC_AUX. The C block
clock answers RDTSC itself where it knows the block executing and the
RDTSC's index in it (:meth:`impl.clock.BlockClock.answer_rdtsc`: memtest86+
reads the TSC every few instructions); this module's hook answers the rest.
"""

from __future__ import annotations

from unicorn import x86_const as X

from spec import physical_cpu, platform

_TABLE = {key: value for key, value in platform.HVM_CPUID.items()}
_LEAF4_SUBLEAVES = max(sub for leaf, sub in _TABLE if leaf == 4)
_OUT = platform.HVM_CPUID_OUT_OF_RANGE
_M32 = 0xFFFFFFFF
_RATE = platform.TSC_HZ
_TSC_AUX = 0xC0000103


def lookup(eax: int, ecx: int) -> tuple[int, int, int, int]:
    """The four registers CPUID loads for leaf ``eax``, sub-leaf ``ecx``."""
    leaf = eax & _M32
    if leaf == 4:
        sub = ecx & _M32
        return _TABLE[(4, sub)] if sub <= _LEAF4_SUBLEAVES else (0, 0, 0, 0)
    return _TABLE.get((leaf, 0), _OUT)


def install(vcpu) -> None:
    """Hook CPUID, RDTSC and RDTSCP on ``vcpu``'s CPU."""
    uc = vcpu.uc
    regs = (X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX)

    def on_cpuid() -> None:
        for reg, value in zip(regs, lookup(vcpu.get("rax"), vcpu.get("rcx"))):
            vcpu.put_reg(reg, value)

    def on_rdtsc() -> None:
        ticks = vcpu.clock_at_rdtsc() * _RATE // 1_000_000_000 & 0xFFFF_FFFF_FFFF_FFFF
        vcpu.put("rax", ticks & _M32)
        vcpu.put("rdx", ticks >> 32)

    def on_rdtscp() -> None:
        on_rdtsc()
        vcpu.put("rcx", uc.msr_read(_TSC_AUX) & _M32)

    physical_cpu.hook_insn(uc, X.UC_X86_INS_CPUID, on_cpuid)
    # RDTSC in C where the block clock can place it (impl/_clock.c); here else
    vcpu._clock.answer_rdtsc(uc, _RATE, on_rdtsc)
    physical_cpu.hook_insn(uc, X.UC_X86_INS_RDTSCP, on_rdtscp)
