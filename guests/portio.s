; portio: every shape of port I/O that the VMM turns into an ioreq.
;
; Real mode from the reset vector, like hello. Each step prints what it read
; or moved to COM1, so that the serial output shows the result:
;
;   1. OUT with an immediate port to a port no device claims (0xe9): the
;      write is dropped (Xen prints the byte on its console first: a
;      firmware_log event); IN from an unclaimed port (0x2e0) reads all-ones,
;      at byte, word and dword size (printed as the top byte of each).
;   2. A word OUT to the UART's MSR/SCR pair (0x3fe): the byte-only device
;      gets two byte accesses; the SCR keeps the high byte ('A').
;   3. `rep outsb` with DF=1: the string goes out backwards ("olleh" is
;      printed as "hello"); one ioreq, data_is_ptr=1, df=1, count=5.
;   4. `rep outsb` over a page boundary (0x1ffb..0x2004): two ioreqs, 5 + 5.
;   5. `rep outsw` whose first word straddles a page boundary (0x1fff): that
;      word goes by value, the next by pointer.
;   6. `rep insb` from the SCR into RAM, then out again ("ZZZ").
;   7. `rep outsb` with CX = 0: completes without an ioreq.
;   8. Power off through ACPI PM1a_CNT.

%include "lib/all.s"

UNCLAIMED   = 0x2e0

start:
    real_mode_start rom_data=1, es=1

    ; 1. unclaimed ports
    mov al, 'x'
    out 0xe9, al
    mov dx, UNCLAIMED
    in al, dx
    call putc
    mov dx, UNCLAIMED
    in ax, dx
    mov al, ah
    call putc
    mov dx, UNCLAIMED
    in eax, dx
    shr eax, 24
    call putc

    ; 2. a word to a byte device
    mov dx, 0x3fe
    mov ax, 0x4100
    out dx, ax
    mov dx, 0x3ff
    in al, dx
    call putc

    ; 3. backwards
    mov si, backwards_end - 1
    mov cx, backwards_end - backwards
    mov dx, COM1
    std
    rep outsb
    cld

    ; 4. across a page boundary
    mov di, 0x1ffb
    mov cx, 10
    mov al, 'a'
fill:
    mov es:[di], al
    inc di
    inc al
    loop fill
    push ds
    xor ax, ax
    mov ds, ax
    mov si, 0x1ffb
    mov cx, 10
    mov dx, COM1
    rep outsb

    ; 5. a straddling word goes by value
    mov word ptr es:[0x1fff], 0x4241
    mov word ptr es:[0x2001], 0x4443
    mov si, 0x1fff
    mov cx, 2
    mov dx, 0x3fe
    rep outsw
    pop ds
    mov dx, 0x3ff
    in al, dx
    call putc

    ; 6. rep insb into RAM, then out again
    mov dx, 0x3ff
    mov al, 'Z'
    out dx, al
    mov di, 0x500
    mov cx, 3
    rep insb
    push ds
    xor ax, ax
    mov ds, ax
    mov si, 0x500
    mov cx, 3
    mov dx, COM1
    rep outsb
    pop ds

    ; 7. a zero count
    xor cx, cx
    rep outsb
    mov al, 10
    call putc

    ; 8. power off
    poweroff

putc:                       ; AL to COM1 (the transmitter is always ready here)
    mov dx, COM1
    out dx, al
    ret

backwards:
    .ascii "olleh"
backwards_end:
