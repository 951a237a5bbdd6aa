; pm32: port I/O from 32-bit protected mode.
;
; From the reset vector the guest loads a flat GDT, sets CR0.PE and far-jumps
; into a 32-bit code segment. There the I/O exits report 32-bit address size,
; string operands are addressed with ESI/EDI and counted with ECX, and the
; VMM finds segment bases in the GDT descriptors:
;
;   1. `rep outsb` of a line to COM1 (ESI, ECX);
;   2. `in eax, dx` from an unclaimed port: all-ones, stored in RAM;
;   3. `rep outsw` of that word to the UART's MSR/SCR pair (0x3fe): a word
;      to a byte device is split into two byte accesses, and the SCR keeps
;      the high byte (0xff). (A dword at 0x3ff would reach past the UART
;      into unclaimed ports; hvmspec splits it as the ISA bus would, but
;      QEMU 7.2's serial device aborts on it, so the guest that QEMU also
;      runs does not do it; tests/test_portio.py covers it.)
;   4. the SCR read back and sent to COM1, then power-off.

%include "lib/all.s"

start:
    cli
    enter_pm32 stack=0      ; a flat GDT, CR0.PE, jmp far 0x08:pm32; DS = ES = 0x10
    mov dx, 0x3f8
    mov esi, text
    add esi, 0xf0000        ; the ROM's linear address
    mov ecx, text_end - text
    cld
    rep outsb
    mov dx, 0x2e0
    in eax, dx
    mov edi, 0x8000
    mov [edi], eax
    mov esi, edi
    mov dx, 0x3fe
    mov ecx, 1
    rep outsw
    mov dx, 0x3ff
    in al, dx
    mov dx, 0x3f8
    out dx, al
    mov al, 10
    out dx, al
    poweroff
text:
    .ascii "32-bit protected mode\n"
text_end:
    flat_gdt
