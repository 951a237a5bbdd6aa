; graphics: four screens drawn through the VGA's own registers, no BIOS.
;
; It knows nothing of Xen and has no VGA BIOS to call: it programs the VGA
; itself, as the LGPL vgabios does for a mode set (its register tables for
; modes 3, 12h and 13h, in vgabios's order: the attribute controller after
; a 0x3DA flip-flop reset, the sequencer, the graphics controller, the
; CRTC after clearing the protect bit, the miscellaneous output, then the
; palette address source bit that turns the display on), loads the DAC,
; and draws. It runs in 32-bit protected mode with flat segments, so that
; it reaches the VBE linear framebuffer above 1 MiB as it reaches 0xA0000.
;
;   1. Text mode 3 (80x25, 9x16 cells) with a font of its own: it clears
;      plane 2 and loads 5x7 glyphs for the characters it writes (letters,
;      digits, punctuation, doubled to 16 scan lines) and full-cell glyphs
;      for a box, a block, a shade, a smiley and a heart; then coloured
;      text, the 16 foreground and 8 background colours, and the cursor (a
;      thick underline, scan lines 12-15) at row 20, column 8.
;   2. Mode 12h (640x480, 16 colours, planar): cleared to blue with
;      set/reset, 16 colour bars in write mode 2, a rectangle XORed with
;      white through the latches, two yellow diagonals plotted a pixel at a
;      time through the bit mask, a checkerboard written to planes 2 and 3
;      through the map mask, and light red stripes in write mode 3.
;   3. Mode 13h (320x200, 256 colours, chain-4): a palette of its own (red,
;      green, blue and grey ramps of 64 levels), diagonal colour bands, a
;      white frame and a red square.
;   4. A VBE linear mode through the Bochs DISPI ports (0x1CE/0x1CF):
;      640x480 at 32 bits per pixel, drawn into the framebuffer at BAR0 of
;      the std VGA (PCI 00:02.0, 1234:1111). BAR0 is read from PCI
;      configuration space; if nothing assigned it (no BIOS ran), the guest
;      puts it at 0xF0000000, where hvmloader started its PCI memory, and
;      enables memory decoding. A gradient, a white frame and three squares.
;
; SCREEN chooses what runs; a file that sets it and includes this one
; selects a screen at build time (tests/test_graphics_screens.py does):
;
;   0 (the default): all four in turn, each followed by its marker line on
;     COM1, then power off.
;   1-4: that screen alone; its marker line, then CLI; HLT for good, so
;     that the picture stays (hvmspec reports the domain hung; QEMU idles).
;   5, 6: benchmarks: FRAMES frames of mode 13h redrawn in full (bands
;     moving one colour a frame), or of the VBE framebuffer filled in
;     full (a different colour a frame), between two marker lines; then
;     power off.
;
; Each marker line reads "graphics: screen N drawn".

%include "lib/all.s"

.ifndef SCREEN
SCREEN      = 0
.endif
FRAMES      = 100               ; frames of each benchmark

ROM         = 0xf0000           ; the linear address of label offset 0
VGA_WINDOW  = 0xa0000           ; graphics modes' window (64 KiB)
TEXT_WINDOW = 0xb8000           ; text mode's window
PCI_ADDR    = 0xcf8
PCI_DATA    = 0xcfc
VGA_BDF     = 0x80001000        ; configuration address of 00:02.0, register 0
LFB_DEFAULT = 0xf0000000        ; BAR0 when nothing assigned it
VBE_WIDTH   = 640
VBE_HEIGHT  = 480
LFB_ADDRESS = 0x6000            ; where the guest keeps the framebuffer's address

; vga_index: VALUE to register INDEX of the index/data pair at PORT, as a
; 16-bit OUT (index in the low byte: the pair takes it as two byte writes)
.macro vga_index port, index, value
    mov dx, \port
    mov ax, ((\value) << 8) | (\index)
    out dx, ax
.endm

; dispi: VALUE to the Bochs VBE register INDEX
.macro dispi index, value
    mov dx, 0x1ce
    mov ax, \index
    out dx, ax
    inc dx
    mov ax, \value
    out dx, ax
