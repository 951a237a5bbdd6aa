; platform: qemu-dm's platform devices, as a BIOS would meet them.
;
; Real mode from the reset vector, then 32-bit protected mode for the MMIO
; part. Every result goes to COM1 (polling LSR.THRE):
;
;   1. PCI: scan bus 0 with configuration mechanism #1 (0xcf8/0xcfc) and
;      print each function's vendor:device and class (functions 1-7 only of
;      a multi-function device, header type bit 7);
;   2. CMOS: register D, the base and extended memory size bytes;
;   3. RTC: wait until UIP is clear, print the date and time (BCD, with the
;      century at 0x32): 2026-01-01 00:00:00 on hvmspec's virtual clock;
;   4. RTC periodic interrupt: rate 6 (1024 Hz), PIE on, IRQ8 unmasked on
;      the slave PIC (vector 0x70); three interrupts, each acknowledged by
;      reading register C, whose last value is printed (IRQF | PF = c0);
;   5. the 8042's self-test (0xaa -> 0x55) and its status afterwards;
;   6. port 0x80: a POST code written, then read back; on Xen the port is
;      not intercepted, so neither access leaves the guest;
;   7. an unknown port (0x1234): reads all-ones;
;   8. the test device 00:03.0: memory decode off, BAR0 read, sized (write
;      all-ones, read the mask), moved to 0xfeb10000, decode on;
;   9. protected mode: a write and a read at the new place, a read at the old
;      place (nothing there now: all-ones), then power-off.

%include "lib/all.s"

PCI_ADDR    = 0xcf8
PCI_DATA    = 0xcfc
TESTDEV     = 0x80001800            ; bus 0, device 3, function 0
OLD_BASE    = 0xfeb00000
NEW_BASE    = 0xfeb10000
IVT_IRQ8    = 0x70 * 4
TICKS       = 0x600
LAST_C      = 0x602
HEADER      = 0x604

start:
    real_mode_start
    mov si, banner
    call puts

    ; --- 1. PCI bus 0 ------------------------------------------------------------
    xor ebx, ebx                    ; ebx = device << 11 | function << 8
pci_next:
    mov eax, ebx
    or eax, 0x80000000
    call pci_read                   ; vendor and device
    cmp ax, 0xffff
    je pci_absent
    push eax
    mov si, pci_text
    call puts
    mov eax, ebx
    shr eax, 11
    call put_hex8                   ; device
    mov al, '.'
    call putc
    mov eax, ebx
    shr eax, 8
    and al, 7
    add al, '0'
    call putc
    mov al, ' '
    call putc
    pop eax
    push eax
    call put_hex16                  ; vendor
    mov al, ':'
    call putc
    pop eax
    shr eax, 16
    call put_hex16                  ; device id
    mov si, class_text
    call puts
    mov eax, ebx
    or eax, 0x80000008
    call pci_read
    shr eax, 8
    push eax
    shr eax, 16
    call put_hex8
    pop eax
    call put_hex16
    mov al, 10
    call putc
    test bh, 7                      ; function 0: remember the header type
    jnz pci_step
    mov eax, ebx
    or eax, 0x8000000c
    call pci_read
    shr eax, 16
    mov [HEADER], al
    jmp pci_step
pci_absent:
    test bh, 7
    jnz pci_step
    mov byte ptr [HEADER], 0        ; no function 0: no device
pci_step:
    test bh, 7
    jnz pci_next_fn
    test byte ptr [HEADER], 0x80
    jnz pci_next_fn
    add ebx, 0x800                  ; single-function: the next device
    jmp pci_more
pci_next_fn:
    add ebx, 0x100
pci_more:
    cmp ebx, 0x10000
    jb pci_next

    ; --- 2. CMOS ----------------------------------------------------------------
    mov si, cmos_text
    call puts
    mov al, 0x0d
    call cmos_read
    call put_hex8
    mov si, base_text
    call puts
    mov al, 0x16
    call cmos_read
    call put_hex8
    mov al, 0x15
    call cmos_read
    call put_hex8
    mov si, ext_text
    call puts
    mov al, 0x31
    call cmos_read
    call put_hex8
    mov al, 0x30
    call cmos_read
    call put_hex8
    mov al, 10
    call putc

    ; --- 3. date and time -----------------------------------------------------------
uip_wait:
    mov al, 0x0a
    call cmos_read
    test al, 0x80
    jnz uip_wait
    mov si, rtc_text
    call puts
    mov al, 0x32
    call cmos_put
    mov al, 0x09
    call cmos_put
    mov al, '-'
    call putc
    mov al, 0x08
    call cmos_put
    mov al, '-'
    call putc
    mov al, 0x07
    call cmos_put
    mov al, ' '
    call putc
    mov al, 0x04
    call cmos_put
    mov al, ':'
    call putc
    mov al, 0x02
    call cmos_put
    mov al, ':'
    call putc
    mov al, 0x00
    call cmos_put
    mov al, 10
    call putc

    ; --- 4. periodic interrupt on IRQ8 --------------------------------------------
    mov word ptr [TICKS], 0
    ivt_set IVT_IRQ8, rtc_irq
    ; ICW1..ICW4: master at 0x08, slave at 0x70; master: the cascade (IRQ2)
    ; only, slave: IRQ8 only
    pic_init 0x08, 0x70, 0xfb, 0xfe, master_first=1
    mov al, 0x0a                    ; A: 32.768 kHz, rate 6 (1024 Hz)
    mov ah, 0x26
    call cmos_write
    mov al, 0x0c                    ; clear any old flags
    call cmos_read
    mov al, 0x0b                    ; B: PIE, 24-hour, BCD
    mov ah, 0x42
    call cmos_write
    halt_while word ptr [TICKS], 3, jb
    mov al, 0x0b                    ; PIE off
    mov ah, 0x02
    call cmos_write
    mov si, irq8_text
    call puts
    mov al, [LAST_C]
    call put_hex8
    mov al, 10
    call putc

    ; --- 5. keyboard controller self-test -------------------------------------------
    mov al, 0xaa
    out 0x64, al
