; serial: COM1's 16550A, register by register, and what the guest sees.
;
; Real mode from the reset vector, like hello. Everything the guest reads is
; written as text into a buffer in RAM (0x600) and sent to COM1 when the
; UART is not in loopback (in loopback THR bytes come back in instead of
; leaving). Each line:
;
;   1. "reset": IIR, LCR, MCR, LSR, MSR, SCR as they come out of reset
;      (01 00 08 60 b0 00: MCR has OUT2 and MSR shows CTS, DSR, DCD of a
;      backend without modem lines, as in QEMU).
;   2. "scr": two values written and read back.
;   3. "dlab": with LCR.DLAB, offsets 0 and 1 are the divisor latch (the
;      power-on divisor 12, then 256 written and read back); without it,
;      offset 1 is IER again.
;   4. "fifo": IIR after FCR enables the FIFOs (c1).
;   5. "trigger 4": in loopback, three bytes leave IIR at c1, the fourth
;      reaches the trigger level (c4); the four bytes read back in order.
;   6. "overrun": trigger 14, sixteen bytes fill the FIFO, the seventeenth
;      is lost: IIR c6 (line status), LSR 63 then 61 (reading clears OE),
;      and the sixteen bytes come back.
;   7. "loop msr": MSR's upper nibble in loopback after each MCR change
;      (CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2); "loop deltas": the lower
;      nibble of the same reads; "msi": IIR with IER.MSI after a change,
;      then after reading MSR. (QEMU shows no delta bits or modem status
;      interrupt in loopback: docs/devices.rst.)
;   8. "cti": divisor 1 (115200 baud), trigger 4, two bytes in loopback:
;      IIR c1 at once, then polled until the character timeout (cc) shows
;      four character times later; reading a byte clears it.
;   9. "rx": with RTS held (not in loopback) and the FIFO at trigger 1, the
;      bytes that arrive from outside within a few character times (none
;      on QEMU's file backend, the bytes of --serial-input on hvmspec).
;  10. Power off through ACPI PM1a_CNT.
;
; The guest polls with interrupts off and every PIC line masked: IRQ4 is
; raised whenever an enabled UART interrupt is pending.

%include "lib/all.s"

RBR         = COM1
IER         = COM1 + 1
IIR         = COM1 + 2
FCR         = COM1 + 2
LCR         = COM1 + 3
MCR         = COM1 + 4
LSR         = COM1 + 5
MSR         = COM1 + 6
SCR         = COM1 + 7
BUF         = 0x600
MSRS        = 0x500         ; the MSR values of step 7

start:
    real_mode_start rom_data=1, es=1  ; DS: labels live in this ROM segment; ES: the text buffer in RAM
    cld
    mov di, BUF
    mov al, 0xff            ; mask every line at the PIC: the UART's IRQ4
    out 0x21, al            ; goes high below, and this guest polls

    ; 1. reset values
    mov si, s_reset
    call puts
    mov dx, IIR
    call show
    mov dx, LCR
    call show
    mov dx, MCR
    call show
    mov dx, LSR
    call show
    mov dx, MSR
    call show
    mov dx, SCR
    call show
    call nl

    ; 2. scratch register
    mov si, s_scr
    call puts
    mov dx, SCR
    mov al, 0x5a
    out dx, al
    call show
    mov al, 0xa5
    out dx, al
    call show
    call nl

    ; 3. the divisor latch
    mov si, s_dlab
    call puts
    mov dx, IER
    mov al, 0x05
    out dx, al
    mov dx, LCR
    mov al, 0x83
    out dx, al
    mov dx, COM1
    call show
    mov dx, COM1 + 1
    call show
    mov dx, COM1
    xor al, al
    out dx, al
    mov dx, COM1 + 1
    mov al, 0x01            ; divisor 256: 450 baud
    out dx, al
    mov dx, COM1
    call show
    mov dx, COM1 + 1
    call show
    mov dx, LCR
    mov al, 0x03
    out dx, al
    mov dx, IER
    call show
    mov dx, LCR
    call show
    call nl
    mov dx, IER
    xor al, al
    out dx, al
    call flush

    ; 4. FIFOs on
    mov si, s_fifo
    call puts
    mov dx, FCR
    mov al, 0x07
    out dx, al
    mov dx, IIR
    call show
    call nl

    ; 5. trigger level 4, in loopback
    mov si, s_trig
    call puts
    mov dx, IER
    mov al, 0x05            ; line status and data available
    out dx, al
    mov dx, FCR
    mov al, 0x47
    out dx, al
    mov dx, MCR
    mov al, 0x19            ; loopback, DTR, OUT2
    out dx, al
    mov dx, COM1
    mov al, 'a'
    out dx, al
    inc al
    out dx, al
    inc al
    out dx, al
    mov dx, IIR
    call show
    mov dx, COM1
    mov al, 'd'
    out dx, al
    mov dx, IIR
    call show
    mov dx, LSR
    call show
    mov al, ' '
    stosb
    mov cx, 4
    call drain
    mov dx, IIR
    call show
    mov dx, LSR
    call show
    call nl

    ; 6. overrun with the FIFO full
    mov si, s_over
    call puts
    mov dx, FCR
    mov al, 0xc7            ; trigger 14, both FIFOs cleared
    out dx, al
    mov dx, COM1
    mov al, 'A'
    mov cx, 16
fill:
    out dx, al
    inc al
    loop fill
    mov dx, IIR
    call show
    mov dx, COM1
    mov al, 'Q'             ; the seventeenth: lost
    out dx, al
    mov dx, IIR
    call show
    mov dx, LSR
    call show
    mov dx, LSR
    call show
    mov dx, IIR
    call show
    mov al, ' '
    stosb
    mov cx, 16
    call drain
    mov dx, LSR
    call show
    call nl

    ; 7. modem status in loopback
    mov dx, IER
    xor al, al
    out dx, al
    push di
    mov di, MSRS
    mov dx, MCR
    mov al, 0x1b            ; RTS, DTR, OUT2: CTS, DSR, DCD
    call mcr_msr
    mov al, 0x1f            ; OUT1: RI rises
    call mcr_msr
    mov al, 0x1b            ; RI falls
    call mcr_msr
    mov al, 0x10            ; all low
    call mcr_msr
    mov al, 0x11            ; DTR: DSR rises
    call mcr_msr
    mov dx, IER
    mov al, 0x08            ; modem status interrupt
    out dx, al
    mov dx, MCR
    mov al, 0x13            ; RTS: CTS rises
    out dx, al
    mov dx, IIR
    in al, dx
    mov byte ptr es:[MSRS + 8], al
    mov dx, MSR
    in al, dx
    stosb
    mov dx, IIR
    in al, dx
    mov byte ptr es:[MSRS + 9], al
    mov dx, IER
    xor al, al
    out dx, al
    mov dx, MCR
    mov al, 0x1b
    call mcr_msr
    mov dx, MCR
    mov al, 0x09            ; loopback off: the backend's lines again
    out dx, al
    pop di
    mov si, s_msr
    call puts
    mov bx, MSRS
    mov cx, 7
msr_hi:
    mov al, es:[bx]
    and al, 0xf0
    call hex
    inc bx
    loop msr_hi
    mov dx, MSR
    call show
    call nl
    mov si, s_deltas
    call puts
    mov bx, MSRS
    mov cx, 7
msr_lo:
    mov al, es:[bx]
    and al, 0x0f
    call hex
    inc bx
    loop msr_lo
    call nl
    mov si, s_msi
    call puts
    mov al, es:[MSRS + 8]
    call hex
    mov al, es:[MSRS + 9]
    call hex
    call nl
    call flush

    ; 8. character timeout at 115200 baud
    mov si, s_cti
    call puts
    mov dx, LCR
    mov al, 0x83
    out dx, al
    mov dx, COM1
    mov al, 0x01
    out dx, al
    mov dx, COM1 + 1
    xor al, al
    out dx, al
    mov dx, LCR
    mov al, 0x03
    out dx, al
    mov dx, IER
    mov al, 0x01
    out dx, al
    mov dx, FCR
    mov al, 0x47
    out dx, al
    mov dx, MCR
    mov al, 0x19
    out dx, al
    mov dx, COM1
    mov al, 'x'
    out dx, al
    mov al, 'y'
    out dx, al
    mov dx, IIR
    call show
    mov bx, 60000           ; at most 60000 polls, 5000 instructions apart
cti_poll:
    call delay
    in al, dx
    cmp al, 0xcc
    je cti_seen
    dec bx
    jnz cti_poll
cti_seen:
    call hex
    mov al, ' '
    stosb
    mov cx, 1
    call drain
    mov dx, IIR
    call show
    mov al, ' '
    stosb
    mov cx, 1
    call drain
    mov dx, LSR
    call show
    call nl
    mov dx, MCR
    mov al, 0x09
    out dx, al
    mov dx, IER
    xor al, al
    out dx, al
    call flush

    ; 9. input from outside, under RTS
    mov si, s_rx
    call puts
    mov dx, FCR
    mov al, 0x07
    out dx, al
    mov dx, MCR
    mov al, 0x0b            ; RTS, DTR, OUT2
    out dx, al
    mov bx, 20              ; give up after 20 quiet polls (1.15 characters)
    mov bp, 32              ; and after 32 bytes
rx_poll:
    mov dx, LSR
    in al, dx
    test al, 0x01
    jz rx_quiet
    mov dx, RBR
    in al, dx
    call hex
    mov bx, 20
    dec bp
    jz rx_done
    jmp rx_poll
rx_quiet:
    call delay
    dec bx
    jnz rx_poll
rx_done:
    mov dx, MCR
    mov al, 0x09
    out dx, al
    call nl
    mov si, s_done
    call puts
    call flush

    poweroff

; delay: about 5000 instructions, in few blocks (a loop of one short
; block would cost the engines a hook per turn)
delay:
    mov cx, 10
delay_turn:
    .fill 498, 1, 0x90      ; nop
    dec cx
    jnz delay_turn
    ret

; mcr_msr: write AL to MCR (DX), read MSR into es:[di++]
mcr_msr:
    mov dx, MCR
    out dx, al
    mov dx, MSR
    in al, dx
    stosb
    ret

; drain: read CX bytes from RBR into the buffer as they are
drain:
    mov dx, RBR
drain_next:
    in al, dx
    stosb
    loop drain_next
    ret

; show: " xx", the byte read from port DX
show:
    in al, dx
    ; fall through
; hex: " xx" of AL
hex:
    push ax
    mov al, ' '
    stosb
    pop ax
    push ax
    shr al, 4
    call nibble
    pop ax
    push ax
    and al, 0x0f
    call nibble
    pop ax
    ret
nibble:
    cmp al, 10
    jb digit
    add al, 'a' - 10
    stosb
    ret
digit:
    add al, '0'
    stosb
    ret

; puts: the zero-terminated string at DS:SI
puts:
    lodsb
    test al, al
    jz puts_end
    stosb
    jmp puts
puts_end:
    ret

nl:
    mov al, 10
    stosb
    ret

; flush: send the buffer to COM1 (polling THRE) and empty it
flush:
    mov si, BUF
flush_next:
    cmp si, di
    jae flush_end
    wait_thre
    mov al, es:[si]
    inc si
    mov dx, COM1
    out dx, al
    jmp flush_next
flush_end:
    mov di, BUF
    ret

s_reset:    .asciz "reset iir lcr mcr lsr msr scr:"
s_scr:      .asciz "scr:"
s_dlab:     .asciz "dlab dll dlm, dll dlm, ier lcr:"
s_fifo:     .asciz "fifo iir:"
s_trig:     .asciz "trigger 4 iir iir lsr, data, iir lsr:"
s_over:     .asciz "overrun iir iir lsr lsr iir, data, lsr:"
s_msr:      .asciz "loop msr:"
s_deltas:   .asciz "loop deltas:"
s_msi:      .asciz "msi iir:"
s_cti:      .asciz "cti iir, polled, data, iir, data, lsr:"
s_rx:       .asciz "rx:"
s_done:     .asciz "done\n"
