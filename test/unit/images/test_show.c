/*
 * Unit tests of the JSON writer of images/show.c: string escaping (control
 * characters, malformed UTF-8), each protobuf type as JSON, absent optional
 * fields, unknown enum values and fields of a newer format, and whole
 * images. That the output parses as JSON is checked by show-json.sh.
 */
#include "testdir.h"

#include "img.h"
#include "sample.h"
#include "show.h"

/* Output of FN(ARG) into a malloc'ed NUL-terminated string. */
struct capture {
	char *buf;
	size_t len;
	FILE *f;
};

static FILE *cap_open(struct capture *c)
{
	c->buf = NULL;
	c->len = 0;
	c->f = open_memstream(&c->buf, &c->len);
	assert_non_null(c->f);
	return c->f;
}

static char *cap_close(struct capture *c)
{
	assert_int_equal(fclose(c->f), 0);
	return c->buf;
}

static void check_string(const char *in, size_t len, const char *want)
{
	struct capture c;
	char *got;

	img_show_string(cap_open(&c), in, len);
	got = cap_close(&c);
	assert_string_equal(got, want);
	free(got);
}

static void test_string_escapes(void **state)
{
	check_string("plain", 5, "\"plain\"");
	check_string("", 0, "\"\"");
	check_string("q\"b\\s/", 6, "\"q\\\"b\\\\s/\"");
	check_string("\n\t\r\b\f", 5, "\"\\n\\t\\u000d\\u0008\\u000c\"");
	check_string("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"");
	/* An embedded NUL is a control character like the others. */
	check_string("a\0b", 3, "\"a\\u0000b\"");
}

static void test_string_utf8(void **state)
{
	/* Well-formed sequences of 2, 3 and 4 bytes pass through. */
	check_string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	/* Each byte that is not part of a well-formed sequence becomes U+FFFD. */
	check_string("\xff", 1, "\"\\ufffd\"");
	check_string("a\x80z", 3, "\"a\\ufffdz\"");
	check_string("\xc0\xaf", 2, "\"\\ufffd\\ufffd\""); /* overlong '/' */
	check_string("\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* overlong 3-byte */
	check_string("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate D800 */
	check_string("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
	check_string("\xf5\x80", 2, "\"\\ufffd\\ufffd\"");
	/* Cut short at the end of the string. */
	check_string("x\xe2\x82", 3, "\"x\\ufffd\\ufffd\"");
	check_string("\xf0\x9f\x98", 3, "\"\\ufffd\\ufffd\\ufffd\"");
	/* The last code points of each length are still valid. */
	check_string("\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf", 9,
		     "\"\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
}

static char *show_msg(const ProtobufCMessage *m)
{
	struct capture c;

	assert_int_equal(img_show_msg(m, cap_open(&c)), 0);
	return cap_close(&c);
}

static void assert_contains(const char *hay, const char *needle)
{
	assert_non_null(hay);
	if (!strstr(hay, needle))
		fail_msg("'%s' not found in %s", needle, hay ? hay : "");
}

static void test_msg_types(void **state)
{
	const struct sample_img *s;
	char *j;

	s = sample_get(IMG_CORE);
	j = show_msg(s->entries[0]);
	/* uint64 as plain numbers, the full range */
	assert_contains(j, "\"rip\": 18446744073709551615");
	assert_contains(j, "\"tid\": 4243");
	assert_contains(j, "\"regs\": {\"r15\": 1152921504606846976, ");
	assert_contains(j, "\"xsave\": \"000d1a2734");
	assert_contains(j, "\"pending\": [{\"raw\": \"000102");
	assert_contains(j, "\"name\": \"worker/1\"");
	free(j);

	s = sample_get(IMG_PSTREE);
	j = show_msg(s->entries[2]);
	assert_string_equal(j, "{\"pid\": 4251, \"ppid\": 4242, \"pgid\": 4251, \"sid\": 4200, "
			       "\"threads\": [], \"zombie\": true, \"exit_status\": -2147483648}");
	free(j);
	j = show_msg(s->entries[0]);
	/* Optional fields that are not set are left out. */
	assert_string_equal(j, "{\"pid\": 4242, \"ppid\": 1, \"pgid\": 4242, \"sid\": 4200, "
			       "\"threads\": [4242, 4243, 4244]}");
	free(j);

	s = sample_get(IMG_MM);
	j = show_msg(s->entries[0]);
	assert_contains(j, "\"kind\": \"VMA_FILE_PRIVATE\", \"file_id\": 1}");
	assert_contains(j, "\"auxv\": [33, 140724603457536, 6, 4096, 0, 0]");
	assert_contains(j, "\"madv\": 260}");
	free(j);

	s = sample_get(IMG_FILES);
	j = show_msg(s->entries[1]);
	assert_string_equal(j, "{\"id\": 2, \"type\": \"FILE_PIPE\"}");
	free(j);

	s = sample_get(IMG_FDINFO);
	j = show_msg(s->entries[0]);
	assert_string_equal(j, "{\"fd\": 0, \"file_id\": 2, \"cloexec\": false}");
	free(j);

	s = sample_get(IMG_INVENTORY);
	j = show_msg(s->entries[0]);
	assert_contains(j, "\"session_token\": \"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\"");
	assert_contains(j, "\"hostname\": \"ho\\\"st\\\\\\n\\u0001\xc3\xa9\\ufffd\\ufffd\"}");
	free(j);
}

static void test_unknown_enum_value(void **state)
{
	FileEntry f = FILE_ENTRY__INIT;
	char *j;

	f.id = 9;
	f.type = (FileType)99;
	j = show_msg(&f.base);
	assert_string_equal(j, "{\"id\": 9, \"type\": 99}");
	free(j);
}

/* A newer writer added field 100: the decoded entry says it has unknown fields. */
static void test_unknown_fields(void **state)
{
	FdinfoEntry fd = FDINFO_ENTRY__INIT;
	uint8_t buf[64];
	ProtobufCMessage *m;
	size_t len;
	char *j;

	fd.fd = 3, fd.file_id = 4, fd.cloexec = true;
	len = protobuf_c_message_pack(&fd.base, buf);
	buf[len++] = 0xa0; /* field 100, varint: (100 << 3) | 0 = 0x320 */
	buf[len++] = 0x06;
	buf[len++] = 0x2a;
	m = protobuf_c_message_unpack(&fdinfo_entry__descriptor, NULL, len, buf);
	assert_non_null(m);
	j = show_msg(m);
	assert_string_equal(j, "{\"fd\": 3, \"file_id\": 4, \"cloexec\": true, \"unknown_fields\": 1}");
	free(j);
	img_msg_free(m);
}

static char *show_image(struct testdir *td, enum img_kind kind)
{
	const struct sample_img *s = sample_get(kind);
	char err[512];
	struct capture c;
	struct img img;

	assert_int_equal(sample_write(td->dirfd, kind, err, sizeof(err)), 0);
	assert_int_equal(img_open(&img, td->dirfd, kind, s->id, IMG_READ), 0);
	assert_int_equal(img_show(&img, cap_open(&c)), 0);
	img_close(&img);
	return cap_close(&c);
}

static void test_whole_images(void **state)
{
	struct testdir *td = *state;
	char *j;

	j = show_image(td, IMG_PAGES);
	assert_string_equal(j, "{\"file\": \"pages-7.img\", \"kind\": \"pages\", \"nr_pages\": 3}");
	free(j);

	j = show_image(td, IMG_FDINFO);
	assert_string_equal(j, "{\"file\": \"fdinfo-4242.img\", \"kind\": \"fdinfo\", \"entries\": [\n"
			       "    {\"fd\": 0, \"file_id\": 2, \"cloexec\": false},\n"
			       "    {\"fd\": 1, \"file_id\": 1, \"cloexec\": true},\n"
			       "    {\"fd\": 1023, \"file_id\": 2, \"cloexec\": true}\n  ]}");
	free(j);

	/* The first pagemap entry is the head, a different message. */
	j = show_image(td, IMG_PAGEMAP);
	assert_contains(j, "\"entries\": [\n    {\"pages_id\": 7},\n    {\"vaddr\": ");
	free(j);

	j = show_image(td, IMG_STATS_RESTORE);
	assert_contains(j, "\"kind\": \"stats-restore\", \"entries\": [\n    {\"restore\": {");
	free(j);
}

static void test_image_error(void **state)
{
	struct testdir *td = *state;
	/* A fdinfo image whose second entry is cut short. */
	uint8_t buf[8 + 10 + 3] = { 0 };
	uint32_t hdr[2] = { img_kind_desc(IMG_FDINFO)->magic, IMG_FORMAT_VERSION };
	FdinfoEntry fd = FDINFO_ENTRY__INIT;
	struct capture c;
	struct img img;
	size_t len;

	memcpy(buf, hdr, 8);
	len = protobuf_c_message_pack(&fd.base, buf + 12);
	assert_int_equal(len, 6);
	buf[8] = (uint8_t)len;
	buf[18] = 200;
	testdir_write(td, "fdinfo-5.img", buf, sizeof(buf));
	assert_int_equal(img_open(&img, td->dirfd, IMG_FDINFO, 5, IMG_READ), 0);
	assert_int_equal(img_show(&img, cap_open(&c)), -EINVAL);
	assert_string_equal(img.err, "fdinfo-5.img: offset 18: truncated entry length: 3 of 4 "
				     "bytes (expected a FdinfoEntry entry)");
	img_close(&img);
	free(cap_close(&c));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_string_escapes),
		cmocka_unit_test(test_string_utf8),
		cmocka_unit_test(test_msg_types),
		cmocka_unit_test(test_unknown_enum_value),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test_setup_teardown(test_whole_images, testdir_setup, testdir_teardown),
		cmocka_unit_test_setup_teardown(test_image_error, testdir_setup, testdir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
