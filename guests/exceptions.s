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
; fault does not re-execute its instruction) and IRETs. EBP holds RESUME's
; address in every mode (keystone encodes an absolute address in 64-bit code
; as RIP-relative).
;
; Real mode (the IVT): INT 21h, INT3, INTO, INT1 (ICEBP), #DE, #BR, #UD, #NM,
; #MF. Protected mode (a 32-bit IDT, flat segments): the same, and #GP, #NP
; and #SS from segment loads (error code: the selector), #TS from an IRET
; with NT set whose back link is not a TSS, #PF (not present, and a write to a
; read-only page under CR0.WP; CR2), #PF raised while the VMM emulates an
; instruction that touched MMIO (the VGA hole): a string move from it to an
; absent page, and a read that crosses from it into an absent page (CR2: the
; start of that page), and #DF (#GP's gate made not present: the #NP that
; raises is a second contributory fault). Long mode (16-byte gates):
; INT 21h, INT3, INT1, #DE, #UD, #NM, #GP (a non-canonical address), #PF
; twice, #PF of a string move from MMIO, and INT 22h through a gate with
; IST 1 (its frame on the IST stack).
;
; The vectors of each mode are listed once, in `.irp` lines (keystone repeats
; the lines up to `.endr` for each): where the IVT or IDT is filled, and where
; the handlers' stubs are.

%include "lib/all.s"

ROM         = 0xf0000
GDT_RAM     = 0x500
RESUME      = 0x8000
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

; event: the handler of what INSN (one to four instructions) raises goes on
; after it: that address to RESUME, then INSN
.macro event i1, i2=, i3=, i4=
    mov dword ptr [ebp], event_\@
    \i1
    \i2
    \i3
    \i4
event_\@:
.endm

; first_events: INT 21h, INT3, INTO, INT1, #DE, #BR, #UD, #NM and #MF in
; code whose registers are W-AX... (empty or e) and CR-AX for CR0; with
; LEGACY=0 (long mode) not INTO, BOUND and the x87 error. BOUNDS and the
; x87 control word are read at BASE + their label.
.macro first_events w, cr, legacy=1, bounds=, base=0
    event int 0x21
    event int3
.if \legacy
    event "mov al, 0x7f", "add al, 1", into
.endif
    event ".byte 0xf1"                                  ; INT1 (ICEBP)
    event "mov \w\()ax, 1", "xor \w\()dx, \w\()dx", "xor \w\()cx, \w\()cx", "div \w\()cx"
.if \legacy
    mov \w\()bx, \bounds
    event "mov \w\()ax, 5", "bound \w\()ax, [\w\()bx + \base]"
.endif
    event ".byte 0x0f, 0x0b"                            ; UD2
    mov \cr\()ax, cr0
    or al, 8                                            ; TS
    mov cr0, \cr\()ax
    event ".byte 0xd9, 0xe8"                            ; fld1: #NM
    clts
.if \legacy
    mov eax, cr0
    or al, 0x20                                         ; NE: x87 errors are #MF
    mov cr0, eax
    .byte 0xdb, 0xe3                                    ; fninit
    mov \w\()bx, cw_zm
    fldcw [\w\()bx + \base]
    ; fld1, fldz, fdivp: 1 / 0, unmasked; fwait: #MF
    event ".byte 0xd9, 0xe8, 0xd9, 0xee, 0xde, 0xf9", ".byte 0x9b"
    .byte 0xdb, 0xe2, 0xdb, 0xe3                        ; fnclex, fninit
.endif
.endm

; zero: DWORDS dwords of zeros at AT (EDI ends after them)
.macro zero at, dwords
    mov edi, \at
    mov ecx, \dwords
    xor eax, eax
    rep stosd
.endm

; stub: the label MODE_V, the handler of vector V: it pushes -1 in place of
; an error code (unless CODE=1: the CPU pushed one), then V, and goes on at
; MODE_common. `push imm8` is a push of the mode's word size in every mode.
.macro stub mode, v, code=0
\mode\()_\v:
.if \code == 0
    .byte 0x6a, 0xff                ; push -1
.endif
    .byte 0x6a, \v                  ; push V
    jmp \mode\()_common
.endm

; field: a space, then DIGITS hex digits of VALUE (OP: mov, or lea for an
; address), through the routine hex_MODE
.macro field mode, w, op, value, digits
    \op \w\()ax, \value
    mov \w\()cx, \digits
    call hex_\mode
.endm

