/*
 * The POSIX-timers part of the victims, with a gap in the ids (a timer
 * created and deleted between them): a one-shot CLOCK_MONOTONIC timer due
 * 3 s after setup that signals SIGRTMIN+3 with sival 0xA11CE to a handler;
 * a 50 ms periodic timer whose blocked SIGRTMIN+4 (sival 0xB0B) goes to the
 * main thread (SIGEV_THREAD_ID) and piles up overruns; a SIGEV_NONE
 * CLOCK_BOOTTIME timer 1000 s away. The check: the ids in /proc/self/timers
 * are those of the setup; the one-shot fired once, never before its time
 * (relive arms timers with the time left, so the frozen time comes on top),
 * at most 10 s late, with its signal, sival and id; the periodic one,
 * its queue drained, delivers within 0.5 s one signal whose overrun counts
 * the expiries in that time; the SIGEV_NONE one has 940-1000 s left.
 * And a 20 ms periodic timer whose SIGRTMIN+6 goes to a second thread
 * (SIGEV_THREAD_ID, blocked in the main thread): after the restore its
 * handler keeps running, always in that thread.
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

#define ONESHOT_NS 3000000000LL
#define PERIOD_NS 50000000LL
#define LATE_NS 10000000000LL
#define NONE_S 1000

static timer_t t_once, t_per, t_none;
static int64_t t0_ns;
static volatile int64_t fired_ns;
static volatile int fired_count, fired_code;
static volatile uintptr_t fired_val;
static char ids[256];
static timer_t t_thr;
static volatile pid_t worker_tid;
static volatile int thr_hits, thr_wrong;

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_timer(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fired_ns = mono_ns();
	fired_count++;
	fired_code = si->si_code;
	fired_val = (uintptr_t)si->si_value.sival_ptr;
}

static void on_thread_timer(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if ((pid_t)syscall(SYS_gettid) != worker_tid || si->si_code != SI_TIMER)
		thr_wrong++;
	thr_hits++;
}

static void *worker(void *arg)
{
	sigset_t set;

	(void)arg;
	worker_tid = (pid_t)syscall(SYS_gettid);
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 6);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;)
		pause();
	return NULL;
}

/* A thread of its own, and a timer that signals only it. */
static int thread_timer_setup(char *err, size_t len)
{
	struct sigaction sa = { .sa_sigaction = on_thread_timer,
				.sa_flags = SA_SIGINFO | SA_RESTART };
	struct itimerspec per = { .it_interval = { 0, 20000000 }, .it_value = { 0, 20000000 } };
	struct sigevent se = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN + 6 };
	sigset_t set;
	pthread_t th;

	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 6);
	if (sigaction(SIGRTMIN + 6, &sa, NULL) || sigprocmask(SIG_BLOCK, &set, NULL) ||
	    pthread_create(&th, NULL, worker, NULL))
		return victim_fail(err, len, "worker thread: %s", strerror(errno));
	while (!worker_tid)
		usleep(1000);
	se._sigev_un._tid = worker_tid;
	if (timer_create(CLOCK_MONOTONIC, &se, &t_thr) || timer_settime(t_thr, 0, &per, NULL))
		return victim_fail(err, len, "thread timer: %s", strerror(errno));
	return 0;
}

static int check_thread_timer(char *err, size_t len)
{
	int h0 = thr_hits;

	usleep(300000);
	if (thr_wrong)
		return victim_fail(err, len, "thread timer: %d signals outside thread %d",
				   thr_wrong, (int)worker_tid);
	if (thr_hits - h0 < 5)
		return victim_fail(err, len, "thread timer: %d signals in 300 ms in thread %d",
				   thr_hits - h0, (int)worker_tid);
	return 0;
}

/* The "ID: n" lines of /proc/self/timers, in its order. */
static int id_list(char *out, size_t len)
{
	char line[128];
	size_t n = 0;
	FILE *f = fopen("/proc/self/timers", "r");
	int id;

	if (!f)
		return -1;
	out[0] = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "ID: %d", &id) == 1)
			n += (size_t)snprintf(out + n, len > n ? len - n : 0, "%d ", id);
	fclose(f);
	return 0;
}

static int make(clockid_t clk, int notify, int sig, uintptr_t val, timer_t *ret)
{
	struct sigevent se = { .sigev_notify = notify, .sigev_signo = sig };

	se.sigev_value.sival_ptr = (void *)val;
	if (notify == SIGEV_THREAD_ID)
		se._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	return timer_create(clk, &se, ret);
}

