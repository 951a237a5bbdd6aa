; lib/vga.s: the VGA's CRT controller (colour I/O addresses: index port
; 0x3d4, data port 0x3d5).

; crtc_pair: the routine NAME: AX to the CRTC register pair INDEX (the high
; byte) and INDEX + 1 (the low byte): 0x0c the start address, 0x0e the
; cursor location; keeps every register. W: empty in 16-bit code, `e` in
; 32-bit code (which reads AX back from the stack instead of popping it).
.macro crtc_pair name, index, w=
\name:
    push \w\()dx
    push \w\()ax
    mov dx, 0x3d4
    mov al, \index
    out dx, al
    inc dx
.ifb \w
    pop ax
    push ax
.else
    mov eax, [esp]
.endif
    mov al, ah
    out dx, al
    dec dx
    mov al, \index + 1
    out dx, al
    inc dx
    pop \w\()ax
    out dx, al
    pop \w\()dx
    ret
.endm
