/*
 * The page-server codec: every malformed hello, hello reply and header is
 * refused with a reason, valid ones round-trip, and commands are accepted
 * only in their direction.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ps-proto.h"

static int dec_hdr(const struct ps_hdr *h, bool at_server, struct ps_hdr *out)
{
	uint8_t buf[PS_HDR_SIZE];
	const char *why = NULL;
	int r;

	ps_hdr_encode(h, buf);
	r = ps_hdr_decode(buf, at_server, out, &why);
	if (r)
		assert_non_null(why);
	return r;
}

static void test_hdr_valid(void **state)
{
	struct ps_hdr get = { PS_GET, PS_F_URGENT, 42, 16, 0x7f0000001000ULL }, out;
	struct ps_hdr pages = { PS_PAGES, 0, 42, PS_MAX_RUN_PAGES, 0x1000 };
	struct ps_hdr done = { PS_DONE, 0, 0, 0, 0 }, bye = { PS_BYE, 0, 0, 0, 0 };

	(void)state;
	assert_int_equal(dec_hdr(&get, true, &out), 0);
	assert_memory_equal(&get, &out, sizeof(out));
	assert_int_equal(dec_hdr(&pages, false, &out), 0);
	assert_memory_equal(&pages, &out, sizeof(out));
	assert_int_equal(dec_hdr(&done, true, &out), 0);
	assert_int_equal(dec_hdr(&bye, false, &out), 0);
	/* the last page below the user address space is fine */
	get.vaddr = PS_TASK_SIZE - PS_PAGE_SIZE;
	get.nr_pages = 1;
	assert_int_equal(dec_hdr(&get, true, &out), 0);
}

static void test_hdr_malformed(void **state)
{
	const struct {
		struct ps_hdr h;
		bool at_server;
	} bad[] = {
		{ { 0, 0, 1, 1, 0x1000 }, true }, /* unknown command */
		{ { 99, 0, 1, 1, 0x1000 }, false },
		{ { PS_GET, 0, 1, 1, 0x1000 }, false }, /* wrong direction */
		{ { PS_PAGES, 0, 1, 1, 0x1000 }, true },
		{ { PS_DONE, 0, 0, 0, 0 }, false },
		{ { PS_BYE, 0, 0, 0, 0 }, true },
		{ { PS_GET, 0x80, 1, 1, 0x1000 }, true }, /* unknown flag */
		{ { PS_GET, 0, 1, 0, 0x1000 }, true }, /* empty run */
		{ { PS_GET, 0, 1, PS_MAX_RUN_PAGES + 1, 0x1000 }, true }, /* huge run */
		{ { PS_GET, 0, 1, 0xffffffffU, 0x1000 }, true },
		{ { PS_GET, 0, 1, 1, 0x1001 }, true }, /* unaligned */
		{ { PS_GET, 0, 1, 1, PS_TASK_SIZE }, true }, /* kernel address */
		{ { PS_GET, 0, 1, 2, PS_TASK_SIZE - PS_PAGE_SIZE }, true }, /* runs past the end */
		{ { PS_GET, 0, 1, 1, 0xfffffffffffff000ULL }, true }, /* wraps */
		{ { PS_GET, 0, 0, 1, 0x1000 }, true }, /* pid 0 */
		{ { PS_PAGES, 0, 0xffffffffU, 1, 0x1000 }, false }, /* pid out of range */
		{ { PS_DONE, 0, 1, 0, 0 }, true }, /* DONE carries nothing */
		{ { PS_BYE, 0, 0, 1, 0 }, false },
		{ { PS_DONE, PS_F_URGENT, 0, 0, 0 }, true },
	};
	struct ps_hdr out;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (dec_hdr(&bad[i].h, bad[i].at_server, &out) != -EPROTO)
			fail_msg("malformed header %zu was accepted", i);
	}
}