.endm

; ega_component: one DAC component of EGA colour ECX (bits rgbRGB): 0x2a
; for bit PRIMARY, 0x15 for bit SECONDARY, to port DX
.macro ega_component primary, secondary
    xor al, al
    bt ecx, \primary
    jnc ega_primary_\@
    add al, 0x2a
ega_primary_\@:
    bt ecx, \secondary
    jnc ega_secondary_\@
    add al, 0x15
ega_secondary_\@:
    out dx, al
.endm

start:
    cli
    enter_pm32
    cld
    call init_vga_card
    mov eax, SCREEN
    cmp eax, 1
    je only_text
    cmp eax, 2
    je only_12h
    cmp eax, 3
    je only_13h
    cmp eax, 4
    je only_vbe
    cmp eax, 5
    je bench_13h
    cmp eax, 6
    je bench_vbe

    ; 0: every screen in turn, then power off
    call screen_text
    mov al, '1'
    call drawn
    call screen_12h
    mov al, '2'
    call drawn
    call screen_13h
    mov al, '3'
    call drawn
    call screen_vbe
    mov al, '4'
    call drawn
    jmp finish

only_text:
    call screen_text
    mov al, '1'
    jmp stay
only_12h:
    call screen_12h
    mov al, '2'
    jmp stay
only_13h:
    call screen_13h
    mov al, '3'
    jmp stay
only_vbe:
    call screen_vbe
    mov al, '4'
stay:                           ; the marker, then a halt nothing ends
    call drawn
stay_halted:
    cli
    hlt
    jmp stay_halted

bench_13h:
    mov esi, ROM + mode_13
    call set_mode
    call dac_ramps
    mov esi, bench_13h_text
    call bench_start
bench_13h_frame:
    call bands_13h
    inc ebp
    cmp ebp, FRAMES
    jb bench_13h_frame
    jmp bench_done

bench_vbe:
    call vbe_mode
    mov esi, bench_vbe_text
    call bench_start
bench_vbe_frame:
    mov edi, [LFB_ADDRESS]
    imul eax, ebp, 0x030201     ; a different colour each frame
    mov ecx, VBE_WIDTH * VBE_HEIGHT
    rep stosd
    inc ebp
    cmp ebp, FRAMES
    jb bench_vbe_frame
bench_done:                     ; "graphics: N frames drawn"
    mov esi, graphics_text
    call puts
    mov eax, ebp
    call put_dec
    mov esi, frames_text
    call puts
finish:
    poweroff

; --- markers -----------------------------------------------------------------------

drawn:                          ; "graphics: screen <al> drawn"
    push eax
    mov esi, graphics_text
    call puts
    mov esi, screen_word
    call puts
    pop eax
    call putc
    mov esi, drawn_text
    call puts
    ret

bench_start:                    ; "graphics: bench <esi>"; EBP = 0 frames
    push esi
    mov esi, graphics_text
    call puts
    pop esi
    call puts
    xor ebp, ebp
    ret

; --- the VGA's registers ------------------------------------------------------------

init_vga_card:                  ; vgabios's init_vga_card: colour I/O addresses
    mov dx, 0x3c2               ; (0x3Dx), more than 64 KiB of memory; the CRTC
    mov al, 0xc3                ; answers at 0x3D4 only from here on
    out dx, al
    vga_index 0x3c4, 0x04, 0x02
    ret

; set_mode: the registers of the mode whose table ESI points at (linear):
; misc output (+0), sequencer 0-4 (+1), CRTC 0-0x18 (+6), attribute
; controller 0-0x14 (+31), graphics controller 0-8 (+52), written in
; vgabios's order (biosfn_set_video_mode)
set_mode:
    mov dx, 0x3da               ; the attribute controller's flip-flop to "index"
    in al, dx
    mov dx, 0x3c0
    xor ecx, ecx
set_mode_attribute:
    mov al, cl                  ; the index, palette address source off (blank)
    out dx, al
    mov al, [esi + 31 + ecx]
    out dx, al
    inc ecx
    cmp ecx, 21
    jb set_mode_attribute
    mov dx, 0x3c4
    xor ecx, ecx
