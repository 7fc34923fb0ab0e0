/*
 * Unit tests of common/: command line parsing (opts.c): every usage error
 * returns -EINVAL and prints the error and a "Usage:" line on stderr, valid
 * command lines fill struct relive_opts. The util.c tests are in
 * test_util.c and run from main() here (one binary for the module).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "opts.h"
#include "util.h"

int run_util_tests(void);

/* stderr of the last parse */
static char err_text[4096];

static int parse_argv(int argc, char **argv, struct relive_opts *o)
{
	FILE *tmp = tmpfile();
	int saved, r;
	size_t n;

	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	r = opts_parse(argc, argv, o);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(err_text, 1, sizeof(err_text) - 1, tmp);
	err_text[n] = '\0';
	fclose(tmp);
	return r;
}

#define PARSE(o, ...)                                                                              \
	({                                                                                         \
		char *_argv[] = { "relive", __VA_ARGS__, NULL };                                   \
		parse_argv((int)ARRAY_SIZE(_argv) - 1, _argv, (o));                                \
	})

/* A usage error: -EINVAL, the reason on one line, then the usage line. */
#define ASSERT_USAGE_ERROR(why, ...)                                                               \
	do {                                                                                       \
		struct relive_opts _o;                                                             \
		int _r = PARSE(&_o, __VA_ARGS__);                                                  \
		if (_r != -EINVAL)                                                                 \
			fail_msg("'%s': returned %d, expected -EINVAL", #__VA_ARGS__, _r);         \
		if (!strstr(err_text, why) || !strstr(err_text, "\nUsage: relive "))              \
			fail_msg("'%s': stderr lacks '%s' or the usage line: %s", #__VA_ARGS__,    \
				 why, err_text);                                                   \
	} while (0)

static void test_no_command(void **state)
{
	struct relive_opts o;
	char *argv[] = { "relive", NULL };

	assert_int_equal(parse_argv(1, argv, &o), -EINVAL);
	assert_non_null(strstr(err_text, "missing command"));
}

static void test_unknown_command(void **state)
{
	ASSERT_USAGE_ERROR("unknown command 'frobnicate'", "frobnicate");
	ASSERT_USAGE_ERROR("unknown command '-t'", "-t", "1", "dump");
	ASSERT_USAGE_ERROR("unknown command 'DUMP'", "DUMP", "-t", "1", "-D", "d");
}

static void test_unknown_option(void **state)
{
	ASSERT_USAGE_ERROR("unknown option '--bogus'", "dump", "-t", "1", "-D", "d", "--bogus");
	ASSERT_USAGE_ERROR("unknown option '-x'", "dump", "-x", "-t", "1", "-D", "d");
	/* -x in the middle of a cluster; the next parse must start afresh. */
	ASSERT_USAGE_ERROR("unknown option", "restore", "-dx", "-D", "d");
	ASSERT_USAGE_ERROR("unknown option '--treez=1'", "check", "--treez=1");
	/* Abbreviations are accepted only when they are unambiguous. */
	ASSERT_USAGE_ERROR("unknown option '--lazy'", "dump", "-t", "1", "-D", "d", "--lazy");
}

static void test_missing_argument(void **state)
{
	ASSERT_USAGE_ERROR("needs an argument", "dump", "-D", "d", "-t");
	ASSERT_USAGE_ERROR("needs an argument", "lazy-pages", "-D", "d", "--port");
}

static void test_missing_required(void **state)
{
	ASSERT_USAGE_ERROR("missing required option '--tree'", "dump", "-D", "d");
	ASSERT_USAGE_ERROR("missing required option '--images-dir'", "dump", "-t", "5");
	ASSERT_USAGE_ERROR("missing required option '--images-dir'", "restore", "-d");
	ASSERT_USAGE_ERROR("missing required option '--images-dir'", "lazy-pages", "--address",
			   "127.0.0.1");
	ASSERT_USAGE_ERROR("missing required option '--address'", "lazy-pages", "-D", "d");
	ASSERT_USAGE_ERROR("--lazy-pages needs --address", "dump", "-t", "5", "-D", "d",
			   "--lazy-pages");
	ASSERT_USAGE_ERROR("show needs FILE... or -D DIR", "show");
	ASSERT_USAGE_ERROR("show needs FILE... or -D DIR", "show", "-v4");
}

static void test_bad_numbers(void **state)
{
	ASSERT_USAGE_ERROR("bad pid 'abc'", "dump", "-t", "abc", "-D", "d");
	ASSERT_USAGE_ERROR("bad pid '0'", "dump", "-t", "0", "-D", "d");
	ASSERT_USAGE_ERROR("bad pid '-5'", "dump", "-t", "-5", "-D", "d");
	ASSERT_USAGE_ERROR("bad pid '2147483648'", "dump", "-t", "2147483648", "-D", "d");
	ASSERT_USAGE_ERROR("bad pid '99999999999999999999'", "dump", "-t",
			   "99999999999999999999", "-D", "d");
	ASSERT_USAGE_ERROR("bad pid '12x'", "dump", "--tree=12x", "-D", "d");
	ASSERT_USAGE_ERROR("bad pid ''", "dump", "--tree=", "-D", "d");
	ASSERT_USAGE_ERROR("bad pid ' 7'", "dump", "-t", " 7", "-D", "d");
	ASSERT_USAGE_ERROR("bad pid '\t7'", "dump", "-t", "\t7", "-D", "d");
	ASSERT_USAGE_ERROR("bad port '0'", "lazy-pages", "-D", "d", "--address", "a", "--port",
			   "0");
	ASSERT_USAGE_ERROR("bad port '65536'", "lazy-pages", "-D", "d", "--address", "a",
			   "--port", "65536");
	ASSERT_USAGE_ERROR("bad port '0x50'", "lazy-pages", "-D", "d", "--address", "a",
			   "--port", "0x50");
	ASSERT_USAGE_ERROR("bad status fd '-1'", "restore", "-D", "d", "--status-fd", "-1");
	ASSERT_USAGE_ERROR("bad lazy timeout '0'", "lazy-pages", "-D", "d", "--address", "a",
			   "--lazy-timeout", "0");
	ASSERT_USAGE_ERROR("bad lazy timeout '86401'", "dump", "-t", "1", "-D", "d",
			   "--lazy-timeout", "86401");
	ASSERT_USAGE_ERROR("bad verbosity '5'", "check", "-v5");
	ASSERT_USAGE_ERROR("bad verbosity 'x'", "check", "--verbosity=x");
}

static void test_option_not_valid_here(void **state)
{
	ASSERT_USAGE_ERROR("option '--tree' is not valid here", "restore", "-D", "d", "-t", "5");
	ASSERT_USAGE_ERROR("option '--restore-detached' is not valid here", "dump", "-t", "5",
			   "-D", "d", "-d");
	ASSERT_USAGE_ERROR("option '--port' is not valid here", "show", "--port", "1", "x.img");
	ASSERT_USAGE_ERROR("option '--leave-running' is not valid here", "restore", "-D", "d",
			   "--leave-running");
	ASSERT_USAGE_ERROR("option '--images-dir' is not valid here", "check", "-D", "d");
	ASSERT_USAGE_ERROR("option '--stats-json' is not valid here", "restore", "-D", "d",
			   "--stats-json", "s.json");
}

static void test_unexpected_arguments(void **state)
{
	ASSERT_USAGE_ERROR("unexpected argument 'extra'", "dump", "-t", "1", "-D", "d", "extra");
	ASSERT_USAGE_ERROR("unexpected argument 'now'", "check", "now");
}

static void test_valid_dump(void **state)
{
	struct relive_opts o;

	assert_int_equal(PARSE(&o, "dump", "-t", "4242", "--images-dir", "/tmp/img",
			       "--leave-running", "--lazy-pages", "--address", "0.0.0.0",
			       "--port=27001", "-o", "dump.log", "-v4", "--status-fd", "7"),
			 0);
	assert_int_equal(o.cmd, CMD_DUMP);
	assert_string_equal(o.cmd_name, "dump");
	assert_int_equal(o.tree, 4242);
	assert_string_equal(o.images_dir, "/tmp/img");
	assert_true(o.leave_running);
	assert_true(o.lazy_pages);
	assert_string_equal(o.address, "0.0.0.0");
	assert_int_equal(o.port, 27001);
	assert_true(o.port_set);
	assert_string_equal(o.log_file, "dump.log");
	assert_int_equal(o.verbosity, 4);
	assert_int_equal(o.status_fd, 7);
	assert_int_equal(o.nr_args, 0);
	assert_string_equal(err_text, "");
}

static void test_valid_defaults_and_aliases(void **state)
{
	char *show_argv[] = { "relive", "show", "a.img", "b.img", NULL };
	struct relive_opts o;

	assert_int_equal(PARSE(&o, "page-server", "-D", "d", "--address", "10.0.0.1"), 0);
	assert_int_equal(o.cmd, CMD_LAZY_PAGES);
	assert_int_equal(o.port, OPTS_DEFAULT_PORT);
	assert_false(o.port_set);
	assert_int_equal(o.lazy_timeout, OPTS_DEFAULT_LAZY_TIMEOUT);
	assert_int_equal(o.verbosity, -1);
	assert_int_equal(o.status_fd, -1);

	/* CRIU's spelling of the destination daemon: lazy-pages --page-server. */
	assert_int_equal(PARSE(&o, "lazy-pages", "--page-server", "--address", "127.0.0.1",
			       "--port", "27010", "-D", "d"),
			 0);
	assert_int_equal(o.cmd, CMD_LAZY_PAGES);
	assert_int_equal(o.port, 27010);
	assert_string_equal(o.address, "127.0.0.1");
	ASSERT_USAGE_ERROR("option '--page-server' is not valid here", "dump", "-t", "1", "-D",
			   "d", "--page-server");

	assert_int_equal(PARSE(&o, "restore", "-D", "d", "-d", "--shell-job", "-vvv"), 0);
	assert_true(o.restore_detached);
	assert_true(o.shell_job);
	assert_int_equal(o.verbosity, 4); /* three above the default, capped at 4 */

	/* As in CRIU, each v raises the level from the default (2, warnings). */
	assert_int_equal(PARSE(&o, "check", "-v"), 0);
	assert_int_equal(o.verbosity, 3);
	assert_int_equal(PARSE(&o, "check", "-v", "-v"), 0);
	assert_int_equal(o.verbosity, 4);
	assert_int_equal(PARSE(&o, "check", "-v0"), 0);
	assert_int_equal(o.verbosity, 0);
	assert_int_equal(PARSE(&o, "check", "--verbosity=1", "-v"), 0);
	assert_int_equal(o.verbosity, 2);
	assert_int_equal(PARSE(&o, "dump", "--lazy-p", "-t", "1", "-D", "d", "--address=a"), 0);
	assert_true(o.lazy_pages);

	/* o.args points into argv: keep it alive while looking at them. */
	assert_int_equal(parse_argv(4, show_argv, &o), 0);
	assert_int_equal(o.cmd, CMD_SHOW);
	assert_int_equal(o.nr_args, 2);
	assert_ptr_equal(o.args, &show_argv[2]);
	assert_string_equal(o.args[1], "b.img");
	assert_null(o.images_dir);

	assert_int_equal(PARSE(&o, "show", "-D", "dir"), 0);
	assert_int_equal(o.nr_args, 0);
	assert_string_equal(o.images_dir, "dir");

	/* --help of a subcommand: handled, the caller exits 0. */
	assert_int_equal(PARSE(&o, "dump", "--help"), 1);
}

int run_ps_proto_tests(void);

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_command),
		cmocka_unit_test(test_unknown_command),
		cmocka_unit_test(test_unknown_option),
		cmocka_unit_test(test_missing_argument),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_bad_numbers),
		cmocka_unit_test(test_option_not_valid_here),
		cmocka_unit_test(test_unexpected_arguments),
		cmocka_unit_test(test_valid_dump),
		cmocka_unit_test(test_valid_defaults_and_aliases),
	};
	int r = cmocka_run_group_tests_name("opts", tests, NULL, NULL);

	return r | run_util_tests() | run_ps_proto_tests();
}