; handler_common: MODE_common, in code of S-byte words (registers W-AX...,
; the stack addressed through SP): the line LETTER, the vector, [FULL=1:
; the error code,] the saved instruction pointer, [CR2,] the frame's address;
; then the saved instruction pointer becomes RESUME (read into ACC, BASE
; added), the stub's pushes are dropped and IRET returns
.macro handler_common mode, letter, w, s, sp, iret, acc=eax, base=, full=1
\mode\()_common:                    ; registers, vector, error code, IP, CS, FLAGS
    push \w\()ax
    push \w\()bx
    push \w\()cx
    push \w\()dx
    mov al, \letter
    call putc_\mode
    field \mode, \w, mov, [\sp + 4 * \s], 2
.if \full
    field \mode, \w, mov, [\sp + 5 * \s], 2 * \s
.endif
    field \mode, \w, mov, [\sp + 6 * \s], 2 * \s
.if \full
    field \mode, \w, mov, cr2, 2 * \s
.endif
    field \mode, \w, lea, [\sp + 6 * \s], 2 * \s
    mov al, 10
    call putc_\mode
    mov \acc, [ebp]
.ifnb \base
    add \w\()ax, \base
.endif
    mov [\sp + 6 * \s], \w\()ax
.if \full
    and dword ptr [\sp + 8 * \s], 0xffffbfff    ; NT off in the saved EFLAGS
.endif
    pop \w\()dx
    pop \w\()cx
    pop \w\()bx
    pop \w\()ax
    add \w\()sp, 2 * \s
    \iret
.endm

; hex_routine: the routine hex_MODE: a space, then the low CX hex digits of
; W-AX, a register of BITS bits, through putc_MODE; W-BX and W-CX are lost
.macro hex_routine mode, w, bits
hex_\mode:
    push \w\()ax
    mov al, 0x20
    call putc_\mode
    pop \w\()ax
    mov \w\()bx, \w\()ax
    mov \w\()ax, \bits / 4
    sub \w\()ax, \w\()cx
    shl \w\()ax, 2
    xchg \w\()ax, \w\()cx
    shl \w\()bx, cl                 ; the digits wanted at the top
    mov \w\()cx, \w\()ax
hex_\mode\()_next:
    rol \w\()bx, 4
    mov al, bl
    hex_digit
    call putc_\mode
    loop hex_\mode\()_next
    ret
.endm

start:
    real_mode_start es=1            ; DS = ES = SS = 0, a stack at 0000:7000

    ; --- real mode: the IVT ---------------------------------------------------------
.irp v, 0x00, 0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x21
    ivt_set \v * 4, r_\v
.endr
    mov ax, cs
    mov ds, ax                      ; DS = the ROM: labels address its data
    mov ebp, RESUME
    first_events w=, cr=e, bounds=bounds16

    ; --- to protected mode: the GDT copied to RAM (LTR marks a TSS busy there) -------
    mov si, gdt
    mov di, GDT_RAM
    mov cx, gdt_end - gdt
    cld
    rep movsb
    enter_pm32                      ; flat DS, ES, SS; ESP = 0x7000

    ; --- protected mode --------------------------------------------------------------
    zero IDT32, 0x200
.irp v, 0x00, 0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x10, 0x21
    mov eax, p_\v
    add eax, ROM
    mov edi, IDT32 + \v * 8
    gate32 0x8e00                   ; present, DPL 0, 32-bit interrupt gate
.endr
    mov ebx, idtr32
    lidt [ebx + ROM]

    first_events w=e, cr=e, bounds=bounds32, base=ROM
    event "mov ax, 0x1238", "mov ds, ax"                ; beyond the GDT: #GP(0x1238)
    event "mov ax, 0x18", "mov ds, ax"                  ; not present: #NP(0x18)
    event "mov ax, 0x18", "mov ss, ax"                  ; not present, as SS: #SS(0x18)
    zero TSS32, 26
    mov dword ptr [TSS32], 0x10     ; the back link: a data segment
    mov ax, 0x20
    ltr ax
    ; NT set: IRET is a task return to 0x10: #TS(0x10)
    event pushfd, "or dword ptr [esp], 0x4000", popfd, iretd

    ; paging: 4 MiB identity mapped, but 0x300000 not present and 0x301000 read-only
    mov edi, PT32
    mov eax, 3
    mov ecx, 1024