set_mode_sequencer:
    mov al, cl
    out dx, al
    inc dx
    mov al, [esi + 1 + ecx]
    out dx, al
    dec dx
    inc ecx
    cmp ecx, 5
    jb set_mode_sequencer
    mov dx, 0x3ce
    xor ecx, ecx
set_mode_graphics:
    mov al, cl
    out dx, al
    inc dx
    mov al, [esi + 52 + ecx]
    out dx, al
    dec dx
    inc ecx
    cmp ecx, 9
    jb set_mode_graphics
    mov dx, 0x3d4
    mov ax, 0x0011              ; CR11 bit 7 off: CR0-7 writable
    out dx, ax
    xor ecx, ecx
set_mode_crtc:
    mov al, cl
    out dx, al
    inc dx
    mov al, [esi + 6 + ecx]
    out dx, al
    dec dx
    inc ecx
    cmp ecx, 25
    jb set_mode_crtc
    mov dx, 0x3c2
    mov al, [esi]
    out dx, al
    mov dx, 0x3c0               ; palette address source on: the display shows
    mov al, 0x20
    out dx, al
    mov dx, 0x3da
    in al, dx
    ret

dac_ega:                        ; the 64 EGA colours (vgabios's palette2), then black
    mov dx, 0x3c6
    mov al, 0xff                ; PEL mask: all bits
    out dx, al
    mov dx, 0x3c8
    xor al, al
    out dx, al
    inc dx
    xor ecx, ecx
dac_ega_next:
    ega_component 2, 5          ; red
    ega_component 1, 4          ; green
    ega_component 0, 3          ; blue
    inc ecx
    cmp ecx, 64
    jb dac_ega_next
    xor al, al
dac_ega_black:
    out dx, al
    inc ecx
    cmp ecx, 64 + 3 * 192
    jb dac_ega_black
    ret

dac_ramps:                      ; 0-63 red, 64-127 green, 128-191 blue, 192-255 grey
    mov dx, 0x3c6
    mov al, 0xff
    out dx, al
    mov dx, 0x3c8
    xor al, al
    out dx, al
    inc dx
    xor ecx, ecx
dac_ramps_next:
    mov bl, cl
    and bl, 0x3f                ; the level
    mov bh, cl
    shr bh, 6                   ; the ramp
    xor al, al
    cmp bh, 1
    je dac_ramps_red
    cmp bh, 2
    je dac_ramps_red
    mov al, bl
dac_ramps_red:
    out dx, al
    xor al, al
    cmp bh, 1
    je dac_ramps_green_on
    cmp bh, 3
    jne dac_ramps_green
dac_ramps_green_on:
    mov al, bl
dac_ramps_green:
    out dx, al
    xor al, al
    cmp bh, 2
    jb dac_ramps_blue
    mov al, bl
dac_ramps_blue:
    out dx, al
    inc ecx
    cmp ecx, 256
    jb dac_ramps_next
    ret

; --- 1. text mode 3 with its own font -----------------------------------------------

screen_text:
    mov esi, ROM + mode_03
    call set_mode
    call dac_ega
    call load_font
    mov edi, TEXT_WINDOW        ; the screen: spaces, light grey on black
    mov eax, 0x07200720
    mov ecx, 80 * 25 / 2
    rep stosd
    mov edi, TEXT_WINDOW        ; row 0: the title bar, bright white on blue
    mov eax, 0x1f201f20
    mov ecx, 40
    rep stosd
    mov edi, TEXT_WINDOW + 2 * 2
    mov esi, title_text
    mov ah, 0x1f
    call put_text
    call text_box
    mov edi, TEXT_WINDOW + (4 * 80 + 5) * 2
    mov esi, foreground_text
    mov ah, 0x0f
    call put_text
    mov edi, TEXT_WINDOW + (4 * 80 + 24) * 2
    xor ah, ah
text_foreground:                ; 16 full blocks, colours 0-15
    mov al, 0xdb
    stosw
    inc ah
    cmp ah, 16
    jb text_foreground
    mov edi, TEXT_WINDOW + (6 * 80 + 5) * 2
    mov esi, background_text
    mov ah, 0x0f
    call put_text
    mov edi, TEXT_WINDOW + (6 * 80 + 24) * 2
    xor ebx, ebx
text_background:                ; digits 0-7 in white on backgrounds 0-7
    mov al, '0'
    add al, bl
    mov ah, bl
    shl ah, 4
    or ah, 0x0f
    stosw
    inc ebx
    cmp ebx, 8
    jb text_background
    mov edi, TEXT_WINDOW + (8 * 80 + 5) * 2
    mov esi, glyphs_text
    mov ah, 0x0f
    call put_text
    mov edi, TEXT_WINDOW + (8 * 80 + 24) * 2
    mov esi, pictures
    mov ecx, pictures_end - pictures
    add esi, ROM
    rep movsb
    mov edi, TEXT_WINDOW + (10 * 80 + 5) * 2
    mov esi, alphabet_text
    mov ah, 0x0b                ; light cyan
    call put_text
    mov edi, TEXT_WINDOW + (20 * 80 + 2) * 2
    mov esi, prompt_text
    mov ah, 0x0a                ; light green
    call put_text
    vga_index 0x3d4, 0x0a, 0x0c ; the cursor: scan lines 12 to 15
    vga_index 0x3d4, 0x0b, 0x0f
    vga_index 0x3d4, 0x0e, (20 * 80 + 8) >> 8
    vga_index 0x3d4, 0x0f, (20 * 80 + 8) & 0xff
    ret

text_box:                       ; a single-line box, rows 2-12, columns 2-77, yellow
    mov edi, TEXT_WINDOW + (2 * 80 + 2) * 2
    mov ax, 0x0eda              ; top left
    mov bx, 0x0ebf              ; top right
    call text_box_line
    mov edi, TEXT_WINDOW + (12 * 80 + 2) * 2
    mov ax, 0x0ec0              ; bottom left
    mov bx, 0x0ed9              ; bottom right
    call text_box_line
    mov edi, TEXT_WINDOW + (3 * 80 + 2) * 2
    mov ecx, 9
    mov ax, 0x0eb3              ; the sides
text_box_side:
    mov [edi], ax
    mov [edi + 75 * 2], ax
    add edi, 160
    loop text_box_side
    ret

text_box_line:                  ; corner ax, 74 horizontals, corner bx
    stosw
    mov ax, 0x0ec4
    mov ecx, 74
    rep stosw
    mov ax, bx
    stosw
    ret

put_text:                       ; NUL-terminated text at offset esi, attribute ah, to edi
    add esi, ROM
put_text_next:
    lodsb
    test al, al
    jz put_text_done
    stosw
    jmp put_text_next
put_text_done:
    ret

; load_font: plane 2 as vgabios's get_font_access leaves it (map mask plane 2,
; no odd/even, read map 2, memory map 0xA0000-0xAFFFF), its 8 KiB cleared,
; the glyphs written at 32 bytes a character, then the text mode's settings
; back (release_font_access)
load_font:
    vga_index 0x3c4, 0x02, 0x04
    vga_index 0x3c4, 0x04, 0x07
    vga_index 0x3ce, 0x04, 0x02
    vga_index 0x3ce, 0x05, 0x00
    vga_index 0x3ce, 0x06, 0x04
    mov edi, VGA_WINDOW
    xor eax, eax
    mov ecx, 8192 / 4
    rep stosd
    mov esi, ROM + small_glyphs
