/*
 * The register loop of the regs victim part, in assembly so that no compiled
 * code or libc call can touch the registers it watches. It loads known
 * patterns once into rbx, rbp, r13-r15, ymm8-ymm15 (and, in the AVX-512
 * variant, zmm16-zmm31 and k1-k7), then spins until *stop: each turn checks
 * the counter held in r12 against its copy in memory, bumps both, and
 * compares every watched register with its pattern; once *stop is seen it
 * makes one more complete turn, so that a change anywhere in the turn that
 * was running is caught. A freeze can only land
 * inside this loop (or in a signal handler it returns to), so a restore that
 * loses any of these registers is caught on the next turn.
 *
 * int regs_spin_avx(struct regs_spin *s);     see part-regs.c for the layout
 * int regs_spin_avx512(struct regs_spin *s);
 * Returns 0 when stopped, 1 counter, 2 gpr, 3 ymm, 4 zmm, 5 k mismatch;
 * s->reg_counter = r12, s->detail = number of the bad register.
 */
	.set S_COUNTER, 0
	.set S_STOP, 8
	.set S_YMM, 16
	.set S_ZMM, 24
	.set S_K, 32
	.set S_GPR, 40
	.set S_REG_COUNTER, 48
	.set S_DETAIL, 56
	.set S_FINAL, 64

	.macro PROLOGUE
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rdi, %r11
	mov S_COUNTER(%r11), %rsi
	mov S_STOP(%r11), %rdx
	mov S_YMM(%r11), %rcx
	mov S_GPR(%r11), %r8
	mov S_ZMM(%r11), %r10
	mov S_K(%r11), %rdi
	.irp i, 8, 9, 10, 11, 12, 13, 14, 15
	vmovdqu (\i - 8) * 32(%rcx), %ymm\i
	.endr
	mov 0(%r8), %rbx
	mov 8(%r8), %rbp
	mov 16(%r8), %r13
	mov 24(%r8), %r14
	mov 32(%r8), %r15
	mov (%rsi), %r12
	.endm

	/* The counter and the general purpose and ymm registers; jumps to 8: on a mismatch. */
	.macro CHECK_COMMON
	mov (%rsi), %rax
	cmp %rax, %r12
	mov $1, %eax
	mov $12, %r9d
	jne 8f
	inc %r12
	mov %r12, (%rsi)
	mov $2, %eax
	cmp 0(%r8), %rbx
	mov $3, %r9d
	jne 8f
	cmp 8(%r8), %rbp
	mov $5, %r9d
	jne 8f
	cmp 16(%r8), %r13
	mov $13, %r9d
	jne 8f
	cmp 24(%r8), %r14
	mov $14, %r9d
	jne 8f
	cmp 32(%r8), %r15
	mov $15, %r9d
	jne 8f
	.irp i, 8, 9, 10, 11, 12, 13, 14, 15
	vpcmpeqq (\i - 8) * 32(%rcx), %ymm\i, %ymm0
	vpmovmskb %ymm0, %eax
	cmp $-1, %eax
	mov $3, %eax
	mov $\i, %r9d
	jne 8f
	.endr
	.endm

	/* Stop only after one more complete turn that began after *stop was seen. */
	.macro LOOP_END
	cmpl $0, (%rdx)
	je 1b
	cmpq $0, S_FINAL(%r11)
	jne 7f
	movq $1, S_FINAL(%r11)
	jmp 1b
7:
	.endm

	.macro EPILOGUE
	xor %eax, %eax
	xor %r9d, %r9d
8:
	mov %r12, S_REG_COUNTER(%r11)
	mov %r9, S_DETAIL(%r11)
	vzeroupper
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret
	.endm

	.text
	.globl regs_spin_avx
	.type regs_spin_avx, @function
regs_spin_avx:
	PROLOGUE
1:
	CHECK_COMMON
	LOOP_END
	EPILOGUE
	.size regs_spin_avx, . - regs_spin_avx

	.globl regs_spin_avx512
	.type regs_spin_avx512, @function
regs_spin_avx512:
	PROLOGUE
	.irp i, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
	vmovdqu64 (\i - 16) * 64(%r10), %zmm\i
	.endr
	.irp i, 1, 2, 3, 4, 5, 6, 7
	kmovq (\i - 1) * 8(%rdi), %k\i
	.endr
1:
	CHECK_COMMON
	.irp i, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
	vpcmpeqq (\i - 16) * 64(%r10), %zmm\i, %k0
	kmovw %k0, %eax
	cmp $0xff, %eax
	mov $4, %eax
	mov $\i, %r9d
	jne 8f
	.endr
	.irp i, 1, 2, 3, 4, 5, 6, 7
	kmovq %k\i, %rax
	cmp (\i - 1) * 8(%rdi), %rax
	mov $5, %eax
	mov $\i, %r9d
	jne 8f
	.endr
	LOOP_END
	EPILOGUE
	.size regs_spin_avx512, . - regs_spin_avx512

	.section .note.GNU-stack, "", @progbits
