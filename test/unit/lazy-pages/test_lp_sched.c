/*
 * Unit tests of the lazy-pages request scheduler (lazy-pages/lp-sched.c):
 * fault priority and dedupe, stream order (neighbours of faults, then
 * address order), batches that never cross a region, requeue after a lost
 * reply, and the bookkeeping of REMAP, UNMAP/REMOVE and fork.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "lp-sched.h"

#define P LP_PAGE
#define A 0x10000000ULL /* first region: 100 pages */
#define B 0x20000000ULL /* second region: 2000 pages */

static int setup(void **state)
{
	struct lp_mm *mm = calloc(1, sizeof(*mm));

	lp_mm_init(mm);
	assert_int_equal(lp_mm_add(mm, B, 2000), 0);
	assert_int_equal(lp_mm_add(mm, A, 100), 0);
	*state = mm;
	return 0;
}

static int teardown(void **state)
{
	lp_mm_fini(*state);
	free(*state);
	return 0;
}

static void test_add_rejects(void **state)
{
	struct lp_mm *mm = *state;

	assert_int_equal(lp_mm_add(mm, A + 99 * P, 2), -EEXIST);
	assert_int_equal(lp_mm_add(mm, A - P, 2), -EEXIST);
	assert_int_equal(lp_mm_add(mm, A + 1, 1), -EINVAL);
	assert_int_equal(lp_mm_add(mm, A + 200 * P, 0), -EINVAL);
	assert_int_equal(lp_mm_add(mm, ~0ULL & ~(P - 1), 2), -EINVAL);
	assert_int_equal(mm->nr_missing, 2100);
	assert_int_equal(mm->nr_total, 2100);
	/* adjacent but separate: fine */
	assert_int_equal(lp_mm_add(mm, A + 100 * P, 1), 0);
	assert_int_equal(mm->nr_missing, 2101);
}

static void test_fault_dedupe(void **state)
{
	struct lp_mm *mm = *state;
	struct lp_run r;

	assert_int_equal(lp_mm_fault(mm, B + 5 * P + 123, 1, &r), LP_FAULT_FETCH);
	assert_int_equal(r.vaddr, B + 5 * P);
	assert_int_equal(r.src, B + 5 * P);
	assert_int_equal(r.nr, 1);
	assert_true(lp_mm_is_inflight(mm, B + 5 * P));
	/* a second fault on the same page: not fetched again */
	assert_int_equal(lp_mm_fault(mm, B + 5 * P + 8, 1, &r), LP_FAULT_INFLIGHT);
	assert_int_equal(mm->nr_inflight, 1);
	assert_int_equal(mm->nr_missing, 2099);
	/* outside every region: zero page */
	assert_int_equal(lp_mm_fault(mm, 0x5000, 1, &r), LP_FAULT_NONE);
	lp_mm_received(mm, B + 5 * P, 1);
	assert_int_equal(mm->nr_inflight, 0);
	/* installed: a late fault message finds nothing to fetch */
	assert_int_equal(lp_mm_fault(mm, B + 5 * P, 1, &r), LP_FAULT_NONE);
}

static void test_fault_run_stops_at_inflight(void **state)
{
	struct lp_mm *mm = *state;
	struct lp_run r;

	assert_int_equal(lp_mm_fault(mm, A + 3 * P, 1, &r), LP_FAULT_FETCH);
	assert_int_equal(lp_mm_fault(mm, A, 8, &r), LP_FAULT_FETCH);
	assert_int_equal(r.vaddr, A);
	assert_int_equal(r.nr, 3);
	/* never past the end of a region */
	assert_int_equal(lp_mm_fault(mm, A + 98 * P, 8, &r), LP_FAULT_FETCH);
	assert_int_equal(r.nr, 2);
}

static void test_stream_neighbours_first(void **state)
{
	struct lp_mm *mm = *state;
	struct lp_run r;

	assert_int_equal(lp_mm_fault(mm, B + 1000 * P, 1, &r), LP_FAULT_FETCH);
	assert_true(lp_mm_next_batch(mm, 16, &r));
	assert_int_equal(r.vaddr, B + 1001 * P);
	assert_int_equal(r.nr, 16);
	/* the next batch continues after the previous one */
	assert_true(lp_mm_next_batch(mm, 16, &r));
	assert_int_equal(r.vaddr, B + 1017 * P);
	/* the newest fault wins */
	assert_int_equal(lp_mm_fault(mm, B + 10 * P, 1, &r), LP_FAULT_FETCH);
	assert_true(lp_mm_next_batch(mm, 4, &r));
	assert_int_equal(r.vaddr, B + 11 * P);
	assert_int_equal(r.nr, 4);
}