load_font_small:                ; code, 7 rows of 5 pixels: each row twice,
    movzx eax, byte ptr [esi]   ; shifted to columns 1-5, scan lines 2-15
    test eax, eax
    jz load_font_full
    inc esi
    shl eax, 5
    lea edi, [eax + VGA_WINDOW + 2]
    mov ecx, 7
load_font_row:
    lodsb
    shl al, 2
    mov [edi], al
    mov [edi + 1], al
    add edi, 2
    loop load_font_row
    jmp load_font_small
load_font_full:                 ; code, 16 scan lines
    mov esi, ROM + full_glyphs
load_font_full_next:
    movzx eax, byte ptr [esi]
    test eax, eax
    jz load_font_done
    inc esi
    shl eax, 5
    lea edi, [eax + VGA_WINDOW]
    mov ecx, 16
    rep movsb
    jmp load_font_full_next
load_font_done:
    vga_index 0x3c4, 0x02, 0x03
    vga_index 0x3c4, 0x04, 0x02
    vga_index 0x3ce, 0x04, 0x00
    vga_index 0x3ce, 0x05, 0x10
    vga_index 0x3ce, 0x06, 0x0e
    ret

; --- 2. mode 12h, planar ------------------------------------------------------------

screen_12h:
    mov esi, ROM + mode_12
    call set_mode
    call dac_ega
    ; blue everywhere: write mode 0, set/reset 1 enabled on all planes
    vga_index 0x3ce, 0x00, 0x01
    vga_index 0x3ce, 0x01, 0x0f
    mov edi, VGA_WINDOW
    mov ecx, 80 * 480
    rep stosb
    ; 16 bars, 40 pixels wide, rows 40-239: write mode 2 (the byte is the colour)
    vga_index 0x3ce, 0x01, 0x00
    vga_index 0x3ce, 0x05, 0x02
    mov edi, VGA_WINDOW + 40 * 80
    mov ebx, 200
