/*
 * Per-thread state that only the thread itself can report (its sigaltstack
 * and clear_child_tid), read from a frozen thread that does not run the
 * parasite: two remote syscalls in that thread write into the parasite's
 * args area, which relive then reads with process_vm_readv.
 */
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "log.h"
#include "psite-internal.h"

#define PR_GET_TID_ADDRESS_ 40

int psite_thread_state(struct psite_ctl *ctl, pid_t tid, struct psite_thread_state *out)
{
	struct {
		struct psite_kstack ss;
		uint64_t clear_tid;
	} buf;
	struct iovec local = { &buf, sizeof(buf) };
	struct iovec rem = { (void *)ctl->args, sizeof(buf) };
	pid_t pid = ctl->f->pid;
	long ret;
	int r;

	if (tid == ctl->tid) {
		pr_err("pid %d: thread %d runs the parasite: ask it instead\n", (int)pid, (int)tid);
		return -EINVAL;
	}
	memset(&buf, 0, sizeof(buf));
	if (psite_write_victim(ctl, ctl->args, &buf, sizeof(buf)))
		return -EIO;
	r = psite_syscall(ctl->f, tid, &ret, SYS_sigaltstack, 0, (long)ctl->args, 0, 0, 0, 0);
	if (!r && ret) {
		pr_err("tid %d: remote sigaltstack failed: %s\n", (int)tid, strerror((int)-ret));
		r = (int)ret;
	}
	if (r)
		return r;
	r = psite_syscall(ctl->f, tid, &ret, SYS_prctl, PR_GET_TID_ADDRESS_,
			  (long)(ctl->args + offsetof(typeof(buf), clear_tid)), 0, 0, 0, 0);
	if (!r && ret) {
		pr_err("tid %d: remote prctl(PR_GET_TID_ADDRESS) failed: %s\n", (int)tid,
		       strerror((int)-ret));
		r = (int)ret;
	}
	if (r)
		return r;
	if (process_vm_readv(pid, &local, 1, &rem, 1, 0) != (ssize_t)sizeof(buf)) {
		r = -errno;
		pr_perror("pid %d: cannot read the state of thread %d", (int)pid, (int)tid);
		return r ? r : -EIO;
	}
	out->altstack_sp = buf.ss.sp;
	out->altstack_size = buf.ss.size;
	out->altstack_flags = buf.ss.flags;
	out->clear_tid = buf.clear_tid;
	return 0;
}
