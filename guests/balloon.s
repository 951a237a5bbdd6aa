; balloon: the guest gives memory back to Xen and takes it again.
;
; The one bundled guest that knows of Xen: it does what a balloon driver
; in an HVM guest does, with VMCALL and the hypercall ABI (EAX the number,
; EBX, ECX, ... the arguments, EAX the result). Everything else is as in the
; other guests: serial output through qemu-dm, string I/O whose data
; qemu-dm reaches through its mapcache.
;
;   1. It writes a line into the bucket at 2 MiB (64 KiB, 16 pages) and
;      sends it with one `rep outsb`: qemu-dm maps that bucket.
;   2. memory_op(XENMEM_decrease_reservation): 16 extents of one page, the
;      bucket's pages. Xen removes them from the p2m and, before the guest
;      runs on, sends qemu-dm an IOREQ_TYPE_INVALIDATE: qemu-dm drops its
;      mappings. It prints the result (16 extents done).
;   3. It reads the first page given back: a hole in the p2m now, so the
;      read is an MMIO access no device claims, all-ones.
;   4. Calls that fail: giving the same page back again (0 extents done),
;      populating a page that is present (0), hypercall 99 (-ENOSYS) and
;      memory_op command 3 (-ENOSYS).
;   5. memory_op(XENMEM_populate_physmap): one extent of order 4 at the
;      bucket (1 extent done). It checks that the bucket's new frames read
;      as zero (all 65536 bytes), writes a line into it and sends it again:
;      qemu-dm maps the bucket anew (a miss, not a hit on its old window)
;      and sends what the guest wrote into the new frames.
;   6. Power off.

%include "lib/all.s"

ROM         = 0xf0000
BUCKET      = 0x200000          ; 2 MiB: bucket 0x20 of a 32-bit qemu-dm
PAGES       = 16
RES         = 0x9000            ; struct xen_memory_reservation (32-bit layout)
EXTENTS     = 0x9100            ; the extent list: 32-bit frame numbers
DOMID_SELF  = 0x7ff0
LINE_LEN    = 44

start:
    cli
    enter_pm32
    cld

    ; 1. a line from the bucket, before
    lea esi, [line_before + 0xf0000]
    call bucket_line

    ; 2. give the bucket's 16 pages back, one extent each
    mov ecx, PAGES
    mov eax, 0x200
    mov edi, 0x9100
extent_next:
    mov [edi], eax
    add edi, 4
    inc eax
    loop extent_next
    mov eax, PAGES
    xor ebx, ebx                    ; order 0
    call reservation
    lea esi, [text_decrease + 0xf0000]
    mov ebx, 1                      ; XENMEM_decrease_reservation
    call memory_op

    ; 3. the page given back is a hole
    lea esi, [text_hole + 0xf0000]
    call puts
    mov eax, [0x200000]
    call put_hex32
    mov al, 10
    call putc

    ; 4. calls that fail
    mov eax, 1
    xor ebx, ebx
    call reservation                ; the first page again
    lea esi, [text_again + 0xf0000]
    mov ebx, 1
    call memory_op
    mov dword ptr [0x9100], 0x100  ; 1 MiB: a page that is present
    mov eax, 1
    xor ebx, ebx
    call reservation
    lea esi, [text_present + 0xf0000]
    mov ebx, 6                      ; XENMEM_populate_physmap
    call memory_op
    lea esi, [text_unknown + 0xf0000]
    call puts
    mov eax, 99
    vmcall
    call put_signed
    mov al, 10
    call putc
    lea esi, [text_command + 0xf0000]
    call puts
    mov eax, 12
    mov ebx, 3
    mov ecx, 0x9000
    vmcall
    call put_signed
    mov al, 10
    call putc

    ; 5. populate the bucket again: one extent of 16 pages
    mov dword ptr [0x9100], 0x200
    mov eax, 1
    mov ebx, 4                      ; order 4: 16 pages
    call reservation
    lea esi, [text_populate + 0xf0000]
    mov ebx, 6
    call memory_op
    lea esi, [text_zero + 0xf0000]
    call puts
    mov edi, 0x200000
    mov ecx, 0x4000                 ; 16384 dwords
    xor eax, eax
    repe scasd                      ; stops at the first non-zero dword
    jz zero_all
    inc ecx                         ; that dword was not zero
zero_all:
    mov eax, 0x4000
    sub eax, ecx
    shl eax, 2
    call put_dec
    lea esi, [text_bytes + 0xf0000]
    call puts
    lea esi, [line_after + 0xf0000]
    call bucket_line

    ; 6. power off
    poweroff

; the reservation at RES: eax extents of order ebx from the list at EXTENTS
reservation:
    mov dword ptr [0x9000], 0x9100
    mov [0x9004], eax
    mov [0x9008], ebx
    mov dword ptr [0x900c], 0
    mov word ptr [0x9010], 0x7ff0
    ret

; print the string at esi, then memory_op(ebx, RES) and its result
memory_op:
    call puts
    mov eax, 12                     ; __HYPERVISOR_memory_op
    mov ecx, 0x9000
    vmcall
    call put_signed
    mov al, 10
    call putc
    ret

; copy the LINE_LEN-byte line at esi into the bucket and send it from there
bucket_line:
    mov edi, 0x200000
    mov ecx, LINE_LEN
    rep movsb
    mov esi, 0x200000
    mov ecx, LINE_LEN
    mov dx, COM1
    rep outsb                       ; data_is_ptr: qemu-dm reads the bucket
    ret

; --- serial -----------------------------------------------------------------------

    serial_putc w=e                 ; al

    serial_puts at=[esi], w=e, keep=eax  ; esi: a NUL-terminated string (linear)

put_signed:                         ; eax, signed decimal
    test eax, eax
    jns put_dec
    push eax
    mov al, '-'
    call putc
    pop eax
    neg eax
    put_dec                         ; eax, decimal

    put_hex put_hex32, 8, w=e       ; eax, eight hex digits

text_decrease:
    .asciz "balloon: decrease_reservation of 16 pages at 2 MiB -> "
text_hole:
    .asciz "balloon: the first page given back reads "
text_again:
    .asciz "balloon: giving it back again -> "
text_present:
    .asciz "balloon: populate_physmap of a page that is present -> "
text_unknown:
    .asciz "balloon: hypercall 99 -> "
text_command:
    .asciz "balloon: memory_op command 3 -> "
text_populate:
    .asciz "balloon: populate_physmap of 16 pages at 2 MiB -> "
text_zero:
    .asciz "balloon: the new frames read as zero for "
text_bytes:
    .asciz " bytes\n"
line_before:
    .ascii "balloon: a line from the bucket, old frames\n"
line_after:
    .ascii "balloon: a line from the bucket, new frames\n"
    flat_gdt
