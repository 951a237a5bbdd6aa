; lib/all.s: the whole guest library. Its files define constants and macros
; only: nothing is assembled until a guest invokes a macro, so a guest
; includes all of it and takes what it uses.

%include "serial.s"            ; COM1, wait_thre, serial_ier, serial_write, serial_putc, serial_puts
%include "digits.s"            ; hex_digit, put_hex, put_hex_eax, put_dec, put_dec2
%include "pic.s"               ; pic_init, pic_mask, pic_eoi, pit_init, halt_while
%include "idt.s"               ; ivt_set, gate32, gate64
%include "pm32.s"              ; pm32_jump, pm32_start, enter_pm32, flat_gdt
%include "longmode.s"          ; enter_long_mode
%include "realmode.s"          ; real_mode_start
%include "vga.s"               ; crtc_pair
%include "poweroff.s"          ; PM1A_CNT, halt_forever, poweroff
