/*
 * Unit tests of the /proc parsers of the dumper: real lines as the kernel
 * prints them, and malformed ones that must be rejected without a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "img.h"
#include "proc.h"

static const char stat_line[] =
	"4242 (my (weird) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
	"12345 9999999 100 18446744073709551615 94000000000000 94000000004096 "
	"140730000000000 0 0 0 0 0 0 1 0 0 17 1 0 0 0 0 0 94000000010000 94000000011000 "
	"94000001000000 140730000001000 140730000001100 140730000001100 140730000002000 0\n";

static void test_stat(void **state)
{
	struct proc_stat st;

	(void)state;
	assert_int_equal(proc_parse_stat(stat_line, &st), 0);
	assert_int_equal(st.pid, 4242);
	assert_string_equal(st.comm, "my (weird) prog");
	assert_int_equal(st.state, 'S');
	assert_int_equal(st.ppid, 1);
	assert_int_equal(st.pgid, 4242);
	assert_int_equal(st.sid, 4242);
	assert_true(st.start_code == 94000000000000ULL);
	assert_true(st.end_code == 94000000004096ULL);
	assert_true(st.start_stack == 140730000000000ULL);
	assert_true(st.start_data == 94000000010000ULL);
	assert_true(st.start_brk == 94000001000000ULL);
	assert_true(st.env_end == 140730000002000ULL);
	assert_int_equal(st.exit_code, 0);
}

static void test_stat_bad(void **state)
{
	struct proc_stat st;

	(void)state;
	assert_int_not_equal(proc_parse_stat("", &st), 0);
	assert_int_not_equal(proc_parse_stat("12 (x", &st), 0);
	assert_int_not_equal(proc_parse_stat("12 (x) S 1 2 3", &st), 0);
	assert_int_not_equal(proc_parse_stat("abc (x) S 1 2 3 4 5 6 7 8 9", &st), 0);
	/* every truncation of a valid line must fail or parse, never crash */
	for (size_t i = 0; i < sizeof(stat_line); i++) {
		char buf[sizeof(stat_line)];

		memcpy(buf, stat_line, i);
		buf[i] = '\0';
		(void)proc_parse_stat(buf, &st);
	}
}

static void test_status(void **state)
{
	const char *s = "Name:\tx\nUmask:\t0027\nState:\tS (sleeping)\nUid:\t0\t1\t2\t3\n"
			"Gid:\t4\t5\t6\t7\nGroups:\t10 20 30 \nNSpid:\t99\t1\n"
			"SigBlk:\t0000000000010000\nCapInh:\t0000000000000000\n"
			"CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n"
			"CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
	struct proc_status st;

	(void)state;
	assert_int_equal(proc_parse_status(s, &st), 0);
	assert_int_equal(st.uid[0], 0);
	assert_int_equal(st.uid[3], 3);
	assert_int_equal(st.gid[1], 5);
	assert_int_equal(st.nr_groups, 3);
	assert_int_equal(st.groups[2], 30);
	assert_true(st.sig_blk == 0x10000);
	assert_true(st.cap_eff == 0x1ffffffffffULL);
	assert_true(st.has_umask);
	assert_int_equal(st.umask, 027);
	assert_int_equal(st.nspid_levels, 2);
	assert_int_not_equal(proc_parse_status("Uid:\t0\t1\n", &st), 0);
	assert_int_not_equal(proc_parse_status("Uid:\tx\nGid:\t1 2 3 4\n", &st), 0);
}

static void test_maps(void **state)
{
	struct proc_vma v;

	(void)state;
	assert_int_equal(proc_parse_maps_line("7f0000001000-7f0000003000 r-xp 00002000 fd:01 "
					      "1234   /usr/lib/a b.so",
					      &v),
			 0);
	assert_true(v.start == 0x7f0000001000ULL && v.end == 0x7f0000003000ULL);
	assert_true(v.pgoff == 0x2000);
	assert_int_equal(v.prot, PROT_READ | PROT_EXEC);
	assert_false(v.shared);
	assert_int_equal(v.dev_major, 0xfd);
	assert_true(v.ino == 1234);
	assert_string_equal(v.path, "/usr/lib/a b.so");

	assert_int_equal(proc_parse_maps_line("7ffd0000-7ffd1000 rw-s 00000000 00:01 77 "
					      "/dev/zero (deleted)",
					      &v),
			 0);
	assert_true(v.shared);
	assert_string_equal(v.path, "/dev/zero (deleted)");
	assert_int_equal(proc_parse_maps_line("1000-2000 ---p 00000000 00:00 0", &v), 0);
	assert_int_equal(v.prot, 0);
	assert_string_equal(v.path, "");

	assert_int_not_equal(proc_parse_maps_line("2000-1000 rw-p 0 00:00 0", &v), 0);
	assert_int_not_equal(proc_parse_maps_line("1000-2000 rw-x 0 00:00 0", &v), 0);
	assert_int_not_equal(proc_parse_maps_line("Size:  4 kB", &v), 0);
	assert_int_not_equal(proc_parse_maps_line("", &v), 0);
}

static void test_vmflags(void **state)
{
	(void)state;
	assert_true(proc_parse_vmflags("VmFlags: rd wr mr mw me gd ac") == VMA_GROWSDOWN);
	assert_true(proc_parse_vmflags("VmFlags: rd wr dd hg wf") ==
		    (VMA_MADV_DONTDUMP | VMA_MADV_HUGEPAGE | VMA_MADV_WIPEONFORK));
	assert_true(proc_parse_vmflags("VmFlags:") == 0);
	assert_true(proc_parse_vmflags("VmFlags: d") == 0);
	assert_true(proc_parse_vmflags("nothing") == 0);
}

static void test_fdinfo(void **state)
{
	struct proc_fdinfo fi;

	(void)state;
	assert_int_equal(proc_parse_fdinfo("pos:\t4096\nflags:\t02102001\nmnt_id:\t25\n"
					   "ino:\t77\n",
					   &fi),
			 0);
	assert_true(fi.pos == 4096);
	assert_int_equal(fi.flags, 02102001);
	assert_true(fi.mnt_id == 25);
	assert_int_not_equal(proc_parse_fdinfo("flags:\t02\n", &fi), 0);
	assert_int_not_equal(proc_parse_fdinfo("pos:\tx\nflags:\t02\n", &fi), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stat),   cmocka_unit_test(test_stat_bad),
		cmocka_unit_test(test_status), cmocka_unit_test(test_maps),
		cmocka_unit_test(test_vmflags), cmocka_unit_test(test_fdinfo),
	};

	return cmocka_run_group_tests_name("dumper-proc", tests, NULL, NULL);
}
