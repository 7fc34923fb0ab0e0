/*
 * Infection and cure: save the thread's full state (registers, xsave area,
 * signal mask), map the blob with a remote mmap, hand the parasite one end of
 * a remote socketpair (relive takes the other with pidfd_getfd), start it;
 * and the exact reverse. Talking to the running parasite is rpc.c.
 */
#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"
#include "parasite-blob.h"
#include "psite-internal.h"
#include "util.h"

static size_t xstate_size(void)
{
	unsigned int eax, ebx, ecx, edx;

	/* CPUID.(EAX=0DH,ECX=0):ECX = size of the xsave area for every supported feature. */
	if (__get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx) && ecx >= 512)
		return ALIGN_UP((size_t)ecx, 64);
	return 16384;
}

static int save_state(struct psite_ctl *ctl)
{
	struct iovec iov;
	pid_t tid = ctl->tid;

	if (ptrace(PTRACE_GETREGS, tid, NULL, &ctl->regs)) {
		pr_perror("tid %d: PTRACE_GETREGS", (int)tid);
		return -errno;
	}
	ctl->regs_saved = true;
	ctl->xstate_len = xstate_size();
	ctl->xstate = calloc(1, ctl->xstate_len);
	if (!ctl->xstate)
		return -ENOMEM;
	iov.iov_base = ctl->xstate;
	iov.iov_len = ctl->xstate_len;
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov)) {
		pr_perror("tid %d: PTRACE_GETREGSET NT_X86_XSTATE", (int)tid);
		return -errno;
	}
	ctl->xstate_len = iov.iov_len;
	ctl->xstate_saved = true;
	if (ptrace(PTRACE_GETSIGMASK, tid, (void *)sizeof(ctl->sigmask), &ctl->sigmask)) {
		pr_perror("tid %d: PTRACE_GETSIGMASK", (int)tid);
		return -errno;
	}
	return 0;
}

static int remote(struct psite_ctl *ctl, long *ret, long nr, long a1, long a2, long a3, long a4,
		  long a5, long a6)
{
	return psite_syscall(ctl->f, ctl->tid, ret, nr, a1, a2, a3, a4, a5, a6);
}

int psite_write_victim(struct psite_ctl *ctl, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = { (void *)buf, len };
	struct iovec rem = { (void *)addr, len };
	ssize_t n = process_vm_writev(ctl->f->pid, &local, 1, &rem, 1, 0);

	if (n != (ssize_t)len) {
		pr_perror("pid %d: cannot write %zu bytes at 0x%llx", (int)ctl->f->pid, len,
			  (unsigned long long)addr);
		return n < 0 ? -errno : -EIO;
	}
	return 0;
}

static int map_blob(struct psite_ctl *ctl)
{
	uint64_t blob_len = ALIGN_UP(PARASITE_OFF_BLOB_END, PAGE_SIZE_4K);
	long addr;
	int r;

	ctl->size = blob_len + PSITE_ARGS_SIZE + PSITE_STACK_SIZE;
	r = remote(ctl, &addr, SYS_mmap, 0, (long)ctl->size, PROT_READ | PROT_WRITE | PROT_EXEC,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r)
		return r;
	if (addr < 0 && addr > -4096) {
		pr_err("pid %d: remote mmap of %llu bytes failed: %s\n", (int)ctl->f->pid,
		       (unsigned long long)ctl->size, strerror((int)-addr));
		return (int)addr;
	}
	ctl->base = (uint64_t)addr;
	ctl->args = ctl->base + blob_len;
	ctl->stack_top = ctl->args + PSITE_ARGS_SIZE + PSITE_STACK_SIZE;
	pr_debug("pid %d: parasite area at 0x%llx, %llu bytes\n", (int)ctl->f->pid,
		 (unsigned long long)ctl->base, (unsigned long long)ctl->size);
	return psite_write_victim(ctl, ctl->base, parasite_blob, sizeof(parasite_blob));
}

static int set_sigmask(struct psite_ctl *ctl, uint64_t mask)
{
	if (ptrace(PTRACE_SETSIGMASK, ctl->tid, (void *)sizeof(mask), &mask)) {
		pr_perror("tid %d: PTRACE_SETSIGMASK", (int)ctl->tid);
		return -errno;
	}
	return 0;
}

