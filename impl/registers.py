"""The vcpu's registers as Unicorn names them, and the bits of them impl reads.

Room: constants of impl's vcpu (:mod:`impl.vcpu` and the modules it is built
from: :mod:`impl.guest_linear`, :mod:`impl.blocks`, :mod:`impl.exits`):
Unicorn's ids of the registers it reads and writes, the bits of EFLAGS, CR0
and EFER it looks at, and Unicorn's C structures for the registers it reads
without the Python binding (an MSR, a descriptor-table register). Imports
Unicorn's register ids and nothing else.
"""

from __future__ import annotations

import ctypes

from unicorn import x86_const as X

RIP, RFLAGS, CR0 = X.UC_X86_REG_RIP, X.UC_X86_REG_RFLAGS, X.UC_X86_REG_CR0
GPR = {name: getattr(X, f"UC_X86_REG_{name.upper()}") for name in
       "rax rcx rdx rbx rsp rbp rsi rdi r8 r9 r10 r11 r12 r13 r14 r15".split()}
GPR.update(rip=RIP, rflags=RFLAGS)
SEG = {"es": X.UC_X86_REG_ES, "cs": X.UC_X86_REG_CS, "ss": X.UC_X86_REG_SS,
       "ds": X.UC_X86_REG_DS, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS}
#: the segments whose base counts in 64-bit mode, and where it is kept
BASE_MSR = {"fs": X.UC_X86_REG_FS_BASE, "gs": X.UC_X86_REG_GS_BASE}
EFER_LMA = 1 << 10
CR0_PG = 1 << 31
CR4_PGE = 1 << 7                 # global pages (SDM vol. 3A 4.10.2.4)
WIDE = 0xFFFF_FFFF_FFFF_FFFF
EFLAGS_IF = 1 << 9
EFLAGS_DF = 1 << 10
EFLAGS_VM = 1 << 17


class Msr(ctypes.Structure):
    """Unicorn's ``uc_x86_msr``."""

    _fields_ = [("rid", ctypes.c_uint32), ("value", ctypes.c_uint64)]


class Mmr(ctypes.Structure):
    """Unicorn's ``uc_x86_mmr``: a descriptor-table register."""

    _fields_ = [("selector", ctypes.c_uint16), ("base", ctypes.c_uint64),
                ("limit", ctypes.c_uint32), ("flags", ctypes.c_uint32)]
