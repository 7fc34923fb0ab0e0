/*
 * victim-sigpend (protocol: victim.c): queued, blocked signals must survive
 * a dump and restore with their siginfo, order, multiplicity and thread.
 * A worker thread blocks SIGRTMIN+3 and gets three of them queued to itself
 * (pthread_sigqueue, values 301..303); the process gets SIGUSR1 twice
 * (values 101, 102: a standard signal is queued once, so 101 only) and
 * SIGRTMIN+4 (401), blocked in every thread. After the trigger the main
 * thread checks what is pending, unblocks the process signals and must get
 * exactly USR1/101 then RTMIN+4/401; then the worker unblocks its own and
 * must get RTMIN+3 301, 302, 303, in that order. Each delivery is logged by
 * an SA_SIGINFO handler with the receiving thread, sender pid/uid and code.
 */
#include "victim.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_LOG 16

struct delivery {
	int signo;
	int value;
	int code;
	pid_t pid;
	uid_t uid;
	pid_t tid;
};

static struct delivery dlog[MAX_LOG];
static volatile int nr_log;
static volatile int phase; /* 1: the worker unblocks; 2: it is done */
static pthread_t worker;
static pid_t worker_tid, main_tid;
static pid_t my_pid;
static uid_t my_uid;

#define SIG_T (SIGRTMIN + 3) /* queued to the worker */
#define SIG_P (SIGRTMIN + 4) /* queued to the process */

static void on_sig(int sig, siginfo_t *si, void *uc)
{
	int i = __atomic_fetch_add(&nr_log, 1, __ATOMIC_SEQ_CST);

	(void)uc;
	if (i >= MAX_LOG)
		return;
	dlog[i].signo = sig;
	dlog[i].value = si->si_value.sival_int;
	dlog[i].code = si->si_code;
	dlog[i].pid = si->si_pid;
	dlog[i].uid = si->si_uid;
	dlog[i].tid = (pid_t)syscall(SYS_gettid);
}

static void test_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIG_T);
	sigaddset(set, SIG_P);
}

static void nap(void)
{
	struct timespec ts = { 0, 1000 * 1000 };

	nanosleep(&ts, NULL);
}

static void *worker_main(void *arg)
{
	sigset_t set;

	(void)arg;
	worker_tid = (pid_t)syscall(SYS_gettid);
	/* On top of the inherited USR1/RTMIN+4: its own signal and the trigger. */
	sigemptyset(&set);
	sigaddset(&set, SIG_T);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	while (phase != 1)
		nap();
	sigemptyset(&set);
	sigaddset(&set, SIG_T);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	phase = 2;
	return NULL;
}

/* Of the test signals, exactly WANT_P for the process and WANT_T for this thread. */
static int check_pending(const char *when, int want_usr1, int want_p, int want_t, char *err,
			 size_t len)
{
	sigset_t pend;

	if (sigpending(&pend))
		return victim_fail(err, len, "sigpending: %s", strerror(errno));
	if (sigismember(&pend, SIGUSR1) != want_usr1 || sigismember(&pend, SIG_P) != want_p ||
	    sigismember(&pend, SIG_T) != want_t)
		return victim_fail(err, len,
				   "%s: pending USR1 %d RTMIN+4 %d RTMIN+3 %d, expected %d %d %d",
				   when, sigismember(&pend, SIGUSR1), sigismember(&pend, SIG_P),
				   sigismember(&pend, SIG_T), want_usr1, want_p, want_t);
	return 0;
}