pt_loop:
    stosd
    add eax, 0x1000
    loop pt_loop
    mov dword ptr [PT32 + 0x300 * 4], 0
    mov dword ptr [PT32 + 0xa1 * 4], 0  ; in the VGA hole: after an MMIO page, an absent one
    mov dword ptr [PT32 + 0x301 * 4], 0x301001
    zero PD32, 1024
    mov dword ptr [PD32], PT32 + 3
    mov eax, PD32
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000              ; PG, WP
    mov cr0, eax
    event "mov eax, [0x300000]"                         ; #PF(0), CR2 0x300000
    event "mov dword ptr [0x301004], 1"                 ; #PF(3): present, write
    ; the VMM emulates these (MMIO): the faults are its to inject
    event "mov esi, 0xa0000", "mov edi, 0x300000", "mov ecx, 2", ".byte 0xf3, 0xa5"   ; rep movsd: #PF(2)
    event "mov eax, [0xa0ffe]"                          ; #PF(0), CR2 0xa1000: the second page
    and byte ptr [IDT32 + 13 * 8 + 5], 0x7f             ; #GP's gate not present
    event "mov ax, 0x1238", "mov ds, ax"                ; #GP, then #NP for its gate: #DF
    or byte ptr [IDT32 + 13 * 8 + 5], 0x80
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax

    ; --- to long mode ----------------------------------------------------------------
    ; 0x18, not present for #NP and #SS, becomes the 64-bit code segment that
    ; enter_long_mode and gate64 use
    mov dword ptr [GDT_RAM + 0x18], 0
    mov dword ptr [GDT_RAM + 0x1c], 0x00209b00
    zero PML4, 3 * 1024
    mov dword ptr [PML4], PDPT + 3
    mov dword ptr [PDPT], PD64 + 3
    mov dword ptr [PD64], 0x83              ; 0 .. 2 MiB
    mov dword ptr [PD64 + 16], 0x400081     ; 4 .. 6 MiB, read-only (2 .. 4 absent)
    enter_long_mode PML4                    ; PAE, CR3, EFER.LME, PG; jmp far 0x18:lm

    ; --- long mode -------------------------------------------------------------------
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, 0x7000
    zero IDT64, 0x200
    mov edx, 0x8e00                 ; present, DPL 0, 64-bit interrupt gate
.irp v, 0x00, 0x01, 0x03, 0x06, 0x07, 0x08, 0x0d, 0x0e, 0x21, 0x22
    lea rax, [rip + l_\v]
    mov edi, IDT64 + \v * 16
    gate64
.endr
    mov edi, IDT64 + 0x22 * 16
    mov byte ptr [rdi + 4], 1       ; INT 22h's gate: IST 1
    lea rbx, [rip + idtr64]
    lidt [rbx]
    zero TSS64, 26
    mov dword ptr [rdi - 104 + 0x24], IST1      ; IST1
    mov ax, 0x28
    ltr ax

    first_events w=e, cr=r, legacy=0
    event "mov rax, 0x8000000000000000", "mov rbx, [rax]"  ; non-canonical: #GP(0)
    event "mov eax, 0x300000", "mov rbx, [rax]"         ; not present: #PF(0)
    event "mov eax, 0x400010", "mov dword ptr [rax], 1" ; read-only: #PF(3)
    event "mov esi, 0xa0000", "mov edi, 0x300000", "mov ecx, 2", ".byte 0xf3, 0x48, 0xa5"     ; rep movsq: #PF(2)
    event int 0x22                                      ; through IST 1
    poweroff

; --- real-mode handlers ------------------------------------------------------------------

.code16
.irp v, 0x00, 0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x21
    stub r, \v
.endr
    handler_common r, 0x52, w=, s=2, sp=esp, iret=iret, acc=ax, full=0     ; 'R'
    hex_routine r, w=, bits=16
    serial_putc putc_r

; --- protected-mode handlers -------------------------------------------------------------

.code32
.irp v, 0x00, 0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x21
    stub p, \v
.endr
.irp v, 0x08, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e
    stub p, \v, code=1
.endr
    handler_common p, 0x50, w=e, s=4, sp=esp, iret=iretd, base=ROM          ; 'P'
    hex_routine p, w=e, bits=32
    serial_putc putc_p, w=e

; --- long-mode handlers ------------------------------------------------------------------

.code64
.irp v, 0x00, 0x01, 0x03, 0x06, 0x07, 0x21, 0x22
    stub l, \v
.endr
.irp v, 0x08, 0x0d, 0x0e
    stub l, \v, code=1
.endr
    handler_common l, 0x4c, w=r, s=8, sp=rsp, iret=iretq, base=ROM          ; 'L'
    hex_routine l, w=r, bits=64
    serial_putc putc_l, w=r

; --- tables ------------------------------------------------------------------------------

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
    .quad 0x00cf13000000ffff        ; 0x18: data, not present (long mode: 64-bit code)
    .quad 0x00008900c0000067        ; 0x20: 32-bit TSS at 0xc000
    .quad 0x00008900c1000067        ; 0x28: 64-bit TSS at 0xc100 (16 bytes)
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
