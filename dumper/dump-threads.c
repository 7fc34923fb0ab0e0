/*
 * Per-thread state of a multi-threaded dump that neither /proc nor ptrace
 * gives: each thread's sigaltstack and clear_child_tid (the leader's come
 * from the parasite, the other threads' from two remote syscalls each), and
 * the pending-signal check: queued signals that are blocked (per thread or
 * shared) are not carried by the images yet, so such a process is refused
 * by name.
 */
#include "dump.h"

#include "log.h"
#include "psite.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>

#ifndef PTRACE_PEEKSIGINFO
#define PTRACE_PEEKSIGINFO 0x4209
#endif
#ifndef PTRACE_PEEKSIGINFO_SHARED
#define PTRACE_PEEKSIGINFO_SHARED 1
#endif

struct peeksiginfo_args_ {
	uint64_t off;
	uint32_t flags;
	int32_t nr;
};

int dmp_thread_states(struct dump_ctx *ctx, const struct psite_misc *leader)
{
	const pid_t *tids;
	size_t nr;
	int r;

	tids = psite_frozen_tids(ctx->frozen, &nr);
	free(ctx->thread_states);
	ctx->thread_states = calloc(nr ? nr : 1, sizeof(*ctx->thread_states));
	if (!ctx->thread_states)
		return -ENOMEM;
	for (size_t i = 0; i < nr; i++) {
		struct dmp_thread_state *ts = &ctx->thread_states[i];
		struct psite_thread_state st;

		if (tids[i] == ctx->pid) {
			ts->altstack_sp = leader->altstack_sp;
			ts->altstack_size = leader->altstack_size;
			ts->altstack_flags = (uint32_t)leader->altstack_flags;
			ts->clear_tid = leader->clear_tid;
			continue;
		}
		r = psite_thread_state(ctx->ctl, tids[i], &st);
		if (r) {
			pr_err("pid %d: cannot read the state of thread %d\n", (int)ctx->pid,
			       (int)tids[i]);
			return r;
		}
		ts->altstack_sp = st.altstack_sp;
		ts->altstack_size = st.altstack_size;
		ts->altstack_flags = (uint32_t)st.altstack_flags;
		ts->clear_tid = st.clear_tid;
	}
	return 0;
}

#ifndef PTRACE_GETSIGMASK
#define PTRACE_GETSIGMASK 0x420a
#endif
#define PEEK_MAX 64

/* The signals queued for TID (or, with SHARED, for its whole process): a bitmask. */
static int pending_mask(pid_t tid, bool shared, uint64_t *ret)
{
	struct peeksiginfo_args_ a = { 0, shared ? PTRACE_PEEKSIGINFO_SHARED : 0, PEEK_MAX };
	siginfo_t si[PEEK_MAX];
	long n;

	*ret = 0;
	for (;;) {
		n = ptrace(PTRACE_PEEKSIGINFO, tid, &a, si);
		if (n < 0) {
			pr_perror("tid %d: PTRACE_PEEKSIGINFO%s", (int)tid,
				  shared ? " (shared)" : "");
			return -errno;
		}
		for (long i = 0; i < n; i++)
			if (si[i].si_signo >= 1 && si[i].si_signo <= 64)
				*ret |= 1ULL << (si[i].si_signo - 1);
		if (n < PEEK_MAX)
			return 0;
		a.off += (uint64_t)n;
	}
}

static int first_sig(uint64_t mask)
{
	return mask ? __builtin_ctzll(mask) + 1 : 0;
}

/*
 * A queued signal that is not blocked is about to be delivered: with
 * --leave-running it still is, after a kill it is lost as if it came a
 * moment later. One that is blocked (in its thread, or in every thread for
 * the process queue) would outlive the restore, which cannot queue it again
 * yet: refused.
 */
int dmp_check_pending(struct dump_ctx *ctx)
{
	const pid_t *tids;
	uint64_t all_blocked = ~0ULL, pend, blocked, ignored = 0;
	size_t nr;
	int r;

	tids = psite_frozen_tids(ctx->frozen, &nr);
	for (size_t i = 0; i < nr; i++) {
		if (ptrace(PTRACE_GETSIGMASK, tids[i], (void *)sizeof(blocked), &blocked)) {
			r = -errno;
			pr_perror("tid %d: cannot read the signal mask", (int)tids[i]);
			return r;
		}
		all_blocked &= blocked;
		r = pending_mask(tids[i], false, &pend);
		if (r)
			return r;
		if (pend & blocked) {
			int sig = first_sig(pend & blocked);

			pr_err("pid %d: thread %d has signal %d (%s) pending and blocked: pending "
			       "signals are not supported yet\n",
			       (int)ctx->pid, (int)tids[i], sig, strsignal(sig));
			return -ENOTSUP;
		}
		ignored |= pend;
	}
	r = pending_mask(ctx->pid, true, &pend);
	if (r)
		return r;
	if (pend & all_blocked) {
		int sig = first_sig(pend & all_blocked);

		pr_err("pid %d has signal %d (%s) pending for the process, blocked in every "
		       "thread: pending signals are not supported yet\n",
		       (int)ctx->pid, sig, strsignal(sig));
		return -ENOTSUP;
	}
	ignored |= pend;
	if (ignored && !ctx->opts->leave_running)
		pr_warn("pid %d: signal %d and maybe others were about to be delivered: lost "
			"with the kill\n",
			(int)ctx->pid, first_sig(ignored));
	return 0;
}
