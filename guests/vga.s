; vga: coloured text, scrolling and cursor moves on qemu-dm's text screen.
;
; It knows nothing of Xen. Its writes to the text window at 0xB8000 are
; plain stores into qemu-dm's video memory, which Xen maps into the guest:
; they cause no exit (only the first write to a page after each display
; refresh is a log-dirty fault that Xen handles itself). Only the VGA
; registers (CRTC at 0x3D4/0x3D5) are port I/O. qemu-dm's display scanner
; finds the changes once per refresh period; the trace records each update.
;
;   1. A white-on-blue screen with a title row and a colour bar (16
;      foreground colours on black, 8 background colours).
;   2. 30 numbered lines written one below the other, a timer tick apart.
;      When a line falls below row 24, the guest scrolls by moving the CRTC
;      start address down one row (80 cells); the cursor follows each line.
;   3. The cursor becomes a block, is switched off and back on, and is
;      parked at row 12, column 40.
;   4. Over COM1: the start address, the cursor location read back from the
;      CRTC, and the input status register; then power off.
;
; The PIT's IRQ0 at about 1 kHz paces the lines (HLT between them), so the
; virtual clock moves past the display refresh period (1 ms) between lines.

%include "lib/all.s"

CRTC_INDEX  = 0x3d4
INPUT_STATUS = 0x3da
PIT_COUNT   = 1193
VECTOR      = 0x20
IVT_VECTOR  = 0x80              ; VECTOR * 4
TEXT_SEG    = 0xb800
LINES       = 30
FIRST_ROW   = 3                 ; the numbered lines start here
; variables in low RAM
TICK_COUNT  = 0x600
LINE_NO     = 0x602
START_ADDR  = 0x604

start:
    real_mode_start
    mov word ptr [TICK_COUNT], 0
    mov word ptr [START_ADDR], 0
    ivt_set IVT_VECTOR, irq0
    call init_pic_pit
    mov ax, TEXT_SEG
    mov es, ax
    mov dx, 0x3c2               ; miscellaneous output: colour I/O addresses (0x3Dx),
    mov al, 0x67                ; as a mode set leaves it
    out dx, al

    ; 1. the blue screen, the title and the colour bar
    xor di, di
    mov ax, 0x1720              ; space, light grey on blue
    mov cx, 80 * 50              ; the screen and the 25 rows it scrolls into
    cld
    rep stosw
    xor di, di
    mov si, title
    mov ah, 0x1f                ; bright white on blue
    call put_text
    mov di, 2 * 80 * 2          ; row 2
    xor bl, bl
bar_fg:
    mov al, 0xdb                ; a full block in the foreground colour
    mov ah, bl
    stosw
    inc bl
    cmp bl, 16
    jb bar_fg
    mov ax, 0x0720
    stosw
    xor bl, bl
bar_bg:
    mov ah, bl
    shl ah, 4
    or ah, 0x0f
    mov al, '0'
    add al, bl
    stosw
    inc bl
    cmp bl, 8
    jb bar_bg
    mov ax, 2 * 80 + 24         ; the cursor after the bar
    call set_cursor
    call wait_tick
    call wait_tick

    ; 2. the numbered lines, scrolling
    mov word ptr [LINE_NO], 1
next_line:
    mov ax, [LINE_NO]
    add ax, FIRST_ROW - 1
    mov bx, ax                  ; the line's row in video memory
    mov dx, 160
    mul dx
    mov di, ax
    mov ah, [LINE_NO]
    and ah, 0x07
    or ah, 0x18                 ; dark grey .. white on blue, by line number
    cmp ah, 0x18
    jne line_colour
    mov ah, 0x1e                ; yellow instead of dark grey
line_colour:
    mov si, line_text
    call put_text
    mov ax, [LINE_NO]
    call put_dec2_screen
    mov si, line_tail
    call put_text
    ; scroll when the row falls below the screen: start = (row - 24) * 80
    cmp bx, 24
    jbe no_scroll
    mov ax, bx
    sub ax, 24
    mov dx, 80
    mul dx
    mov [START_ADDR], ax
    call set_start
no_scroll:
    mov ax, di                  ; the cursor after the line
    shr ax, 1
    call set_cursor
    call wait_tick
    inc word ptr [LINE_NO]
    cmp word ptr [LINE_NO], LINES
    jbe next_line

    ; 3. cursor shapes: a block, off, on again at row 12, column 40
    mov dx, CRTC_INDEX
    mov ax, 0x000a              ; cursor start = scan line 0
    out dx, ax
    call wait_tick
    mov ax, 0x200a              ; bit 5: cursor off
    out dx, ax
    call wait_tick
    mov ax, 0x0e0a              ; an underline again (scan line 14 to the end register, 14)
    out dx, ax
    mov ax, [START_ADDR]
    add ax, 12 * 80 + 40
    call set_cursor
    call wait_tick

    ; 4. report over COM1
    mov si, report_start
    call puts
    mov ax, [START_ADDR]
    call put_hex16
    mov si, report_cursor
    call puts
    mov dx, CRTC_INDEX
    mov al, 0x0e
    out dx, al
    inc dx
    in al, dx
    mov ah, al
    dec dx
    mov al, 0x0f
    out dx, al
    inc dx
    in al, dx
    call put_hex16
    mov si, report_status
    call puts
    mov dx, INPUT_STATUS
    in al, dx
    xor ah, ah
    call put_hex16
    mov al, 10
    call putc
    mov al, 0xff                ; mask the timer
    out 0x21, al
    poweroff

; --- the screen -----------------------------------------------------------------

put_text:                       ; cs:si NUL-terminated, attribute ah, to es:di
    mov al, cs:[si]
    inc si
    test al, al
    jz put_text_done
    stosw
    jmp put_text
put_text_done:
    ret

put_dec2_screen:                ; ax < 100 as two digits at es:di, attribute 0x1f
    mov dl, 10
    div dl
    add ax, 0x3030
    mov dl, ah
    mov ah, 0x1f
    stosw
    mov al, dl
    stosw
    ret

    crtc_pair set_cursor, 0x0e  ; ax = cell address
    crtc_pair set_start, 0x0c   ; ax = start address (cells)

; --- time: IRQ0 at about 1 kHz ---------------------------------------------------

init_pic_pit:
    pic_init VECTOR, VECTOR + 8, master_first=1
    pit_init PIT_COUNT
    ret

wait_tick:                      ; sleep until the next IRQ0
    push ax
    mov ax, [TICK_COUNT]
wait_tick_again:
    sti
    hlt
    cli
    cmp ax, [TICK_COUNT]
    je wait_tick_again
    pop ax
    ret

irq0:
    push ax
    inc word ptr [TICK_COUNT]
    pic_eoi                     ; non-specific EOI
    pop ax
    iret

; --- serial output -----------------------------------------------------------------

    serial_putc                 ; al
    serial_puts                 ; cs:si, NUL-terminated
    put_hex put_hex16, 4, tmp=b ; ax, four hex digits

title:
    .asciz " hvmspec: qemu-dm's VGA, text mode 80x25, shared video memory "
line_text:
    .asciz "line "
line_tail:
    .asciz ": written to video memory; no exit, the scanner finds it"
report_start:
    .asciz "vga: start address "
report_cursor:
    .asciz ", cursor "
report_status:
    .asciz ", input status "
