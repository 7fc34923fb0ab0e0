/*
 * The signals part of the victims: handlers installed with SA_SIGINFO (and a
 * sa_mask), SA_RESTART, SA_ONSTACK on a sigaltstack, an ignored signal, a
 * blocked mask, and an ITIMER_REAL every 10 ms whose handler counts ticks.
 * The check asks the kernel for each disposition, then makes each one act:
 * the timer must still tick, a read() interrupted by the ticks must restart,
 * a queued signal must arrive with its value, the on-stack handler must run
 * on the alternate stack, and blocked signals must wait until unblocked.
 */
#include "victim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define TICK_US 10000
#define ALTSTACK_SIZE (64 * 1024)
#define QUEUED_VALUE 0x5eed

static volatile int ticks;
static volatile int restart_fd = -1, restart_at;
static volatile int usr1_value, usr1_code, usr1_pid, usr1_calls;
static volatile uintptr_t winch_sp;
static volatile int blocked_calls;
static void *altstack;

static void on_alrm(int sig)
{
	int saved = errno;

	(void)sig;
	ticks++;
	/* The read() probe: its byte only comes after a few interrupting ticks. */
	if (restart_fd >= 0 && ticks >= restart_at) {
		if (write(restart_fd, "x", 1) == 1)
			restart_fd = -1;
	}
	errno = saved;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	usr1_value = si->si_value.sival_int;
	usr1_code = si->si_code;
	usr1_pid = si->si_pid;
	usr1_calls++;
}

static void on_winch(int sig)
{
	volatile int here = 0;

	(void)sig;
	winch_sp = (uintptr_t)&here;
}

static void on_blocked(int sig)
{
	(void)sig;
	blocked_calls++;
}

static const int blocked_sigs[] = { SIGHUP, SIGQUIT, SIGTTIN };

struct disposition {
	int sig;
	void *handler;
	int flags;
};

static const struct disposition dispositions[] = {
	{ SIGALRM, (void *)on_alrm, SA_RESTART },
	{ SIGUSR1, (void *)on_usr1, SA_SIGINFO },
	{ SIGWINCH, (void *)on_winch, SA_ONSTACK },
	{ SIGHUP, (void *)on_blocked, 0 },
	{ SIGQUIT, (void *)on_blocked, 0 },
	{ SIGTTIN, (void *)on_blocked, 0 },
	{ SIGPIPE, (void *)SIG_IGN, 0 },
};

static int signals_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	struct itimerval it = { { 0, TICK_US }, { 0, TICK_US } };
	stack_t ss;
	sigset_t set;

	altstack = malloc(ALTSTACK_SIZE);
	if (!altstack)
		return victim_fail(err, len, "malloc of the alternate stack failed");
	ss = (stack_t){ .ss_sp = altstack, .ss_size = ALTSTACK_SIZE };
	if (sigaltstack(&ss, NULL))
		return victim_fail(err, len, "sigaltstack: %s", strerror(errno));
	for (unsigned i = 0; i < sizeof(dispositions) / sizeof(dispositions[0]); i++) {
		const struct disposition *d = &dispositions[i];
		struct sigaction sa = { .sa_flags = d->flags };

		sa.sa_handler = (void (*)(int))d->handler;
		sigemptyset(&sa.sa_mask);
		if (d->sig == SIGUSR1)
			sigaddset(&sa.sa_mask, SIGINT);
		if (sigaction(d->sig, &sa, NULL))
			return victim_fail(err, len, "sigaction(%d): %s", d->sig, strerror(errno));
	}
	sigemptyset(&set);
	for (unsigned i = 0; i < sizeof(blocked_sigs) / sizeof(blocked_sigs[0]); i++)
		sigaddset(&set, blocked_sigs[i]);
	if (sigprocmask(SIG_SETMASK, &set, NULL))
		return victim_fail(err, len, "sigprocmask: %s", strerror(errno));
	if (setitimer(ITIMER_REAL, &it, NULL))
		return victim_fail(err, len, "setitimer: %s", strerror(errno));
	return 0;
}

static int check_dispositions(char *err, size_t len)
{
	for (unsigned i = 0; i < sizeof(dispositions) / sizeof(dispositions[0]); i++) {
		const struct disposition *d = &dispositions[i];
		struct sigaction sa;
		int mask = SA_RESTART | SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESETHAND;

		if (sigaction(d->sig, NULL, &sa))
			return victim_fail(err, len, "sigaction(%d): %s", d->sig, strerror(errno));
		if ((void *)sa.sa_handler != d->handler)
			return victim_fail(err, len, "signal %d: handler %p, expected %p", d->sig,
					   (void *)sa.sa_handler, d->handler);
		if ((sa.sa_flags & mask) != d->flags)
			return victim_fail(err, len, "signal %d: sa_flags %#x, expected %#x", d->sig,
					   sa.sa_flags & mask, d->flags);
		if (d->sig == SIGUSR1 && !sigismember(&sa.sa_mask, SIGINT))
			return victim_fail(err, len, "signal %d: SIGINT left its sa_mask", d->sig);
	}
	return 0;
}

