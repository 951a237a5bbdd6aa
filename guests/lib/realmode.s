; lib/realmode.s: the first instructions after the reset vector, in real
; mode (CS = F000, the ROM's segment).

; real_mode_start: interrupts off; DS = 0, or with ROM_DATA=1 the ROM's own
; segment (CS) so that labels address its data; ES = 0 with ES=1; a stack
; at 0000:7000
.macro real_mode_start rom_data=0, es=0
    cli
.if \rom_data
    mov ax, cs
    mov ds, ax
    xor ax, ax
.else
    xor ax, ax
    mov ds, ax
.endif
.if \es
    mov es, ax
.endif
    mov ss, ax
    mov sp, 0x7000
.endm