kbc_wait:
    in al, 0x64
    test al, 1
    jz kbc_wait
    in al, 0x60
    push ax
    mov si, kbc_text
    call puts
    pop ax
    call put_hex8
    mov si, status_text
    call puts
    in al, 0x64
    call put_hex8
    mov al, 10
    call putc

    ; --- 6. and 7. port 0x80 and an unknown port ---------------------------------------
    mov al, 0x42
    out 0x80, al
    in al, 0x80
    push ax
    mov si, post_text
    call puts
    pop ax
    call put_hex8
    mov si, unknown_text
    call puts
    mov dx, 0x1234
    in al, dx
    call put_hex8
    mov al, 10
    call putc

    ; --- 8. the test device's BAR0 ---------------------------------------------------------
    mov eax, TESTDEV | 0x04         ; command: memory decode off
    mov dx, PCI_ADDR
    out dx, eax
    mov dx, PCI_DATA
    xor ax, ax
    out dx, ax
    mov si, bar_text
    call puts
    mov eax, TESTDEV | 0x10
    call pci_read
    call put_hex32
    mov eax, 0xffffffff
    call bar_write
    mov si, mask_text
    call puts
    mov eax, TESTDEV | 0x10
    call pci_read
    call put_hex32
    mov eax, NEW_BASE
    call bar_write
    mov si, moved_text
    call puts
    mov eax, TESTDEV | 0x10
    call pci_read
    call put_hex32
    mov al, 10
    call putc
    mov eax, TESTDEV | 0x04         ; memory decode on
    mov dx, PCI_ADDR
    out dx, eax
    mov dx, PCI_DATA
    mov ax, 2
    out dx, ax

    ; --- 9. protected mode: the device at its new place ----------------------------------
    pm32_jump                       ; to pm32 below

; --- real-mode helpers ------------------------------------------------------------------

pci_read:                           ; eax = address -> eax = the dword
    push dx
    mov dx, PCI_ADDR
    out dx, eax
    mov dx, PCI_DATA
    in eax, dx
    pop dx
    ret

bar_write:                          ; eax -> BAR0 of the test device
    push eax
    mov eax, TESTDEV | 0x10
    mov dx, PCI_ADDR
    out dx, eax
    pop eax
    mov dx, PCI_DATA
    out dx, eax
    ret

cmos_read:                          ; al = index -> al
    out 0x70, al
    in al, 0x71
    ret

cmos_write:                         ; al = index, ah = value
    out 0x70, al
    mov al, ah
    out 0x71, al
    ret

cmos_put:                           ; print the BCD byte at index al
    call cmos_read
    jmp put_hex8

rtc_irq:
    push ax
    mov al, 0x0c
    out 0x70, al
    in al, 0x71                     ; reading C lowers IRQ8
    mov [LAST_C], al
    inc word ptr [TICKS]
    mov al, 0x20
    out 0xa0, al                    ; EOI, slave then master
    out 0x20, al
    pop ax
    iret

    serial_putc                     ; al
    serial_puts                     ; cs:si, NUL-terminated

put_hex32:                          ; eax
    push eax
    shr eax, 16
    call put_hex16
    pop eax
put_hex16:                          ; ax
    push ax
    mov al, ah
    call put_hex8
    pop ax
put_hex8:                           ; al
    push ax
    shr al, 4
    call put_nibble
    pop ax
put_nibble:                         ; al's low four bits
    push ax
    hex_digit
    call putc
    pop ax
    ret

; --- 32-bit part ------------------------------------------------------------------------
    pm32_start
    mov dword ptr [NEW_BASE], 0x12345678
    lea esi, [0xf0000 + new_text]
    call puts32
    mov eax, [NEW_BASE]
    call hex32
    lea esi, [0xf0000 + old_text]
    call puts32
    mov eax, [OLD_BASE]
    call hex32
    mov al, 10
    call putc32
    poweroff

    serial_putc putc32, w=e
    serial_puts puts32, at=[esi], w=e, putc=putc32  ; esi, NUL-terminated
    put_hex_eax hex32, w=e, putc=putc32             ; eax, eight digits

banner:
    .ascii "platform: qemu-dm's platform devices\n"
    .byte 0
pci_text:
    .ascii "pci 00:"
    .byte 0
class_text:
    .ascii " class "
    .byte 0
cmos_text:
    .ascii "cmos D "
    .byte 0
base_text:
    .ascii " base "
    .byte 0
ext_text:
    .ascii " ext "
    .byte 0
rtc_text:
    .ascii "rtc "
    .byte 0
irq8_text:
    .ascii "rtc irq8 x3, C "
    .byte 0
kbc_text:
    .ascii "kbc self-test "
    .byte 0
status_text:
    .ascii " status "
    .byte 0
post_text:
    .ascii "port80 "
    .byte 0
unknown_text:
    .ascii " port1234 "
    .byte 0
bar_text:
    .ascii "testdev bar0 "
    .byte 0
mask_text:
    .ascii " mask "
    .byte 0
moved_text:
    .ascii " moved "
    .byte 0
new_text:
    .ascii "testdev at new bar "
    .byte 0
old_text:
    .ascii " at old bar "
    .byte 0
    flat_gdt
