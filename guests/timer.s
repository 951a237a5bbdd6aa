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

COM1        = 0x3f8
COM1_LSR    = COM1 + 5
LSR_THRE    = 0x20
PM_TMR      = 0x1f48
PM1A_CNT    = 0x1f44
SLP_S5_EN   = (7 << 10) | (1 << 13)
TICKS       = 10
PIT_COUNT   = 1193
VECTOR      = 0x20
IVT_VECTOR  = 0x80              ; VECTOR * 4 (keystone misreads a product inside [])
; variables in low RAM (the ROM is read-only on real machines)
TICK_COUNT  = 0x600
PRINTED     = 0x602
STAMPS      = 0x610

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7000
    mov word ptr [TICK_COUNT], 0
    mov word ptr [PRINTED], 0
    mov word ptr [IVT_VECTOR], irq0
    mov word ptr [IVT_VECTOR + 2], 0xf000

    ; the PIC pair: ICW1 (edge, cascade, ICW4), ICW2 (vector base),
    ; ICW3 (slave on IRQ2), ICW4 (8086 mode); then OCW1 masks
    mov al, 0x11
    out 0x20, al
    mov al, VECTOR
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0x11
    out 0xa0, al
    mov al, VECTOR + 8
    out 0xa1, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0xa1, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0xff
    out 0xa1, al

    ; PIT counter 0: lobyte then hibyte, mode 2
    mov al, 0x34
    out 0x43, al
    mov al, PIT_COUNT & 0xff
    out 0x40, al
    mov al, PIT_COUNT >> 8
    out 0x40, al

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
    mov dx, PM1A_CNT
    mov ax, SLP_S5_EN
    out dx, ax
halt:
    hlt
    jmp halt

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
    mov al, 0x20                ; OCW2: non-specific EOI
    out 0x20, al
    pop dx
    pop bx
    pop eax
    iret

; --- serial output ----------------------------------------------------------

putc:                           ; al
    push dx
    push ax
    mov dx, COM1_LSR
putc_wait:
    in al, dx
    test al, LSR_THRE
    jz putc_wait
    pop ax
    mov dx, COM1
    out dx, al
    pop dx
    ret

puts:                           ; cs:si, NUL-terminated
    mov al, cs:[si]
    inc si
    test al, al
    jz puts_done
    call putc
    jmp puts
puts_done:
    ret

put_dec2:                       ; ax < 100, two digits
    mov dl, 10
    div dl
    push ax
    add al, '0'
    call putc
    pop ax
    mov al, ah
    add al, '0'
    call putc
    ret

put_hex32:                      ; eax, eight hex digits
    mov cx, 8
hex_next:
    rol eax, 4
    push eax
    and al, 0x0f
    add al, '0'
    cmp al, '9'
    jbe hex_digit
    add al, 'a' - '0' - 10
hex_digit:
    call putc
    pop eax
    loop hex_next
    ret

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
