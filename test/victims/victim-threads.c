/*
 * The multi-threaded victims (protocol: victim.c).
 *
 * victim-threads (-DTHREADS_STATIC): 8 threads, each with its own counter,
 * __thread value, signal mask, sigaltstack and name, and its TID noted at
 * start. Threads 0-3 count in a busy loop and read random pages of a
 * patterned buffer (--mib) as they go (in a lazy restore: faults from many
 * threads at once); 4-5 wait on a condition variable (futex), 6 counts in
 * nanosleep, 7 waits on a condition and exits when told. The check: every
 * running thread is still counting, the waiters wake up, thread 7 exits and
 * is joined (glibc's join waits for the kernel to clear its tid: that is
 * the restored clear_child_tid), then every thread verifies its own state
 * and all are joined; each thread's verdict is collected.
 *
 * victim-thread-churn (-DTHREADS_CHURN): the main loop creates and joins
 * threads as fast as it can (4 at a time, each adding to a shared sum), so a
 * freeze always races with threads being born and dying; the check makes
 * sure the sum matches and that creating and joining still works.
 *
 * victim-proc-churn (-DPROCS_CHURN): the same with child processes forked,
 * adding to a sum in shared memory, exiting and being reaped, so a freeze
 * races with children being born, exiting and turning into zombies.
 */
#include "victim.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef THREADS_STATIC
#define NR_THREADS 8
#define ALT_SIZE (64 * 1024)
#define PAGE 4096

enum kind { K_BUSY, K_COND, K_SLEEP, K_EXIT };

struct vthread {
	int idx;
	enum kind kind;
	pthread_t pt;
	pid_t tid;
	void *alt;
	volatile uint64_t counter;
	volatile int ready;
	char err[256];
};

static struct vthread threads[NR_THREADS];
static __thread uint64_t tls_value;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int wake_gen; /* under lock: bumped to release the waiters */
static volatile int stop_threads;
static uint8_t *buf;
static size_t buf_pages;
static uint64_t seed;

static enum kind kind_of(int i)
{
	return i < 4 ? K_BUSY : i < 6 ? K_COND : i == 6 ? K_SLEEP : K_EXIT;
}

static uint64_t tls_expect(int i)
{
	return victim_mix((uint64_t)i, seed) | 1;
}

static void mask_of(int i, sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGUSR2); /* the trigger goes to the main thread */
	sigaddset(set, SIGRTMIN + 1 + i);
	if (i & 1)
		sigaddset(set, SIGWINCH);
}

static void name_of(int i, char name[16])
{
	snprintf(name, 16, "vthr-%d", i);
}

static int tfail(struct vthread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tfail(struct vthread *t, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(t->err, sizeof(t->err), "thread %d (tid %d): ", t->idx, (int)t->tid);

	va_start(ap, fmt);
	vsnprintf(t->err + n, sizeof(t->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* The thread's own state, as it set it up. */
static int self_check(struct vthread *t)
{
	char name[16], want[16];
	sigset_t cur, exp;
	stack_t ss;

	if ((pid_t)syscall(SYS_gettid) != t->tid)
		return tfail(t, "runs as tid %ld", (long)syscall(SYS_gettid));
	if (tls_value != tls_expect(t->idx))
		return tfail(t, "__thread value %" PRIx64 ", expected %" PRIx64, tls_value,
			     tls_expect(t->idx));
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	mask_of(t->idx, &exp);
	for (int s = 1; s < SIGRTMAX; s++)
		if (s != SIGKILL && s != SIGSTOP && sigismember(&cur, s) != sigismember(&exp, s))
			return tfail(t, "signal %d %s in the mask", s,
				     sigismember(&cur, s) ? "wrongly" : "missing");
	if (sigaltstack(NULL, &ss))
		return tfail(t, "sigaltstack: %s", strerror(errno));
	if (ss.ss_sp != t->alt || ss.ss_size != ALT_SIZE || ss.ss_flags)
		return tfail(t, "sigaltstack %p/%zu/%d, expected %p/%d/0", ss.ss_sp, ss.ss_size,
			     ss.ss_flags, t->alt, ALT_SIZE);
	name_of(t->idx, want);
	if (pthread_getname_np(pthread_self(), name, sizeof(name)))
		return tfail(t, "pthread_getname_np failed");
	if (strcmp(name, want))
		return tfail(t, "name '%s', expected '%s'", name, want);
	return 0;
}

/* A random page of the patterned buffer must hold its pattern. */
static int touch_page(struct vthread *t, uint64_t *rng)
{
	size_t p;
	uint64_t v;

	*rng = victim_mix(*rng, seed);
	p = (size_t)(*rng % buf_pages);
	memcpy(&v, buf + p * PAGE, sizeof(v));
	if (v != victim_mix(p, seed))
		return tfail(t, "page %zu of the buffer holds %" PRIx64, p, v);
	return 0;
}

static void *thread_main(void *arg)
{
	struct vthread *t = arg;
	char name[16];
	uint64_t local = 0, rng = (uint64_t)t->idx;
	sigset_t set;
	stack_t ss = { .ss_size = ALT_SIZE };
	int gen;

	t->tid = (pid_t)syscall(SYS_gettid);
	tls_value = tls_expect(t->idx);
	mask_of(t->idx, &set);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	ss.ss_sp = t->alt;
	if (sigaltstack(&ss, NULL)) {
		tfail(t, "sigaltstack: %s", strerror(errno));
		t->ready = 1;
		return NULL;
	}
	name_of(t->idx, name);
	pthread_setname_np(pthread_self(), name);
	pthread_mutex_lock(&lock);
	gen = wake_gen;
	pthread_mutex_unlock(&lock);
	t->ready = 1;

	switch (t->kind) {
	case K_BUSY:
		while (!stop_threads) {
			volatile uint64_t sink __attribute__((unused)) = 0;

			if (local != t->counter) {
				tfail(t, "counter: register copy %" PRIu64 " != memory %" PRIu64,
				      local, t->counter);
				return NULL;
			}
			t->counter = ++local;
			for (int i = 0; i < 2000; i++)
				sink += (uint64_t)i * local;
			if (touch_page(t, &rng))
				return NULL;
		}
		break;
	case K_SLEEP:
		while (!stop_threads) {
			struct timespec ts = { 0, 20 * 1000 * 1000 };

			if (nanosleep(&ts, NULL) && errno != EINTR) {
				tfail(t, "nanosleep: %s", strerror(errno));
				return NULL;
			}
			t->counter++;
		}
		break;
	case K_COND:
	case K_EXIT:
		pthread_mutex_lock(&lock);
		while (wake_gen == gen)
			pthread_cond_wait(&cond, &lock);
		pthread_mutex_unlock(&lock);
		t->counter++;
		break;
	}
	self_check(t);
	return NULL;
}

static int threads_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	sigset_t all, old;

	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		return victim_fail(err, len, "getrandom: %s", strerror(errno));
	buf_pages = ctx->mib * 1024 * 1024 / PAGE;
	buf = mmap(NULL, buf_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (buf == MAP_FAILED)
		return victim_fail(err, len, "mmap of %zu pages: %s", buf_pages, strerror(errno));
	for (size_t p = 0; p < buf_pages; p++) {
		uint64_t v = victim_mix(p, seed);

		memcpy(buf + p * PAGE, &v, sizeof(v));
	}
	/* Created with everything blocked; each thread sets its own mask. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < NR_THREADS; i++) {
		struct vthread *t = &threads[i];

		t->idx = i;
		t->kind = kind_of(i);
		t->alt = malloc(ALT_SIZE);
		if (!t->alt || pthread_create(&t->pt, NULL, thread_main, t))
			return victim_fail(err, len, "cannot create thread %d", i);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	for (int i = 0; i < NR_THREADS; i++) {
		while (!threads[i].ready)
			usleep(1000);
		if (threads[i].err[0])
			return victim_fail(err, len, "%s", threads[i].err);
	}
	return 0;
}

static int timed_join(struct vthread *t, char *err, size_t len)
{
	struct timespec ts;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	r = pthread_timedjoin_np(t->pt, NULL, &ts);
	if (r)
		return victim_fail(err, len, "join of thread %d (tid %d): %s%s", t->idx,
				   (int)t->tid, strerror(r),
				   r == ETIMEDOUT ? " (clear_child_tid lost?)" : "");
	return 0;
}

static int threads_check(struct victim_ctx *ctx, char *err, size_t len)
{
	uint64_t c0[NR_THREADS];

	(void)ctx;
	for (int i = 0; i < NR_THREADS; i++) {
		if (threads[i].err[0])
			return victim_fail(err, len, "%s", threads[i].err);
		c0[i] = threads[i].counter;
	}
	usleep(300 * 1000);
	for (int i = 0; i < NR_THREADS; i++) {
		struct vthread *t = &threads[i];

		if (t->err[0])
			return victim_fail(err, len, "%s", t->err);
		if ((t->kind == K_BUSY || t->kind == K_SLEEP) && t->counter <= c0[i])
			return victim_fail(err, len, "thread %d (tid %d) stopped counting at %" PRIu64,
					   i, (int)t->tid, c0[i]);
	}
	/* Wake the waiters; thread 7 exits first and must be joinable. */
	pthread_mutex_lock(&lock);
	wake_gen++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	if (timed_join(&threads[NR_THREADS - 1], err, len))
		return -1;
	stop_threads = 1;
	for (int i = 0; i < NR_THREADS - 1; i++)
		if (timed_join(&threads[i], err, len))
			return -1;
	for (int i = 0; i < NR_THREADS; i++) {
		if (threads[i].err[0])
			return victim_fail(err, len, "%s", threads[i].err);
		if (threads[i].kind != K_BUSY && threads[i].kind != K_SLEEP &&
		    threads[i].counter != 1)
			return victim_fail(err, len, "thread %d woke %" PRIu64 " times", i,
					   threads[i].counter);
	}
	return 0;
}

static const struct victim_part part_threads = {
	.name = "threads",
	.setup = threads_setup,
	.check = threads_check,
};
const struct victim_part *const victim_parts[] = { &part_threads, NULL };
#endif

#if defined(THREADS_CHURN) || defined(PROCS_CHURN)
#define CHURN_WIDTH 4
#define CHURN_ADDS 100

#ifdef THREADS_CHURN
#define CHURN_NAME "thread-churn"
static volatile uint64_t churn_sum_local;
static volatile uint64_t *churn_sum_p = &churn_sum_local;
#else
#define CHURN_NAME "proc-churn"
#include <sys/wait.h>
/* MAP_SHARED: the children add to the same sum. */
static volatile uint64_t *churn_sum_p;
#endif
#define churn_sum (*churn_sum_p)

static void *churn_main(void *arg)
{
	(void)arg;
	/* Yields: the threads live long enough for a freeze to catch some. */
	for (int i = 0; i < CHURN_ADDS; i++) {
		__atomic_add_fetch(&churn_sum, 1, __ATOMIC_RELAXED);
		if (i % 10 == 0)
			sched_yield();
	}
	return NULL;
}

#ifdef PROCS_CHURN
static int churn_once(char *err, size_t len)
{
	pid_t pids[CHURN_WIDTH];
	int st;

	for (int i = 0; i < CHURN_WIDTH; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			return victim_fail(err, len, "fork: %s", strerror(errno));
		if (pids[i] == 0) {
			churn_main(NULL);
			_exit(0);
		}
	}
	for (int i = 0; i < CHURN_WIDTH; i++) {
		pid_t got;

		/* The check signal (no SA_RESTART) may land in the wait. */
		while ((got = waitpid(pids[i], &st, 0)) < 0 && errno == EINTR)
			;
		if (got != pids[i])
			return victim_fail(err, len, "waitpid %d: %s", (int)pids[i],
					   strerror(errno));
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			return victim_fail(err, len, "child %d ended with status %#x", (int)pids[i],
					   st);
	}
	return 0;
}
#else
static int churn_once(char *err, size_t len)
{
	pthread_t pt[CHURN_WIDTH];
	int r;

	for (int i = 0; i < CHURN_WIDTH; i++) {
		r = pthread_create(&pt[i], NULL, churn_main, NULL);
		if (r)
			return victim_fail(err, len, "pthread_create: %s", strerror(r));
	}
	for (int i = 0; i < CHURN_WIDTH; i++) {
		r = pthread_join(pt[i], NULL);
		if (r)
			return victim_fail(err, len, "pthread_join: %s", strerror(r));
	}
	return 0;
}
#endif

static int churn_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	(void)ctx;
#ifdef PROCS_CHURN
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return victim_fail(err, len, "mmap of the shared sum: %s", strerror(errno));
	churn_sum_p = m;
#endif
	return churn_once(err, len);
}

static int churn_run(struct victim_ctx *ctx, char *err, size_t len)
{
	(void)ctx;
	while (!victim_stop) {
		if (churn_once(err, len))
			return -1;
		victim_counter++;
		if (churn_sum != (victim_counter + 1) * CHURN_WIDTH * CHURN_ADDS)
			return victim_fail(err, len, "sum %" PRIu64 " after %" PRIu64 " rounds",
					   churn_sum, victim_counter + 1);
	}
	return 0;
}

static int churn_check(struct victim_ctx *ctx, char *err, size_t len)
{
	(void)ctx;
	for (int i = 0; i < 100; i++)
		if (churn_once(err, len))
			return -1;
	return 0;
}

static const struct victim_part part_churn = {
	.name = CHURN_NAME,
	.setup = churn_setup,
	.check = churn_check,
	.run = churn_run,
};
const struct victim_part *const victim_parts[] = { &part_churn, NULL };
#endif
