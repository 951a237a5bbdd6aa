; lib/poweroff.s: the end of a guest. ACPI soft-off writes SLP_TYP(S5) |
; SLP_EN to the PM1a control register (Xen's version-0 location 0x1f44; S5
; is SLP_TYP 7): qemu-dm asks Xen for a poweroff shutdown, and xend destroys
; the domain.

PM1A_CNT    = 0x1f44
SLP_S5_EN   = (7 << 10) | (1 << 13)

; halt_forever: the label `halt`, a HLT loop that nothing wakes for good
.macro halt_forever
halt:                       ; not reached when the domain is gone
    hlt
    jmp halt
.endm

; poweroff: S5 through PM1a_CNT (a 16-bit OUT), then halt_forever
.macro poweroff
    mov dx, PM1A_CNT
    mov ax, SLP_S5_EN
    out dx, ax
    halt_forever
.endm
