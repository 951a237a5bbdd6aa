; lib/longmode.s: from 32-bit protected mode (lib/pm32.s, with
; `flat_gdt long64=1`) into 64-bit long mode.

%include "pm32.s"

; enter_long_mode: with 4-level page tables at PML4 (a guest's own: which
; memory they map is the guest's business), set CR4.PAE, CR3, EFER.LME and
; CR0.PG, and far-jump to the label `lm` in the 64-bit code segment 0x18
.macro enter_long_mode pml4
    mov eax, cr4
    or eax, 0x20                            ; PAE
    mov cr4, eax
    mov eax, \pml4
    mov cr3, eax
    mov ecx, 0xc0000080                     ; EFER
    rdmsr
    or eax, 0x100                           ; LME
    wrmsr
    mov eax, cr0
    or eax, 0x80000000                      ; PG: long mode is active
    mov cr0, eax
    .byte 0xea                              ; jmp far 0x18:(0xf0000 + lm)
    .long 0xf0000 + lm
    .word 0x18
.code64
lm:
.endm