static void test_stream_address_order(void **state)
{
	struct lp_mm *mm = *state;
	struct lp_run r;
	uint64_t got = 0;

	assert_true(lp_mm_next_batch(mm, 1024, &r));
	assert_int_equal(r.vaddr, A);
	assert_int_equal(r.nr, 100); /* a batch never crosses into the next region */
	assert_true(lp_mm_next_batch(mm, 1024, &r));
	assert_int_equal(r.vaddr, B);
	assert_int_equal(r.nr, 1024);
	assert_true(lp_mm_next_batch(mm, 1024, &r));
	assert_int_equal(r.vaddr, B + 1024 * P);
	assert_int_equal(r.nr, 976);
	assert_false(lp_mm_next_batch(mm, 1024, &r));
	assert_int_equal(mm->nr_missing, 0);
	assert_int_equal(mm->nr_inflight, 2100);
	lp_mm_received(mm, A, 100);
	lp_mm_received(mm, B, 1024);
	/* a lost reply: its pages come again, and only those */
	lp_mm_requeue(mm, B + 1024 * P, 976);
	assert_int_equal(mm->nr_missing, 976);
	while (lp_mm_next_batch(mm, 100, &r)) {
		assert_true(r.vaddr >= B + 1024 * P);
		got += r.nr;
		lp_mm_received(mm, r.vaddr, r.nr);
	}
	assert_int_equal(got, 976);
	assert_true(lp_mm_done(mm));
}

static void test_stream_skips_holes(void **state)
{
	struct lp_mm *mm = *state;
	struct lp_run r, f;

	assert_int_equal(lp_mm_fault(mm, A + 10 * P, 1, &f), LP_FAULT_FETCH);
	mm->nr_hints = 0; /* address order only */
	assert_true(lp_mm_next_batch(mm, 1024, &r));
	assert_int_equal(r.vaddr, A);
	assert_int_equal(r.nr, 10);
	assert_true(lp_mm_next_batch(mm, 1024, &r));
	assert_int_equal(r.vaddr, A + 11 * P);
	assert_int_equal(r.nr, 89);
}

static void test_drop(void **state)
{
	struct lp_mm *mm = *state;
	struct lp_run r;

	assert_int_equal(lp_mm_fault(mm, A + 50 * P, 1, &r), LP_FAULT_FETCH);
	lp_mm_drop(mm, A + 40 * P, A + 60 * P);
	assert_int_equal(mm->nr_missing, 2100 - 20);
	assert_int_equal(mm->nr_inflight, 0);
	assert_int_equal(lp_mm_fault(mm, A + 45 * P, 1, &r), LP_FAULT_NONE);
	/* a late reply for a dropped page changes nothing */
	lp_mm_received(mm, A + 50 * P, 1);
	lp_mm_requeue(mm, A + 50 * P, 1);
	assert_false(lp_mm_is_missing(mm, A + 50 * P));
	assert_int_equal(mm->nr_missing, 2080);
	/* the stream skips the hole */
	mm->nr_hints = 0;
	mm->cursor = A + 30 * P;
	assert_true(lp_mm_next_batch(mm, 1024, &r));
	assert_int_equal(r.vaddr, A + 30 * P);
	assert_int_equal(r.nr, 10);
	assert_true(lp_mm_next_batch(mm, 1024, &r));
	assert_int_equal(r.vaddr, A + 60 * P);
}

