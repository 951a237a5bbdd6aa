; dma: string I/O whose data lives all over guest memory, through qemu-dm's mapcache.
;
; hvmspec: memory = 4096
;
; It knows nothing of Xen. Every `rep insb`/`rep outsb` below is an IOIO exit
; that the VMM turns into ioreqs with data_is_ptr = 1: the data stays in guest
; memory, and qemu-dm must map the guest's frames to copy it. qemu-dm maps
; memory in buckets (64 KiB for a 32-bit qemu-dm) within a budget of its own
; address space (2304 MiB by default), evicting the least recently used
; bucket when the budget is full.
;
;   1. It reads its memory size from the CMOS (registers 0x34/0x35: 64 KiB
;      blocks above 16 MiB, below 4 GiB) and prints it.
;   2. Far apart: at 1/8, 2/8 .. 7/8 of memory (and at 2 MiB) it builds a
;      line of text that straddles a page boundary and sends it to COM1 with
;      one `rep outsb`: the VMM splits it at the page (two ioreqs), and
;      qemu-dm reads the two pieces from two places in memory.
;   3. The walk: one `rep insb` of one byte from COM1's scratch register into
;      each 64 KiB bucket from 16 MiB up, at most 40,000 of them (2.4 GiB of
;      guest memory: more than the 32-bit budget holds, so qemu-dm evicts);
;      the scratch value changes every 256 buckets. The guest then checks
;      every byte with its own loads and prints how many were wrong.
;   4. Again: one `rep outsb` from each of the first 16 buckets, long since
;      evicted, to the scratch register: qemu-dm maps them again.
;   5. Power off.
;
; With the default 16 MiB of memory the walk is empty; `hvmspec run dma`
; uses the memory the header above asks for.

%include "lib/all.s"

COM1_SCR    = 0x3ff
ROM         = 0xf0000
BUCKET      = 0x10000
WALK_START  = 0x1000000         ; 16 MiB
WALK_MAX    = 40000
LINE_LEN    = 53
TOP         = 0x8000            ; variables in low RAM: the end of RAM below 4 GiB
WALKED      = 0x8004
WRONG       = 0x8008

start:
    cli
    enter_pm32
    cld

    ; 1. memory from the CMOS: 16 MiB + 64 KiB * [0x35:0x34]
    mov al, 0x35
    out 0x70, al
    in al, 0x71
    mov ah, al
    mov al, 0x34
    out 0x70, al
    in al, 0x71
    movzx eax, ax
    shl eax, 16
    add eax, WALK_START
    mov [TOP], eax
    lea esi, [text_memory + 0xf0000]         ; the ROM's linear address
    call puts
    mov eax, [TOP]
    shr eax, 20
    call put_dec
    lea esi, [text_mib + 0xf0000]         ; the ROM's linear address
    call puts

    ; 2. lines across page boundaries, far apart
    mov edi, 0x200000 - 20          ; 2 MiB: the line crosses 0x200000
    call far_line
    mov ebx, 1
far_next:
    mov eax, [TOP]
    shr eax, 3
    mul ebx                         ; eax = TOP * k / 8
    and eax, 0xfffff000
    lea edi, [eax - 20]
    call far_line
    inc ebx
    cmp ebx, 8
    jb far_next

    ; 3. the walk: one byte into each bucket from 16 MiB
    mov eax, [TOP]
    sub eax, WALK_START
    shr eax, 16                     ; buckets between 16 MiB and the top
    cmp eax, WALK_MAX
    jbe walk_count
    mov eax, WALK_MAX
walk_count:
    mov [WALKED], eax
    xor ebx, ebx                    ; bucket index
walk_next:
    cmp ebx, [WALKED]
    jae walk_check
    test bl, bl
    jnz walk_same_value
    mov eax, ebx                    ; every 256 buckets: a new scratch value
    shr eax, 8
    xor al, 0x5a
    mov dx, COM1_SCR
    out dx, al
walk_same_value:
    mov edi, ebx
    shl edi, 16
    add edi, WALK_START + 0x1234
    mov ecx, 1
    mov dx, COM1_SCR
    rep insb
    inc ebx
    jmp walk_next
walk_check:
    xor ebx, ebx
    mov dword ptr [WRONG], 0
walk_check_next:
    cmp ebx, [WALKED]
    jae walk_report
    mov eax, ebx
    shr eax, 8
    xor al, 0x5a
    mov edi, ebx
    shl edi, 16
    add edi, WALK_START + 0x1234
    cmp al, [edi]
    je walk_check_ok
    inc dword ptr [WRONG]
walk_check_ok:
    inc ebx
    jmp walk_check_next
walk_report:
    lea esi, [text_walk + 0xf0000]         ; the ROM's linear address
    call puts
    mov eax, [WALKED]
    call put_dec
    lea esi, [text_walk2 + 0xf0000]         ; the ROM's linear address
    call puts
    mov eax, [WRONG]
    call put_dec
    lea esi, [text_wrong + 0xf0000]         ; the ROM's linear address
    call puts

    ; 4. the first 16 buckets again, out of memory qemu-dm no longer maps
    mov ebx, 0
again_next:
    cmp ebx, [WALKED]
    jae again_done
    cmp ebx, 16
    jae again_done
    mov esi, ebx
    shl esi, 16
    add esi, WALK_START + 0x1234
    mov ecx, 1
    mov dx, COM1_SCR
    rep outsb
    inc ebx
    jmp again_next
again_done:
    mov dx, COM1_SCR
    in al, dx
    lea esi, [text_again + 0xf0000]         ; the ROM's linear address
    call puts
    movzx eax, al
    call put_hex8
    mov al, 10
    call putc

    poweroff

; a LINE_LEN-byte line at edi: "dma: across a page at 0x........ ok\n",
; built with stores and sent with one rep outsb
far_line:
    push ebx
    push edi
    lea esi, [line_template + 0xf0000]         ; the ROM's linear address
    mov ecx, LINE_LEN
    rep movsb                       ; RAM to RAM: no exit
    pop edi
    lea eax, [edi + 20]             ; the page boundary the line crosses
    lea ebx, [edi + 33]             ; where the template's address digits are
    mov ecx, 8
far_digit:
    rol eax, 4
    mov dl, al
    hex_digit dl
    mov [ebx], dl
    inc ebx
    loop far_digit
    mov esi, edi
    mov ecx, LINE_LEN
    mov dx, COM1
    rep outsb                       ; one instruction, two ioreqs: split at the page
    pop ebx
    ret

; --- serial -----------------------------------------------------------------------

    serial_putc w=e                 ; al

    serial_puts at=[esi], w=e, keep=eax  ; esi: a NUL-terminated string (linear)

    put_dec                         ; eax, decimal

put_hex8:                           ; al, two hex digits
    push ecx
    push eax
    mov ecx, 2
    mov ah, al
put_hex8_digit:
    rol ah, 4
    mov al, ah
    hex_digit
    call putc
    loop put_hex8_digit
    pop eax
    pop ecx
    ret

text_memory:
    .asciz "dma: memory below 4 GiB: "
text_mib:
    .asciz " MiB\n"
text_walk:
    .asciz "dma: rep insb into "
text_walk2:
    .asciz " buckets of 64 KiB from 16 MiB, "
text_wrong:
    .asciz " wrong\n"
text_again:
    .asciz "dma: the first 16 buckets again, the last one sent "
line_template:
    .ascii "dma: a line across the page at 0x........, far apart\n"
    .byte 0
    flat_gdt
