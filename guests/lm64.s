; lm64: external interrupts in 64-bit long mode, with paging.
;
; The guest goes from real mode through 32-bit protected mode into long
; mode: it builds 4-level page tables (2 MiB pages), sets CR4.PAE, CR3,
; EFER.LME and CR0.PG, and jumps to a 64-bit code segment. The tables map
;
;   linear 0 .. 2 MiB            -> physical 0 .. 2 MiB (identity)
;   linear 0x40000000 + 2 MiB    -> physical 0 .. 2 MiB (an alias)
;   linear 0x80000000 + 2 MiB    -> physical 0xfea00000 (the test device's
;                                   page 0xfeb00000 is at linear 0x80100000)
;
; so the VMM must walk the guest's page tables to find the data of a string
; I/O instruction (the text below is sent with `rep outsb` through the
; alias) and the device a read-modify-write touches (a qword `add` on the
; test device through linear 0x80100000).
;
; The IDT holds 16-byte gates:
;
;   vector 0x20 (IRQ0, the PIT): a 64-bit *interrupt gate*: IF is clear in
;     the handler;
;   vector 0x24 (IRQ4, COM1):    a 64-bit *trap gate*: IF stays set.
;
; The CPU aligns RSP down to 16 bytes and pushes SS, RSP, RFLAGS, CS and RIP,
; eight bytes each. The timer handler records what it finds in that frame;
; the main loop runs with RSP = 0x7008 (not 16-byte aligned) and R12 holding
; a 64-bit value that the interrupts must not disturb. After five ticks and
; one transmitter-empty interrupt it prints what it saw and powers off.

%include "lib/all.s"

PIT_COUNT   = 1193
ROM         = 0xf0000
PML4        = 0x20000
PDPT        = 0x21000
PD_LOW      = 0x22000
PD_DEVICE   = 0x23000
IDT         = 0x9000
DATA        = 0x8000                ; R15 holds it in 64-bit code (keystone encodes
TICKS       = 0x00                  ; an absolute [address] as RIP-relative to the
IF_IRQ0     = 0x08                  ; assembly origin, so data is reached through R15)
CS_IRQ0     = 0x10
SS_IRQ0     = 0x18
RSP_IRQ0    = 0x20
ENTRY_IRQ0  = 0x28
IF_IRQ4     = 0x30
SEEN_IRQ4   = 0x38
ALIAS       = 0x40000000
DEVICE      = 0x80100000

; print_field: the text TEXT, then VALUE: a digit, or DIGITS hex digits
.macro print_field text, value, digits=
    lea rsi, [rip + \text]
    call puts
    mov rax, \value
.ifb \digits
    call put_digit
.else
    mov ecx, \digits
    call put_hex
.endif
.endm

start:
    cli
    enter_pm32

    ; the page tables: clear four pages, then fill them
    mov edi, PML4
    mov ecx, 4096
    xor eax, eax
    rep stosd
    mov dword ptr [PML4], PDPT + 3          ; present, writable
    mov dword ptr [PDPT], PD_LOW + 3        ; 0 .. 1 GiB
    mov dword ptr [PDPT + 8], PD_LOW + 3    ; 1 .. 2 GiB: the alias
    mov dword ptr [PDPT + 16], PD_DEVICE + 3
    mov dword ptr [PD_LOW], 0x83            ; a 2 MiB page at 0
    mov dword ptr [PD_DEVICE], 0xfea00083   ; a 2 MiB page at 0xfea00000

    enter_long_mode PML4                    ; PAE, CR3, EFER.LME, PG; jmp far 0x18:lm
    mov r15, DATA
    xor eax, eax
    mov edi, DATA
    mov ecx, 8
    rep stosq

    ; the IDT: clear 48 gates of 16 bytes, then fill two
    mov edi, IDT
    mov ecx, 96
    rep stosq
    lea rax, [rip + irq0]
    mov edx, 0x8e00                         ; present, DPL 0, 64-bit interrupt gate
    mov edi, IDT + 0x200                    ; gate 0x20
    call set_gate
    lea rax, [rip + irq4]
    mov edx, 0x8f00                         ; present, DPL 0, 64-bit trap gate
    mov edi, IDT + 0x240                    ; gate 0x24
    call set_gate
    lea rbx, [rip + idtr]
    lidt [rbx]

    pic_init                                ; vectors 0x20 and 0x28, IRQ0 only
    pit_init PIT_COUNT              ; about 1 kHz

    mov rsp, 0x7008                         ; not 16-byte aligned
    mov r12, 0x0123456789abcdef
    halt_while qword ptr [r15 + TICKS], 5, jb       ; five ticks
    pic_mask 0xef                           ; IRQ4 only
    serial_ier 0x02                         ; THRI: the transmitter is empty, one is due
    halt_while qword ptr [r15 + SEEN_IRQ4], 0, je   ; its interrupt
    mov rsp, 0x7000

    print_field text_mode, [r15 + TICKS]
    print_field text_if0, [r15 + IF_IRQ0]
    print_field text_if4, [r15 + IF_IRQ4]
    print_field text_frame, [r15 + CS_IRQ0], 4
    print_field text_ss, [r15 + SS_IRQ0], 4
    print_field text_rsp, [r15 + RSP_IRQ0], 4
    print_field text_entry, [r15 + ENTRY_IRQ0], 4
    print_field text_r12, r12, 16

    ; a qword read-modify-write on the test device, through the device alias
    lea rsi, [rip + text_device]
    call puts
    mov rbx, DEVICE
    mov rax, 0x1122334455667788
    mov [rbx], rax
    add qword ptr [rbx], 0x101
    mov rax, [rbx]
    mov ecx, 16
    call put_hex
    mov al, 10
    call putc

    poweroff                                ; ACPI PM1a control: S5

