/*
 * Running code in a frozen thread: the ptrace stop handling shared by remote
 * syscalls and the parasite (signals that arrive meanwhile are held for
 * detach), and psite_syscall(), which plants `syscall; int3` at the thread's
 * IP and puts code and registers back afterwards.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "log.h"
#include "psite-internal.h"

/* Bound on consecutive unrelated stops while waiting for one trap. */
#define MAX_FOREIGN_STOPS 1000

int psite_handle_status(struct psite_thread *th, int status, uint64_t expect_ip)
{
	struct user_regs_struct regs;
	siginfo_t si;
	int sig;

	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		pr_err("tid %d: died while running injected code (status 0x%x)\n", (int)th->tid,
		       status);
		return -ESRCH;
	}
	if (!WIFSTOPPED(status))
		return 1;
	sig = WSTOPSIG(status);
	if (status >> 16) {
		/* A group-stop or a late interrupt trap: under SEIZE we may just go on. */
		if (ptrace(PTRACE_CONT, th->tid, NULL, NULL))
			return -errno;
		return 1;
	}
	if (sig == SIGTRAP && !ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &si) &&
	    si.si_code == SI_KERNEL) {
		if (ptrace(PTRACE_GETREGS, th->tid, NULL, &regs))
			return -errno;
		if (!expect_ip || regs.rip == expect_ip)
			return 0;
		pr_err("tid %d: trapped at 0x%llx, expected 0x%llx\n", (int)th->tid, regs.rip,
		       (unsigned long long)expect_ip);
		return -EFAULT;
	}
	if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP) {
		if (!ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &si) && si.si_code > 0) {
			pr_err("tid %d: injected code faulted: signal %d (%s) at address %p\n",
			       (int)th->tid, sig, strsignal(sig), si.si_addr);
			return -EFAULT;
		}
	}
	psite_hold_signal(th, sig);
	if (ptrace(PTRACE_CONT, th->tid, NULL, NULL))
		return -errno;
	return 1;
}

int psite_run_to_trap(struct psite_thread *th, uint64_t expect_ip)
{
	int r, i;

	if (ptrace(PTRACE_CONT, th->tid, NULL, NULL)) {
		r = -errno;
		pr_perror("tid %d: PTRACE_CONT", (int)th->tid);
		return r;
	}
	for (i = 0; i < MAX_FOREIGN_STOPS; i++) {
		int status;

		if (waitpid(th->tid, &status, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			pr_perror("tid %d: waitpid", (int)th->tid);
			return r;
		}
		r = psite_handle_status(th, status, expect_ip);
		if (r <= 0)
			return r;
	}
	pr_err("tid %d: too many unrelated stops while running injected code\n", (int)th->tid);
	return -ELOOP;
}

int psite_syscall(struct psite_frozen *f, pid_t tid, long *ret_val, long nr, long a1, long a2,
		  long a3, long a4, long a5, long a6)
{
	struct psite_thread *th = psite_thread_find(f, tid);
	struct user_regs_struct saved, regs;
	unsigned long word, code;
	int r, r2;

	if (!th) {
		pr_err("pid %d: thread %d is not frozen\n", (int)f->pid, (int)tid);
		return -ESRCH;
	}
	if (ptrace(PTRACE_GETREGS, tid, NULL, &saved)) {
		r = -errno;
		pr_perror("tid %d: PTRACE_GETREGS", (int)tid);
		return r;
	}
	errno = 0;
	word = (unsigned long)ptrace(PTRACE_PEEKTEXT, tid, (void *)saved.rip, NULL);
	if (errno) {
		r = -errno;
		pr_perror("tid %d: cannot read code at 0x%llx", (int)tid, saved.rip);
		return r;
	}
	/* syscall (0f 05); int3 (cc), little-endian; the rest of the word unchanged. */
	code = (word & ~0xffffffUL) | 0xcc050fUL;
	if (ptrace(PTRACE_POKETEXT, tid, (void *)saved.rip, (void *)code)) {
		r = -errno;
		pr_perror("tid %d: cannot write code at 0x%llx", (int)tid, saved.rip);
		return r;
	}
	regs = saved;
	regs.rax = (unsigned long)nr;
	regs.rdi = (unsigned long)a1;
	regs.rsi = (unsigned long)a2;
	regs.rdx = (unsigned long)a3;
	regs.r10 = (unsigned long)a4;
	regs.r8 = (unsigned long)a5;
	regs.r9 = (unsigned long)a6;
	regs.orig_rax = (unsigned long)-1; /* no syscall-restart logic on resume */
	if (ptrace(PTRACE_SETREGS, tid, NULL, &regs)) {
		r = -errno;
		pr_perror("tid %d: PTRACE_SETREGS", (int)tid);
		goto out_restore;
	}
	r = psite_run_to_trap(th, saved.rip + 3);
	if (!r) {
		if (ptrace(PTRACE_GETREGS, tid, NULL, &regs)) {
			r = -errno;
			pr_perror("tid %d: PTRACE_GETREGS after syscall %ld", (int)tid, nr);
		} else {
			*ret_val = (long)regs.rax;
		}
	}
	if (r)
		pr_err("tid %d: remote syscall %ld failed: %s\n", (int)tid, nr, strerror(-r));
out_restore:
	r2 = 0;
	if (ptrace(PTRACE_POKETEXT, tid, (void *)saved.rip, (void *)word)) {
		r2 = -errno;
		pr_perror("tid %d: cannot restore code at 0x%llx", (int)tid, saved.rip);
	}
	if (ptrace(PTRACE_SETREGS, tid, NULL, &saved)) {
		r2 = -errno;
		pr_perror("tid %d: cannot restore registers", (int)tid);
	}
	return r ? r : r2;
}