static void test_remap(void **state)
{
	struct lp_mm *mm = *state;
	const uint64_t C = 0x30000000ULL;
	struct lp_run r;

	/* page 20 of B is in flight, page 21 installed */
	assert_int_equal(lp_mm_fault(mm, B + 20 * P, 1, &r), LP_FAULT_FETCH);
	assert_int_equal(lp_mm_fault(mm, B + 21 * P, 1, &r), LP_FAULT_FETCH);
	lp_mm_received(mm, B + 21 * P, 1);
	/* mremap pages 10..29 of B to C */
	assert_int_equal(lp_mm_remap(mm, B + 10 * P, C, 20 * P), 0);
	assert_false(lp_mm_is_missing(mm, B + 15 * P));
	assert_true(lp_mm_is_missing(mm, C + 5 * P));
	/* in flight at the move: missing again at its new place */
	assert_true(lp_mm_is_missing(mm, C + 10 * P));
	assert_false(lp_mm_is_missing(mm, C + 11 * P));
	assert_int_equal(mm->nr_inflight, 0);
	assert_int_equal(mm->nr_missing, 2100 - 1);
	/* a fault at the new address asks the source for the old one */
	assert_int_equal(lp_mm_fault(mm, C + 10 * P, 4, &r), LP_FAULT_FETCH);
	assert_int_equal(r.vaddr, C + 10 * P);
	assert_int_equal(r.src, B + 20 * P);
	assert_int_equal(r.nr, 1);
	assert_true(lp_mm_src(mm, C + 12 * P, &r.src));
	assert_int_equal(r.src, B + 22 * P);
	/* the untouched parts of B stay where they were */
	assert_true(lp_mm_is_missing(mm, B + 9 * P));
	assert_true(lp_mm_is_missing(mm, B + 30 * P));
	assert_int_equal(lp_mm_fault(mm, B + 9 * P, 8, &r), LP_FAULT_FETCH);
	assert_int_equal(r.nr, 1); /* B was split at the moved range */
	/* overlapping ranges are refused */
	assert_int_equal(lp_mm_remap(mm, C, C + P, 4 * P), -EINVAL);
	assert_int_equal(lp_mm_remap(mm, C + 1, 0x40000000ULL, P), -EINVAL);
}

static void test_remap_over_pending(void **state)
{
	struct lp_mm *mm = *state;

	/* moving A's first 10 pages onto B's pages 5..14 drops what was pending there */
	assert_int_equal(lp_mm_remap(mm, A, B + 5 * P, 10 * P), 0);
	assert_int_equal(mm->nr_missing, 2100 - 10);
	assert_true(lp_mm_is_missing(mm, B + 5 * P));
	assert_true(lp_mm_is_missing(mm, B + 4 * P));
	assert_true(lp_mm_is_missing(mm, B + 15 * P));
	assert_false(lp_mm_is_missing(mm, A));
	for (size_t i = 1; i < mm->nr_regs; i++)
		assert_true(mm->regs[i - 1].start + mm->regs[i - 1].nr * P <= mm->regs[i].start);
}

static void test_fork(void **state)
{
	struct lp_mm *mm = *state, child;
	struct lp_run r;

	assert_int_equal(lp_mm_fault(mm, A, 1, &r), LP_FAULT_FETCH);
	assert_int_equal(lp_mm_fault(mm, A + P, 1, &r), LP_FAULT_FETCH);
	lp_mm_received(mm, A + P, 1);
	assert_int_equal(lp_mm_clone(mm, &child), 0);
	/* in flight to the parent: missing for the child */
	assert_true(lp_mm_is_missing(&child, A));
	assert_false(lp_mm_is_missing(&child, A + P));
	assert_int_equal(child.nr_missing, 2099);
	assert_int_equal(child.nr_inflight, 0);
	assert_int_equal(lp_mm_fault(&child, A, 1, &r), LP_FAULT_FETCH);
	assert_true(lp_mm_is_inflight(mm, A));
	lp_mm_fini(&child);
}

static void test_drain_all(void **state)
{
	struct lp_mm *mm = *state;
	struct lp_run r;
	uint64_t n = 0;
	uint8_t seen[2100] = { 0 };

	srand(7);
	for (int i = 0; i < 300; i++) {
		uint64_t page = (uint64_t)rand() % 2100;
		uint64_t addr = page < 100 ? A + page * P : B + (page - 100) * P;

		if (lp_mm_fault(mm, addr, 1, &r) == LP_FAULT_FETCH)
			n += r.nr;
		if (lp_mm_next_batch(mm, 37, &r)) {
			n += r.nr;
			for (uint32_t k = 0; k < r.nr; k++) {
				uint64_t a = r.vaddr + k * P;
				uint64_t idx = a >= B ? 100 + (a - B) / P : (a - A) / P;

				assert_int_equal(seen[idx]++, 0);
			}
		}
	}
	while (lp_mm_next_batch(mm, 37, &r))
		n += r.nr;
	/* every page asked for exactly once */
	assert_int_equal(n, 2100);
	assert_int_equal(mm->nr_inflight, 2100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_add_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_dedupe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_run_stops_at_inflight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_neighbours_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_address_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_skips_holes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remap_over_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fork, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_all, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