static void test_hello(void **state)
{
	struct ps_hello h = { PS_MAGIC, PS_VERSION, PS_CHAN_STREAM, 0, { 0 } }, out;
	uint8_t buf[PS_HELLO_SIZE];
	const char *why = NULL;

	(void)state;
	memset(h.token, 0xa5, sizeof(h.token));
	ps_hello_encode(&h, buf);
	assert_int_equal(ps_hello_decode(buf, &out, &why), 0);
	assert_memory_equal(out.token, h.token, PS_TOKEN_LEN);
	assert_true(ps_token_equal(out.token, h.token));
	out.token[31] ^= 1;
	assert_false(ps_token_equal(out.token, h.token));

	h.magic = 0x12345678;
	ps_hello_encode(&h, buf);
	assert_int_equal(ps_hello_decode(buf, &out, &why), -EPROTO);
	h.magic = PS_MAGIC;
	h.version = PS_VERSION + 1;
	ps_hello_encode(&h, buf);
	assert_int_equal(ps_hello_decode(buf, &out, &why), -EPROTONOSUPPORT);
	h.version = PS_VERSION;
	h.channel = 7;
	ps_hello_encode(&h, buf);
	assert_int_equal(ps_hello_decode(buf, &out, &why), -EPROTO);
	/* the encoder writes reserved as zero: corrupt it in the bytes */
	h.channel = PS_CHAN_FAULT;
	ps_hello_encode(&h, buf);
	buf[12] = 1;
	assert_int_equal(ps_hello_decode(buf, &out, &why), -EPROTO);
}

static void test_hello_reply(void **state)
{
	struct ps_hello_reply r = { PS_MAGIC, PS_VERSION, -EACCES, 0 }, out;
	uint8_t buf[PS_HELLO_REPLY_SIZE];
	const char *why = NULL;

	(void)state;
	ps_hello_reply_encode(&r, buf);
	assert_int_equal(ps_hello_reply_decode(buf, &out, &why), 0);
	assert_int_equal(out.status, -EACCES);
	r.status = 5; /* positive status: nonsense */
	ps_hello_reply_encode(&r, buf);
	assert_int_equal(ps_hello_reply_decode(buf, &out, &why), -EPROTO);
	r.status = -5000;
	ps_hello_reply_encode(&r, buf);
	assert_int_equal(ps_hello_reply_decode(buf, &out, &why), -EPROTO);
	r.status = 0;
	r.magic = 0;
	ps_hello_reply_encode(&r, buf);
	assert_int_equal(ps_hello_reply_decode(buf, &out, &why), -EPROTO);
}

static void test_csum(void **state)
{
	static uint8_t page[PS_PAGE_SIZE];

	(void)state;
	uint64_t a = ps_csum(page, sizeof(page));
	page[4095] = 1;
	assert_true(a != ps_csum(page, sizeof(page)));
}

/*
 * The checksum is part of the wire format: pinned to XXH3-64 values (as the
 * inlined SSE2 build computes them), whatever implementation the host picks,
 * and the same when computed piece by piece as both ends do.
 */
static void test_csum_pinned_and_streamed(void **state)
{
	static uint8_t run[3 * PS_PAGE_SIZE];
	static const size_t pieces[] = { 1, 63, 64, 4000, 32, 8192 - 4160 + 4096 };
	struct ps_csum *cs = ps_csum_new();
	size_t off = 0;

	(void)state;
	assert_non_null(cs);
	for (size_t i = 0; i < sizeof(run); i++)
		run[i] = (uint8_t)(i * 7 + 3);
	assert_true(ps_csum(run, sizeof(run)) == 0x6a6536acd359f4f3ULL);
	assert_true(ps_csum(run, PS_PAGE_SIZE) == 0xd7428746842be37eULL);
	for (int round = 0; round < 2; round++) {
		ps_csum_reset(cs);
		off = 0;
		for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
			ps_csum_update(cs, run + off, pieces[i]);
			off += pieces[i];
		}
		assert_int_equal(off, sizeof(run));
		assert_true(ps_csum_digest(cs) == ps_csum(run, sizeof(run)));
	}
	ps_csum_reset(cs);
	ps_csum_update(cs, run, PS_PAGE_SIZE);
	assert_true(ps_csum_digest(cs) == 0xd7428746842be37eULL);
	ps_csum_free(cs);
	ps_csum_free(NULL);
}

int run_ps_proto_tests(void);

int run_ps_proto_tests(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_valid),   cmocka_unit_test(test_hdr_malformed),
		cmocka_unit_test(test_hello),	    cmocka_unit_test(test_hello_reply),
		cmocka_unit_test(test_csum),
		cmocka_unit_test(test_csum_pinned_and_streamed),
	};

	return cmocka_run_group_tests_name("ps-proto", tests, NULL, NULL);
}
