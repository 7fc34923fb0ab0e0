/*
 * Unit tests of restorer/rst-sigframe.c: the syscall-restart fixup of dumped
 * registers, and the rt_sigreturn frame (register placement, uc_flags,
 * 64-byte-aligned fpstate with the FP_XSTATE magics the kernel checks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rst.h"

static void test_restart_fixup(void **state)
{
	struct user_regs_struct r = { 0 };

	/* read() interrupted: ERESTARTSYS -> re-execute the syscall. */
	r.orig_rax = 0;
	r.rax = (uint64_t)-512;
	r.rip = 0x401002;
	assert_true(rst_restart_fixup(&r));
	assert_int_equal(r.rax, 0);
	assert_int_equal(r.rip, 0x401000);

	r.orig_rax = 61; /* wait4: ERESTARTNOHAND */
	r.rax = (uint64_t)-514;
	r.rip = 0x2002;
	assert_true(rst_restart_fixup(&r));
	assert_int_equal(r.rax, 61);
	assert_int_equal(r.rip, 0x2000);

	r.orig_rax = 202; /* futex: ERESTARTNOINTR */
	r.rax = (uint64_t)-513;
	r.rip = 0x3002;
	assert_true(rst_restart_fixup(&r));
	assert_int_equal(r.rax, 202);

	/* nanosleep: ERESTART_RESTARTBLOCK -> EINTR, rip unchanged. */
	r.orig_rax = 35;
	r.rax = (uint64_t)-516;
	r.rip = 0x5002;
	assert_true(rst_restart_fixup(&r));
	assert_int_equal((int64_t)r.rax, -EINTR);
	assert_int_equal(r.rip, 0x5002);

	/* Already EINTR, or not in a syscall: untouched. */
	r.rax = (uint64_t)-EINTR;
	assert_false(rst_restart_fixup(&r));
	assert_int_equal((int64_t)r.rax, -EINTR);
	r.orig_rax = (uint64_t)-1;
	r.rax = (uint64_t)-512;
	r.rip = 0x6002;
	assert_false(rst_restart_fixup(&r));
	assert_int_equal(r.rip, 0x6002);
	/* A real return value is left alone. */
	r.orig_rax = 1;
	r.rax = 5;
	assert_false(rst_restart_fixup(&r));
	assert_int_equal(r.rax, 5);
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* A machine with AVX-512, PKRU and AMX (standard-format end offsets). */
static uint32_t xend[64] = {
	[0] = 512, [1] = 512, [2] = 832, [5] = 1152, [6] = 1664, [7] = 2688, [9] = 2696,
	[17] = 2816, [18] = 11008,
};