static int sigpend_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	struct sigaction sa = { .sa_sigaction = on_sig, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigset_t set;
	int r;

	(void)ctx;
	my_pid = getpid();
	my_uid = getuid();
	main_tid = (pid_t)syscall(SYS_gettid);
	/* One handler at a time: deliveries are logged in the order they are taken. */
	test_set(&sa.sa_mask);
	for (int s = 0; s < 3; s++) {
		int sig = s == 0 ? SIGUSR1 : s == 1 ? SIG_T : SIG_P;

		if (sigaction(sig, &sa, NULL))
			return victim_fail(err, len, "sigaction(%d): %s", sig, strerror(errno));
	}
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIG_P);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	r = pthread_create(&worker, NULL, worker_main, NULL);
	if (r)
		return victim_fail(err, len, "pthread_create: %s", strerror(r));
	while (!worker_tid)
		nap();
	/* The worker's mask is set once it naps: wait for it to show. */
	for (int i = 0; i < 1000; i++) {
		char path[64], line[256];
		unsigned long long blk = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)worker_tid);
		f = fopen(path, "re");
		if (!f)
			return victim_fail(err, len, "%s: %s", path, strerror(errno));
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "SigBlk: %llx", &blk) == 1)
				break;
		fclose(f);
		if (blk & (1ULL << (SIG_T - 1)))
			break;
		nap();
	}
	for (int v = 301; v <= 303; v++) {
		r = pthread_sigqueue(worker, SIG_T, (union sigval){ .sival_int = v });
		if (r)
			return victim_fail(err, len, "pthread_sigqueue: %s", strerror(r));
	}
	if (sigqueue(my_pid, SIGUSR1, (union sigval){ .sival_int = 101 }) ||
	    sigqueue(my_pid, SIGUSR1, (union sigval){ .sival_int = 102 }) ||
	    sigqueue(my_pid, SIG_P, (union sigval){ .sival_int = 401 }))
		return victim_fail(err, len, "sigqueue: %s", strerror(errno));
	if (nr_log)
		return victim_fail(err, len, "signal %d delivered while blocked", dlog[0].signo);
	return check_pending("before the dump", 1, 1, 0, err, len);
}

static int expect(int i, int signo, int value, pid_t tid, char *err, size_t len)
{
	const struct delivery *d = &dlog[i];

	if (d->signo != signo || d->value != value || d->tid != tid)
		return victim_fail(err, len,
				   "delivery %d: signal %d value %d in tid %d, expected signal "
				   "%d value %d in tid %d",
				   i, d->signo, d->value, (int)d->tid, signo, value, (int)tid);
	if (d->code != SI_QUEUE || d->pid != my_pid || d->uid != my_uid)
		return victim_fail(err, len,
				   "delivery %d (signal %d): code %d pid %d uid %d, expected "
				   "SI_QUEUE from %d uid %d",
				   i, signo, d->code, (int)d->pid, (int)d->uid, (int)my_pid,
				   (int)my_uid);
	return 0;
}

static int sigpend_check(struct victim_ctx *ctx, char *err, size_t len)
{
	sigset_t set;

	(void)ctx;
	if (nr_log)
		return victim_fail(err, len, "signal %d delivered before the check (value %d)",
				   dlog[0].signo, dlog[0].value);
	if ((pid_t)syscall(SYS_gettid) != main_tid)
		return victim_fail(err, len, "check runs in tid %ld, not %d",
				   (long)syscall(SYS_gettid), (int)main_tid);
	if (check_pending("after the restore", 1, 1, 0, err, len))
		return -1;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIG_P);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if (nr_log != 2)
		return victim_fail(err, len, "%d deliveries to the main thread, expected 2",
				   nr_log);
	if (expect(0, SIGUSR1, 101, main_tid, err, len) || expect(1, SIG_P, 401, main_tid, err, len))
		return -1;
	phase = 1;
	for (int i = 0; phase != 2 && i < 5000; i++)
		nap();
	if (phase != 2)
		return victim_fail(err, len, "worker %d did not finish", (int)worker_tid);
	pthread_join(worker, NULL);
	if (nr_log != 5)
		return victim_fail(err, len, "%d deliveries in all, expected 5", nr_log);
	for (int i = 0; i < 3; i++)
		if (expect(2 + i, SIG_T, 301 + i, worker_tid, err, len))
			return -1;
	return check_pending("at the end", 0, 0, 0, err, len);
}

static const struct victim_part part_sigpend = {
	.name = "sigpend",
	.setup = sigpend_setup,
	.check = sigpend_check,
};
const struct victim_part *const victim_parts[] = { &part_sigpend, NULL };
