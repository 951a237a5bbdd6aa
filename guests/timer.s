; timer: the PIT's IRQ0 through the virtual PIC, in real mode, with HLT.
;
; It knows nothing of Xen. It programs the two 8259s (vectors 0x20-0x2f,
; only IRQ0 unmasked) and PIT counter 0 (mode 2, rate generator, count 1193:
; about 1 kHz), installs an IVT handler for vector 0x20, enables interrupts
; and halts. Each tick the handler stamps the ACPI PM timer (3.58 MHz) into
; low RAM, counts the tick and sends a non-specific EOI. Between ticks the
; main loop prints every tick it has not printed yet, with its stamp, with
; interrupts disabled around the printing (a tick that arrives meanwhile
; waits in the PIC and is taken after STI, never lost). After TICKS ticks it
; masks the timer, prints the count and powers off.
;
; Under the model the clock is the instruction count plus a microsecond per
; port access (spec/clock.py), so every stamp, and the instruction count of
; every injection, is the same on every engine.

%include "lib/all.s"

PM_TMR      = 0x1f48
TICKS       = 10
PIT_COUNT   = 1193
VECTOR      = 0x20
IVT_VECTOR  = 0x80              ; VECTOR * 4 (keystone misreads a product inside [])
; variables in low RAM (the ROM is read-only on real machines)
TICK_COUNT  = 0x600
PRINTED     = 0x602
STAMPS      = 0x610

start:
    real_mode_start es=1
    mov word ptr [TICK_COUNT], 0
    mov word ptr [PRINTED], 0
    ivt_set IVT_VECTOR, irq0

    ; the PIC pair: ICW1 (edge, cascade, ICW4), ICW2 (vector base),
    ; ICW3 (slave on IRQ2), ICW4 (8086 mode); then OCW1 masks
    pic_init VECTOR, VECTOR + 8, master_first=1

    ; PIT counter 0: lobyte then hibyte, mode 2
    pit_init PIT_COUNT

    mov si, banner
    call puts
    sti
idle:
    hlt                         ; sleeps until IRQ0; the handler returns here
    cli
print_more:
    mov bx, [PRINTED]
    cmp bx, [TICK_COUNT]
    jae printed_all
    inc bx
    mov [PRINTED], bx
    mov si, tick_text
    call puts
    mov ax, bx
    call put_dec2
    mov si, at_text
    call puts
    dec bx
    shl bx, 2
    mov eax, [STAMPS + bx]
    call put_hex32
    mov al, 10
    call putc
    jmp print_more
printed_all:
    cmp word ptr [PRINTED], TICKS
    jae done
    sti
    jmp idle

done:
    mov al, 0xff                ; mask the timer
    out 0x21, al
    mov si, total_text
    call puts
    mov ax, [TICK_COUNT]
    call put_dec2
    mov si, ticks_text
    call puts
    poweroff

; IRQ0: stamp, count, EOI
irq0:
    push eax
    push bx
    push dx
    mov bx, [TICK_COUNT]
    cmp bx, 16
    jae irq0_counted            ; room for 16 stamps
    shl bx, 2
    mov dx, PM_TMR
    in eax, dx
    mov [STAMPS + bx], eax
irq0_counted:
    inc word ptr [TICK_COUNT]
    pic_eoi                     ; OCW2: non-specific EOI
    pop dx
    pop bx
    pop eax
    iret

; --- serial output ----------------------------------------------------------

    serial_putc                 ; al
    serial_puts                 ; cs:si, NUL-terminated
    put_dec2                    ; ax < 100, two digits
    put_hex_eax put_hex32       ; eax, eight hex digits

banner:
    .ascii "timer: PIT at 1 kHz on IRQ0, vector 0x20\n"
    .byte 0
tick_text:
    .ascii "tick "
    .byte 0
at_text:
    .ascii " at pmtmr "
    .byte 0
total_text:
    .ascii "timer: "
    .byte 0
ticks_text:
    .ascii " ticks\n"
    .byte 0
