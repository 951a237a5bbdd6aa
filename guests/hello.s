; hello: the walking-skeleton guest.
;
; Runs in real mode from the reset vector (the loader places a far jump to
; F000:0000 at F000:FFF0). It knows nothing of Xen: it only executes x86
; instructions, and each IN and OUT below is an IOIO exit that the VMM turns
; into an ioreq for qemu-dm.
;
;   1. "Hello from an unmodified guest\n" to COM1, one byte at a time: poll
;      the line status register (LSR, base+5) until THRE (bit 5) is set,
;      then write the byte to THR (base+0) with OUT.
;   2. A second line with one `rep outsb`: one IOIO exit, one ioreq with
;      data_is_ptr=1 and count = the line's length.
;   3. Power off: write SLP_TYP(S5) | SLP_EN to the ACPI PM1a control
;      register (Xen's version-0 location 0x1f44; S5 is SLP_TYP 7).

%include "lib/all.s"

start:
    real_mode_start rom_data=1  ; DS = CS: the strings live in this ROM segment

    mov si, line1
    serial_write            ; poll LSR.THRE, OUT the byte; up to the NUL

    mov si, line2
    mov cx, line2_end - line2
    mov dx, COM1
    cld
    rep outsb

    poweroff

line1:
    .ascii "Hello from an unmodified guest\n"
    .byte 0
line2:
    .ascii "...and this line left in a single rep outsb\n"
line2_end:
