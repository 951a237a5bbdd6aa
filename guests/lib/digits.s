; lib/digits.s: numbers as text, through the routine `putc` (lib/serial.s).

; hex_digit: REG's low four bits as an ASCII hex digit (0-9, a-f), in REG
.macro hex_digit reg=al
    and \reg, 0x0f
    add \reg, '0'
    cmp \reg, '9'
    jbe hex_digit_\@
    add \reg, 'a' - '0' - 10
hex_digit_\@:
.endm

; put_hex: the routine NAME: the low DIGITS hex digits of W-AX, from the
; most significant, rotated through W-TMP-X (TMP: `d` or `b`)
.macro put_hex name, digits, w=, tmp=d
\name:
    push \w\()cx
    push \w\tmp\()x
    mov \w\tmp\()x, \w\()ax
    mov \w\()cx, \digits
\name\()_digit:
    rol \w\tmp\()x, 4
    mov al, \tmp\()l
    hex_digit
    call putc
    loop \name\()_digit
    pop \w\tmp\()x
    pop \w\()cx
    ret
.endm

; put_hex_eax: the routine NAME: EAX as eight hex digits, through PUTC;
; W-CX is lost
.macro put_hex_eax name, w=, putc=putc
\name:
    mov \w\()cx, 8
\name\()_next:
    rol eax, 4
    push eax
    hex_digit
    call \putc
    pop eax
    loop \name\()_next
    ret
.endm

; put_dec: the routine `put_dec`: EAX in decimal (32-bit code)
.macro put_dec
put_dec:
    push ebx
    push ecx
    push edx
    mov ebx, 10
    xor ecx, ecx
put_dec_div:
    xor edx, edx
    div ebx
    push edx
    inc ecx
    test eax, eax
    jnz put_dec_div
put_dec_out:
    pop eax
    add al, '0'
    call putc
    loop put_dec_out
    pop edx
    pop ecx
    pop ebx
    ret
.endm

; put_dec2: the routine `put_dec2`: AX < 100 as two digits (16-bit code);
; with TAIL=1 the last digit goes by a jump to putc
.macro put_dec2 tail=0
put_dec2:
    mov dl, 10
    div dl
    push ax
    add al, '0'
    call putc
    pop ax
    mov al, ah
    add al, '0'
.if \tail
    jmp putc
.else
    call putc
    ret
.endif
.endm
