/* Entry of a bare-metal test guest: the VMM starts it in 64-bit mode with
   %rsi pointing at the Linux zero page. Set a stack, pass the zero page to
   guest_main, and stop the VM with its return value. */
    .section .text.start, "ax"
    .globl _start
_start:
    lea stack_top(%rip), %rsp
    mov %rsi, %rdi
    call guest_main
    mov $0x501, %dx
    out %al, %dx
1:  hlt
    jmp 1b

    .section .bss
    .balign 16
stack:
    .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
