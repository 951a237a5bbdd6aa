; lib/pm32.s: from real mode into 32-bit protected mode with flat segments.
;
; The ROM is at linear 0xf0000 (F000:0000); labels are offsets in it, so a
; linear address is 0xf0000 + label. The GDT (flat_gdt) has a 32-bit code
; segment at selector 0x08 and a data segment at 0x10, base 0 and 4 GiB each;
; with LONG64=1 also a 64-bit code segment at 0x18 (lib/longmode.s).

; pm32_jump: load the GDT, set CR0.PE and far-jump to `pm32` in 0x08
.macro pm32_jump
    lgdt cs:[gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    .byte 0x66, 0xea                ; jmp far 0x08:(0xf0000 + pm32)
    .long 0xf0000 + pm32
    .word 0x08
.endm

; pm32_start: the label `pm32` in 32-bit code: DS, ES (and with STACK=1,
; the default, SS with ESP = 0x7000) on the flat data segment
.macro pm32_start stack=1
.code32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
.if \stack
    mov ss, ax
    mov esp, 0x7000
.endif
.endm

; enter_pm32: pm32_jump straight into pm32_start
.macro enter_pm32 stack=1
    pm32_jump
    pm32_start \stack
.endm

; flat_gdt: the labels `gdt` (aligned to 8) and `gdtr` (its limit and base);
; MORE: descriptors (quads, a quoted list) after the flat ones
.macro flat_gdt long64=0, more=
.align 8
gdt:
    .quad 0
    .quad 0x00cf9b000000ffff        ; 0x08: code, base 0, 4 GiB, 32-bit
    .quad 0x00cf93000000ffff        ; 0x10: data, base 0, 4 GiB
.if \long64
    .quad 0x00209b0000000000        ; 0x18: code, 64-bit
.endif
.ifnb \more
    .quad \more
.endif
gdtr:
    .word gdtr - gdt - 1
    .long 0xf0000 + gdt
.endm
