; lib/serial.s: output on COM1, the 16550A at 0x3f8, polling the line
; status register (LSR, base + 5) until THRE (bit 5) says the transmitter
; holding register is empty. Each IN and OUT is an IOIO exit.
;
; The routines are macros that a guest invokes where it wants the code, once
; for each mode it prints from; W is the register width of that mode: empty
; in 16-bit code, `e` in 32-bit code, `r` in 64-bit code.

COM1        = 0x3f8
COM1_LSR    = COM1 + 5
LSR_THRE    = 0x20

; wait_thre: poll LSR until THRE is set (DX = COM1_LSR afterwards)
.macro wait_thre
    mov dx, COM1_LSR
wait_thre_\@:
    in al, dx
    test al, LSR_THRE
    jz wait_thre_\@
.endm

; serial_ier: VALUE to the interrupt enable register (0x02: THRI, an
; interrupt whenever the transmitter holding register is empty)
.macro serial_ier value
    mov dx, COM1 + 1
    mov al, \value
    out dx, al
.endm

; serial_write: inline (no call, no stack), the NUL-terminated string at
; DS:SI to COM1 a byte at a time; BL holds each byte while LSR is polled
.macro serial_write
serial_write_next_\@:
    lodsb
    test al, al
    jz serial_write_done_\@
    mov bl, al
    wait_thre
    mov al, bl
    mov dx, COM1
    out dx, al
    jmp serial_write_next_\@
serial_write_done_\@:
.endm

; serial_putc: the routine NAME (putc): AL to COM1; keeps every register
.macro serial_putc name=putc, w=
\name:
    push \w\()dx
    push \w\()ax
    wait_thre
    pop \w\()ax
    mov dx, COM1
    out dx, al
    pop \w\()dx
    ret
.endm

; serial_puts: the routine NAME (puts): the NUL-terminated string whose
; bytes AT reads (a memory operand on SI or ESI, `cs:[si]` by default), each
; through the routine PUTC. KEEP: a register it saves and restores; BASE: a
; value added to ESI first (the ROM's linear address, for a ROM offset).
.macro serial_puts name=puts, at="cs:[si]", w=, putc=putc, keep=, base=
\name:
.ifnb \keep
    push \keep
.endif
.ifnb \base
    add esi, \base
.endif
\name\()_next:
    mov al, \at
    inc \w\()si
    test al, al
    jz \name\()_done
    call \putc
    jmp \name\()_next
\name\()_done:
.ifnb \keep
    pop \keep
.endif
    ret
.endm

; port_write: inline, the NUL-terminated string at DS:SI to port DX a byte
; at a time, with no polling (a debug port such as the BIOS log's 0x402)
.macro port_write
port_write_next_\@:
    lodsb
    test al, al
    jz port_write_done_\@
    out dx, al
    jmp port_write_next_\@
port_write_done_\@:
.endm
