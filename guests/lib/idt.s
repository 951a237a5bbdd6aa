; lib/idt.s: interrupt tables. In real mode the IVT at 0 (a far pointer per
; vector); in protected and long mode an IDT of gates.

; ivt_set: the IVT entry at ADDRESS (vector * 4) to F000:HANDLER; SEG: a
; segment override for the IVT's segment (`es:` where DS is not 0)
.macro ivt_set address, handler, seg=
    mov word ptr \seg\()[\address], \handler
    mov word ptr \seg\()[\address + 2], 0xf000
.endm

; gate32: the 8-byte gate at [EDI] for the handler at linear EAX, selector
; 0x08, its type word TYPE (an immediate or a register: 0x8e00 a present
; 32-bit interrupt gate, 0x8f00 a trap gate); EAX and EBX are lost
.macro gate32 type
    mov ebx, eax
    and eax, 0xffff
    or eax, 0x00080000              ; selector 0x08
    mov [edi], eax
    and ebx, 0xffff0000
    or ebx, \type
    mov [edi + 4], ebx
.endm

; gate64: the 16-byte gate at [RDI] for the handler at RAX, SELECTOR (0x18,
; lib/pm32.s's 64-bit code segment), its type word in EDX (0x8e00 a 64-bit
; interrupt gate, 0x8f00 a trap gate; the low bits: the IST index)
.macro gate64 selector=0x18
    mov rbx, rax
    and eax, 0xffff
    or eax, \selector << 16
    mov [rdi], eax
    mov eax, ebx
    and eax, 0xffff0000
    or eax, edx
    mov [rdi + 4], eax
    shr rbx, 32
    mov [rdi + 8], ebx
    mov dword ptr [rdi + 12], 0
.endm
