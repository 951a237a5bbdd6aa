"""The hypercalls Debian's Linux makes when it finds Xen (:mod:`spec.memory_op`).

Linux 6.1 reads CPUID's hypervisor leaves, sees Xen and, as an HVM guest,
asks ``xen_version`` for the version and the features, then maps the
shared info page with ``XENMEM_add_to_physmap`` and stops with ``BUG()``
if that fails. The guest here does the same from 32-bit protected mode,
moves the page once, and prints what it saw.
"""

from __future__ import annotations

from hvmspec.guestgen import EPILOGUE, PROLOGUE
from spec.loader import GuestImage, rom_from_source
from tests.conftest import both

CALLS = """
    mov dx, 0x3f8
    mov eax, 17                 ; xen_version(XENVER_version)
    xor ebx, ebx
    vmcall
    shr eax, 16
    add al, '0'
    out dx, al                  ; 3
    mov dword ptr [0x8100], 0
    mov dword ptr [0x8104], 0xffffffff
    mov eax, 17                 ; xen_version(XENVER_get_features, {0, ...})
    mov ebx, 6
    mov ecx, 0x8100
    vmcall
    add al, '0'
    out dx, al                  ; 0
    mov al, [0x8104]
    add al, '0'
    out dx, al                  ; 5: writable page tables, auto-translated physmap
    mov dword ptr [0x200000], 0x55
    mov dword ptr [0x8200], 0x7ff0      ; DOMID_SELF
    mov dword ptr [0x8204], 0           ; XENMAPSPACE_shared_info
    mov dword ptr [0x8208], 0           ; idx 0
    mov dword ptr [0x820c], 0x200       ; gpfn
    mov eax, 12                 ; memory_op(XENMEM_add_to_physmap, ...)
    mov ebx, 7
    mov ecx, 0x8200
    vmcall
    add al, '0'
    out dx, al                  ; 0
    mov al, [0x200000]
    add al, 'A'
    out dx, al                  ; A: the page of RAM there is gone
    mov al, [0x200001]
    add al, 'A'
    out dx, al                  ; B: vcpu 0's evtchn_upcall_mask
    mov byte ptr [0x200002], 7
    mov dword ptr [0x820c], 0x201
    mov eax, 12
    mov ebx, 7
    mov ecx, 0x8200
    vmcall
    mov al, [0x201002]
    add al, 'A'
    out dx, al                  ; H: the same page, moved
    mov al, [0x200002]
    out dx, al                  ; 0xff: a hole where it was
    mov dword ptr [0x8204], 1           ; XENMAPSPACE_grant_table: not modelled
    mov eax, 12
    mov ebx, 7
    mov ecx, 0x8200
    vmcall
    neg al
    out dx, al                  ; 22: -EINVAL
    mov eax, 17
    mov ebx, 2                  ; XENVER_compile_info: not modelled
    vmcall
    neg al
    out dx, al                  ; 38: -ENOSYS
"""


def test_linux_finds_xen_and_maps_the_shared_info_page():
    source = PROLOGUE + CALLS + EPILOGUE
    result = both(GuestImage("xenhc", rom_from_source(source, "xenhc"), source))
    assert bytes(e.byte for e in result.trace if e.kind == "serial") == \
        b"305" + b"0AB" + b"H\xff" + bytes([22, 38]) + b"\x00"
    calls = [(e.name, e.result) for e in result.trace if e.kind == "hypercall"]
    assert calls == [("xen_version", 0x30000), ("xen_version", 0), ("memory_op", 0),
                     ("memory_op", 0), ("memory_op", -22), ("xen_version", -38)]
    p2m = [(e.op, e.gpa) for e in result.trace if e.kind == "p2m"]
    assert p2m == [("remove", 0x200000), ("shared_info", 0x200000), ("remove", 0x201000),
                   ("shared_info", 0x201000)]
    assert result.exit["reason"] == "poweroff"
