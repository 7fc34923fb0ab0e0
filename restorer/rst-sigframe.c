/*
 * The x86-64 rt_sigreturn frame that enters a restored thread, and the
 * syscall-restart fixup its registers need first. Pure code: the frame is
 * built into a buffer that will live at a given address (the tail of the
 * restorer area), so tests can build it anywhere. Layouts follow the
 * kernel's uapi struct ucontext / struct sigcontext / struct _fpx_sw_bytes.
 */
#include "rst.h"

#include "util.h"

#include <cpuid.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

#define UC_FP_XSTATE 0x1
#define UC_SIGCONTEXT_SS 0x2
#define UC_STRICT_RESTORE_SS 0x4

#define FP_XSTATE_MAGIC1 0x46505853U
#define FP_XSTATE_MAGIC2 0x46505845U
#define XSAVE_SW_OFF 464
#define XSAVE_HDR_OFF 512
#define XSAVE_MIN 576 /* legacy area + xsave header */
/* AMX tile data: only restorable after ARCH_REQ_XCOMP_PERM; not supported yet. */
#define XFEATURE_XTILE_DATA 18

struct rst_sigcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp;
	uint64_t rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2;
	uint64_t fpstate;
	uint64_t reserved1[8];
};
_Static_assert(sizeof(struct rst_sigcontext) == 256, "sigcontext size");

struct rst_kstack {
	uint64_t ss_sp;
	int32_t ss_flags;
	uint32_t pad;
	uint64_t ss_size;
};

struct rst_ucontext {
	uint64_t uc_flags;
	uint64_t uc_link;
	struct rst_kstack uc_stack;
	struct rst_sigcontext uc_mcontext;
	uint64_t uc_sigmask;
};
_Static_assert(sizeof(struct rst_ucontext) == 304, "ucontext size");

struct rst_rt_sigframe {
	uint64_t pretcode;
	struct rst_ucontext uc;
	uint8_t info[128];
};
_Static_assert(offsetof(struct rst_rt_sigframe, uc) == 8, "rt_sigframe uc");

struct rst_fpx_sw_bytes {
	uint32_t magic1;
	uint32_t extended_size;
	uint64_t xfeatures;
	uint32_t xstate_size;
	uint32_t padding[7];
};
_Static_assert(sizeof(struct rst_fpx_sw_bytes) == 48, "fpx_sw_bytes size");

bool rst_restart_fixup(struct user_regs_struct *regs)
{
	if ((int64_t)regs->orig_rax < 0)
		return false;
	switch ((int64_t)regs->rax) {
	case -ERESTARTSYS:
	case -ERESTARTNOINTR:
	case -ERESTARTNOHAND:
		/* Re-execute the syscall instruction (2 bytes) with its number. */
		regs->rax = regs->orig_rax;
		regs->rip -= 2;
		return true;
	case -ERESTART_RESTARTBLOCK:
		/* The restart block is gone with the old process: report EINTR. */
		regs->rax = (uint64_t)-EINTR;
		return true;
	default:
		return false;
	}
}

/* Frame, then the 64-byte-aligned xsave area and FP_XSTATE_MAGIC2. */
size_t rst_sigframe_size(size_t xsave_len)
{
	return sizeof(struct rst_rt_sigframe) + 64 + xsave_len + sizeof(uint32_t);
}

