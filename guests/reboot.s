; reboot: a guest that resets the machine as soon as it has said so.
;
; One line to COM1, then the 8042 keyboard controller's pulse-reset command
; (0xFE to port 0x64): qemu-dm asks Xen to shut the domain down with reason
; reboot, and xend acts on the domain's on_reboot. Under `xm create` with
; on_reboot = 'restart' the domain comes back with a new domid, reboots
; again at once, and xend refuses the second restart ("restarting too
; fast"), as Xen 3.x's xend does for a domain that restarts within 20
; seconds of its last restart.

%include "lib/all.s"

KBC_CMD     = 0x64
KBC_RESET   = 0xfe

start:
    cli
    mov ax, cs
    mov ds, ax
    mov si, line
    serial_write
    mov al, KBC_RESET
    out KBC_CMD, al
    halt_forever

line:
    .asciz "reboot: resetting through the keyboard controller\n"
