"""CPUID as an HVM guest of Xen 3.0.4 sees it.

Room: the answer to the guest's CPUID instruction, at the hardware
boundary. Imports the CPU (:mod:`spec.physical_cpu`, for the hook).

What Xen did. Under VT-x, CPUID always exits (SDM vol. 3C, 25.1.2), and
Xen 3.0.4 answers it in ``vmx_do_cpuid`` (``xen/arch/x86/hvm/vmx/vmx.c``
at the 3.0.4 branch point, December 2006; masks in
``xen/include/asm-x86/hvm/vmx/cpu.h``). It executes CPUID on the *host*
CPU with the guest's EAX (and ECX) and edits the result:

* leaf 4 (deterministic cache parameters, with ECX as sub-leaf): EAX is
  masked with ``NUM_CORES_RESET_MASK`` (``0x00003FFF``): the cores per
  package and threads sharing the cache read as one;
* ``0x40000000``-``0x40000002``: ``cpuid_hypervisor_leaves``
  (``xen/arch/x86/traps.c``, added in July 2006, so 3.0.4 has them): the
  largest hypervisor leaf and the signature ``"XenVMMXenVMM"``; Xen's
  version as major << 16 | minor (3.0.4 is major 3, minor 0, extra
  version ``.4``: ``0x00030000``); the number of hypercall-transfer pages
  (1) and the MSR that installs them (``0x40000000``);
* ``0x40000003``: private to VMXASSIST (real-mode support), which crashes
  the domain unless VMXASSIST is running; the model has no VMXASSIST (the
  hardware boundary runs real mode itself) and answers it as any input
  beyond the host's leaves (below);
* leaf 1: the reserved ECX bits 6 and 18 cleared
  (``VMX_VCPU_CPUID_L1_ECX_RESERVED``); APIC (EDX bit 9) cleared when the
  vcpu's local APIC is hardware-disabled (``vlapic_hw_disabled``): the
  model's platform has *no* local APIC (``DESIGN.md``: the 8259 pair), so
  it is always clear here; PAE (EDX 6) cleared unless the domain's
  ``pae`` is set, which xend 3.0.4 documented as the default
  (``tools/examples/xmexample.hvm``: "default=1"), so it stays; PSE36
  (EDX 17) cleared; EBX masked with ``NUM_THREADS_RESET_MASK``
  (``0xFF00FFFF``: one logical processor); "unsupportable for virtualised
  CPUs": VMX (ECX 5), EST (7), TM2 (8), CNXT-ID (10), MONITOR/MWAIT (3),
  HTT (EDX 28), ACPI thermal control (EDX 22) and TM (EDX 29) cleared.
  Nothing sets a "hypervisor present" bit: ECX bit 31 is reserved (zero)
  on the hosts of the time, and Xen 3.0.4 leaves it so;
* leaves 6, 9 and 0xA (thermal and power, DCA, architectural performance
  monitoring) read as zeros;
* ``0x80000001``: on a 64-bit Xen with PAE enabled, unchanged (NX is
  cleared only without PAE; LM, SYSCALL and LAHF/SAHF only on a 32-bit
  Xen).

Every other leaf is the host's, unedited, including what the host answers
for an input beyond its largest basic or extended leaf: the data of its
highest *basic* leaf (SDM vol. 2A, "CPUID": "If a value entered for
CPUID.EAX is higher than the maximum input value for basic or extended
function for that processor then the data for the highest basic
information leaf is returned"). Xen zeroes leaf 0xA only when the input is
0xA, so an input out of range reads the host's raw leaf 0xA.

The host. The answer depends on the host CPU, so the model fixes one
(:data:`HOST`): an Intel Core 2 Duo E6600 (Conroe, family 6, model 15,
stepping 6, 2.40 GHz, July 2006), a VT-x CPU of the kind Xen 3.0.4 ran HVM
guests on. Its TSC frequency is :data:`spec.platform.TSC_HZ`
(:mod:`spec.clock`). :data:`spec.platform.HVM_CPUID` is the table that
:func:`hvm_leaf` derives from it, which both engines answer from; a test
checks the two agree.

Unicorn raises no VM exit for CPUID: both engines answer it in an
instruction hook (``UC_HOOK_INSN`` with ``UC_X86_INS_CPUID``), which sets
EAX, EBX, ECX and EDX (the upper halves of RAX..RDX are cleared, as the
CPU does in 64-bit mode) and skips Unicorn's own CPUID model. The clock
counts the instruction as any other: the model does not charge time for
the exit Xen took.
"""

