/*
 * Per-thread state of a multi-threaded dump that neither /proc nor ptrace
 * gives: each thread's sigaltstack and clear_child_tid (the leader's come
 * from the parasite, the other threads' from two remote syscalls each), and
 * the queued signals: each thread's private queue and the process's shared
 * one, read with PTRACE_PEEKSIGINFO right after the freeze and kept as raw
 * siginfo for core-<tid>.img and task-<pid>.img (the restorer blob queues
 * them again). Signals that arrive later, while the dump runs, are not in
 * the images: those the freeze itself caught in a signal-delivery-stop are
 * held by the parasite library and re-sent on detach (--leave-running), and
 * lost with the kill otherwise, as if they had come a moment later.
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

#define PEEK_MAX 64

/* Append every signal queued for TID (or, with SHARED, for its process) to Q. */
static int read_queue(pid_t tid, bool shared, struct dmp_sigqueue *q)
{
	struct peeksiginfo_args_ a = { 0, shared ? PTRACE_PEEKSIGINFO_SHARED : 0, PEEK_MAX };
	long n;

	for (;;) {
		siginfo_t *si = realloc(q->si, (q->nr + PEEK_MAX) * sizeof(*si));

		if (!si)
			return -ENOMEM;
		q->si = si;
		n = ptrace(PTRACE_PEEKSIGINFO, tid, &a, q->si + q->nr);
		if (n < 0) {
			pr_perror("tid %d: PTRACE_PEEKSIGINFO%s", (int)tid,
				  shared ? " (shared)" : "");
			return -errno;
		}
		q->nr += (size_t)n;
		if (n < PEEK_MAX)
			return 0;
		a.off += (uint64_t)n;
	}
}

/*
 * SIGKILL queued means the process is dying, and a SIGSTOP queued again
 * would stop the restorer: neither is carried (a stop is about to happen or
 * not, like a signal that comes a moment later). Everything else is kept in
 * order, with its siginfo.
 */
static void filter_queue(pid_t pid, pid_t tid, struct dmp_sigqueue *q)
{
	size_t k = 0;

	for (size_t i = 0; i < q->nr; i++) {
		int sig = q->si[i].si_signo;

		if (sig == SIGKILL || sig == SIGSTOP || sig < 1 || sig > 64) {
			pr_warn("pid %d: %s%d: signal %d (%s) queued, not carried by the images\n",
				(int)pid, tid ? "thread " : "process queue ", tid ? (int)tid : (int)pid,
				sig, strsignal(sig));
			continue;
		}
		q->si[k++] = q->si[i];
	}
	q->nr = k;
}

void dmp_pending_free(struct dump_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_pending; i++)
		free(ctx->pending[i].si);
	free(ctx->pending);
	ctx->pending = NULL;
	ctx->nr_pending = 0;
	free(ctx->shared_pending.si);
	ctx->shared_pending.si = NULL;
	ctx->shared_pending.nr = 0;
}

/*
 * Read every queue while nothing runs in the process yet (before the
 * parasite): blocked or not, each queued signal is carried and delivered
 * after the restore under the restored masks, as it would have been.
 */
int dmp_check_pending(struct dump_ctx *ctx)
{
	const pid_t *tids;
	size_t nr, total;
	int r;

	dmp_pending_free(ctx);
	tids = psite_frozen_tids(ctx->frozen, &nr);
	ctx->pending = calloc(nr ? nr : 1, sizeof(*ctx->pending));
	if (!ctx->pending)
		return -ENOMEM;
	ctx->nr_pending = nr;
	for (size_t i = 0; i < nr; i++) {
		r = read_queue(tids[i], false, &ctx->pending[i]);
		if (r)
			return r;
		filter_queue(ctx->pid, tids[i], &ctx->pending[i]);
	}
	r = read_queue(ctx->pid, true, &ctx->shared_pending);
	if (r)
		return r;
	filter_queue(ctx->pid, 0, &ctx->shared_pending);
	total = ctx->shared_pending.nr;
	for (size_t i = 0; i < nr; i++)
		total += ctx->pending[i].nr;
	if (total)
		pr_info("pid %d: %zu queued signal(s) carried (%zu for the process)\n",
			(int)ctx->pid, total, ctx->shared_pending.nr);
	return 0;
}