/* A socketpair in the victim; relive takes one end with pidfd_getfd. */
static int make_socket(struct psite_ctl *ctl)
{
	pid_t pid = ctl->f->pid;
	int sv[2], pidfd, r;
	long ret;
	struct iovec local = { sv, sizeof(sv) };
	struct iovec rem = { (void *)ctl->args, sizeof(sv) };

	r = remote(ctl, &ret, SYS_socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
		   (long)ctl->args, 0, 0);
	if (r)
		return r;
	if (ret) {
		pr_err("pid %d: remote socketpair failed: %s\n", (int)pid, strerror((int)-ret));
		return (int)ret;
	}
	if (process_vm_readv(pid, &local, 1, &rem, 1, 0) != sizeof(sv)) {
		pr_perror("pid %d: cannot read the socketpair fds", (int)pid);
		return -EIO;
	}
	ctl->victim_sock = sv[0];
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		pr_perror("pid %d: pidfd_open", (int)pid);
		r = -errno;
	} else {
		ctl->sock = (int)syscall(SYS_pidfd_getfd, pidfd, sv[1], 0);
		if (ctl->sock < 0) {
			r = -errno;
			pr_perror("pid %d: pidfd_getfd of fd %d", (int)pid, sv[1]);
		}
		close(pidfd);
	}
	if (remote(ctl, &ret, SYS_close, sv[1], 0, 0, 0, 0, 0) == 0 && ret)
		pr_warn("pid %d: remote close of fd %d: %s\n", (int)pid, sv[1], strerror((int)-ret));
	return r;
}

static int start_blob(struct psite_ctl *ctl)
{
	struct user_regs_struct regs = ctl->regs;

	regs.rip = ctl->base + PARASITE_OFF_START;
	regs.rsp = ctl->stack_top;
	regs.rdi = (unsigned long)ctl->victim_sock;
	regs.rsi = ctl->args;
	regs.rax = 0;
	regs.orig_rax = (unsigned long)-1;
	if (ptrace(PTRACE_SETREGS, ctl->tid, NULL, &regs)) {
		pr_perror("tid %d: PTRACE_SETREGS for the parasite", (int)ctl->tid);
		return -errno;
	}
	if (ptrace(PTRACE_CONT, ctl->tid, NULL, NULL)) {
		pr_perror("tid %d: PTRACE_CONT into the parasite", (int)ctl->tid);
		return -errno;
	}
	ctl->running = true;
	return 0;
}