bars_row:
    xor al, al
bars_bar:
    mov ecx, 5
    rep stosb
    inc al
    cmp al, 16
    jb bars_bar
    dec ebx
    jnz bars_row
    ; rows 100-179, pixels 160-479: XOR with white (set/reset 15, function
    ; XOR), each byte read first to load the latches
    vga_index 0x3ce, 0x05, 0x00
    vga_index 0x3ce, 0x00, 0x0f
    vga_index 0x3ce, 0x01, 0x0f
    vga_index 0x3ce, 0x03, 0x18
    mov edi, VGA_WINDOW + 100 * 80 + 20
    mov ebx, 80
xor_row:
    mov ecx, 40
xor_byte:
    mov al, [edi]
    mov [edi], al
    inc edi
    loop xor_byte
    add edi, 80 - 40
    dec ebx
    jnz xor_row
    vga_index 0x3ce, 0x03, 0x00
    ; two yellow diagonals, 2 pixels wide, rows 260-459, through the bit mask
    vga_index 0x3ce, 0x00, 0x0e
    xor ebx, ebx
diagonal:
    lea ecx, [ebx + 260]        ; y
    lea eax, [ebx + 100]        ; x, falling to the right
    call plot
    inc eax
    call plot
    mov eax, 538                ; x, falling to the left
    sub eax, ebx
    call plot
    inc eax
    call plot
    inc ebx
    cmp ebx, 200
    jb diagonal
    vga_index 0x3ce, 0x08, 0xff
    vga_index 0x3ce, 0x01, 0x00
    ; a checkerboard in planes 2 and 3 only (map mask 0x0c), pixels 560-623:
    ; blue (plane 0) becomes light magenta where the pattern has a 1
    vga_index 0x3c4, 0x02, 0x0c
    mov edi, VGA_WINDOW + 260 * 80 + 70
    mov ebx, 200
    mov al, 0xaa
checker_row:
    mov ecx, 8
    rep stosb
    add edi, 80 - 8
    not al
    dec ebx
    jnz checker_row
    vga_index 0x3c4, 0x02, 0x0f
    ; write mode 3: light red (set/reset 12) where the byte written (0x3c)
    ; has a 1, the latches elsewhere; rows 300-379, pixels 160-239
    vga_index 0x3ce, 0x05, 0x03
    vga_index 0x3ce, 0x00, 0x0c
    mov edi, VGA_WINDOW + 300 * 80 + 20
    mov ebx, 80
wm3_row:
    mov ecx, 10
wm3_byte:
    mov al, [edi]
    mov al, 0x3c
    mov [edi], al
    inc edi
    loop wm3_byte
    add edi, 80 - 10
    dec ebx
    jnz wm3_row
    vga_index 0x3ce, 0x05, 0x00
    vga_index 0x3ce, 0x00, 0x00
    ret