void rst_xstate_layout(uint32_t end[64])
{
	unsigned int a, b, c, d;

	for (int i = 0; i < 64; i++)
		end[i] = 0;
	end[0] = end[1] = 512; /* x87 and SSE live in the legacy area */
	for (int i = 2; i < 63; i++) {
		if (!__get_cpuid_count(0xd, (unsigned int)i, &a, &b, &c, &d) || !a)
			continue;
		/* ECX bit 0: a supervisor component, never in a user xsave buffer. */
		if (!(c & 1))
			end[i] = b + a;
	}
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void fill_mcontext(struct rst_sigcontext *sc, const struct user_regs_struct *r)
{
	sc->r8 = r->r8;
	sc->r9 = r->r9;
	sc->r10 = r->r10;
	sc->r11 = r->r11;
	sc->r12 = r->r12;
	sc->r13 = r->r13;
	sc->r14 = r->r14;
	sc->r15 = r->r15;
	sc->rdi = r->rdi;
	sc->rsi = r->rsi;
	sc->rbp = r->rbp;
	sc->rbx = r->rbx;
	sc->rdx = r->rdx;
	sc->rax = r->rax;
	sc->rcx = r->rcx;
	sc->rsp = r->rsp;
	sc->rip = r->rip;
	sc->eflags = r->eflags;
	sc->cs = (uint16_t)r->cs;
	sc->ss = (uint16_t)r->ss;
	sc->fs = (uint16_t)r->fs;
	sc->gs = (uint16_t)r->gs;
}

int rst_sigframe_build(void *buf, uint64_t addr, size_t len, const struct rst_frame_in *in,
		       uint64_t *ret_sp, char *err, size_t errlen)
{
	struct rst_rt_sigframe *f = buf;
	struct rst_fpx_sw_bytes sw;
	uint64_t fp_addr, xcomp, xbv;
	uint32_t size;
	uint8_t *fp;
	uint32_t magic2 = FP_XSTATE_MAGIC2;

	if (len < rst_sigframe_size(in->xsave_len))
		return fail(err, errlen, "frame buffer of %zu bytes too small", len);
	if (in->xsave_len < XSAVE_MIN || in->xsave_len % 64)
		return fail(err, errlen, "xsave area of %zu bytes: need at least %d, a multiple of 64",
			    in->xsave_len, XSAVE_MIN);
	memcpy(&xcomp, in->xsave + XSAVE_HDR_OFF + 8, sizeof(xcomp));
	if (xcomp)
		return fail(err, errlen, "xsave area is in compacted format (xcomp_bv 0x%llx)",
			    (unsigned long long)xcomp);
	memset(buf, 0, rst_sigframe_size(in->xsave_len));
	f->uc.uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
	f->uc.uc_stack.ss_sp = in->ss_sp;
	f->uc.uc_stack.ss_flags = in->ss_flags;
	f->uc.uc_stack.ss_size = in->ss_size;
	f->uc.uc_sigmask = in->blocked;
	fill_mcontext(&f->uc.uc_mcontext, &in->regs);

	fp_addr = (addr + sizeof(*f) + 63) & ~63ULL;
	fp = (uint8_t *)buf + (fp_addr - addr);
	memcpy(fp, in->xsave, in->xsave_len);
	/*
	 * The software-reserved bytes tell sigreturn that the full xsave area
	 * follows. xstate_size may not exceed what this task's fpstate holds
	 * (ptrace hands out the maximal size, AMX included): declare only the
	 * components in xfeatures, else the kernel silently restores only the
	 * legacy area.
	 */
	memcpy(&sw, fp + XSAVE_SW_OFF, sizeof(sw));
	memcpy(&xbv, fp + XSAVE_HDR_OFF, sizeof(xbv));
	if (sw.magic1 != FP_XSTATE_MAGIC1)
		sw.xfeatures = xbv;
	sw.xfeatures &= ~(1ULL << XFEATURE_XTILE_DATA);
	xbv &= sw.xfeatures;
	memcpy(fp + XSAVE_HDR_OFF, &xbv, sizeof(xbv));
	size = XSAVE_MIN;
	for (int i = 0; i < 64; i++) {
		if (!(sw.xfeatures & (1ULL << i)))
			continue;
		if (!in->xcomp_end || !in->xcomp_end[i] || in->xcomp_end[i] > in->xsave_len)
			return fail(err, errlen,
				    "xsave component %d is unknown here or beyond the %zu-byte area",
				    i, in->xsave_len);
		size = MAX(size, in->xcomp_end[i]);
	}
	sw.magic1 = FP_XSTATE_MAGIC1;
	sw.xstate_size = size;
	sw.extended_size = size + (uint32_t)sizeof(magic2);
	memset(sw.padding, 0, sizeof(sw.padding));
	memcpy(fp + XSAVE_SW_OFF, &sw, sizeof(sw));
	memcpy(fp + size, &magic2, sizeof(magic2));
	f->uc.uc_mcontext.fpstate = fp_addr;

	*ret_sp = addr + offsetof(struct rst_rt_sigframe, uc);
	return 0;
}
