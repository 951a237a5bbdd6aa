; demo: the guest `make run` boots. An unmodified guest that uses the
; whole device model: serial, the text screen, MMIO, the timer, ACPI.
;
; It knows nothing of Xen. It enters 32-bit protected mode (flat segments,
; an IDT with a 32-bit interrupt gate for IRQ0), then:
;
;   1. greets over COM1 (polling the line status register);
;   2. draws a framed title, a legend and an empty progress bar on the text
;      screen: plain stores into qemu-dm's video memory at 0xB8000, which
;      cause no exit (Xen tracks the dirty pages; qemu-dm's scanner finds
;      the changed rows once per refresh period);
;   3. does read-modify-write instructions on hvmspec's test device at
;      0xFEB00000 (an MMIO page qemu-dm emulates): `add`, `xor` and `or` on
;      memory the guest cannot reach as RAM, each emulated by the VMM as one
;      read and one write ioreq; it shows the results on screen and serial;
;   4. takes 24 ticks of the PIT (IRQ0 at about 1 kHz through the virtual
;      PIC), halting in between; each tick fills one more cell of the
;      progress bar and moves the cursor after it;
;   5. writes "powering off" and asks ACPI for S5 (SLP_TYP 7 | SLP_EN to
;      PM1a_CNT at 0x1f44): qemu-dm tells Xen, Xen tells xend, xend
;      destroys the domain.

%include "lib/all.s"

PIT_COUNT   = 1193
ROM         = 0xf0000
IDT         = 0x9000
SCREEN      = 0xb8000
TESTDEV     = 0xfeb00000
TICKS       = 0x8000            ; variables in low RAM
TOTAL_TICKS = 24
BAR_ROW     = 14
BAR_COL     = 32
BAR_START   = 0xb8900             ; SCREEN + BAR_ROW * 160 + BAR_COL * 2
; attributes: background << 4 | foreground
BACKDROP    = 0x17              ; light grey on blue
FRAME       = 0x1b              ; light cyan on blue
TITLE       = 0x1e              ; yellow on blue
TEXT        = 0x1f              ; white on blue
VALUE       = 0x1a              ; light green on blue
BAR_EMPTY   = 0x18              ; dark grey on blue
BAR_FULL    = 0x1e              ; yellow on blue

; text_at: the string STRING at ROW, COL, in the attribute in AH (set to
; ATTR first if given)
.macro text_at row, col, string, attr=
    mov ebx, \row * 256 + \col
.ifnb \attr
    mov ah, \attr
.endif
    mov esi, \string
    call put_at
.endm

start:
    cli
    enter_pm32
    mov dword ptr [TICKS], 0
    cld

    mov dx, 0x3c2                   ; the VGA's miscellaneous output: colour
    mov al, 0x67                    ; I/O addresses (CRTC at 0x3d4), as mode 3 has it
    out dx, al
    ; 1. hello over serial
    mov esi, greeting
    call puts

    ; 2. the screen: a blue backdrop, a frame, the title, the legend
    mov edi, SCREEN
    mov eax, 0x17201720             ; two blanks, light grey on blue
    mov ecx, 80 * 25 / 2
    rep stosd
    call draw_frame
    text_at 2, 19, title, TITLE
    text_at 5, 6, legend1, TEXT
    text_at 6, 6, legend2
    text_at 7, 6, legend3
    text_at BAR_ROW, 6, bar_label
    mov edi, BAR_START
    mov ecx, TOTAL_TICKS
    mov ax, 0x18b0                  ; a light shade, dark grey on blue
    rep stosw

    ; 3. read-modify-write on the test device
    mov ebp, TESTDEV
    mov dword ptr [ebp], 0x11223344
    add dword ptr [ebp], 0x101          ; 0x11223445
    mov dword ptr [ebp + 4], 0xf0f0f0f0
    xor dword ptr [ebp + 4], 0xffff0000 ; 0x0f0ff0f0
    mov word ptr [ebp + 8], 0x0a00
    or word ptr [ebp + 8], 0x00b0       ; 0x0ab0
    text_at 9, 6, rmw_label, TEXT
    mov ebx, 9 * 256 + 50
    mov eax, [ebp]
    call hex_at
    mov ebx, 10 * 256 + 50
    mov eax, [ebp + 4]
    call hex_at
    mov ebx, 11 * 256 + 50
    movzx eax, word ptr [ebp + 8]
    call hex_at
    text_at 10, 6, xor_label, TEXT
    text_at 11, 6, or_label
    mov esi, rmw_serial
    call puts
    mov eax, [ebp]
    call put_hex32
    mov al, ' '
    call putc
    mov eax, [ebp + 4]
    call put_hex32
    mov al, ' '
    call putc
    movzx eax, word ptr [ebp + 8]
    call put_hex32
    mov al, 10
    call putc

    ; 4. the timer: an IDT with IRQ0's gate, the PICs, the PIT
    mov edi, IDT
    xor eax, eax
    mov ecx, 96
    rep stosd
    mov eax, irq0
    add eax, ROM
    mov edi, IDT + 0x100            ; gate 0x20
    gate32 0x8e00                   ; present, 32-bit interrupt gate
    mov ebx, idtr
    lidt [ebx + ROM]
    call init_pic_pit
    mov esi, ticking
    call puts
    sti
