/*
 * POSIX timers of a task on the restore side: the plan checks each dumped
 * timer (id, clock, notify kind, signal, target thread among the task's
 * own), and the helper puts them in the blob args by increasing id, the
 * order the blob creates them in (restorer-blob.c: with
 * PR_TIMER_CREATE_RESTORE_IDS each timer gets its id; without it, ids are
 * handed out in increasing order and the blob creates and deletes
 * placeholders until the wanted one comes). The overrun of the last expiry
 * cannot be set in a new timer: it starts from zero.
 */
#include "rst.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static bool clock_ok(int32_t c)
{
	switch (c) {
	case CLOCK_REALTIME:
	case CLOCK_MONOTONIC:
	case CLOCK_PROCESS_CPUTIME_ID:
	case CLOCK_THREAD_CPUTIME_ID:
	case CLOCK_BOOTTIME:
	case CLOCK_REALTIME_ALARM:
	case CLOCK_BOOTTIME_ALARM:
	case CLOCK_TAI:
		return true;
	default:
		return false;
	}
}

static const char *bad_timer(const struct rst_task *t, const PosixTimerEntry *pt)
{
	bool thread = false;

	if (pt->id < 0)
		return "negative id";
	if (!clock_ok(pt->clock_id))
		return "unknown clock";
	if (pt->notify != SIGEV_NONE && (pt->signo < 1 || pt->signo > 64 || pt->signo == SIGKILL ||
					 pt->signo == SIGSTOP))
		return "bad signal";
	if (pt->notify != SIGEV_NONE && pt->notify != SIGEV_SIGNAL &&
	    pt->notify != SIGEV_THREAD_ID)
		return "unknown notify kind";
	if (pt->notify == SIGEV_THREAD_ID) {
		for (size_t i = 0; i < t->nr_threads; i++)
			thread |= pt->has_notify_tid && (int32_t)t->threads[i].tid == pt->notify_tid;
		if (!thread)
			return "signal for a thread that is not one of the process";
	}
	if (pt->interval_ns >= (1ULL << 62) || pt->value_ns >= (1ULL << 62))
		return "time out of range";
	return NULL;
}

int rst_ptimers_check(const struct rst_task *t)
{
	const TaskEntry *te = t->task;

	if (te->n_posix_timers > RST_MAX_PTIMERS) {
		pr_err("task-%u.img: %zu POSIX timers, at most %u\n", t->pid, te->n_posix_timers,
		       RST_MAX_PTIMERS);
		return -E2BIG;
	}
	for (size_t i = 0; i < te->n_posix_timers; i++) {
		const PosixTimerEntry *pt = te->posix_timers[i];
		const char *bad = bad_timer(t, pt);

		for (size_t k = 0; !bad && k < i; k++)
			if (te->posix_timers[k]->id == pt->id)
				bad = "id appears twice";
		if (bad) {
			pr_err("task-%u.img: POSIX timer %d: %s\n", t->pid, pt->id, bad);
			return -EINVAL;
		}
	}
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	const struct rst_blob_ptimer *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

void rst_ptimers_fill(const TaskEntry *te, struct rst_blob_args *a, uint64_t off)
{
	struct rst_blob_ptimer *bp = (struct rst_blob_ptimer *)((uint8_t *)a + off);

	for (size_t i = 0; i < te->n_posix_timers; i++) {
		const PosixTimerEntry *pt = te->posix_timers[i];

		bp[i] = (struct rst_blob_ptimer){
			.id = pt->id,
			.clock_id = pt->clock_id,
			.notify = pt->notify,
			.signo = pt->signo,
			.tid = pt->has_notify_tid ? pt->notify_tid : 0,
			.sival = pt->sival,
			.interval_ns = pt->interval_ns,
			.value_ns = pt->value_ns,
		};
		/* Armed and due at the dump: zero would disarm it; fire it at once. */
		if (!bp[i].value_ns && bp[i].interval_ns)
			bp[i].value_ns = 1;
	}
	qsort(bp, te->n_posix_timers, sizeof(*bp), cmp_id);
	a->nr_ptimers = (uint32_t)te->n_posix_timers;
	a->ptimers_off = off;
}