plot:                           ; the pixel (eax, ecx) in the set/reset colour
    push eax
    push ecx
    push edx
    imul edi, ecx, 80
    mov edx, eax
    shr edx, 3
    lea edi, [edi + edx + VGA_WINDOW]
    mov cl, al
    and cl, 7
    mov ah, 0x80
    shr ah, cl                  ; the bit mask: this pixel only
    mov al, 0x08
    mov dx, 0x3ce
    out dx, ax
    mov al, [edi]               ; the latches: the other 7 pixels
    mov [edi], al
    pop edx
    pop ecx
    pop eax
    ret

; --- 3. mode 13h --------------------------------------------------------------------

screen_13h:
    mov esi, ROM + mode_13
    call set_mode
    call dac_ramps
    xor ebp, ebp
    call bands_13h
    mov edi, VGA_WINDOW + 10 * 320 + 10     ; a white frame, 300x180 at (10, 10)
    mov al, 0xff
    mov ecx, 300
    rep stosb
    mov edi, VGA_WINDOW + 189 * 320 + 10
    mov ecx, 300
    rep stosb
    mov edi, VGA_WINDOW + 11 * 320 + 10
    mov ecx, 178
frame_13h:
    mov [edi], al
    mov [edi + 299], al
    add edi, 320
    loop frame_13h
    mov edi, VGA_WINDOW + 80 * 320 + 140    ; a bright red square, 40x40
    mov al, 0x3f
    mov ebx, 40
square_13h:
    mov ecx, 40
    rep stosb
    add edi, 320 - 40
    dec ebx
    jnz square_13h
    ret

bands_13h:                      ; pixel (x, y) = x + y + ebp (mod 256), every pixel
    mov edi, VGA_WINDOW
    xor ebx, ebx
bands_row:
    lea eax, [ebx + ebp]
    mov ecx, 320
bands_pixel:
    stosb
    inc al
    loop bands_pixel
    inc ebx
    cmp ebx, 200
    jb bands_row
    ret

; --- 4. VBE linear framebuffer ------------------------------------------------------

find_lfb:                       ; BAR0 of 00:02.0 (assigned if 0), memory decoding on
    mov dx, PCI_ADDR
    mov eax, VGA_BDF + 0x10
    out dx, eax
    mov dx, PCI_DATA
    in eax, dx
    and eax, 0xfffffff0
    jnz find_lfb_assigned
    mov eax, LFB_DEFAULT
    out dx, eax
find_lfb_assigned:
    mov [LFB_ADDRESS], eax
    mov dx, PCI_ADDR
    mov eax, VGA_BDF + 0x04
    out dx, eax
    mov dx, PCI_DATA
    in ax, dx
    or ax, 0x0003               ; I/O and memory space
    out dx, ax
    ret