static int check_mask(char *err, size_t len)
{
	sigset_t cur;

	if (sigprocmask(SIG_BLOCK, NULL, &cur))
		return victim_fail(err, len, "sigprocmask: %s", strerror(errno));
	for (int sig = 1; sig <= SIGRTMAX; sig++) {
		int want = 0;

		if (sig > 31 && sig < SIGRTMIN)
			continue;	/* glibc's own */

		for (unsigned i = 0; i < sizeof(blocked_sigs) / sizeof(blocked_sigs[0]); i++)
			want |= blocked_sigs[i] == sig;
		if (sigismember(&cur, sig) != want)
			return victim_fail(err, len, "signal %d is %sblocked, expected %sblocked",
					   sig, want ? "not " : "", want ? "" : "not ");
	}
	return 0;
}

/* Sleep until cond() holds, at most ms milliseconds; the ticks interrupt the sleeps. */
static int wait_for(int (*cond)(void), int ms)
{
	struct timespec ts = { 0, 1000000 };

	for (int i = 0; i < ms && !cond(); i++)
		nanosleep(&ts, NULL);
	return cond();
}

static int tick_start;
static int ticked_enough(void)
{
	return ticks - tick_start >= 5;
}

static int check_timer(char *err, size_t len)
{
	struct itimerval it;

	if (getitimer(ITIMER_REAL, &it))
		return victim_fail(err, len, "getitimer: %s", strerror(errno));
	if (it.it_interval.tv_sec != 0 || it.it_interval.tv_usec != TICK_US)
		return victim_fail(err, len, "ITIMER_REAL interval is %ld.%06ld s, expected 0.010 s",
				   (long)it.it_interval.tv_sec, (long)it.it_interval.tv_usec);
	tick_start = ticks;
	if (!wait_for(ticked_enough, 1000))
		return victim_fail(err, len, "ITIMER_REAL: %d ticks in 1 s, expected ~100",
				   ticks - tick_start);
	return 0;
}

/* A blocking read() interrupted by SA_RESTART ticks must resume, not fail with EINTR. */
static int check_restart(char *err, size_t len)
{
	int p[2], r;
	char c;

	if (pipe(p))
		return victim_fail(err, len, "pipe: %s", strerror(errno));
	restart_at = ticks + 3;
	restart_fd = p[1];
	r = read(p[0], &c, 1);
	if (r != 1) {
		r = errno;
		restart_fd = -1;
		close(p[0]);
		close(p[1]);
		return victim_fail(err, len, "read() under SA_RESTART ticks failed: %s",
				   strerror(r));
	}
	close(p[0]);
	close(p[1]);
	return 0;
}

static int check_delivery(char *err, size_t len)
{
	union sigval v = { .sival_int = QUEUED_VALUE };
	uintptr_t lo = (uintptr_t)altstack;
	sigset_t set, pending;
	stack_t ss;

	if (sigqueue(getpid(), SIGUSR1, v))
		return victim_fail(err, len, "sigqueue: %s", strerror(errno));
	if (usr1_calls != 1 || usr1_value != QUEUED_VALUE || usr1_code != SI_QUEUE ||
	    usr1_pid != getpid())
		return victim_fail(err, len, "SA_SIGINFO handler: %d calls, value %#x code %d "
				   "pid %d", usr1_calls, usr1_value, usr1_code, usr1_pid);
	if (sigaltstack(NULL, &ss) || ss.ss_sp != altstack || ss.ss_size != ALTSTACK_SIZE ||
	    ss.ss_flags)
		return victim_fail(err, len, "sigaltstack is %p+%zu flags %#x, expected %p+%d",
				   ss.ss_sp, ss.ss_size, ss.ss_flags, altstack, ALTSTACK_SIZE);
	raise(SIGWINCH);
	if (winch_sp < lo || winch_sp >= lo + ALTSTACK_SIZE)
		return victim_fail(err, len, "SA_ONSTACK handler ran at sp %#lx, off the "
				   "alternate stack %p", (unsigned long)winch_sp, altstack);
	raise(SIGHUP);
	if (blocked_calls || sigpending(&pending) || !sigismember(&pending, SIGHUP))
		return victim_fail(err, len, "blocked SIGHUP was delivered at once");
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	if (blocked_calls != 1)
		return victim_fail(err, len, "SIGHUP not delivered when unblocked");
	return 0;
}

static int signals_check(struct victim_ctx *ctx, char *err, size_t len)
{
	if (check_dispositions(err, len) || check_mask(err, len) || check_timer(err, len) ||
	    check_restart(err, len) || check_delivery(err, len))
		return -1;
	return 0;
}

const struct victim_part victim_part_signals = {
	.name = "signals",
	.setup = signals_setup,
	.check = signals_check,
};
