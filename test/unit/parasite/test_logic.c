/*
 * Unit tests (cmocka) for the parasite blob's pure logic, compiled for the
 * host: request validation and the chunking of run lists into vmsplice
 * pieces, including short vmsplice returns and zero-length runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "blob/logic.h"

static struct psite_req good_req(uint16_t cmd)
{
	struct psite_req r = { .magic = PSITE_MAGIC, .version = PSITE_VERSION, .cmd = cmd };

	if (cmd == PSITE_CMD_DRAIN) {
		r.nr_iov = 3;
		r.pipe_size = 1 << 20;
	}
	return r;
}

static void test_req_check(void **state)
{
	struct psite_req r;

	for (uint16_t c = 1; c < PSITE_CMD_MAX; c++) {
		r = good_req(c);
		assert_int_equal(psite_req_check(&r, sizeof(r)), c);
	}
	r = good_req(PSITE_CMD_GET_MISC);
	assert_int_equal(psite_req_check(&r, sizeof(r) - 1), -71);
	r.magic ^= 1;
	assert_int_equal(psite_req_check(&r, sizeof(r)), -71);
	r = good_req(PSITE_CMD_GET_MISC);
	r.version++;
	assert_int_equal(psite_req_check(&r, sizeof(r)), -71);
	r = good_req(0);
	assert_int_equal(psite_req_check(&r, sizeof(r)), -22);
	r = good_req(PSITE_CMD_MAX);
	assert_int_equal(psite_req_check(&r, sizeof(r)), -22);
	r = good_req(PSITE_CMD_DRAIN);
	r.nr_iov = PSITE_MAX_IOV + 1;
	assert_int_equal(psite_req_check(&r, sizeof(r)), -22);
	r = good_req(PSITE_CMD_DRAIN);
	r.pipe_size = 100;
	assert_int_equal(psite_req_check(&r, sizeof(r)), -22);
}

static void test_reply_init(void **state)
{
	struct psite_reply_hdr h;

	memset(&h, 0xff, sizeof(h));
	psite_reply_init(&h, PSITE_CMD_DRAIN, -14, 12345);
	assert_int_equal(h.magic, PSITE_MAGIC);
	assert_int_equal(h.version, PSITE_VERSION);
	assert_int_equal(h.cmd, PSITE_CMD_DRAIN);
	assert_int_equal(h.ret, -14);
	assert_int_equal(h.pad, 0);
	assert_int_equal(h.value, 12345);
}

/* Drive the chunker like the blob does, with a "vmsplice" that takes at most TAKE bytes. */
static void replay(const struct psite_iov *runs, uint32_t nr, uint64_t max_bytes, uint32_t max_out,
		   uint64_t take, uint8_t *seen, uint64_t base)
{
	struct psite_drain_cursor cur = { 0, 0 };
	struct psite_iov out[8];
	uint64_t total = 0, pos = 0;
	int guard = 0;

	assert_true(max_out <= 8);
	for (;;) {
		uint64_t bytes, left;
		uint32_t n = psite_drain_next(runs, nr, &cur, max_bytes, out, max_out, &bytes);

		if (!n)
			break;
		assert_true(bytes <= max_bytes);
		assert_true(n <= max_out);
		left = take < bytes ? take : bytes;
		/* The bytes "spliced" must be the next ones of the stream, in order. */
		for (uint32_t k = 0; k < n && left; k++) {
			uint64_t l = out[k].len < left ? out[k].len : left;

			assert_true(out[k].len > 0);
			for (uint64_t b = 0; b < l; b++)
				seen[pos++] = (uint8_t)(out[k].base + b - base);
			left -= l;
		}
		total += take < bytes ? take : bytes;
		psite_drain_advance(runs, nr, &cur, take < bytes ? take : bytes);
		assert_true(++guard < 100000);
	}
	assert_int_equal(total, psite_runs_bytes(runs, nr));
	assert_int_equal(pos, total);
	assert_int_equal(cur.idx, nr);
}

static void test_drain_chunks(void **state)
{
	const uint64_t base = 0x10000;
	/* Offsets fit a byte so that "seen" records where each byte came from. */
	struct psite_iov runs[] = {
		{ base + 0, 10 }, { base + 20, 0 }, { base + 30, 7 }, { base + 50, 1 },
		{ base + 60, 0 }, { base + 100, 40 }, { base + 200, 0 },
	};
	uint32_t nr = sizeof(runs) / sizeof(runs[0]);
	uint8_t want[64], seen[64];
	uint64_t n = 0;

	for (uint32_t i = 0; i < nr; i++)
		for (uint64_t b = 0; b < runs[i].len; b++)
			want[n++] = (uint8_t)(runs[i].base + b - base);
	assert_int_equal(psite_runs_bytes(runs, nr), 58);

	for (uint64_t max = 1; max <= 64; max += 3)
		for (uint32_t mo = 1; mo <= 8; mo++)
			for (uint64_t take = 1; take <= 70; take += 7) {
				memset(seen, 0, sizeof(seen));
				replay(runs, nr, max, mo, take, seen, base);
				assert_memory_equal(seen, want, 58);
			}
}

static void test_drain_limits(void **state)
{
	struct psite_iov runs[] = { { 0x1000, 3 << 20 }, { 0x900000, 4096 } };
	struct psite_drain_cursor cur = { 0, 0 };
	struct psite_iov out[4];
	uint64_t bytes;
	uint32_t n;

	/* A run larger than the pipe is cut at the pipe size. */
	n = psite_drain_next(runs, 2, &cur, 1 << 20, out, 4, &bytes);
	assert_int_equal(n, 1);
	assert_int_equal(bytes, 1 << 20);
	assert_int_equal(out[0].base, 0x1000);
	psite_drain_advance(runs, 2, &cur, bytes);
	assert_int_equal(cur.idx, 0);
	assert_int_equal(cur.off, 1 << 20);
	psite_drain_advance(runs, 2, &cur, 2 << 20);
	assert_int_equal(cur.idx, 1);
	assert_int_equal(cur.off, 0);
	n = psite_drain_next(runs, 2, &cur, 1 << 20, out, 4, &bytes);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].base, 0x900000);
	assert_int_equal(bytes, 4096);
	psite_drain_advance(runs, 2, &cur, 4096);
	assert_int_equal(psite_drain_next(runs, 2, &cur, 1 << 20, out, 4, &bytes), 0);
	assert_int_equal(bytes, 0);
	/* Empty list. */
	cur.idx = 0;
	cur.off = 0;
	assert_int_equal(psite_drain_next(runs, 0, &cur, 1 << 20, out, 4, &bytes), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_check),
		cmocka_unit_test(test_reply_init),
		cmocka_unit_test(test_drain_chunks),
		cmocka_unit_test(test_drain_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