vbe_mode:                       ; 640x480x32 with the linear framebuffer (vbe.c's order)
    call find_lfb
    mov dx, 0x3da               ; the display on (palette address source): a VGA
    in al, dx                   ; that no mode set has touched shows nothing
    mov dx, 0x3c0
    mov al, 0x20
    out dx, al
    dispi 4, 0x00               ; disabled while it changes
    dispi 3, 32
    dispi 1, VBE_WIDTH
    dispi 2, VBE_HEIGHT
    dispi 5, 0                  ; bank 0
    dispi 4, 0x41               ; enabled, linear framebuffer
    ret

screen_vbe:
    call vbe_mode
    mov edi, [LFB_ADDRESS]      ; the gradient: red across, green down,
    xor ebx, ebx                ; blue from x XOR y
vbe_row:
    xor ecx, ecx
vbe_pixel:
    imul eax, ecx, 205
    shr eax, 9                  ; red = x * 255 / 639, about
    shl eax, 8
    imul edx, ebx, 17
    shr edx, 5                  ; green = y * 255 / 479, about
    or eax, edx
    shl eax, 8
    mov edx, ecx
    xor edx, ebx
    and edx, 0xff
    or eax, edx
    stosd
    inc ecx
    cmp ecx, VBE_WIDTH
    jb vbe_pixel
    inc ebx
    cmp ebx, VBE_HEIGHT
    jb vbe_row
    ; a white frame, 600x440 at (20, 20)
    mov eax, 0x00ffffff
    mov ebx, 20
    mov ecx, 20
    mov esi, 600
    mov edx, 2
    call vbe_rect
    mov ecx, 458
    call vbe_rect
    mov ecx, 20
    mov esi, 2
    mov edx, 440
    call vbe_rect
    mov ebx, 618
    call vbe_rect
    ; red, green and blue squares, 80x80, at y 200
    mov esi, 80
    mov edx, 80
    mov ecx, 200
    mov eax, 0x00ff0000
    mov ebx, 120
    call vbe_rect
    mov eax, 0x0000ff00
    mov ebx, 280
    call vbe_rect
    mov eax, 0x000000ff
    mov ebx, 440
    call vbe_rect
    ret

vbe_rect:                       ; colour eax at (ebx, ecx), esi wide, edx high
    push ecx
    push edx
    push edi
    imul edi, ecx, VBE_WIDTH
    add edi, ebx
    shl edi, 2
    add edi, [LFB_ADDRESS]
vbe_rect_row:
    mov ecx, esi
    rep stosd
    add edi, VBE_WIDTH * 4
    push esi
    shl esi, 2
    sub edi, esi
    pop esi
    dec edx
    jnz vbe_rect_row
    pop edi
    pop edx
    pop ecx
    ret

; --- serial output ------------------------------------------------------------------

    serial_putc w=e
    serial_puts at="[esi]", w=e, base=ROM
    put_dec

graphics_text:
    .asciz "graphics: "
screen_word:
    .asciz "screen "
drawn_text:
    .asciz " drawn\n"
frames_text:
    .asciz " frames drawn\n"
bench_13h_text:
    .asciz "bench mode 13h\n"
bench_vbe_text:
    .asciz "bench vbe 640x480x32\n"

title_text:
    .asciz "HVMSPEC GRAPHICS GUEST - SCREEN 1: TEXT MODE 3, ITS OWN FONT"
foreground_text:
    .asciz "FOREGROUND 0-F:"
background_text:
    .asciz "BACKGROUND 0-7:"
glyphs_text:
    .asciz "OWN GLYPHS:"
alphabet_text:
    .asciz "ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 (.,:-=/)"
prompt_text:
    .asciz "READY>"
pictures:                       ; character, attribute pairs
    .byte 0x01, 0x0e, 0x20, 0x07, 0x03, 0x0c, 0x20, 0x07, 0xb1, 0x0a, 0xb1, 0x2e
    .byte 0x20, 0x07, 0xdb, 0x09, 0xdb, 0x4e, 0x20, 0x07, 0x01, 0x1f, 0x03, 0x4f
pictures_end:

; --- the mode tables (vgabios's vgatables.h, as tests/test_vga_registers.py has them)

mode_03:
    .byte 0x67                                      ; misc output
    .byte 0x03, 0x00, 0x03, 0x00, 0x02              ; sequencer 0-4
    .byte 0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00
    .byte 0x00, 0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff  ; CRTC
    .byte 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c
    .byte 0x3d, 0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00                    ; attribute
    .byte 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x0f, 0xff              ; graphics
mode_12:
    .byte 0xe3
    .byte 0x03, 0x01, 0x0f, 0x00, 0x06
    .byte 0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00
    .byte 0x00, 0x00, 0x00, 0xea, 0x8c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff
    .byte 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c
    .byte 0x3d, 0x3e, 0x3f, 0x01, 0x00, 0x0f, 0x00, 0x00
    .byte 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff
mode_13:
    .byte 0x63
    .byte 0x03, 0x01, 0x0f, 0x00, 0x0e
    .byte 0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00
    .byte 0x00, 0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff
    .byte 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c
    .byte 0x0d, 0x0e, 0x0f, 0x41, 0x00, 0x0f, 0x00, 0x00
    .byte 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff

; --- the font: the guest's own glyphs -----------------------------------------------

small_glyphs:                   ; character code, then 7 rows of 5 pixels
    .byte 0x41, 0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001  ; A
    .byte 0x42, 0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110  ; B
    .byte 0x43, 0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110  ; C
    .byte 0x44, 0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100  ; D
    .byte 0x45, 0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111  ; E
    .byte 0x46, 0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000  ; F
    .byte 0x47, 0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111  ; G
    .byte 0x48, 0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001  ; H
    .byte 0x49, 0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110  ; I
    .byte 0x4a, 0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100  ; J
    .byte 0x4b, 0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001  ; K
    .byte 0x4c, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111  ; L
    .byte 0x4d, 0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001  ; M
    .byte 0x4e, 0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001  ; N
    .byte 0x4f, 0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110  ; O
    .byte 0x50, 0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000  ; P
    .byte 0x51, 0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101  ; Q
    .byte 0x52, 0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001  ; R
    .byte 0x53, 0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110  ; S
    .byte 0x54, 0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100  ; T
    .byte 0x55, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110  ; U
    .byte 0x56, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100  ; V
    .byte 0x57, 0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010  ; W
    .byte 0x58, 0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001  ; X
    .byte 0x59, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100  ; Y
    .byte 0x5a, 0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111  ; Z
    .byte 0x30, 0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110  ; 0
    .byte 0x31, 0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110  ; 1
    .byte 0x32, 0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111  ; 2
    .byte 0x33, 0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110  ; 3
    .byte 0x34, 0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010  ; 4
    .byte 0x35, 0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110  ; 5
    .byte 0x36, 0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110  ; 6
    .byte 0x37, 0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000  ; 7
    .byte 0x38, 0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110  ; 8
    .byte 0x39, 0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100  ; 9
    .byte 0x3a, 0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000  ; :
    .byte 0x2c, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000  ; ,
    .byte 0x2e, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100  ; .
    .byte 0x2d, 0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000  ; -
    .byte 0x3d, 0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000  ; =
    .byte 0x3e, 0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000  ; >
    .byte 0x28, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010  ; (
    .byte 0x29, 0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000  ; )
    .byte 0x2f, 0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000  ; /
    .byte 0

full_glyphs:                    ; character code, then 16 scan lines of 8 pixels
    .byte 0x01                  ; a smiley
    .byte 0x00, 0x00, 0x7e, 0x81, 0xa5, 0x81, 0x81, 0xbd, 0x99, 0x81, 0x81, 0x7e
    .byte 0x00, 0x00, 0x00, 0x00
    .byte 0x03                  ; a heart
    .byte 0x00, 0x00, 0x00, 0x00, 0x6c, 0xfe, 0xfe, 0xfe, 0xfe, 0x7c, 0x38, 0x10
    .byte 0x00, 0x00, 0x00, 0x00
    .byte 0xb1                  ; a shade: alternate pixels
    .byte 0xaa, 0x55, 0xaa, 0x55, 0xaa, 0x55, 0xaa, 0x55, 0xaa, 0x55, 0xaa, 0x55
    .byte 0xaa, 0x55, 0xaa, 0x55
    .byte 0xdb                  ; a full block (line graphics: 9 pixels wide)
    .byte 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
    .byte 0xff, 0xff, 0xff, 0xff
    .byte 0xc4                  ; horizontal line
    .byte 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00
    .byte 0x00, 0x00, 0x00, 0x00
    .byte 0xb3                  ; vertical line
    .byte 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18
    .byte 0x18, 0x18, 0x18, 0x18
    .byte 0xda                  ; top left corner
    .byte 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x18, 0x18, 0x18, 0x18
    .byte 0x18, 0x18, 0x18, 0x18
    .byte 0xbf                  ; top right corner
    .byte 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x18, 0x18, 0x18, 0x18
    .byte 0x18, 0x18, 0x18, 0x18
    .byte 0xc0                  ; bottom left corner
    .byte 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x1f, 0x00, 0x00, 0x00, 0x00
    .byte 0x00, 0x00, 0x00, 0x00
    .byte 0xd9                  ; bottom right corner
    .byte 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0xf8, 0x00, 0x00, 0x00, 0x00
    .byte 0x00, 0x00, 0x00, 0x00
    .byte 0

    flat_gdt