tick_loop:
    hlt
    cli
    mov ecx, [TICKS]
    cmp ecx, TOTAL_TICKS
    ja ticks_done
    ; fill the bar up to the tick count; the cursor goes after it
    lea edi, [ecx * 2 + 0xb88fe]    ; BAR_START - 2: keystone mis-evaluates symbols here
    mov word ptr [edi], 0x1edb      ; a full block, yellow on blue
    lea eax, [ecx + 1152]           ; BAR_ROW * 80 + BAR_COL
    call set_cursor
    mov eax, ecx
    mov ebx, 0x0e3a                 ; row BAR_ROW, column BAR_COL + TOTAL_TICKS + 2
    call dec_at
    cmp ecx, TOTAL_TICKS
    je ticks_done
    sti
    jmp tick_loop
ticks_done:
    mov al, 0xff                    ; mask the timer
    out 0x21, al

    ; 5. goodbye
    text_at 20, 6, bye_screen, TITLE
    mov eax, 20 * 80 + 6 + 30
    call set_cursor
    mov esi, ticks_serial
    call puts
    mov eax, [TICKS]
    call put_hex32
    mov al, 10
    call putc
    mov esi, bye_serial
    call puts
    poweroff

irq0:
    push eax
    inc dword ptr [TICKS]
    pic_eoi                         ; non-specific EOI
    pop eax
    iretd

; --- the screen ------------------------------------------------------------------

cell:                               ; bh row, bl column -> edi (linear)
    movzx edi, bh
    imul edi, edi, 80
    movzx ecx, bl
    add edi, ecx
    lea edi, [edi * 2 + SCREEN]
    ret

put_at:                             ; esi string (ROM offset), ah attribute, bh:bl row:col
    push ecx
    call cell
    add esi, ROM
put_at_next:
    mov al, [esi]
    inc esi
    test al, al
    jz put_at_done
    stosw
    jmp put_at_next
put_at_done:
    pop ecx
    ret

hex_at:                             ; eax as "0x" and 8 hex digits at bh:bl, green
    push ecx
    push edx
    mov edx, eax
    call cell
    mov ax, 0x1a30                  ; '0', light green on blue
    stosw
    mov al, 'x'
    stosw
    mov ecx, 8
hex_at_digit:
    rol edx, 4
    mov al, dl
    hex_digit
    stosw
    loop hex_at_digit
    pop edx
    pop ecx
    ret

dec_at:                             ; eax < 100 as two digits at bh:bl
    push ecx
    push edx
    call cell
    mov dl, 10
    div dl
    add ax, 0x3030
    mov dl, ah
    mov ah, VALUE
    stosw
    mov al, dl
    stosw
    pop edx
    pop ecx
    ret

draw_frame:                         ; a double-line frame round rows 1..22
    mov edi, SCREEN + 164           ; row 1, column 2
    mov ax, 0x1bc9                  ; top left corner, light cyan on blue
    stosw
    mov ecx, 74
    mov al, 0xcd
    rep stosw
    mov al, 0xbb
    stosw
    mov edx, 2
frame_side:
    imul edi, edx, 160
    add edi, SCREEN + 4
    mov al, 0xba
    stosw
    add edi, 74 * 2
    stosw
    inc edx
    cmp edx, 22
    jb frame_side
    mov edi, SCREEN + 3524          ; row 22, column 2
    mov al, 0xc8
    stosw
    mov ecx, 74
    mov al, 0xcd
    rep stosw
    mov al, 0xbc
    stosw
    ret

    crtc_pair set_cursor, 0x0e, w=e     ; eax = cell address

; --- time ---------------------------------------------------------------------------

init_pic_pit:
    pic_init                        ; vectors 0x20 and 0x28, IRQ0 only
    pit_init PIT_COUNT              ; about 1 kHz
    ret

; --- serial ---------------------------------------------------------------------------

    serial_putc w=e                 ; al

    serial_puts at=[esi], w=e, keep=esi, base=ROM  ; esi string (ROM offset)

    put_hex put_hex32, 8, w=e       ; eax, eight hex digits

greeting:
    .asciz "demo: hello from an unmodified guest on hvmspec's Xen HVM\n"
title:
    .asciz "hvmspec: an unmodified guest under Xen HVM"
legend1:
    .asciz "This screen is qemu-dm's video memory, mapped into the guest:"
legend2:
    .asciz "the guest's stores cause no exit; Xen tracks the dirty pages and"
legend3:
    .asciz "qemu-dm's display scanner re-reads only the rows that changed."
rmw_label:
    .asciz "test device: add 0x101 to 0x11223344     ="
xor_label:
    .asciz "             xor 0xffff0000, 0xf0f0f0f0  ="
or_label:
    .asciz "             or 0x00b0 into 0x0a00       ="
bar_label:
    .asciz "timer ticks (IRQ0, HLT)"
bye_screen:
    .asciz "done: powering off through ACPI S5"
rmw_serial:
    .asciz "demo: test device after add, xor, or: "
ticking:
    .asciz "demo: taking 24 timer ticks, halting in between\n"
ticks_serial:
    .asciz "demo: ticks "
bye_serial:
    .asciz "demo: powering off\n"
    flat_gdt
idtr:
    .word 0x17f
    .long IDT
