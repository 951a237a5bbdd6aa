; idt32: external interrupts through an IDT in 32-bit protected mode.
;
; The guest loads a flat GDT, enters 32-bit protected mode with SS:ESP on a
; flat 32-bit stack, builds an IDT in RAM and loads it with LIDT:
;
;   vector 0x20 (IRQ0, the PIT): a 32-bit *interrupt gate*: the CPU clears
;     IF on entry, so the handler runs with interrupts disabled;
;   vector 0x24 (IRQ4, COM1):    a 32-bit *trap gate*: IF stays set.
;
; Each handler records RFLAGS.IF as it finds it and the CS the CPU pushed
; (the frame is EIP, CS, EFLAGS, no error code). The guest takes five timer
; ticks with HLT in between, then one transmitter-empty interrupt from the
; UART, prints what the handlers saw, and powers off.

%include "lib/all.s"

PIT_COUNT   = 1193
ROM         = 0xf0000
IDT         = 0x9000
TICKS       = 0x8000
IF_IRQ0     = 0x8004
CS_IRQ0     = 0x8008
IF_IRQ4     = 0x800c
SEEN_IRQ4   = 0x8010

start:
    cli
    enter_pm32
    xor eax, eax
    mov [TICKS], eax
    mov [SEEN_IRQ4], eax

    ; the IDT: clear 48 gates, then fill two
    mov edi, IDT
    mov ecx, 96
    rep stosd
    mov eax, irq0                   ; (keystone drops a constant added to a label:
    add eax, ROM                    ;  the ROM's linear address is added at run time)
    mov edx, 0x8e00                 ; present, DPL 0, 32-bit interrupt gate
    mov edi, IDT + 0x100            ; gate 0x20
    call set_gate
    mov eax, irq4
    add eax, ROM
    mov edx, 0x8f00                 ; present, DPL 0, 32-bit trap gate
    mov edi, IDT + 0x120            ; gate 0x24
    call set_gate
    mov ebx, idtr
    lidt [ebx + ROM]

    pic_init                        ; vectors 0x20 and 0x28, IRQ0 only
    pit_init PIT_COUNT              ; about 1 kHz

    halt_while dword ptr [TICKS], 5, jb         ; five ticks
    pic_mask 0xef                   ; IRQ4 only
    serial_ier 0x02                 ; THRI: the transmitter is empty, one is due
    halt_while dword ptr [SEEN_IRQ4], 0, je     ; its interrupt

    mov esi, text_ticks
    call puts
    mov eax, [TICKS]
    call put_digit
    mov esi, text_if0
    call puts
    mov eax, [IF_IRQ0]
    call put_digit
    mov esi, text_cs
    call puts
    mov eax, [CS_IRQ0]
    call put_digit
    mov esi, text_if4
    call puts
    mov eax, [IF_IRQ4]
    call put_digit
    mov al, 10
    call putc

    poweroff

set_gate:                           ; eax handler, edx type word, edi gate
    gate32 edx
    ret

irq0:
    push eax
    pushfd
    pop eax
    shr eax, 9
    and eax, 1
    mov [IF_IRQ0], eax
    mov eax, [esp + 8]              ; the pushed CS (above EIP and our EAX)
    shr eax, 3                      ; as a GDT index
    mov [CS_IRQ0], eax
    inc dword ptr [TICKS]
    pic_eoi
    pop eax
    iretd

irq4:
    push eax
    push edx
    pushfd
    pop eax
    shr eax, 9
    and eax, 1
    mov [IF_IRQ4], eax
    mov dx, COM1 + 2
    in al, dx                       ; clears the THRE interrupt
    mov dx, COM1 + 1
    xor al, al
    out dx, al                      ; and no more of them
    mov dword ptr [SEEN_IRQ4], 1
    pic_eoi 0x64                    ; specific EOI, IRQ4
    pop edx
    pop eax
    iretd

    serial_putc w=e
    serial_puts at="[esi + ROM]", w=e  ; esi: offset in the ROM

put_digit:
    add al, '0'
    jmp putc

text_ticks:
    .ascii "idt32: ticks "
    .byte 0
text_if0:
    .ascii ", IF in the interrupt-gate handler "
    .byte 0
text_cs:
    .ascii ", its frame's CS is GDT entry "
    .byte 0
text_if4:
    .ascii ", IF in the trap-gate handler "
    .byte 0
    flat_gdt
idtr:
    .word 383                       ; 48 gates * 8 - 1
    .long IDT
