/*
 * Unit tests of restorer/rst-timers.c: the plan refuses POSIX timers it
 * could not create (bad id, clock, signal, notify kind, a signal for a
 * thread of another process, an id twice), and the blob args get the
 * timers by increasing id with a due-now periodic timer kept armed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "rst.h"

static struct rst_thread threads[] = { { .tid = 100 }, { .tid = 101 } };

static PosixTimerEntry timer(int32_t id, int32_t notify, int32_t tid)
{
	PosixTimerEntry t = POSIX_TIMER_ENTRY__INIT;

	t.id = id;
	t.clock_id = CLOCK_MONOTONIC;
	t.notify = notify;
	t.signo = SIGRTMIN;
	t.has_notify_tid = notify == SIGEV_THREAD_ID;
	t.notify_tid = tid;
	return t;
}

static int check(PosixTimerEntry *t, size_t n)
{
	PosixTimerEntry *p[8];
	TaskEntry te = TASK_ENTRY__INIT;
	struct rst_task task = { .pid = 100, .task = &te, .threads = threads, .nr_threads = 2 };

	for (size_t i = 0; i < n; i++)
		p[i] = &t[i];
	te.n_posix_timers = n;
	te.posix_timers = p;
	return rst_ptimers_check(&task);
}

static void test_good(void **state)
{
	PosixTimerEntry t[] = { timer(0, SIGEV_SIGNAL, 0), timer(3, SIGEV_THREAD_ID, 101),
				timer(7, SIGEV_NONE, 0) };

	(void)state;
	t[2].signo = 0; /* SIGEV_NONE needs no signal */
	assert_int_equal(check(t, 3), 0);
}

static void test_bad(void **state)
{
	PosixTimerEntry t[2];

	(void)state;
	t[0] = timer(-1, SIGEV_SIGNAL, 0);
	assert_int_equal(check(t, 1), -EINVAL);
	t[0] = timer(0, SIGEV_SIGNAL, 0);
	t[0].clock_id = 42;
	assert_int_equal(check(t, 1), -EINVAL);
	t[0] = timer(0, SIGEV_SIGNAL, 0);
	t[0].signo = SIGKILL;
	assert_int_equal(check(t, 1), -EINVAL);
	t[0] = timer(0, 2 /* SIGEV_THREAD: glibc's, never the kernel's */, 0);
	assert_int_equal(check(t, 1), -EINVAL);
	t[0] = timer(0, SIGEV_THREAD_ID, 555);
	assert_int_equal(check(t, 1), -EINVAL);
	t[0] = timer(0, SIGEV_THREAD_ID, 101);
	t[0].has_notify_tid = false;
	assert_int_equal(check(t, 1), -EINVAL);
	t[0] = timer(4, SIGEV_SIGNAL, 0);
	t[1] = timer(4, SIGEV_NONE, 0);
	assert_int_equal(check(t, 2), -EINVAL);
}

static void test_fill(void **state)
{
	PosixTimerEntry t[] = { timer(9, SIGEV_SIGNAL, 0), timer(2, SIGEV_THREAD_ID, 101) };
	PosixTimerEntry *p[] = { &t[0], &t[1] };
	TaskEntry te = TASK_ENTRY__INIT;
	uint8_t buf[sizeof(struct rst_blob_args) + 2 * sizeof(struct rst_blob_ptimer)]
		__attribute__((aligned(8)));
	struct rst_blob_args *a = (struct rst_blob_args *)buf;
	const struct rst_blob_ptimer *bp =
		(const struct rst_blob_ptimer *)(buf + sizeof(struct rst_blob_args));

	(void)state;
	t[0].sival = 0xA11CE;
	t[0].interval_ns = 50000000;
	t[0].value_ns = 0; /* due at the dump */
	t[1].value_ns = 3000000000ULL;
	te.n_posix_timers = 2;
	te.posix_timers = p;
	memset(buf, 0, sizeof(buf));
	rst_ptimers_fill(&te, a, sizeof(struct rst_blob_args));
	assert_int_equal(a->nr_ptimers, 2);
	assert_int_equal(a->ptimers_off, sizeof(struct rst_blob_args));
	assert_int_equal(bp[0].id, 2);
	assert_int_equal(bp[0].notify, SIGEV_THREAD_ID);
	assert_int_equal(bp[0].tid, 101);
	assert_int_equal(bp[0].value_ns, 3000000000ULL);
	assert_int_equal(bp[1].id, 9);
	assert_int_equal(bp[1].sival, 0xA11CE);
	assert_int_equal(bp[1].interval_ns, 50000000);
	assert_int_equal(bp[1].value_ns, 1); /* still armed */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_fill),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
