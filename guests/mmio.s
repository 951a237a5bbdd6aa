; mmio: every kind of access that makes the VMM emulate an instruction.
;
; The guest enters 32-bit protected mode (flat segments) to reach
; hvmspec's test device, a page of memory-like registers at 0xfeb00000 that
; no RAM backs. Each access below is an EPT-violation exit; the VMM decodes
; and emulates the instruction and sends its device accesses to qemu-dm as
; COPY ioreqs. Results go to COM1 as letters, so that the serial output
; shows that every value came back right:
;
;   1. plain writes and reads of 1, 2 and 4 bytes, and MOVZX/MOVSX;
;   2. every read-modify-write family on the device: ADD ADC SUB SBB AND OR
;      XOR INC DEC NEG NOT, a shift, a rotate, BTS, XCHG, CMPXCHG, XADD,
;      each one read ioreq then one write ioreq;
;   3. CMP and TEST with a memory operand (a read only), SETcc and CMOVcc;
;   4. string moves: `rep movsb` from RAM to the device and back (one ioreq
;      each, data_is_ptr=1 with a count), `rep stosd` to the device (the
;      value once, with a count), and `lodsb` from it;
;   5. a write to the VGA hole, where no device is: dropped by qemu-dm;
;   6. power-off.

%include "lib/all.s"

DEV = 0xfeb00000

; twice: the instruction INSN, two times
.macro twice insn
    \insn
    \insn
.endm

; send_register: the device register at [ebx + 8], read back, to COM1 (DX)
.macro send_register
    mov al, [ebx + 8]
    out dx, al
.endm

start:
    cli
    enter_pm32
    mov ebx, DEV
    mov dx, 0x3f8

    ; 1. writes and reads
    mov byte ptr [ebx], 'a'
    mov al, [ebx]
    out dx, al                      ; a
    mov word ptr [ebx + 2], 0x6362
    mov ax, [ebx + 2]
    out dx, al                      ; b
    mov al, ah
    out dx, al                      ; c
    mov dword ptr [ebx + 4], 0x80000064
    movzx eax, byte ptr [ebx + 4]
    out dx, al                      ; d
    movsx eax, byte ptr [ebx + 7]
    add al, 'e' + 0x80
    out dx, al                      ; e

    ; 2. read-modify-write, each on a fresh register
    mov dword ptr [ebx + 8], 'A' - 1
    add dword ptr [ebx + 8], 1      ; 'A'
    send_register
    stc
    adc byte ptr [ebx + 8], 0       ; 'B'
    send_register
    sub byte ptr [ebx + 8], -1      ; 'C'
    send_register
    stc
    sbb word ptr [ebx + 8], -2      ; 'D'
    send_register
    or byte ptr [ebx + 8], 0x01     ; 'E'
    send_register
    and byte ptr [ebx + 8], 0xfe    ; 'D'
    xor byte ptr [ebx + 8], 0x02    ; 'F'
    send_register
    inc byte ptr [ebx + 8]          ; 'G'
    send_register
    dec dword ptr [ebx + 8]
    inc dword ptr [ebx + 8]
    inc byte ptr [ebx + 8]          ; 'H'
    send_register
    twice neg byte ptr [ebx + 8]   ; and back
    inc byte ptr [ebx + 8]          ; 'I'
    send_register
    twice not byte ptr [ebx + 8]   ; and back
    inc byte ptr [ebx + 8]          ; 'J'
    send_register
    mov byte ptr [ebx + 8], 0x25
    shl byte ptr [ebx + 8], 1       ; 0x4a 'J'
    inc byte ptr [ebx + 8]          ; 'K'
    send_register
    mov byte ptr [ebx + 8], 0x98
    rol byte ptr [ebx + 8], 1       ; 0x31
    add byte ptr [ebx + 8], 0x1b    ; 'L'
    send_register
    mov byte ptr [ebx + 8], 0x4c
    bts dword ptr [ebx + 8], 0      ; 'M'
    send_register
    mov ecx, 'N'
    xchg [ebx + 8], ecx
    mov al, [ebx + 8]
    out dx, al                      ; N
    mov eax, 'N'
    mov ecx, 'O'
    cmpxchg [ebx + 8], ecx          ; equal: the device gets 'O'
    send_register
    mov ecx, 1
    xadd [ebx + 8], ecx             ; 'P', ecx = 'O'
    send_register

    ; 3. compare, test, setcc, cmovcc
    cmp byte ptr [ebx + 8], 'P'
    sete byte ptr [ebx + 12]        ; 1
    mov al, [ebx + 12]
    add al, 'Q' - 1
    out dx, al                      ; Q
    test byte ptr [ebx + 8], 0x10
    mov eax, 0
    cmovnz eax, [ebx + 8]
    add al, 2
    out dx, al                      ; R
    mov al, 10
    out dx, al

    ; 4. string moves
    mov esi, text
    add esi, 0xf0000
    lea edi, [ebx + 0x100]
    mov ecx, text_end - text
    cld
    rep movsb                       ; RAM -> device, one ioreq with a count
    lea esi, [ebx + 0x100]
    mov edi, 0x8000
    mov ecx, text_end - text
    rep movsb                       ; device -> RAM
    mov esi, 0x8000
    mov ecx, text_end - text
    rep outsb                       ; to COM1
    lea edi, [ebx + 0x200]
    mov eax, 0x0a2a2a2a
    mov ecx, 1
    rep stosd                       ; the value once, with a count
    lea esi, [ebx + 0x200]
    lodsb
    out dx, al                      ; *
    lodsb
    lodsb
    lodsb
    out dx, al                      ; newline

    ; 5. nothing there
    mov byte ptr [0xa0000], 1

    ; 6. power off
    poweroff

text:
    .ascii "string moves through the device\n"
text_end:
    flat_gdt
