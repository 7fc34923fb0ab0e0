/*
 * Unit tests of the pure lazy-restore logic in restorer/rst-layout.c: which
 * VMAs get registered with the userfaultfd (whole VMAs holding LAZY pages,
 * each once, runs spanning adjacent VMAs), where LAZY runs may lie (private
 * anonymous, heap, stack; never file or shared memory) and that they are
 * refused without --lazy-pages, and the uffd features asked for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "rst.h"

#define P 4096ULL
#define ANON VMA_KIND__VMA_ANON_PRIVATE

static char err[512];

static int check(const struct rst_vma *v, size_t nv, const struct rst_run *r, size_t nr,
		 bool lazy_ok)
{
	uint64_t present;

	err[0] = 0;
	return rst_check_layout(v, nv, r, nr, lazy_ok, &present, err, sizeof(err));
}

/* A typical process: text, data, bss, heap, anon, stack, vdso, vsyscall. */
static const struct rst_vma proc[] = {
	{ .start = 0x400000, .end = 0x402000, .kind = VMA_KIND__VMA_FILE_PRIVATE,
	  .has_file = true, .flags = MAP_PRIVATE },
	{ .start = 0x600000, .end = 0x602000, .kind = VMA_KIND__VMA_FILE_PRIVATE,
	  .has_file = true, .flags = MAP_PRIVATE },
	{ .start = 0x602000, .end = 0x610000, .kind = ANON, .flags = MAP_PRIVATE },
	{ .start = 0x1000000, .end = 0x1100000, .kind = VMA_KIND__VMA_HEAP, .flags = MAP_PRIVATE },
	{ .start = 0x7f0000000000, .end = 0x7f0000100000, .kind = ANON, .flags = MAP_PRIVATE },
	{ .start = 0x7f0000100000, .end = 0x7f0000200000, .kind = ANON, .flags = MAP_PRIVATE },
	{ .start = 0x7f0000300000, .end = 0x7f0000301000, .kind = VMA_KIND__VMA_ANON_SHARED,
	  .flags = MAP_SHARED },
	{ .start = 0x7ffd00000000, .end = 0x7ffd00021000, .kind = VMA_KIND__VMA_STACK,
	  .flags = MAP_PRIVATE | MAP_GROWSDOWN },
	{ .start = 0x7ffd00100000, .end = 0x7ffd00102000, .kind = VMA_KIND__VMA_VDSO },
	{ .start = 0xffffffffff600000, .end = 0xffffffffff601000, .kind = VMA_KIND__VMA_VSYSCALL },
};
#define NPROC (sizeof(proc) / sizeof(proc[0]))

static void test_ranges(void **state)
{
	struct rst_run r[] = {
		{ 0x400000, 2, PE_PRESENT },	    /* text: eager */
		{ 0x600000, 1, PE_PRESENT },	    /* data: eager */
		{ 0x602000, 2, PE_LAZY },	    /* bss: lazy */
		{ 0x604000, 1, PE_PRESENT },	    /* bss again: registered once */
		{ 0x608000, 1, PE_LAZY },	    /* bss again: registered once */
		{ 0x1000000, 4, PE_ZERO },	    /* heap: only zero, not registered */
		{ 0x7f00000ff000, 2, PE_LAZY },	    /* spans two adjacent anon VMAs */
		{ 0x7f0000300000, 1, PE_PRESENT },  /* shared anon: eager */
		{ 0x7ffd00020000, 1, PE_LAZY },	    /* stack */
	};
	struct rst_blob_range out[NPROC];
	size_t n;

	assert_int_equal(check(proc, NPROC, r, 9, true), 0);
	n = rst_lazy_ranges(proc, NPROC, r, 9, out);
	assert_int_equal(n, 4);
	assert_int_equal(out[0].start, 0x602000);
	assert_int_equal(out[0].end, 0x610000);
	assert_int_equal(out[1].start, 0x7f0000000000);
	assert_int_equal(out[1].end, 0x7f0000100000);
	assert_int_equal(out[2].start, 0x7f0000100000);
	assert_int_equal(out[2].end, 0x7f0000200000);
	assert_int_equal(out[3].start, 0x7ffd00000000);
	assert_int_equal(out[3].end, 0x7ffd00021000);
}

