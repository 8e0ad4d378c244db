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

/* Interrupt entry points (see irq.h). */
    .globl count_stub, other_stub, fault_stub
count_stub:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call irq_handler
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq

other_stub:
    push %rax
    mov $0xfee000b0, %eax      /* local APIC EOI (zero-extended address) */
    movl $0, (%rax)
    incl other_irqs(%rip)
    pop %rax
    iretq

fault_stub:
    mov $0xee, %al             /* an exception: stop the VM with 0xee */
    mov $0x501, %dx
    out %al, %dx
2:  hlt
    jmp 2b

    .section .bss
    .balign 16
stack:
    .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