int psite_infect(struct psite_frozen *f, pid_t tid, struct psite_ctl **ret)
{
	struct psite_ctl *ctl;
	int r;

	if (!psite_thread_find(f, tid)) {
		pr_err("pid %d: thread %d is not frozen\n", (int)f->pid, (int)tid);
		return -ESRCH;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->f = f;
	ctl->tid = tid;
	ctl->victim_sock = ctl->sock = ctl->pipe_r = ctl->pipe_w = -1;
	r = save_state(ctl);
	if (!r)
		r = map_blob(ctl);
	if (!r) {
		r = set_sigmask(ctl, ~0ULL);
		ctl->sigmask_set = !r;
	}
	if (!r)
		r = make_socket(ctl);
	if (!r && fault_at("dump-parasite-start"))
		r = -EIO;
	if (!r)
		r = start_blob(ctl);
	if (r) {
		pr_err("pid %d: infection failed (%s), undoing it\n", (int)f->pid, strerror(-r));
		psite_cure(ctl);
		return r;
	}
	pr_info("pid %d: parasite running in thread %d at 0x%llx\n", (int)f->pid, (int)tid,
		(unsigned long long)ctl->base);
	*ret = ctl;
	return 0;
}

static int wait_trap(struct psite_thread *th, uint64_t trap)
{
	for (;;) {
		int status, r;

		if (waitpid(th->tid, &status, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			pr_perror("tid %d: waitpid for the parasite's exit", (int)th->tid);
			return r;
		}
		r = psite_handle_status(th, status, trap);
		if (r <= 0)
			return r;
	}
}

/* The blob does not answer: PTRACE_INTERRUPT it wherever it is. */
static int interrupt_parasite(struct psite_thread *th)
{
	if (ptrace(PTRACE_INTERRUPT, th->tid, NULL, NULL)) {
		pr_perror("tid %d: PTRACE_INTERRUPT of the parasite", (int)th->tid);
		return -errno;
	}
	for (;;) {
		siginfo_t si;
		int status;

		if (waitpid(th->tid, &status, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return -ESRCH;
		if (!WIFSTOPPED(status))
			continue;
		/* Any ptrace stop will do; a fault of the blob itself is dropped. */
		if (status >> 16 == 0 &&
		    (ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &si) || si.si_code <= 0))
			psite_hold_signal(th, WSTOPSIG(status));
		return 0;
	}
}

/* Bring the thread back into a ptrace stop, outside the parasite. */
static int stop_parasite(struct psite_ctl *ctl)
{
	struct psite_thread *th = psite_thread_find(ctl->f, ctl->tid);
	struct psite_reply_hdr rep;
	int r;

	r = psite_rpc_send(ctl, PSITE_CMD_FINI, 0, 0, -1);
	if (!r)
		r = psite_rpc_recv(ctl, PSITE_CMD_FINI, &rep, sizeof(rep));
	if (!ctl->running)
		return r; /* the watchdog saw it stop: crashed or returned */
	if (!r) {
		r = wait_trap(th, ctl->base + PARASITE_OFF_TRAP + 1);
		if (r != -ESRCH)
			ctl->running = false;
		if (!r)
			return 0;
	}
	pr_warn("pid %d: parasite did not finish cleanly, interrupting it\n", (int)ctl->f->pid);
	if (ctl->running && !interrupt_parasite(th))
		ctl->running = false;
	return r;
}

static void keep_first(int *r, int r2)
{
	if (!*r && r2)
		*r = r2;
}

int psite_cure(struct psite_ctl *ctl)
{
	struct iovec iov;
	pid_t pid;
	long ret;
	int r = 0;

	if (!ctl)
		return 0;
	pid = ctl->f->pid;
	if (ctl->running)
		keep_first(&r, stop_parasite(ctl));
	if (ctl->running) {
		pr_err("pid %d: the parasite in thread %d cannot be stopped\n", (int)pid,
		       (int)ctl->tid);
		goto out_free;
	}
	if (!ctl->regs_saved)
		goto out_free; /* nothing was changed yet */
	/* Remote syscalls below must run at the original IP, not in the blob. */
	if (ptrace(PTRACE_SETREGS, ctl->tid, NULL, &ctl->regs)) {
		keep_first(&r, -errno);
		pr_perror("tid %d: cannot restore registers", (int)ctl->tid);
	}
	if (ctl->victim_sock >= 0 &&
	    !remote(ctl, &ret, SYS_close, ctl->victim_sock, 0, 0, 0, 0, 0) && ret)
		pr_warn("pid %d: remote close of fd %d: %s\n", (int)ctl->f->pid, ctl->victim_sock,
			strerror((int)-ret));
	if (ctl->base) {
		int r2 = remote(ctl, &ret, SYS_munmap, (long)ctl->base, (long)ctl->size, 0, 0, 0, 0);

		if (!r2 && ret) {
			pr_err("pid %d: remote munmap of 0x%llx failed: %s\n", (int)ctl->f->pid,
			       (unsigned long long)ctl->base, strerror((int)-ret));
			r2 = (int)ret;
		}
		keep_first(&r, r2);
	}
	if (ctl->sigmask_set)
		keep_first(&r, set_sigmask(ctl, ctl->sigmask));
	if (ctl->xstate_saved) {
		iov.iov_base = ctl->xstate;
		iov.iov_len = ctl->xstate_len;
		if (ptrace(PTRACE_SETREGSET, ctl->tid, (void *)NT_X86_XSTATE, &iov)) {
			keep_first(&r, -errno);
			pr_perror("tid %d: cannot restore the xsave area", (int)ctl->tid);
		}
	}
	if (ptrace(PTRACE_SETREGS, ctl->tid, NULL, &ctl->regs)) {
		keep_first(&r, -errno);
		pr_perror("tid %d: cannot restore registers", (int)ctl->tid);
	}
out_free:
	if (ctl->sock >= 0)
		close(ctl->sock);
	if (ctl->pipe_r >= 0)
		close(ctl->pipe_r);
	if (ctl->pipe_w >= 0)
		close(ctl->pipe_w);
	free(ctl->xstate);
	free(ctl);
	if (r)
		pr_err("pid %d: cure incomplete: %s\n", (int)pid, strerror(-r));
	else
		pr_info("pid %d: parasite removed\n", (int)pid);
	return r;
}
