; kbdecho: what a person types on the PS/2 keyboard, echoed to COM1 and the text screen.
;
; Real mode from the reset vector, no firmware. The guest sets the 8042's
; command byte to 0x41 (IRQ1 on, translation to scan-code set 1 on; the
; keyboard itself sends set 2, its power-on set), unmasks IRQ1 alone at the
; PIC and halts. Each IRQ1 reads one byte from port 0x60:
;
;   * a break code (bit 7 set) is ignored;
;   * the make codes of the letters, digits, Space and Enter are translated
;     to ASCII (lower case: Shift is not followed) and echoed to COM1 and
;     to the text screen (Enter: a new line on both);
;   * Esc powers the domain off, after "bye" on COM1 (the screen is left
;     as it was: a screenshot at the end shows what was typed);
;   * any other code is ignored.
;
; The first line, "kbdecho: ready", on COM1 and on the screen's first
; row, says that the 8042 is set up: keys sent from then on arrive as set
; 1 codes. With `hvmspec run --vnc :N kbdecho` a VNC client types into it;
; without input it halts for ever (a run without --vnc ends as hung).

%include "lib/all.s"

IVT_IRQ1    = 0x24                  ; vector 9 (the master's base 8) * 4
TEXT_SEG    = 0xb800
ATTR        = 0x07                  ; light grey on black
ROW_BYTES   = 160
TABLE_SIZE  = 0x3a                  ; the table's codes: 0x00-0x39

start:
    real_mode_start rom_data=1, es=1    ; DS: this ROM (the table); ES: the IVT
    ivt_set IVT_IRQ1, irq1, es:
    pic_init master=0x08, master_mask=0xfd  ; IRQ1 only
    mov al, 0x60                    ; write the command byte:
    out 0x64, al
    mov al, 0x41                    ; translate to set 1, IRQ1
    out 0x60, al
    mov ax, TEXT_SEG
    mov es, ax
    xor bp, bp                      ; BP: the screen position (the handler's)
    mov si, s_ready
    call say
    mov al, 10
    call echo
idle:
    sti
    hlt
    jmp idle

irq1:
    push ax
    push bx
    push si
    in al, 0x60
    test al, 0x80
    jnz irq1_done                   ; a break code
    cmp al, 0x01
    je irq1_esc
    cmp al, TABLE_SIZE
    jae irq1_done
    mov bx, table
    xlatb
    test al, al
    jz irq1_done
    call echo
irq1_done:
    mov al, 0x20                    ; non-specific EOI
    out 0x20, al
    pop si
    pop bx
    pop ax
    iret
irq1_esc:
    mov si, s_bye
    serial_write
    poweroff

; say: the NUL-terminated string at DS:SI through echo
say:
    lodsb
    test al, al
    jz say_done
    call echo
    jmp say
say_done:
    ret

; echo: AL to COM1 and to the screen at BP (10: a new line on both)
echo:
    push dx
    push ax
    wait_thre
    pop ax
    push ax
    mov dx, COM1
    out dx, al
    cmp al, 10
    je echo_newline
    mov ah, ATTR
    mov es:[bp], ax
    add bp, 2
    jmp echo_done
echo_newline:
    mov ax, bp                      ; BP up to the next row's start
    xor dx, dx
    mov bx, ROW_BYTES
    div bx
    inc ax
    cmp ax, 25
    jb echo_row
    xor ax, ax                      ; past the last row: back to the top
echo_row:
    mul bx
    mov bp, ax
echo_done:
    pop ax
    pop dx
    ret

s_ready:    .asciz "kbdecho: ready"
s_bye:      .asciz "\nbye\n"

; set 1 make codes 0x00-0x39 -> ASCII (0: not echoed)
table:
    .byte 0, 0, '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', 0, 0, 0, 0
    .byte 'q', 'w', 'e', 'r', 't', 'y', 'u', 'i', 'o', 'p', 0, 0, 10, 0, 'a', 's'
    .byte 'd', 'f', 'g', 'h', 'j', 'k', 'l', 0, 0, 0, 0, 0, 'z', 'x', 'c', 'v'
    .byte 'b', 'n', 'm', 0, 0, 0, 0, 0, 0, ' '
