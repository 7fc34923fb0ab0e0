/*
 * Unit tests of restorer/rst-layout.c: plan validation (VMAs and pagemap
 * runs, with the bad cases a corrupted image produces), gap finding, maps
 * parsing, the vdso move plan and the merge of page runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "rst.h"

#define P 4096ULL
#define ANON VMA_KIND__VMA_ANON_PRIVATE

static char err[512];

static int check(const struct rst_vma *v, size_t nv, const struct rst_run *r, size_t nr,
		 uint64_t *present)
{
	uint64_t dummy;

	err[0] = 0;
	return rst_check_layout(v, nv, r, nr, false, present ? present : &dummy, err, sizeof(err));
}

static void test_valid_layout(void **state)
{
	struct rst_vma v[] = {
		{ .start = 0x400000, .end = 0x402000, .kind = VMA_KIND__VMA_FILE_PRIVATE,
		  .has_file = true },
		{ .start = 0x600000, .end = 0x610000, .kind = ANON },
		{ .start = 0x7ffff7fc0000, .end = 0x7ffff7fc4000, .kind = VMA_KIND__VMA_VVAR },
		{ .start = 0xffffffffff600000, .end = 0xffffffffff601000,
		  .kind = VMA_KIND__VMA_VSYSCALL },
	};
	struct rst_run r[] = {
		{ 0x400000, 1, PE_PRESENT },
		{ 0x600000, 2, PE_PRESENT },
		{ 0x602000, 3, PE_ZERO },
		{ 0x60f000, 1, PE_PRESENT },
	};
	uint64_t present = 0;

	assert_int_equal(check(v, 4, r, 4, &present), 0);
	assert_int_equal(present, 4);
}

static void test_bad_vmas(void **state)
{
	struct rst_vma unaligned[] = { { .start = 0x1000, .end = 0x2800, .kind = ANON } };
	struct rst_vma empty[] = { { .start = 0x2000, .end = 0x2000, .kind = ANON } };
	struct rst_vma overlap[] = { { .start = 0x1000, .end = 0x3000, .kind = ANON },
				     { .start = 0x2000, .end = 0x4000, .kind = ANON } };
	struct rst_vma unsorted[] = { { .start = 0x5000, .end = 0x6000, .kind = ANON },
				      { .start = 0x1000, .end = 0x2000, .kind = ANON } };
	struct rst_vma kernel[] = { { .start = 0xffff800000000000, .end = 0xffff800000001000,
				      .kind = ANON } };
	struct rst_vma high[] = { { .start = 0x7ffffffff000, .end = 0x800000001000, .kind = ANON } };
	struct rst_vma nofile[] = { { .start = 0x1000, .end = 0x2000,
				      .kind = VMA_KIND__VMA_FILE_PRIVATE } };
	struct rst_vma badoff[] = { { .start = 0x1000, .end = 0x2000, .pgoff = 0x10,
				      .kind = VMA_KIND__VMA_FILE_SHARED, .has_file = true } };
	struct rst_vma badkind[] = { { .start = 0x1000, .end = 0x2000, .kind = 77 } };

	assert_int_equal(check(unaligned, 1, NULL, 0, NULL), -EINVAL);
	assert_non_null(strstr(err, "not page-aligned"));
	assert_int_equal(check(empty, 1, NULL, 0, NULL), -EINVAL);
	assert_non_null(strstr(err, "start not below end"));
	assert_int_equal(check(overlap, 2, NULL, 0, NULL), -EINVAL);
	assert_non_null(strstr(err, "vma 1 [0x2000-0x4000): overlaps"));
	assert_int_equal(check(unsorted, 2, NULL, 0, NULL), -EINVAL);
	assert_int_equal(check(kernel, 1, NULL, 0, NULL), -EINVAL);
	assert_non_null(strstr(err, "beyond the user address space"));
	assert_int_equal(check(high, 1, NULL, 0, NULL), -EINVAL);
	assert_int_equal(check(nofile, 1, NULL, 0, NULL), -EINVAL);
	assert_non_null(strstr(err, "file mapping"));
	assert_int_equal(check(badoff, 1, NULL, 0, NULL), -EINVAL);
	assert_int_equal(check(badkind, 1, NULL, 0, NULL), -EINVAL);
	assert_non_null(strstr(err, "unknown kind 77"));
}

static void test_bad_runs(void **state)
{
	struct rst_vma v[] = {
		{ .start = 0x10000, .end = 0x14000, .kind = ANON },
		{ .start = 0x14000, .end = 0x18000, .kind = ANON },
		{ .start = 0x20000, .end = 0x22000, .kind = VMA_KIND__VMA_VDSO },
	};
	struct rst_run outside[] = { { 0x8000, 1, PE_PRESENT } };
	struct rst_run in_gap[] = { { 0x18000, 1, PE_PRESENT } };
	struct rst_run across[] = { { 0x13000, 2, PE_PRESENT } };
	struct rst_run into_gap[] = { { 0x17000, 2, PE_PRESENT } };
	struct rst_run past_end[] = { { 0x16000, 8, PE_PRESENT } };
	struct rst_run unaligned[] = { { 0x10010, 1, PE_PRESENT } };
	struct rst_run zero_len[] = { { 0x10000, 0, PE_PRESENT } };
	struct rst_run overlap[] = { { 0x10000, 2, PE_PRESENT }, { 0x11000, 1, PE_PRESENT } };
	struct rst_run unsorted[] = { { 0x12000, 1, PE_PRESENT }, { 0x10000, 1, PE_PRESENT } };
	struct rst_run flags[] = { { 0x10000, 1, PE_PRESENT | PE_ZERO } };
	struct rst_run noflags[] = { { 0x10000, 1, 0 } };
	struct rst_run lazy[] = { { 0x10000, 1, PE_LAZY } };
	struct rst_run vdso[] = { { 0x20000, 1, PE_PRESENT } };
	struct rst_run huge[] = { { 0x10000, 0xffffffff, PE_PRESENT } };
	uint64_t present;

	assert_int_equal(check(v, 3, outside, 1, NULL), -EINVAL);
	assert_non_null(strstr(err, "not inside a vma"));
	assert_int_equal(check(v, 3, in_gap, 1, NULL), -EINVAL);
	/* A run may span adjacent VMAs, but not run into a hole after them. */
	assert_int_equal(check(v, 3, across, 1, &present), 0);
	assert_int_equal(present, 2);
	assert_int_equal(check(v, 3, into_gap, 1, NULL), -EINVAL);
	assert_non_null(strstr(err, "runs past the vma ending at 0x18000"));
	assert_int_equal(check(v, 3, past_end, 1, NULL), -EINVAL);
	assert_int_equal(check(v, 3, unaligned, 1, NULL), -EINVAL);
	assert_int_equal(check(v, 3, zero_len, 1, NULL), -EINVAL);
	assert_int_equal(check(v, 3, overlap, 2, NULL), -EINVAL);
	assert_non_null(strstr(err, "pagemap entry 1"));
	assert_int_equal(check(v, 3, unsorted, 2, NULL), -EINVAL);
	assert_int_equal(check(v, 3, flags, 1, NULL), -EINVAL);
	assert_non_null(strstr(err, "bad flags"));
	assert_int_equal(check(v, 3, noflags, 1, NULL), -EINVAL);
	assert_int_equal(check(v, 3, lazy, 1, NULL), -EINVAL);
	assert_non_null(strstr(err, "lazy pages in an eager restore"));
	assert_int_equal(rst_check_layout(v, 3, lazy, 1, true, &present, err, sizeof(err)), 0);
	assert_int_equal(present, 0);
	assert_int_equal(check(v, 3, vdso, 1, NULL), -EINVAL);
	assert_non_null(strstr(err, "vdso"));
	assert_int_equal(check(v, 3, huge, 1, NULL), -EINVAL);
}

