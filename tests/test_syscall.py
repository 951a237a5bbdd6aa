"""SYSCALL, which Unicorn 2.1.4 only steps over (it calls its SYSCALL hook
and moves RIP past the instruction): the boundary does what the CPU does
(SDM vol. 2B), on both engines. Every system call of a 64-bit Linux
process is one; without this, busybox's first would return at once.

The guest enters long mode, enables SYSCALL (EFER.SCE), sets STAR, LSTAR
and FMASK (IF masked), goes to ring 3 with SYSRETQ (which Unicorn does
itself), and makes a system call. At LSTAR it prints, in ring 0: CS and
SS as SYSCALL loaded them from STAR, whether RCX holds the address after
the SYSCALL and R11 the flags of ring 3 (IF set), and whether IF is now
clear; then a SYSCALL with SCE clear raises #UD, whose handler prints and
powers off.
"""

from __future__ import annotations

from spec.loader import GuestImage, rom_from_source
from tests.conftest import both

SOURCE = """
%include "lib/all.s"
PML4 = 0x20000
PDPT = 0x21000
PD_LOW = 0x22000
IDT = 0x9000
start:
    cli
    enter_pm32
    mov edi, PML4
    mov ecx, 3072
    xor eax, eax
    rep stosd
    mov dword ptr [PML4], PDPT + 7
    mov dword ptr [PDPT], PD_LOW + 7
    mov dword ptr [PD_LOW], 0x87        ; 2 MiB, user-accessible
    enter_long_mode PML4
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1                           ; SCE
    wrmsr
    mov ecx, 0xc0000081                 ; STAR: SYSCALL CS 0x18, SYSRET base 0x20
    xor eax, eax
    mov edx, 0x00200018
    wrmsr
    mov ecx, 0xc0000082                 ; LSTAR
    lea rax, [rip + kernel]
    xor edx, edx
    wrmsr
    mov ecx, 0xc0000084                 ; FMASK: IF
    mov eax, 0x200
    xor edx, edx
    wrmsr
    lea rax, [rip + ud_handler]         ; gate 6
    mov word ptr [IDT + 0x60], ax
    mov word ptr [IDT + 0x62], 0x18
    mov word ptr [IDT + 0x64], 0x8e00
    shr rax, 16
    mov word ptr [IDT + 0x66], ax
    mov dword ptr [IDT + 0x68], 0
    lea rbx, [rip + idtr]
    lidt [rbx]
    mov rsp, 0x7000
    lea rcx, [rip + user]
    mov r11d, 0x202
    .byte 0x48, 0x0f, 0x07              ; sysretq
user:
    syscall
after:
    jmp after
kernel:
    mov dx, 0x3f8
    mov ax, cs
    add al, 0x30
    out dx, al                          ; 'H': CS 0x18
    mov ax, ss
    add al, 0x30
    out dx, al                          ; 'P': SS 0x20
    lea rax, [rip + after]
    cmp rcx, rax
    mov al, 'r'
    jne rcx_seen
    mov al, 'R'
rcx_seen:
    out dx, al
    mov al, 'f'
    test r11d, 0x200
    jz r11_seen
    mov al, 'F'
r11_seen:
    out dx, al
    pushfq
    pop rax
    test eax, 0x200
    mov al, 'i'
    jnz if_seen
    mov al, 'I'
if_seen:
    out dx, al
    mov ecx, 0xc0000080
    rdmsr
    and eax, 0xfffffffe
    wrmsr
    syscall
    hlt
ud_handler:
    mov dx, 0x3f8
    mov al, 'U'
    out dx, al
    poweroff
.align 8
idtr:
    .word 0xfff
    .quad IDT
    flat_gdt long64=1, more="0x00cf93000000ffff, 0x00cff3000000ffff, 0x00affb000000ffff"
"""


def test_syscall_enters_ring_zero_at_lstar_on_both_engines():
    result = both(GuestImage("syscall", rom_from_source(SOURCE, "syscall"), SOURCE))
    assert bytes(e.byte for e in result.trace if e.kind == "serial") == b"HPRFIU"
    faults = [(e.vector, e.source) for e in result.trace if e.kind == "exception"]
    assert faults == [(6, "fault")]
    assert result.exit["reason"] == "poweroff"