from __future__ import annotations

from unicorn import x86_const as X

from spec import physical_cpu

Regs = tuple[int, int, int, int]        # EAX, EBX, ECX, EDX


def _text(s: str) -> tuple[int, ...]:
    raw = s.encode("ascii").ljust(48, b"\0")
    return tuple(int.from_bytes(raw[i:i + 4], "little") for i in range(0, 48, 4))


_BRAND = _text("Intel(R) Core(TM)2 CPU          6600  @ 2.40GHz")

#: The host: CPUID of an Intel Core 2 Duo E6600 (family 6, model 15,
#: stepping 6), leaf -> EAX, EBX, ECX, EDX; leaf 4 by sub-leaf (ECX).
#: Leaf 1: signature 0x6F6, CLFLUSH line 8 quadwords, 2 logical processors,
#: initial APIC ID 0; ECX SSE3 DTES64 MONITOR DS-CPL VMX EST TM2 SSSE3 CX16
#: xTPR PDCM; EDX every feature up to PBE but PSN. Leaf 4: 32 KiB 8-way L1
#: data and instruction caches, a 4 MiB 16-way L2 shared by both cores.
HOST: dict[int, Regs] = {
    0x0: (0x0000000A, 0x756E6547, 0x6C65746E, 0x49656E69),    # "GenuineIntel"
    0x1: (0x000006F6, 0x00020800, 0x0000E3BD, 0xBFEBFBFF),
    0x2: (0x05B0B101, 0x005657F0, 0x00000000, 0x2CB43049),
    0x3: (0, 0, 0, 0),
    0x5: (0x00000040, 0x00000040, 0x00000003, 0x00000020),
    0x6: (0x00000001, 0x00000002, 0x00000001, 0x00000000),
    0x7: (0, 0, 0, 0),
    0x8: (0, 0, 0, 0),
    0x9: (0, 0, 0, 0),
    0xA: (0x07280202, 0, 0, 0),
    0x80000000: (0x80000008, 0, 0, 0),
    0x80000001: (0, 0, 0x00000001, 0x20100800),                # LAHF/SAHF; SYSCALL NX LM
    0x80000002: _BRAND[0:4],
    0x80000003: _BRAND[4:8],
    0x80000004: _BRAND[8:12],
    0x80000005: (0, 0, 0, 0),
    0x80000006: (0, 0, 0x10008040, 0),                          # L2: 4 MiB, 64-byte lines
    0x80000007: (0, 0, 0, 0),
    0x80000008: (0x00003024, 0, 0, 0),                          # 36-bit physical, 48 linear
}
#: leaf 4's sub-leaves; from sub-leaf 3 on: no more caches (all zero)
HOST_LEAF4: tuple[Regs, ...] = (
    (0x04000121, 0x01C0003F, 0x0000003F, 0x00000001),
    (0x04000122, 0x01C0003F, 0x0000003F, 0x00000001),
    (0x04004143, 0x03C0003F, 0x00000FFF, 0x00000001),
)

# Feature bits Xen 3.0.4 clears in leaf 1 (xen/include/asm-x86/cpufeature.h numbering).
ECX_MONITOR, ECX_VMX, ECX_EST, ECX_TM2, ECX_CNXT_ID = 1 << 3, 1 << 5, 1 << 7, 1 << 8, 1 << 10
ECX_RESERVED = 1 << 18 | 1 << 6         # VMX_VCPU_CPUID_L1_ECX_RESERVED
EDX_APIC, EDX_PSE36, EDX_ACPI, EDX_HTT, EDX_TM = 1 << 9, 1 << 17, 1 << 22, 1 << 28, 1 << 29
EDX_PAE, EDX_TSC = 1 << 6, 1 << 4
NUM_CORES_RESET_MASK = 0x00003FFF
NUM_THREADS_RESET_MASK = 0xFF00FFFF

