/*
 * Unit tests of common/util.c: whole-string number parsing with bounds,
 * the full read/write loops (short transfers, EOF, EPIPE), reading small
 * files of any size, and the ownership macros. Run from test_opts.c's main.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

int run_util_tests(void);

static void test_parse_u64(void **state)
{
	uint64_t v = 77;

	assert_int_equal(util_parse_u64("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(util_parse_u64("007", 0, 10, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(util_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	v = 77;
	assert_int_equal(util_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(util_parse_u64("11", 0, 10, &v), -ERANGE);
	assert_int_equal(util_parse_u64("5", 6, 10, &v), -ERANGE);
	/* Nothing but decimal digits, the whole string. */
	assert_int_equal(util_parse_u64(NULL, 0, 10, &v), -EINVAL);
	assert_int_equal(util_parse_u64("", 0, 10, &v), -EINVAL);
	assert_int_equal(util_parse_u64("-1", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(util_parse_u64("+1", 0, 10, &v), -EINVAL);
	assert_int_equal(util_parse_u64(" 1", 0, 10, &v), -EINVAL);
	assert_int_equal(util_parse_u64("\t1", 0, 10, &v), -EINVAL);
	assert_int_equal(util_parse_u64("\n1", 0, 10, &v), -EINVAL);
	assert_int_equal(util_parse_u64("1 ", 0, 10, &v), -EINVAL);
	assert_int_equal(util_parse_u64("0x5", 0, 10, &v), -EINVAL);
	assert_int_equal(util_parse_u64("1e3", 0, 10000, &v), -EINVAL);
	/* Written only on success. */
	assert_int_equal(v, 77);
}

static void test_read_write_full(void **state)
{
	int p[2];
	char buf[8];

	assert_int_equal(pipe(p), 0);
	assert_int_equal(util_write_full(p[1], "abcdef", 6), 0);
	assert_int_equal(util_read_full(p[0], buf, 4), 0);
	assert_memory_equal(buf, "abcd", 4);
	close(p[1]);
	/* Two bytes left, five asked: EOF before the end is -EIO. */
	assert_int_equal(util_read_full(p[0], buf, 5), -EIO);
	assert_int_equal(util_read_full(p[0], buf, 0), 0);
	close(p[0]);

	assert_int_equal(pipe(p), 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(util_write_full(p[1], "x", 1), -EPIPE);
	signal(SIGPIPE, SIG_DFL);
	close(p[1]);
	assert_int_equal(util_read_full(-1, buf, 1), -EBADF);
}

static void test_read_file(void **state)
{
	char path[] = "/tmp/relive-util-XXXXXX";
	size_t big = 3 * 4096 + 123, len = 0;
	char *want = malloc(big), *got = NULL;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_non_null(want);
	for (size_t i = 0; i < big; i++)
		want[i] = (char)('a' + i % 26);
	assert_int_equal(util_write_full(fd, want, big), 0);
	close(fd);
	/* Larger than the first buffer: grows, and stays NUL-terminated. */
	assert_int_equal(util_read_file(AT_FDCWD, path, &got, &len), 0);
	assert_int_equal(len, big);
	assert_memory_equal(got, want, big);
	assert_int_equal(got[big], '\0');
	free(got);
	got = NULL;
	unlink(path);
	assert_int_equal(util_read_file(AT_FDCWD, path, &got, &len), -ENOENT);
	assert_null(got);
	free(want);
}

static void test_macros(void **state)
{
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *p = strdup("x");
	int taken;
	char *q;

	assert_int_equal(ALIGN_UP(4097UL, 4096), 8192);
	assert_int_equal(ALIGN_UP(4096UL, 4096), 4096);
	assert_int_equal(ALIGN_DOWN(8191UL, 4096), 4096);
	assert_int_equal(ALIGN_UP(0UL, 4096), 0);
	assert_int_equal(MIN(3, -1), -1);
	assert_int_equal(MAX(3, -1), 3);
	taken = TAKE_FD(fd);
	assert_int_equal(fd, -1);
	assert_true(taken >= 0);
	close(taken);
	q = TAKE_PTR(p);
	assert_null(p);
	assert_string_equal(q, "x");
	free(q);
}

int run_util_tests(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_u64),
		cmocka_unit_test(test_read_write_full),
		cmocka_unit_test(test_read_file),
		cmocka_unit_test(test_macros),
	};

	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