static void test_no_lazy(void **state)
{
	struct rst_run r[] = { { 0x602000, 2, PE_PRESENT }, { 0x1000000, 4, PE_ZERO } };
	struct rst_blob_range out[NPROC];

	assert_int_equal(rst_lazy_ranges(proc, NPROC, r, 2, out), 0);
	assert_int_equal(rst_lazy_ranges(proc, NPROC, NULL, 0, out), 0);
}

/* Every VMA of the process lazy: each one registered, in order, once. */
static void test_all_lazy(void **state)
{
	struct rst_run r[] = {
		{ 0x602000, 14, PE_LAZY },
		{ 0x1000000, 256, PE_LAZY },
		{ 0x7f0000000000, 512, PE_LAZY },
		{ 0x7ffd00000000, 33, PE_LAZY },
	};
	struct rst_blob_range out[NPROC];

	assert_int_equal(check(proc, NPROC, r, 4, true), 0);
	assert_int_equal(rst_lazy_ranges(proc, NPROC, r, 4, out), 5);
	assert_int_equal(out[1].start, 0x1000000);
	assert_int_equal(out[1].end, 0x1100000);
	assert_int_equal(out[2].end, 0x7f0000100000);
	assert_int_equal(out[3].start, 0x7f0000100000);
	assert_int_equal(out[3].end, 0x7f0000200000);
	assert_int_equal(out[4].start, 0x7ffd00000000);
}

static void test_lazy_refused(void **state)
{
	struct rst_run anon[] = { { 0x602000, 1, PE_LAZY } };
	struct rst_run file[] = { { 0x600000, 1, PE_LAZY } };
	struct rst_run shared[] = { { 0x7f0000300000, 1, PE_LAZY } };
	/* starts in the anon bss, runs into nothing: caught as a hole */
	struct rst_run past[] = { { 0x60f000, 2, PE_LAZY } };
	/* a private anon VMA mapped MAP_SHARED (inconsistent image): refused */
	struct rst_vma odd[] = { { .start = 0x1000, .end = 0x3000, .kind = ANON,
				   .flags = MAP_SHARED } };
	struct rst_run odd_run[] = { { 0x1000, 1, PE_LAZY } };
	/* spans a file VMA and the anon one after it */
	struct rst_run span[] = { { 0x601000, 2, PE_LAZY } };

	assert_int_equal(check(proc, NPROC, anon, 1, false), -EINVAL);
	assert_non_null(strstr(err, "lazy pages in an eager restore"));
	assert_int_equal(check(proc, NPROC, anon, 1, true), 0);

	assert_int_equal(check(proc, NPROC, file, 1, true), -EINVAL);
	assert_non_null(strstr(err, "file private vma at 0x600000"));
	assert_non_null(strstr(err, "only private anonymous memory can be lazy"));

	assert_int_equal(check(proc, NPROC, shared, 1, true), -EINVAL);
	assert_non_null(strstr(err, "anonymous shared vma at 0x7f0000300000 (mapped MAP_SHARED)"));

	assert_int_equal(check(proc, NPROC, past, 1, true), -EINVAL);
	assert_non_null(strstr(err, "runs past the vma"));

	assert_int_equal(check(odd, 1, odd_run, 1, true), -EINVAL);
	assert_non_null(strstr(err, "anonymous private vma at 0x1000 (mapped MAP_SHARED)"));

	assert_int_equal(check(proc, NPROC, span, 1, true), -EINVAL);
	assert_non_null(strstr(err, "file private vma at 0x600000"));
	/* the same span as PRESENT is fine: only lazy pages are restricted */
	span[0].flags = PE_PRESENT;
	assert_int_equal(check(proc, NPROC, span, 1, true), 0);
}

static void test_features(void **state)
{
	const uint64_t want = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			      UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
			      UFFD_FEATURE_THREAD_ID;

	assert_int_equal(rst_lazy_features(~0ULL), want);
	assert_int_equal(rst_lazy_features(0), 0);
	/* only what the kernel has: asking for more fails UFFDIO_API */
	assert_int_equal(rst_lazy_features(UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_MISSING_SHMEM),
			 UFFD_FEATURE_EVENT_FORK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ranges),	     cmocka_unit_test(test_no_lazy),
		cmocka_unit_test(test_all_lazy),     cmocka_unit_test(test_lazy_refused),
		cmocka_unit_test(test_features),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