#: xen_major_version() << 16 | xen_minor_version() of Xen 3.0.4
XEN_VERSION = 3 << 16 | 0


def host_cpuid(leaf: int, subleaf: int) -> Regs:
    """What the host CPU answers (out-of-range inputs: its highest basic leaf)."""
    if leaf == 4:
        return HOST_LEAF4[subleaf] if subleaf < len(HOST_LEAF4) else (0, 0, 0, 0)
    if leaf in HOST:
        return HOST[leaf]
    return HOST[HOST[0][0]]


def hypervisor_leaf(leaf: int) -> Regs | None:
    """Xen's ``cpuid_hypervisor_leaves``: leaves 0x40000000 to 0x40000002."""
    index = leaf - 0x40000000
    if index == 0:
        return (0x40000002, 0x566E6558, 0x65584D4D, 0x4D4D566E)    # "XenV" "MMXe" "nVMM"
    if index == 1:
        return (XEN_VERSION, 0, 0, 0)
    if index == 2:
        return (1, 0x40000000, 0, 0)
    return None


def hvm_leaf(leaf: int, subleaf: int = 0) -> Regs:
    """CPUID as Xen 3.0.4's ``vmx_do_cpuid`` answers an HVM guest (module
    docstring): ``leaf`` is the guest's EAX, ``subleaf`` its ECX."""
    leaf &= 0xFFFF_FFFF
    if leaf == 4:
        eax, ebx, ecx, edx = host_cpuid(4, subleaf & 0xFFFF_FFFF)
        return eax & NUM_CORES_RESET_MASK, ebx, ecx, edx
    xen = hypervisor_leaf(leaf)
    if xen is not None:
        return xen
    eax, ebx, ecx, edx = host_cpuid(leaf, 0)
    if leaf == 1:
        ecx &= ~ECX_RESERVED
        edx &= ~EDX_APIC                # no local APIC on this platform
        edx &= ~EDX_PSE36               # PAE stays: the domain has pae=1
        ebx &= NUM_THREADS_RESET_MASK
        ecx &= ~(ECX_VMX | ECX_EST | ECX_TM2 | ECX_CNXT_ID | ECX_MONITOR)
        edx &= ~(EDX_HTT | EDX_ACPI | EDX_TM)
    elif leaf in (0x6, 0x9, 0xA):
        eax = ebx = ecx = edx = 0
    return eax, ebx, ecx, edx


def answer(rax: int, rcx: int) -> Regs:
    """The CPUID instruction of the guest: the leaf is EAX, the sub-leaf
    ECX (the upper halves of RAX and RCX are ignored, SDM vol. 2A)."""
    return hvm_leaf(rax & 0xFFFF_FFFF, rcx & 0xFFFF_FFFF)


def table() -> dict[tuple[int, int], Regs]:
    """Every leaf the host lists and Xen's three, as (leaf, sub-leaf) ->
    registers (sub-leaf 0 except for leaf 4): what
    :data:`spec.platform.HVM_CPUID` must hold."""
    out: dict[tuple[int, int], Regs] = {}
    for leaf in sorted(HOST) + [0x40000000, 0x40000001, 0x40000002]:
        out[(leaf, 0)] = hvm_leaf(leaf, 0)
    for sub in range(1, len(HOST_LEAF4) + 1):
        out[(4, sub)] = hvm_leaf(4, sub)
    out[(4, 0)] = hvm_leaf(4, 0)
    return dict(sorted(out.items()))


def attach(uc) -> None:
    """Answer the guest's CPUID on ``uc`` (:func:`answer`)."""

    def on_cpuid() -> None:
        regs = answer(uc.reg_read(X.UC_X86_REG_RAX), uc.reg_read(X.UC_X86_REG_RCX))
        for reg, value in zip((X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX,
                               X.UC_X86_REG_RDX), regs):
            uc.reg_write(reg, value)

    physical_cpu.hook_insn(uc, X.UC_X86_INS_CPUID, on_cpuid)


__all__ = ["HOST", "HOST_LEAF4", "answer", "attach", "host_cpuid", "hvm_leaf", "hypervisor_leaf",
           "table"]
