/*
 * The registers part of the victims: its main loop is regs-spin.S, which
 * holds the counter in r12 and known patterns in rbx, rbp, r13-r15,
 * ymm8-ymm15 and, with AVX-512, zmm16-zmm31 and k1-k7, checking them on
 * every turn until the trigger. Also a non-default MXCSR (round toward zero)
 * and x87 control word, set once and compared at the check. The machine
 * must have AVX (else the part reports itself unsupported).
 */
#include "victim.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct regs_spin {
	volatile uint64_t *counter;
	volatile int *stop;
	const void *ymm;
	const void *zmm;
	const uint64_t *k;
	const uint64_t *gpr;
	uint64_t reg_counter;
	uint64_t detail;
	uint64_t final;		/* set by the loop: the last turn after the stop has begun */
};
_Static_assert(offsetof(struct regs_spin, reg_counter) == 48, "layout shared with regs-spin.S");
_Static_assert(offsetof(struct regs_spin, detail) == 56, "layout shared with regs-spin.S");
_Static_assert(offsetof(struct regs_spin, final) == 64, "layout shared with regs-spin.S");

int regs_spin_avx(struct regs_spin *s);
int regs_spin_avx512(struct regs_spin *s);

#define MXCSR_VALUE 0x7f80	/* all exceptions masked, round toward zero */
#define FPUCW_VALUE 0x0f7f	/* all exceptions masked, 64-bit precision, toward zero */

static uint64_t ymm_pat[8][4] __attribute__((aligned(32)));
static uint64_t zmm_pat[16][8] __attribute__((aligned(64)));
static uint64_t k_pat[7];
static uint64_t gpr_pat[5];
static int have_avx512;

static int regs_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	uint32_t mxcsr = MXCSR_VALUE;
	uint16_t cw = FPUCW_VALUE;

	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2")) {
		snprintf(err, len, "the CPU has no AVX2");
		return VICTIM_UNSUPPORTED;
	}
	have_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
	for (int r = 0; r < 8; r++)
		for (int w = 0; w < 4; w++)
			ymm_pat[r][w] = victim_mix(r * 4 + w, 0x9977);
	for (int r = 0; r < 16; r++)
		for (int w = 0; w < 8; w++)
			zmm_pat[r][w] = victim_mix(r * 8 + w, 0x2277);
	for (int r = 0; r < 7; r++)
		k_pat[r] = victim_mix(r, 0x4477);
	for (int r = 0; r < 5; r++)
		gpr_pat[r] = victim_mix(r, 0x6677);
	__asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
	__asm__ volatile("fldcw %0" : : "m"(cw));
	return 0;
}

static const char *const kinds[] = { "", "counter in r12", "general purpose", "ymm",
				     "zmm", "k" };

static int regs_run(struct victim_ctx *ctx, char *err, size_t len)
{
	struct regs_spin s = {
		.counter = &victim_counter, .stop = &victim_stop, .ymm = ymm_pat,
		.zmm = zmm_pat, .k = k_pat, .gpr = gpr_pat,
	};
	int r = have_avx512 ? regs_spin_avx512(&s) : regs_spin_avx(&s);

	if (r == 1)
		return victim_fail(err, len, "counter: r12 holds %" PRIu64 ", memory %" PRIu64,
				   s.reg_counter, victim_counter);
	if (r)
		return victim_fail(err, len, "%s register %" PRIu64 " lost its value (%s loop)",
				   r < 6 ? kinds[r] : "?", s.detail, have_avx512 ? "avx512" : "avx");
	return 0;
}

static int regs_check(struct victim_ctx *ctx, char *err, size_t len)
{
	uint32_t mxcsr;
	uint16_t cw;

	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	/* Ignore the sticky exception flags (bits 0-5): only the control bits were set. */
	if ((mxcsr & ~0x3fU) != MXCSR_VALUE)
		return victim_fail(err, len, "MXCSR is %#x, expected %#x", mxcsr, MXCSR_VALUE);
	if (cw != FPUCW_VALUE)
		return victim_fail(err, len, "x87 control word is %#x, expected %#x", cw,
				   FPUCW_VALUE);
	return 0;
}

const struct victim_part victim_part_regs = {
	.name = "regs",
	.setup = regs_setup,
	.check = regs_check,
	.run = regs_run,
};
