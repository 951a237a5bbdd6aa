; exceptions: software interrupts and exceptions, in real, protected and long mode.
;
; The CPU delivers these without a VM exit (SDM vol. 3A chapter 6): the guest
; raises each one on purpose and its handler prints one line on COM1:
;
;   R vv iiii ssss                          real mode: vector, saved IP, and
;                                           where the frame is (SS:SP)
;   P vv eeeeeeee iiiiiiii cccccccc ssssssss  protected mode: vector, error
;                                           code (ffffffff: none pushed),
;                                           saved EIP, CR2, frame address
;   L vv e... i... c... s...                long mode, the same in 64 bits
;
; Each handler then resumes at the address the test left in RESUME (so a
; fault does not re-execute its instruction) and IRETs.
;
; Real mode (the IVT): INT 21h, INT3, INTO, INT1 (ICEBP), #DE, #BR, #UD, #NM,
; #MF. Protected mode (a 32-bit IDT, flat segments): the same, and #GP, #NP
; and #SS from segment loads (error code: the selector), #TS from an IRET
; with NT set whose back link is not a TSS, #PF (not present, and a write to a
; read-only page under CR0.WP; CR2), and #DF (#GP's gate made not present: the
; #NP that raises is a second contributory fault). Long mode (16-byte gates):
; INT 21h, INT3, INT1, #DE, #UD, #NM, #GP (a non-canonical address), #PF
; twice, and INT 22h through a gate with IST 1 (its frame on the IST stack).

COM1        = 0x3f8
ROM         = 0xf0000
GDT_RAM     = 0x500
RESUME      = 0x8000
DATA        = 0x8000
IDT32       = 0x9000
IDT64       = 0xa000
TSS32       = 0xc000
TSS64       = 0xc100
IST1        = 0x6000
PD32        = 0x20000
PT32        = 0x21000
PML4        = 0x22000
PDPT        = 0x23000
PD64        = 0x24000

start:
    cli
    mov ax, cs
    mov ds, ax
    xor ax, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7000

    ; --- real mode: the IVT ---------------------------------------------------------
    mov si, ivt_table
ivt_loop:
    mov bl, [si]
    cmp bl, 0xff
    je ivt_done
    xor bh, bh
    shl bx, 2
    mov ax, [si + 1]
    mov es:[bx], ax
    mov word ptr es:[bx + 2], 0xf000
    add si, 3
    jmp ivt_loop
ivt_done:
    mov word ptr es:[RESUME], r1
    int 0x21
r1:
    mov word ptr es:[RESUME], r2
    int3
r2:
    mov word ptr es:[RESUME], r3
    mov al, 0x7f
    add al, 1
    into
r3:
    mov word ptr es:[RESUME], r4
    .byte 0xf1
r4:
    mov word ptr es:[RESUME], r5
    mov ax, 1
    xor dx, dx
    xor cx, cx
    div cx
r5:
    mov word ptr es:[RESUME], r6
    mov ax, 5
    bound ax, [bounds16]
r6:
    mov word ptr es:[RESUME], r7
    .byte 0x0f, 0x0b
r7:
    mov word ptr es:[RESUME], r8
    mov eax, cr0
    or al, 8                        ; TS
    mov cr0, eax
    .byte 0xd9, 0xe8                ; fld1: #NM
r8:
    clts
    mov word ptr es:[RESUME], r9
    mov eax, cr0
    or al, 0x20                     ; NE: x87 errors are #MF
    mov cr0, eax
    .byte 0xdb, 0xe3                ; fninit
    fldcw [cw_zm]
    .byte 0xd9, 0xe8                ; fld1
    .byte 0xd9, 0xee                ; fldz
    .byte 0xde, 0xf9                ; fdivp: 1 / 0, unmasked
    .byte 0x9b                      ; fwait: #MF