static void test_frame(void **state)
{
	const size_t xlen = 11008;
	uint8_t *xsave = calloc(1, xlen);
	struct rst_frame_in in = { 0 };
	uint64_t addr = 0x7f0000001010, sp = 0, fp;
	size_t len = rst_sigframe_size(xlen);
	uint8_t *buf = malloc(len);
	char err[256];
	uint64_t xbv = 0x2e7; /* x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM PKRU */

	memset(xsave, 0xab, 464);
	memcpy(xsave + 512, &xbv, 8);
	memset(xsave + 576, 0xcd, xlen - 576);
	in.regs.rip = 0x401234;
	in.regs.rsp = 0x7ffc0000fff8;
	in.regs.rax = 7;
	in.regs.r15 = 15;
	in.regs.eflags = 0x246;
	in.regs.cs = 0x33;
	in.regs.ss = 0x2b;
	in.xsave = xsave;
	in.xsave_len = xlen;
	in.blocked = 0x10002;
	in.ss_flags = 2; /* SS_DISABLE */
	in.xcomp_end = xend;

	assert_int_equal(rst_sigframe_build(buf, addr, len, &in, &sp, err, sizeof(err)), 0);
	/* rsp points at uc: the kernel reads the frame at rsp - 8. */
	assert_int_equal(sp, addr + 8);
	const uint8_t *uc = buf + 8;
	assert_int_equal(rd64(uc), 0x7); /* FP_XSTATE | SIGCONTEXT_SS | STRICT_RESTORE_SS */
	assert_int_equal(rd32(uc + 16 + 8), 2); /* uc_stack.ss_flags */
	const uint8_t *mc = uc + 40;
	assert_int_equal(rd64(mc + 0 * 8), 0); /* r8 */
	assert_int_equal(rd64(mc + 7 * 8), 15); /* r15 */
	assert_int_equal(rd64(mc + 13 * 8), 7); /* rax */
	assert_int_equal(rd64(mc + 15 * 8), 0x7ffc0000fff8); /* rsp */
	assert_int_equal(rd64(mc + 16 * 8), 0x401234); /* rip */
	assert_int_equal(rd64(mc + 17 * 8), 0x246); /* eflags */
	assert_int_equal(mc[144], 0x33); /* cs */
	assert_int_equal(mc[150], 0x2b); /* ss */
	assert_int_equal(rd64(uc + 296), 0x10002); /* uc_sigmask */
	fp = rd64(mc + 184);
	assert_int_equal(fp % 64, 0);
	assert_true(fp >= addr + 440);
	const uint8_t *x = buf + (fp - addr);

	assert_memory_equal(x, xsave, 464);
	assert_int_equal(rd32(x + 464), 0x46505853); /* FP_XSTATE_MAGIC1 */
	/* Sized by the features present (PKRU ends at 2696), not by ptrace's 11008. */
	assert_int_equal(rd32(x + 468), 2696 + 4); /* extended_size */
	assert_int_equal(rd64(x + 472), xbv); /* xfeatures from XSTATE_BV */
	assert_int_equal(rd32(x + 480), 2696); /* xstate_size */
	assert_int_equal(rd32(x + 2696), 0x46505845); /* FP_XSTATE_MAGIC2 */
	assert_memory_equal(x + 576, xsave + 576, 2696 - 576);
	assert_true(x + xlen + 4 <= buf + len);

	/* ptrace's sw bytes give every user feature: kept, but AMX tile data is dropped. */
	uint32_t m1 = 0x46505853;
	uint64_t feat = 0x602e7, bv_amx = 0x402e7;
	memcpy(xsave + 464, &m1, 4);
	memcpy(xsave + 472, &feat, 8);
	memcpy(xsave + 512, &bv_amx, 8);
	assert_int_equal(rst_sigframe_build(buf, addr, len, &in, &sp, err, sizeof(err)), 0);
	fp = rd64(buf + 8 + 40 + 184);
	x = buf + (fp - addr);
	assert_int_equal(rd64(x + 472), 0x202e7);
	assert_int_equal(rd32(x + 480), 2816); /* up to XTILECFG */
	assert_int_equal(rd32(x + 2816), 0x46505845);
	assert_int_equal(rd64(x + 512), 0x2e7); /* XSTATE_BV without tile data */
	/* A feature this CPU does not describe. */
	xend[9] = 0;
	assert_int_equal(rst_sigframe_build(buf, addr, len, &in, &sp, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "component 9"));
	xend[9] = 2696;

	/* Bad inputs. */
	assert_int_equal(rst_sigframe_build(buf, addr, len - 1, &in, &sp, err, sizeof(err)),
			 -EINVAL);
	in.xsave_len = 512;
	assert_int_equal(rst_sigframe_build(buf, addr, len, &in, &sp, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "xsave area of 512 bytes"));
	in.xsave_len = xlen;
	uint64_t xcomp = 1ULL << 63;
	memcpy(xsave + 520, &xcomp, 8);
	assert_int_equal(rst_sigframe_build(buf, addr, len, &in, &sp, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "compacted"));
	free(buf);
	free(xsave);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restart_fixup),
		cmocka_unit_test(test_frame),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
