/*
 * POSIX timers (timer_create) of a frozen process. /proc/PID/timers names
 * each timer (id, signal and sival, notify kind and target thread, clock);
 * what only the process can ask for, the time left, the interval and the
 * overrun count, comes from timer_gettime and timer_getoverrun run in the
 * process as remote syscalls, into one scratch page mapped there for the
 * moment and unmapped before the memory is collected. The entries wait in
 * ctx until dmp_task() writes them into task-<pid>.img.
 */
#include "dump.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>

#include "psite.h"

#define SCRATCH_LEN 4096UL
/* Bound on timers of one process (the kernel's is the rlimit of signals). */
#define MAX_PTIMERS 65536

void dmp_posix_timers_free(struct dump_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_ptimers; i++)
		free(ctx->ptimers[i]);
	free(ctx->ptimers);
	ctx->ptimers = NULL;
	ctx->nr_ptimers = 0;
}

static int bad_timers(pid_t pid, const char *what)
{
	pr_err("pid %d: cannot parse '%s' in /proc/%d/timers\n", (int)pid, what, (int)pid);
	return -EINVAL;
}

/* "notify: signal/pid.N", "signal/tid.N" (SIGEV_THREAD_ID) or "none/pid.N". */
static int parse_notify(pid_t pid, const char *v, PosixTimerEntry *t)
{
	char kind[16], who[8];
	int n;

	if (sscanf(v, " %15[a-z]/%7[a-z].%d", kind, who, &n) != 3)
		return bad_timers(pid, "notify");
	if (!strcmp(kind, "none")) {
		t->notify = SIGEV_NONE;
	} else if (!strcmp(kind, "signal") && !strcmp(who, "tid")) {
		t->notify = SIGEV_THREAD_ID;
		t->has_notify_tid = true;
		t->notify_tid = n;
	} else if (!strcmp(kind, "signal")) {
		t->notify = SIGEV_SIGNAL;
	} else {
		pr_err("pid %d: a POSIX timer with notify '%s' is not supported\n", (int)pid, kind);
		return -ENOTSUP;
	}
	return 0;
}

static int add_timer(struct dump_ctx *ctx, PosixTimerEntry **ret)
{
	PosixTimerEntry **n, *t;

	if (ctx->nr_ptimers >= MAX_PTIMERS)
		return -E2BIG;
	n = realloc(ctx->ptimers, (ctx->nr_ptimers + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	ctx->ptimers = n;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	posix_timer_entry__init(t);
	ctx->ptimers[ctx->nr_ptimers++] = t;
	*ret = t;
	return 0;
}

/* The timers as /proc/PID/timers lists them (each block starts with "ID:"). */
static int parse_timers(struct dump_ctx *ctx, char *text)
{
	PosixTimerEntry *t = NULL;
	int r;

	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long long sival;
		int a;

		if (sscanf(line, "ID: %d", &a) == 1) {
			r = add_timer(ctx, &t);
			if (r)
				return r;
			t->id = a;
		} else if (!t) {
			return bad_timers(ctx->pid, line);
		} else if (!strncmp(line, "signal:", 7)) {
			if (sscanf(line + 7, " %d/%llx", &a, &sival) != 2)
				return bad_timers(ctx->pid, "signal");
			t->signo = a;
			t->sival = sival;
		} else if (!strncmp(line, "notify:", 7)) {
			r = parse_notify(ctx->pid, line + 7, t);
			if (r)
				return r;
		} else if (sscanf(line, "ClockID: %d", &a) == 1) {
			t->clock_id = a;
		}
	}
	return 0;
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec;
}

/* One remote syscall in the leader; its own -errno is an error too. */
static int rsys(struct dump_ctx *ctx, const char *what, long *ret, long nr, long a1, long a2,
		long a3, long a4, long a5, long a6)
{
	int r = psite_syscall(ctx->frozen, ctx->pid, ret, nr, a1, a2, a3, a4, a5, a6);

	if (!r && *ret < 0 && *ret > -4096) {
		pr_err("pid %d: remote %s failed: %s\n", (int)ctx->pid, what, strerror((int)-*ret));
		r = (int)*ret;
	}
	return r;
}

/* Time left, interval and overrun of every timer, asked in the process. */
static int read_times(struct dump_ctx *ctx, long page)
{
	for (size_t i = 0; i < ctx->nr_ptimers; i++) {
		PosixTimerEntry *t = ctx->ptimers[i];
		struct itimerspec its;
		struct iovec local = { &its, sizeof(its) };
		struct iovec rem = { (void *)page, sizeof(its) };
		long ret;
		int r;

		r = rsys(ctx, "timer_gettime", &ret, SYS_timer_gettime, t->id, page, 0, 0, 0, 0);
		if (!r)
			r = rsys(ctx, "timer_getoverrun", &ret, SYS_timer_getoverrun, t->id, 0, 0,
				 0, 0, 0);
		if (r) {
			pr_err("pid %d: cannot read POSIX timer %d\n", (int)ctx->pid, t->id);
			return r;
		}
		t->overrun = (int32_t)ret;
		if (process_vm_readv(ctx->pid, &local, 1, &rem, 1, 0) != (ssize_t)sizeof(its)) {
			r = -errno;
			pr_perror("pid %d: cannot read the times of POSIX timer %d", (int)ctx->pid,
				  t->id);
			return r ? r : -EIO;
		}
		t->value_ns = ts_ns(&its.it_value);
		t->interval_ns = ts_ns(&its.it_interval);
		pr_debug("pid %d: POSIX timer %d: clock %d notify %d signal %d, %" PRIu64
			 " ns left, every %" PRIu64 " ns, overrun %d\n", (int)ctx->pid, t->id,
			 t->clock_id, t->notify, t->signo, t->value_ns, t->interval_ns, t->overrun);
	}
	return 0;
}

int dmp_posix_timers(struct dump_ctx *ctx)
{
	_cleanup_free_ char *text = NULL;
	long page, ret;
	int r, rc;

	dmp_posix_timers_free(ctx);
	r = proc_read_text(ctx->pid, "timers", &text);
	if (r)
		return r;
	r = parse_timers(ctx, text);
	if (r || !ctx->nr_ptimers)
		return r;
	r = rsys(ctx, "mmap of a scratch page", &page, SYS_mmap, 0, SCRATCH_LEN,
		 PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r)
		return r;
	r = read_times(ctx, page);
	rc = rsys(ctx, "munmap of the scratch page", &ret, SYS_munmap, page, SCRATCH_LEN, 0, 0, 0,
		  0);
	if (rc && !r) {
		pr_err("pid %d: a scratch page stays mapped at %#lx\n", (int)ctx->pid, page);
		r = rc;
	}
	if (!r)
		pr_info("pid %d: %zu POSIX timer(s)\n", (int)ctx->pid, ctx->nr_ptimers);
	return r;
}