set_gate:                                   ; rax handler, edx type word, rdi gate
    gate64
    ret

irq0:
    push rax
    lea rax, [rsp + 8]                      ; RSP as the CPU left it: the frame's address
    mov [r15 + ENTRY_IRQ0], rax
    pushfq
    pop rax
    shr eax, 9
    and eax, 1
    mov [r15 + IF_IRQ0], rax
    mov rax, [rsp + 16]                     ; the pushed CS (above RIP and our RAX)
    mov [r15 + CS_IRQ0], rax
    mov rax, [rsp + 32]                     ; the pushed RSP
    mov [r15 + RSP_IRQ0], rax
    mov rax, [rsp + 40]                     ; the pushed SS
    mov [r15 + SS_IRQ0], rax
    inc qword ptr [r15 + TICKS]
    pic_eoi
    pop rax
    iretq

irq4:
    push rax
    push rdx
    pushfq
    pop rax
    shr eax, 9
    and eax, 1
    mov [r15 + IF_IRQ4], rax
    mov dx, COM1 + 2
    in al, dx                               ; clears the THRE interrupt
    mov dx, COM1 + 1
    xor al, al
    out dx, al                              ; and no more of them
    mov qword ptr [r15 + SEEN_IRQ4], 1
    pic_eoi 0x64                            ; specific EOI, IRQ4
    pop rdx
    pop rax
    iretq

    serial_putc w=r

puts:                                       ; rsi: a text with its length byte first
    movzx ecx, byte ptr [rsi]
    inc rsi
    mov rax, ALIAS                          ; read it through the alias mapping
    add rsi, rax
    mov dx, COM1
    rep outsb
    ret

put_digit:
    add al, '0'
    jmp putc

put_hex:                                    ; rax value, ecx digits
    mov rdx, rax
    mov eax, ecx
    shl eax, 2
    mov ecx, 64
    sub ecx, eax
    shl rdx, cl
    mov ecx, eax
    shr ecx, 2
put_hex_next:
    rol rdx, 4
    mov eax, edx
    and eax, 15
    cmp al, 10
    jb put_hex_digit
    add al, 'a' - '0' - 10
put_hex_digit:
    add al, '0'
    call putc
    dec ecx
    jnz put_hex_next
    ret

text_mode:
    .byte 31
    .ascii "lm64: long mode, paging. ticks "
text_if0:
    .byte 35
    .ascii ", IF in the interrupt-gate handler "
text_if4:
    .byte 30
    .ascii ", IF in the trap-gate handler "
text_frame:
    .byte 11
    .byte 10
    .ascii "frame: CS "
text_ss:
    .byte 4
    .ascii " SS "
text_rsp:
    .byte 11
    .ascii " saved RSP "
text_entry:
    .byte 11
    .ascii ", frame at "
text_r12:
    .byte 10
    .byte 10
    .ascii "R12 kept "
text_device:
    .byte 37
    .byte 10
    .ascii "test device qword + 0x101 via alias "
    flat_gdt long64=1
idtr:
    .word 767                               ; 48 gates * 16 - 1
    .quad IDT