static void test_find_gap(void **state)
{
	struct rst_range busy[] = {
		{ 0x50000000, 0x50100000 },
		{ 0x40000000, 0x40010000 },
		{ 0x40300000, 0x40400000 },
	};
	struct rst_range full[] = { { 0, RST_TASK_SIZE } };
	uint64_t at = 0;

	/* Unsorted input; the first hole above lo that fits with the guard. */
	assert_int_equal(rst_find_gap(busy, 3, 0x80000, 0x100000, 0x40000000, RST_TASK_SIZE, &at),
			 0);
	assert_int_equal(at, 0x40110000);
	/* 0xf0000 left between the guards of the first two: not enough for 1 MiB. */
	assert_int_equal(rst_find_gap(busy, 3, 0x100000, 0x100000, 0x40000000, RST_TASK_SIZE, &at),
			 0);
	assert_int_equal(at, 0x40500000);
	/* Too big for that hole: next one after 0x40400000 + guard. */
	assert_int_equal(rst_find_gap(busy, 3, 0x200000, 0x100000, 0x40000000, RST_TASK_SIZE, &at),
			 0);
	assert_int_equal(at, 0x40500000);
	/* No guard: fits exactly between the first two. */
	assert_int_equal(rst_find_gap(busy, 3, 0x2f0000, 0, 0x40000000, RST_TASK_SIZE, &at), 0);
	assert_int_equal(at, 0x40010000);
	assert_int_equal(rst_find_gap(full, 1, 0x1000, 0, 0x40000000, RST_TASK_SIZE, &at),
			 -ENOMEM);
	assert_int_equal(rst_find_gap(busy, 3, 0x1000, 0, 0x40000000, 0x40001000, &at), -ENOMEM);
	assert_int_equal(rst_find_gap(NULL, 0, 0x1000, 0, 0x40000000, RST_TASK_SIZE, &at), 0);
	assert_int_equal(at, 0x40000000);
}

