; irqs: masking interrupt lines and toggling IF around critical sections.
;
; Real mode, PIC vectors 0x20-0x2f, the PIT at 1 kHz (count 1193, mode 2)
; on IRQ0 and COM1's transmitter interrupt on IRQ4. Mode 2, because Xen
; 3.0.4's PIT makes IRQ0 only for counter 0 in mode 2 (or 1), never in
; mode 3, and no faster than every 0.9 ms (spec/devices/pit.py). The busy
; loops below therefore wait milliseconds; they spend them on the bus, with
; OUT to port 0x80 (the I/O delay port: no exit, a microsecond each,
; spec/clock.py), rather than on millions of instructions. Each step
; prints what it saw, so that a lost, duplicated or early interrupt changes
; the output:
;
;   1. IF toggling: a critical section (CLI ... STI) longer than two timer
;      periods takes no tick; the first tick arrives one instruction after
;      the STI (the interrupt shadow). The ticks that fell due meanwhile
;      wait in Xen as pending ticks (on a PC they would be one request, an
;      edge-triggered IRR bit): Xen 3.0.4 delivers every one of them, one
;      after another (its missed-tick catch-up), so two arrive.
;   2. Line masking: with IRQ0 masked in the IMR (OCW1) and IF = 1, no tick
;      arrives, yet IRR bit 0 (read with OCW3) shows the latched request;
;      unmasking delivers the ticks missed meanwhile (two, as in step 1).
;   3. Interrupt-driven output: with IER.THRI set, each transmitter-empty
;      interrupt on IRQ4 sends the next byte of a line from the handler,
;      which ends each interrupt with a specific EOI (OCW2, IRQ4).
;   4. Priority: with both lines requesting, IRQ0 is served before IRQ4.

%include "lib/all.s"

COM1_IER    = COM1 + 1
COM1_IIR    = COM1 + 2
PIT_COUNT   = 1193
IVT_IRQ0    = 0x80                  ; vector 0x20 * 4
IVT_IRQ4    = 0x90                  ; vector 0x24 * 4
TICKS       = 0x600
TXPOS       = 0x602
TXDONE      = 0x604
ORDER       = 0x606                 ; which handler ran first in step 4
ORDERPOS    = 0x60a

; print_popped: the text TEXT, then the value on the stack, in decimal
.macro print_popped text
    mov si, \text
    call puts
    pop ax
    call put_dec2
.endm

start:
    real_mode_start
    mov word ptr [TICKS], 0
    mov word ptr [TXDONE], 0
    mov word ptr [ORDERPOS], ORDER
    ivt_set IVT_IRQ0, irq0
    ivt_set IVT_IRQ4, irq4

    pic_init                        ; ICW1..ICW4, both controllers; IRQ0 only
    pit_init PIT_COUNT              ; counter 0, lobyte/hibyte, mode 2

    ; --- 1. a critical section ------------------------------------------------
    halt_while word ptr [TICKS], 3, jb
    mov bx, [TICKS]                 ; ticks before
    mov cx, 2400                    ; about 2.4 timer periods (999,848 ns each)
busy1:
    out 0x80, al
    loop busy1
    mov dx, [TICKS]                 ; ticks during (must equal before)
    sti
    mov si, [TICKS]                 ; in the shadow: still no tick
    mov di, [TICKS]                 ; after it: the missed ticks (Xen catches up)
    cli
    push di
    push si
    push dx
    push bx
    print_popped text_critical
    print_popped text_during
    print_popped text_shadow
    print_popped text_after
    call newline

    ; --- 2. masking the line ---------------------------------------------------
    mov al, 0xff                    ; mask IRQ0
    out 0x21, al
    mov bx, [TICKS]
    sti
    mov cx, 2400
busy2:
    out 0x80, al
    loop busy2
    cli
    mov dx, [TICKS]
    mov al, 0x0a                    ; OCW3: read IRR
    out 0x20, al
    in al, 0x20
    and ax, 0x01
    push ax
    push dx
    push bx
    mov al, 0xfe                    ; unmask: the latched tick arrives once
    out 0x21, al
    mov al, 0xff
    sti
    nop
    nop
    out 0x21, al                    ; and mask again before the next
    cli
    mov di, [TICKS]
    print_popped text_masked
    print_popped text_during
    print_popped text_irr
    mov si, text_after
    call puts
    mov ax, di
    call put_dec2
    call newline

    ; --- 3. interrupt-driven output on IRQ4 ------------------------------------
    mov word ptr [TXPOS], text_irq4
    pic_mask 0xef                   ; IRQ4 only
    serial_ier 0x02                 ; THRI: THR is empty, so one is due now
    halt_while word ptr [TXDONE], 0, je

    ; --- 4. priority: IRQ0 before IRQ4 ------------------------------------------
    mov word ptr [TXDONE], 0
    mov word ptr [TXPOS], text_empty
    mov word ptr [ORDERPOS], ORDER
    mov al, 0xee                    ; IRQ0 and IRQ4
    out 0x21, al
    serial_ier 0x02                 ; IRQ4 requests now
    mov cx, 1200                    ; and IRQ0 falls due meanwhile
busy4:
    out 0x80, al
    loop busy4
    sti
    nop
    nop
    cli
    mov al, 0xff
    out 0x21, al
    mov si, text_order
    call puts
    mov al, [ORDER]
    call putc
    mov al, [ORDER + 1]
    call putc
    call newline

    poweroff

irq0:
    push ax
    push bx
    inc word ptr [TICKS]
    mov bx, [ORDERPOS]
    cmp bx, ORDER + 2
    jae irq0_eoi
    mov byte ptr [bx], '0'
    inc word ptr [ORDERPOS]
irq0_eoi:
    pic_eoi                         ; non-specific EOI
    pop bx
    pop ax
    iret

irq4:
    push ax
    push bx
    push dx
    push si
    mov bx, [ORDERPOS]
    cmp bx, ORDER + 2
    jae irq4_iir
    mov byte ptr [bx], '4'
    inc word ptr [ORDERPOS]
irq4_iir:
    mov dx, COM1_IIR
    in al, dx                       ; reading IIR clears the THRE interrupt
    and al, 0x0f
    cmp al, 0x02
    jne irq4_eoi
    mov si, [TXPOS]
    mov al, cs:[si]
    test al, al
    jz irq4_last
    inc si
    mov [TXPOS], si
    mov dx, COM1
    out dx, al                      ; the next THRE interrupt follows
    jmp irq4_eoi
irq4_last:
    mov word ptr [TXDONE], 1
    mov dx, COM1_IER
    xor al, al
    out dx, al
irq4_eoi:
    pic_eoi 0x64                    ; OCW2: specific EOI, IRQ4
    pop si
    pop dx
    pop bx
    pop ax
    iret

    serial_putc

newline:
    mov al, 10
    jmp putc

    serial_puts

    put_dec2 tail=1

text_critical:
    .ascii "critical section: ticks before "
    .byte 0
text_during:
    .ascii ", during "
    .byte 0
text_shadow:
    .ascii ", in the STI shadow "
    .byte 0
text_after:
    .ascii ", after "
    .byte 0
text_masked:
    .ascii "IRQ0 masked: ticks before "
    .byte 0
text_irr:
    .ascii ", IRR bit 0 "
    .byte 0
text_irq4:
    .ascii "this line was sent by the THRE interrupt, a byte per IRQ4\n"
    .byte 0
text_empty:
    .byte 0
text_order:
    .ascii "both pending, served in the order "
    .byte 0