static int ptimers_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	struct sigaction sa = { .sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART };
	struct itimerspec once = { .it_value = { 3, 0 } };
	struct itimerspec per = { .it_interval = { 0, PERIOD_NS }, .it_value = { 0, PERIOD_NS } };
	struct itimerspec none = { .it_value = { NONE_S, 0 } };
	sigset_t set;
	timer_t gap;

	(void)ctx;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 4);
	if (sigaction(SIGRTMIN + 3, &sa, NULL) || sigprocmask(SIG_BLOCK, &set, NULL))
		return victim_fail(err, len, "sigaction/sigprocmask: %s", strerror(errno));
	if (make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 3, 0xA11CE, &t_once) ||
	    make(CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN + 5, 1, &gap) ||
	    make(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 4, 0xB0B, &t_per) ||
	    make(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0, &t_none) || timer_delete(gap))
		return victim_fail(err, len, "timer_create: %s", strerror(errno));
	if (thread_timer_setup(err, len))
		return -1;
	t0_ns = mono_ns();
	if (timer_settime(t_once, 0, &once, NULL) || timer_settime(t_per, 0, &per, NULL) ||
	    timer_settime(t_none, 0, &none, NULL))
		return victim_fail(err, len, "timer_settime: %s", strerror(errno));
	if (id_list(ids, sizeof(ids)))
		return victim_fail(err, len, "/proc/self/timers: %s", strerror(errno));
	return 0;
}

static int check_once(char *err, size_t len)
{
	while (!fired_count && mono_ns() - t0_ns < ONESHOT_NS + LATE_NS)
		usleep(10000);
	if (fired_count != 1)
		return victim_fail(err, len, "one-shot timer fired %d times", fired_count);
	if (fired_ns < t0_ns + ONESHOT_NS || fired_ns > t0_ns + ONESHOT_NS + LATE_NS)
		return victim_fail(err, len, "one-shot timer fired %lld ms after setup, due at %lld",
				   (long long)(fired_ns - t0_ns) / 1000000,
				   ONESHOT_NS / 1000000);
	if (fired_code != SI_TIMER || fired_val != 0xA11CE)
		return victim_fail(err, len, "one-shot timer: si_code %d sival %#lx", fired_code,
				   (unsigned long)fired_val);
	return 0;
}

static int check_periodic(char *err, size_t len)
{
	struct timespec zero = { 0, 0 }, wait = { 2, 0 };
	siginfo_t si;
	sigset_t set;
	int64_t t1, t2;
	long expiries;

	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 4);
	while (sigtimedwait(&set, &si, &zero) > 0)
		;
	t1 = mono_ns();
	usleep(500000);
	if (sigtimedwait(&set, &si, &wait) != SIGRTMIN + 4)
		return victim_fail(err, len, "periodic timer: no signal: %s", strerror(errno));
	t2 = mono_ns();
	expiries = 1 + si.si_overrun;
	if (si.si_code != SI_TIMER || (uintptr_t)si.si_value.sival_ptr != 0xB0B)
		return victim_fail(err, len, "periodic timer: si_code %d sival %p", si.si_code,
				   si.si_value.sival_ptr);
	if (expiries < (t2 - t1) / PERIOD_NS - 3 || expiries > (t2 - t1) / PERIOD_NS + 3)
		return victim_fail(err, len, "periodic timer: %ld expiries in %lld ms", expiries,
				   (long long)(t2 - t1) / 1000000);
	return 0;
}

static int ptimers_check(struct victim_ctx *ctx, char *err, size_t len)
{
	struct itimerspec its;
	char now[256];

	(void)ctx;
	if (id_list(now, sizeof(now)))
		return victim_fail(err, len, "/proc/self/timers: %s", strerror(errno));
	if (strcmp(now, ids))
		return victim_fail(err, len, "POSIX timer ids '%s', not '%s'", now, ids);
	if (check_once(err, len) || check_periodic(err, len) || check_thread_timer(err, len))
		return -1;
	if (timer_gettime(t_none, &its))
		return victim_fail(err, len, "timer_gettime of the SIGEV_NONE timer: %s",
				   strerror(errno));
	if (its.it_value.tv_sec > NONE_S || its.it_value.tv_sec < NONE_S - 60)
		return victim_fail(err, len, "SIGEV_NONE timer: %ld s left, armed for %d s",
				   (long)its.it_value.tv_sec, NONE_S);
	return 0;
}

const struct victim_part victim_part_ptimers = {
	.name = "posix-timers",
	.setup = ptimers_setup,
	.check = ptimers_check,
};
