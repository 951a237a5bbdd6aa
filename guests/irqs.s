; irqs: masking interrupt lines and toggling IF around critical sections.
;
; Real mode, PIC vectors 0x20-0x2f, the PIT at about 59.7 kHz (count 20,
; mode 3) on IRQ0 and COM1's transmitter interrupt on IRQ4. Each step
; prints what it saw, so that a lost, duplicated or early interrupt changes
; the output:
;
;   1. IF toggling: a critical section (CLI ... STI) longer than two timer
;      periods takes no tick; the ticks that fell due meanwhile wait in the
;      PIC as one request (an edge-triggered IRR bit) and arrive as exactly
;      one interrupt, one instruction after the STI (the interrupt shadow).
;   2. Line masking: with IRQ0 masked in the IMR (OCW1) and IF = 1, no tick
;      arrives, yet IRR bit 0 (read with OCW3) shows the latched request;
;      unmasking delivers exactly one.
;   3. Interrupt-driven output: with IER.THRI set, each transmitter-empty
;      interrupt on IRQ4 sends the next byte of a line from the handler,
;      which ends each interrupt with a specific EOI (OCW2, IRQ4).
;   4. Priority: with both lines requesting, IRQ0 is served before IRQ4.

%include "lib/all.s"

COM1_IER    = COM1 + 1
COM1_IIR    = COM1 + 2
PIT_COUNT   = 20
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
    mov al, 0x36                    ; counter 0, lobyte/hibyte, mode 3
    out 0x43, al
    mov al, PIT_COUNT
    out 0x40, al
    xor al, al
    out 0x40, al

    ; --- 1. a critical section ------------------------------------------------
    halt_while word ptr [TICKS], 3, jb
    mov bx, [TICKS]                 ; ticks before
    mov cx, 40000                   ; about 2.4 timer periods (16762 instructions each)
busy1:
    loop busy1
    mov dx, [TICKS]                 ; ticks during (must equal before)
    sti
    mov si, [TICKS]                 ; in the shadow: still no tick
    mov di, [TICKS]                 ; after it: exactly one more
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
    mov cx, 40000
busy2:
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
    mov cx, 20000                   ; and IRQ0 falls due meanwhile
busy4:
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
