/*
 * A test tool, not a victim: damage one register of a running process the
 * way a broken restore would, so that victim-selftest.sh can prove the regs
 * victim notices. It stops the process with PTRACE_SEIZE + INTERRUPT,
 * flips the low byte of the register in its saved state (NT_PRSTATUS for
 * r13, the standard-format NT_X86_XSTATE for ymm/zmm/k, component offsets
 * from CPUID leaf 0xD) and detaches.
 *
 *   regpoke PID r13|ymm9|zmm20|k3
 */
#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#define XSTATE_BV_OFF 512

/* Offset of XSAVE component comp in the standard layout (CPUID 0xD, sub-leaf comp). */
static unsigned int comp_offset(unsigned int comp)
{
	unsigned int a, b, c, d;

	__cpuid_count(0xd, comp, a, b, c, d);
	return b;
}

static int poke_xstate(pid_t pid, unsigned int comp, size_t at)
{
	static uint8_t buf[64 * 1024] __attribute__((aligned(64)));
	struct iovec iov = { buf, sizeof(buf) };
	uint64_t bv;
	size_t off = comp_offset(comp) + at;

	if (ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &iov)) {
		fprintf(stderr, "regpoke: PTRACE_GETREGSET(NT_X86_XSTATE) of pid %d: %s\n", pid,
			strerror(errno));
		return -1;
	}
	if (off >= iov.iov_len) {
		fprintf(stderr, "regpoke: xstate of pid %d has %zu bytes, component %u at %zu\n",
			pid, iov.iov_len, comp, off);
		return -1;
	}
	buf[off] ^= 0xff;
	memcpy(&bv, buf + XSTATE_BV_OFF, 8);
	bv |= 1ULL << comp;
	memcpy(buf + XSTATE_BV_OFF, &bv, 8);
	if (ptrace(PTRACE_SETREGSET, pid, NT_X86_XSTATE, &iov)) {
		fprintf(stderr, "regpoke: PTRACE_SETREGSET(NT_X86_XSTATE) of pid %d: %s\n", pid,
			strerror(errno));
		return -1;
	}
	return 0;
}

static int poke(pid_t pid, const char *reg)
{
	struct user_regs_struct regs;

	if (!strcmp(reg, "r13")) {
		if (ptrace(PTRACE_GETREGS, pid, NULL, &regs))
			return -1;
		regs.r13 ^= 0xff;
		return ptrace(PTRACE_SETREGS, pid, NULL, &regs);
	}
	if (!strcmp(reg, "ymm9"))	/* component 2: the upper halves of ymm0-15, 16 bytes each */
		return poke_xstate(pid, 2, 9 * 16);
	if (!strcmp(reg, "zmm20"))	/* component 7: zmm16-31 whole, 64 bytes each */
		return poke_xstate(pid, 7, (20 - 16) * 64);
	if (!strcmp(reg, "k3"))		/* component 5: k0-7, 8 bytes each */
		return poke_xstate(pid, 5, 3 * 8);
	fprintf(stderr, "regpoke: unknown register '%s'\n", reg);
	return -1;
}

int main(int argc, char **argv)
{
	pid_t pid;
	int status, r;

	if (argc != 3) {
		fprintf(stderr, "usage: regpoke PID r13|ymm9|zmm20|k3\n");
		return 2;
	}
	pid = atoi(argv[1]);
	if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) || ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) ||
	    waitpid(pid, &status, __WALL) != pid) {
		fprintf(stderr, "regpoke: cannot stop pid %d: %s\n", pid, strerror(errno));
		return 1;
	}
	r = poke(pid, argv[2]);
	if (r)
		fprintf(stderr, "regpoke: cannot change %s of pid %d: %s\n", argv[2], pid,
			strerror(errno));
	if (ptrace(PTRACE_DETACH, pid, NULL, NULL)) {
		fprintf(stderr, "regpoke: detach from pid %d: %s\n", pid, strerror(errno));
		return 1;
	}
	return r ? 1 : 0;
}
