; lib/pic.s: the 8259 pair (master at 0x20, slave at 0xa0) and the PIT.

; pic_init: ICW1 (edge, cascade, ICW4), ICW2 (the vector base: MASTER,
; SLAVE), ICW3 (the slave on IRQ2), ICW4 (8086 mode) to both controllers,
; then OCW1, the masks: the slave's first, or the master's with MASTER_FIRST=1
.macro pic_init master=0x20, slave=0x28, master_mask=0xfe, slave_mask=0xff, master_first=0
    mov al, 0x11
    out 0x20, al
    mov al, \master
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0x11
    out 0xa0, al
    mov al, \slave
    out 0xa1, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0xa1, al
.if \master_first
    mov al, \master_mask
    out 0x21, al
    mov al, \slave_mask
    out 0xa1, al
.else
    mov al, \slave_mask
    out 0xa1, al
    mov al, \master_mask
    out 0x21, al
.endif
.endm

; pic_eoi: OCW2 to the master: 0x20 a non-specific EOI, 0x60 + n the
; specific EOI of IRQ n
.macro pic_eoi ocw2=0x20
    mov al, \ocw2
    out 0x20, al
.endm

; pit_init: PIT counter 0, lobyte then hibyte, mode 2 (a rate generator):
; IRQ0 at 1193182 / COUNT Hz (1193: about 1 kHz)
.macro pit_init count
    mov al, 0x34
    out 0x43, al
    mov al, \count & 0xff
    out 0x40, al
    mov al, \count >> 8
    out 0x40, al
.endm

; pic_mask: OCW1 to the master: the IRQ lines whose bits are set are masked
.macro pic_mask mask
    mov al, \mask
    out 0x21, al
.endm

; halt_while: STI, then HLT until an interrupt handler has changed MEM so
; that `cmp MEM, VALUE` no longer satisfies JCC; then CLI
.macro halt_while mem, value, jcc
    sti
halt_while_\@:
    hlt
    cmp \mem, \value
    \jcc halt_while_\@
    cli
.endm