r9:
    .byte 0xdb, 0xe2                ; fnclex
    .byte 0xdb, 0xe3                ; fninit

    ; --- to protected mode: the GDT copied to RAM -----------------------------------------
    mov si, gdt
    mov di, GDT_RAM
    mov cx, gdt_end - gdt
    cld
    rep movsb
    lgdt cs:[gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    .byte 0x66, 0xea                ; jmp far 0x08:(ROM + pm)
    .long ROM + pm
    .word 0x08

; --- real-mode handlers -----------------------------------------------------------------

r_0:
    .byte 0x6a, 0x00               ; push 0x00 (a word)
    jmp r_common
r_1:
    .byte 0x6a, 0x01               ; push 0x01 (a word)
    jmp r_common
r_3:
    .byte 0x6a, 0x03               ; push 0x03 (a word)
    jmp r_common
r_4:
    .byte 0x6a, 0x04               ; push 0x04 (a word)
    jmp r_common
r_5:
    .byte 0x6a, 0x05               ; push 0x05 (a word)
    jmp r_common
r_6:
    .byte 0x6a, 0x06               ; push 0x06 (a word)
    jmp r_common
r_7:
    .byte 0x6a, 0x07               ; push 0x07 (a word)
    jmp r_common
r_16:
    .byte 0x6a, 0x10               ; push 0x10 (a word)
    jmp r_common
r_21:
    .byte 0x6a, 0x21               ; push 0x21 (a word)
r_common:                           ; vector, IP, CS, FLAGS
    push bp
    mov bp, sp
    push ax
    push bx
    push cx
    push dx
    mov al, 0x52                    ; 'R'
    call putc16
    mov ax, [bp + 2]
    mov cx, 2
    call hex16
    mov ax, [bp + 4]
    mov cx, 4
    call hex16
    lea ax, [bp + 4]
    mov cx, 4
    call hex16
    mov al, 0x0a
    call putc16
    mov ax, es:[RESUME]
    mov [bp + 4], ax
    pop dx
    pop cx
    pop bx
    pop ax
    pop bp
    add sp, 2
    iret

hex16:                              ; a space, then the low CX nibbles of AX
    push ax
    mov al, 0x20
    call putc16
    pop ax
    mov bx, ax
    mov ax, 4
    sub ax, cx
    shl ax, 2
    xchg ax, cx
    shl bx, cl
    mov cx, ax
hex16_loop:
    rol bx, 4
    mov al, bl
    and al, 0x0f
    add al, 0x30
    cmp al, 0x39
    jbe hex16_digit
    add al, 0x27
hex16_digit:
    call putc16
    loop hex16_loop
    ret

putc16:
    push dx
    push ax
    mov dx, COM1 + 5
putc16_wait:
    in al, dx
    test al, 0x20
    jz putc16_wait
    pop ax
    mov dx, COM1
    out dx, al
    pop dx
    ret

; --- protected mode -----------------------------------------------------------------------

.code32
pm:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7000
    mov edi, IDT32
    mov ecx, 0x200
    xor eax, eax
    rep stosd
    mov esi, gates32
    add esi, ROM
g32_loop:
    movzx edi, byte ptr [esi]
    cmp edi, 0xff
    je g32_done
    mov eax, [esi + 1]
    lea edi, [edi * 8 + IDT32]
    mov [edi], ax
    mov word ptr [edi + 2], 0x08
    and eax, 0xffff0000
    or eax, 0x8e00                  ; present, DPL 0, 32-bit interrupt gate
    mov [edi + 4], eax
    add esi, 5
    jmp g32_loop
g32_done:
    mov ebx, idtr32
    lidt [ebx + ROM]

    mov dword ptr [RESUME], p1
    int 0x21
p1:
    mov dword ptr [RESUME], p2
    int3
p2:
    mov dword ptr [RESUME], p3
    mov al, 0x7f
    add al, 1
    into
p3:
    mov dword ptr [RESUME], p4
    .byte 0xf1
p4:
    mov dword ptr [RESUME], p5
    mov eax, 1
    xor edx, edx
    xor ecx, ecx
    div ecx
p5:
    mov dword ptr [RESUME], p6
    mov ebx, bounds32
    mov eax, 5
    bound eax, [ebx + ROM]
p6:
    mov dword ptr [RESUME], p7
    .byte 0x0f, 0x0b
p7:
    mov dword ptr [RESUME], p8
    mov eax, cr0
    or al, 8
    mov cr0, eax
    .byte 0xd9, 0xe8                ; fld1: #NM
p8:
    clts
    mov dword ptr [RESUME], p9
    .byte 0xdb, 0xe3                ; fninit
    mov ebx, cw_zm
    fldcw [ebx + ROM]
    .byte 0xd9, 0xe8, 0xd9, 0xee, 0xde, 0xf9    ; fld1, fldz, fdivp
    .byte 0x9b                      ; fwait: #MF
p9:
    .byte 0xdb, 0xe2, 0xdb, 0xe3    ; fnclex, fninit
    mov dword ptr [RESUME], p10
    mov ax, 0x1238                  ; beyond the GDT: #GP(0x1238)
    mov ds, ax
p10:
    mov dword ptr [RESUME], p11
    mov ax, 0x18                    ; not present: #NP(0x18)
    mov ds, ax
p11:
    mov dword ptr [RESUME], p12
    mov ax, 0x18                    ; not present, as SS: #SS(0x18)
    mov ss, ax
p12:
    mov dword ptr [RESUME], p13
    mov edi, TSS32
    mov ecx, 26
    xor eax, eax
    rep stosd
    mov dword ptr [TSS32], 0x10     ; the back link: a data segment
    mov ax, 0x20
    ltr ax
    pushfd
    or dword ptr [esp], 0x4000      ; NT
    popfd
    iretd                           ; a task return to 0x10: #TS(0x10)
p13:
    ; paging: 4 MiB identity mapped, but 0x300000 not present and 0x301000 read-only
    mov edi, PT32
    mov eax, 3
    mov ecx, 1024
pt_loop:
    stosd
    add eax, 0x1000
    loop pt_loop
    mov dword ptr [PT32 + 0x300 * 4], 0
    mov dword ptr [PT32 + 0x301 * 4], 0x301001
    mov edi, PD32
    mov ecx, 1024
    xor eax, eax
    rep stosd
    mov dword ptr [PD32], PT32 + 3
    mov eax, PD32
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000              ; PG, WP
    mov cr0, eax
    mov dword ptr [RESUME], p14
    mov eax, [0x300000]             ; #PF(0), CR2 0x300000
p14:
    mov dword ptr [RESUME], p15
    mov dword ptr [0x301004], 1     ; #PF(3): present, write
p15:
    mov dword ptr [RESUME], p16
    and byte ptr [IDT32 + 13 * 8 + 5], 0x7f     ; #GP's gate not present
    mov ax, 0x1238
    mov ds, ax                      ; #GP, then #NP for its gate: #DF
p16:
    or byte ptr [IDT32 + 13 * 8 + 5], 0x80
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax

    ; --- to long mode ------------------------------------------------------------------
    mov edi, PML4
    mov ecx, 3 * 1024
    xor eax, eax
    rep stosd
    mov dword ptr [PML4], PDPT + 3
    mov dword ptr [PDPT], PD64 + 3
    mov dword ptr [PD64], 0x83              ; 0 .. 2 MiB
    mov dword ptr [PD64 + 16], 0x400081     ; 4 .. 6 MiB, read-only (2 .. 4 absent)
    mov eax, cr4
    or eax, 0x20                            ; PAE
    mov cr4, eax
    mov eax, PML4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100                           ; LME
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    .byte 0xea                              ; jmp far 0x28:(ROM + lm)
    .long ROM + lm
    .word 0x28

; --- protected-mode handlers ---------------------------------------------------------------

p_0:
    push -1
    push 0x00
    jmp p_common
p_1:
    push -1
    push 0x01
    jmp p_common
p_3:
    push -1
    push 0x03
    jmp p_common
p_4:
    push -1
    push 0x04
    jmp p_common
p_5:
    push -1
    push 0x05
    jmp p_common
p_6:
    push -1
    push 0x06
    jmp p_common
p_7:
    push -1
    push 0x07
    jmp p_common
p_8:
    push 0x08
    jmp p_common
p_10:
    push 0x0a
    jmp p_common
p_11:
    push 0x0b
    jmp p_common
p_12:
    push 0x0c
    jmp p_common
p_13:
    push 0x0d
    jmp p_common
p_14:
    push 0x0e
    jmp p_common
p_16:
    push -1
    push 0x10
    jmp p_common
p_21:
    push -1
    push 0x21
p_common:                           ; vector, error code, EIP, CS, EFLAGS
    pushad
    mov al, 0x50                    ; 'P'
    call putc32
    mov eax, [esp + 32]
    mov ecx, 2
    call hex32
    mov eax, [esp + 36]
    mov ecx, 8
    call hex32
    mov eax, [esp + 40]
    mov ecx, 8
    call hex32
    mov eax, cr2
    mov ecx, 8
    call hex32
    lea eax, [esp + 40]
    mov ecx, 8
    call hex32
    mov al, 0x0a
    call putc32
    mov eax, [RESUME]
    add eax, ROM
    mov [esp + 40], eax
    and dword ptr [esp + 48], 0xffffbfff    ; NT off in the saved EFLAGS
    popad
    add esp, 8
    iretd

hex32:                              ; a space, then the low ECX nibbles of EAX
    push eax
    mov al, 0x20
    call putc32
    pop eax
    mov ebx, eax
    mov eax, 8
    sub eax, ecx
    shl eax, 2
    xchg eax, ecx
    shl ebx, cl
    mov ecx, eax
hex32_loop:
    rol ebx, 4
    mov al, bl
    and al, 0x0f
    add al, 0x30
    cmp al, 0x39
    jbe hex32_digit
    add al, 0x27
hex32_digit:
    call putc32
    loop hex32_loop
    ret

putc32:
    push edx
    push eax
    mov dx, COM1 + 5
putc32_wait:
    in al, dx
    test al, 0x20
    jz putc32_wait
    pop eax
    mov dx, COM1
    out dx, al
    pop edx
    ret

; --- long mode -------------------------------------------------------------------------------

.code64
lm:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, 0x7000
    mov r15, DATA
    mov edi, IDT64
    mov ecx, 0x100
    xor eax, eax
    rep stosq
    lea rsi, [rip + gates64]
g64_loop:
    movzx edi, byte ptr [rsi]
    cmp edi, 0xff
    je g64_done
    mov eax, [rsi + 1]
    shl edi, 4
    add edi, IDT64
    mov [rdi], ax
    mov word ptr [rdi + 2], 0x28
    movzx ecx, byte ptr [rsi + 5]
    or ecx, 0x8e00                  ; present, DPL 0, 64-bit interrupt gate, IST
    mov [rdi + 4], cx
    shr eax, 16
    mov [rdi + 6], ax
    mov dword ptr [rdi + 8], 0
    mov dword ptr [rdi + 12], 0
    add rsi, 6
    jmp g64_loop
g64_done:
    lea rbx, [rip + idtr64]
    lidt [rbx]
    mov edi, TSS64
    mov ecx, 26
    xor eax, eax
    rep stosd
    mov dword ptr [rdi - 104 + 0x24], IST1      ; IST1
    mov ax, 0x30
    ltr ax

    mov dword ptr [r15], l1
    int 0x21
l1:
    mov dword ptr [r15], l2
    int3
l2:
    mov dword ptr [r15], l3
    .byte 0xf1
l3:
    mov dword ptr [r15], l4
    mov eax, 1
    xor edx, edx
    xor ecx, ecx
    div ecx
l4:
    mov dword ptr [r15], l5
    .byte 0x0f, 0x0b
l5:
    mov dword ptr [r15], l6
    mov rax, cr0
    or al, 8
    mov cr0, rax
    .byte 0xd9, 0xe8                ; fld1: #NM
l6:
    clts
    mov dword ptr [r15], l7
    mov rax, 0x8000000000000000
    mov rbx, [rax]                  ; non-canonical: #GP(0)
l7:
    mov dword ptr [r15], l8
    mov eax, 0x300000
    mov rbx, [rax]                  ; not present: #PF(0)
l8:
    mov dword ptr [r15], l9
    mov eax, 0x400010
    mov dword ptr [rax], 1          ; read-only: #PF(3)
l9:
    mov dword ptr [r15], l10
    int 0x22                        ; through IST 1
l10:
    mov dx, 0x1f44                  ; ACPI power-off
    mov ax, 0x3c00
    out dx, ax
    hlt

l_0:
    push -1
    push 0x00
    jmp l_common
l_1:
    push -1
    push 0x01
    jmp l_common
l_3:
    push -1
    push 0x03
    jmp l_common
l_6:
    push -1
    push 0x06
    jmp l_common
l_7:
    push -1
    push 0x07
    jmp l_common
l_8:
    push 0x08
    jmp l_common
l_13:
    push 0x0d
    jmp l_common
l_14:
    push 0x0e
    jmp l_common
l_21:
    push -1
    push 0x21
    jmp l_common
l_22:
    push -1
    push 0x22
l_common:                           ; vector, error code, RIP, CS, RFLAGS, RSP, SS
    push rax
    push rbx
    push rcx
    push rdx
    mov al, 0x4c                    ; 'L'
    call putc64
    mov rax, [rsp + 32]
    mov ecx, 2
    call hex64
    mov rax, [rsp + 40]
    mov ecx, 16
    call hex64
    mov rax, [rsp + 48]
    mov ecx, 16
    call hex64
    mov rax, cr2
    mov ecx, 16
    call hex64
    lea rax, [rsp + 48]
    mov ecx, 16
    call hex64
    mov al, 0x0a
    call putc64
    mov eax, [r15]
    add rax, ROM
    mov [rsp + 48], rax
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

hex64:                              ; a space, then the low RCX nibbles of RAX
    push rax
    mov al, 0x20
    call putc64
    pop rax
    mov rbx, rax
    mov eax, 16
    sub eax, ecx
    shl eax, 2
    xchg eax, ecx
    shl rbx, cl
    mov ecx, eax
hex64_loop:
    rol rbx, 4
    mov al, bl
    and al, 0x0f
    add al, 0x30
    cmp al, 0x39
    jbe hex64_digit
    add al, 0x27
hex64_digit:
    call putc64
    loop hex64_loop
    ret

putc64:
    push rdx
    push rax
    mov dx, COM1 + 5
putc64_wait:
    in al, dx
    test al, 0x20
    jz putc64_wait
    pop rax
    mov dx, COM1
    out dx, al
    pop rdx
    ret

; --- tables -----------------------------------------------------------------------------------

ivt_table:                          ; vector, handler offset
    .byte 0x00
    .word r_0
    .byte 0x01
    .word r_1
    .byte 0x03
    .word r_3
    .byte 0x04
    .word r_4
    .byte 0x05
    .word r_5
    .byte 0x06
    .word r_6
    .byte 0x07
    .word r_7
    .byte 0x10
    .word r_16
    .byte 0x21
    .word r_21
    .byte 0xff
gates32:                            ; vector, handler (linear)
    .byte 0x00
    .long ROM + p_0
    .byte 0x01
    .long ROM + p_1
    .byte 0x03
    .long ROM + p_3
    .byte 0x04
    .long ROM + p_4
    .byte 0x05
    .long ROM + p_5
    .byte 0x06
    .long ROM + p_6
    .byte 0x07
    .long ROM + p_7
    .byte 0x08
    .long ROM + p_8
    .byte 0x0a
    .long ROM + p_10
    .byte 0x0b
    .long ROM + p_11
    .byte 0x0c
    .long ROM + p_12
    .byte 0x0d
    .long ROM + p_13
    .byte 0x0e
    .long ROM + p_14
    .byte 0x10
    .long ROM + p_16
    .byte 0x21
    .long ROM + p_21
    .byte 0xff
gates64:                            ; vector, handler (linear), IST
    .byte 0x00
    .long ROM + l_0
    .byte 0
    .byte 0x01
    .long ROM + l_1
    .byte 0
    .byte 0x03
    .long ROM + l_3
    .byte 0
    .byte 0x06
    .long ROM + l_6
    .byte 0
    .byte 0x07
    .long ROM + l_7
    .byte 0
    .byte 0x08
    .long ROM + l_8
    .byte 0
    .byte 0x0d
    .long ROM + l_13
    .byte 0
    .byte 0x0e
    .long ROM + l_14
    .byte 0
    .byte 0x21
    .long ROM + l_21
    .byte 0
    .byte 0x22
    .long ROM + l_22
    .byte 1
    .byte 0xff
bounds16:
    .word 0, 3
bounds32:
    .long 0, 3
cw_zm:
    .word 0x037b                    ; all x87 exceptions masked but zero-divide
.align 8
gdt:
    .quad 0
    .quad 0x00cf9b000000ffff        ; 0x08: 32-bit code
    .quad 0x00cf93000000ffff        ; 0x10: data
    .quad 0x00cf13000000ffff        ; 0x18: data, not present
    .quad 0x00008900c0000067        ; 0x20: 32-bit TSS at 0xc000
    .quad 0x00209b0000000000        ; 0x28: 64-bit code
    .quad 0x00008900c1000067        ; 0x30: 64-bit TSS at 0xc100 (16 bytes)
    .quad 0
gdt_end:
gdtr:
    .word gdt_end - gdt - 1
    .long GDT_RAM
idtr32:
    .word 0x22 * 8 - 1
    .long IDT32
idtr64:
    .word 0x23 * 16 - 1
    .quad IDT64