static const char maps_text[] =
	"55d000000000-55d000001000 r--p 00000000 fe:00 1 /usr/bin/x\n"
	"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]\n"
	"7ffc00100000-7ffc00104000 r--p 00000000 00:00 0                          [vvar]\n"
	"7ffc00104000-7ffc00106000 r--p 00000000 00:00 0                          [vvar_vclock]\n"
	"7ffc00106000-7ffc00108000 r-xp 00000000 00:00 0                          [vdso]\n"
	"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";

static void test_maps_and_vdso(void **state)
{
	struct rst_maps m;
	struct rst_vma v[] = {
		{ .start = 0x7f0000000000, .end = 0x7f0000004000, .kind = VMA_KIND__VMA_VVAR },
		{ .start = 0x7f0000004000, .end = 0x7f0000006000,
		  .kind = VMA_KIND__VMA_VVAR_VCLOCK },
		{ .start = 0x7f0000006000, .end = 0x7f0000008000, .kind = VMA_KIND__VMA_VDSO },
	};
	struct rst_blob_move mv[RST_MAX_VDSO];
	uint32_t n = 0;

	assert_int_equal(rst_parse_maps(maps_text, &m), 0);
	assert_int_equal(m.nr, 5); /* vsyscall is beyond TASK_SIZE */
	assert_int_equal(m.nr_vdso, 3);
	assert_int_equal(m.vdso_kind[2], VMA_KIND__VMA_VDSO);
	assert_int_equal(rst_plan_vdso(v, 3, &m, mv, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	assert_int_equal(mv[2].cur, 0x7ffc00106000);
	assert_int_equal(mv[2].dst, 0x7f0000006000);
	assert_int_equal(mv[2].len, 0x2000);
	/* A vdso of another size: a different kernel. */
	v[2].end += 0x1000;
	assert_int_equal(rst_plan_vdso(v, 3, &m, mv, &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "vdso layout differs"));
	v[2].end -= 0x1000;
	/* Same sizes, other relative placement. */
	v[2].start += 0x1000;
	v[2].end += 0x1000;
	assert_int_equal(rst_plan_vdso(v, 3, &m, mv, &n, err, sizeof(err)), -EINVAL);
	/* Fewer parts at dump time (a kernel before the vvar split). */
	assert_int_equal(rst_plan_vdso(v + 1, 2, &m, mv, &n, err, sizeof(err)), -EINVAL);
	rst_maps_fini(&m);
	assert_int_equal(rst_parse_maps("garbage\n", &m), -EINVAL);
}

static void test_build_runs(void **state)
{
	struct rst_vma v[] = {
		{ .start = 0x10000, .end = 0x14000, .kind = ANON },
		{ .start = 0x14000, .end = 0x18000, .kind = ANON },
		{ .start = 0x20000, .end = 0x22000, .kind = VMA_KIND__VMA_FILE_SHARED,
		  .has_file = true },
		{ .start = 0x30000, .end = 0x32000, .kind = ANON },
	};
	struct rst_run r[] = {
		{ 0x10000, 1, PE_PRESENT }, { 0x11000, 1, PE_ZERO },    { 0x12000, 2, PE_PRESENT },
		{ 0x14000, 1, PE_PRESENT }, { 0x20000, 1, PE_PRESENT }, { 0x30000, 1, PE_PRESENT },
	};
	struct rst_blob_run out[6];
	bool filled[4];
	size_t n = rst_build_runs(v, 4, r, 6, out, filled);

	assert_int_equal(n, 3);
	assert_int_equal(out[0].vaddr, 0x10000);
	assert_int_equal(out[0].len, P);
	assert_int_equal(out[0].off, img_pages_offset(0));
	/* 0x12000..0x15000 merges across the VMA boundary: contiguous in both. */
	assert_int_equal(out[1].vaddr, 0x12000);
	assert_int_equal(out[1].len, 3 * P);
	assert_int_equal(out[1].off, img_pages_offset(1));
	/* The shared-file page is skipped but still consumes its image slot. */
	assert_int_equal(out[2].vaddr, 0x30000);
	assert_int_equal(out[2].off, img_pages_offset(5));
	assert_true(filled[0] && filled[1] && !filled[2] && filled[3]);
}

static void test_madv_bits(void **state)
{
	uint64_t b = rst_madv_bits(VMA_MADV_DONTFORK | VMA_MADV_HUGEPAGE | VMA_LOCKED |
				   VMA_GROWSDOWN);

	assert_int_equal(b, (1ULL << MADV_DONTFORK) | (1ULL << MADV_HUGEPAGE) | RST_VMA_MLOCK);
	assert_int_equal(rst_madv_bits(0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_layout), cmocka_unit_test(test_bad_vmas),
		cmocka_unit_test(test_bad_runs),     cmocka_unit_test(test_find_gap),
		cmocka_unit_test(test_maps_and_vdso), cmocka_unit_test(test_build_runs),
		cmocka_unit_test(test_madv_bits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
