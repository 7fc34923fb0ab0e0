/*
 * Unit tests of images/: round trips of every image kind through img.c,
 * and the reader's behaviour on truncated, foreign, future, oversized,
 * empty and random files (an error naming the file and offset, never a
 * crash). The JSON writer of images/show.c is in test_show.c; inputs the
 * fuzzer once crashed on are replayed from regress/ here.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "img.h"
#include "img_feed.h"
#include "sample.h"
#include "show.h"
#include "testdir.h"

#define NR_RANDOM_FILES 10000

/* Pack both messages and compare the bytes: equal iff every field is equal. */
static void assert_msg_equal(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t la = protobuf_c_message_get_packed_size(a);
	size_t lb = protobuf_c_message_get_packed_size(b);
	uint8_t *pa, *pb;

	assert_ptr_equal(a->descriptor, b->descriptor);
	assert_int_equal(la, lb);
	pa = malloc(la + 1);
	pb = malloc(lb + 1);
	assert_non_null(pa);
	assert_non_null(pb);
	protobuf_c_message_pack(a, pa);
	protobuf_c_message_pack(b, pb);
	assert_memory_equal(pa, pb, la);
	free(pa);
	free(pb);
}

/* Spot checks by name, so that a wrong descriptor in img.c cannot hide. */
static void check_fields(enum img_kind kind, size_t i, const ProtobufCMessage *m)
{
	const InventoryEntry *inv = (const void *)m;
	const PstreeEntry *ps = (const void *)m;
	const CoreEntry *core = (const void *)m;
	const TaskEntry *task = (const void *)m;
	const MmEntry *mm = (const void *)m;
	const PagemapEntry *pe = (const void *)m;
	const FileEntry *fe = (const void *)m;
	const FdinfoEntry *fd = (const void *)m;
	const StatsEntry *st = (const void *)m;

	switch (kind) {
	case IMG_INVENTORY:
		assert_string_equal(inv->hostname, SAMPLE_HOSTNAME);
		assert_int_equal(inv->session_token.len, IMG_SESSION_TOKEN_LEN);
		assert_int_equal(inv->session_token.data[31], 0xa0 + 31);
		assert_true(inv->has_dump_time_us);
		break;
	case IMG_PSTREE:
		if (i == 0) {
			assert_int_equal(ps->n_threads, 3);
			assert_int_equal(ps->threads[2], 4244);
		} else if (i == 2) {
			assert_true(ps->zombie);
			assert_int_equal(ps->exit_status, INT32_MIN);
		}
		break;
	case IMG_CORE:
		assert_int_equal(core->tid, 4243);
		assert_true(core->regs->rip == UINT64_MAX);
		assert_int_equal(core->regs->gs, 0x1000000000000000ULL * (26 % 15 + 1) + 26);
		assert_int_equal(core->xsave.len, 576);
		assert_int_equal(core->n_pending, 2);
		assert_int_equal(core->pending[1]->raw.data[5], 105);
		assert_string_equal(core->name, "worker/1");
		assert_int_equal(core->sigaltstack->ss_size, 65536);
		break;
	case IMG_TASK:
		assert_int_equal(task->creds->n_groups, 3);
		assert_int_equal(task->creds->groups[2], 1000);
		assert_true(task->rlimits[1]->max == UINT64_MAX);
		assert_int_equal(task->posix_timers[0]->clock_id, -6);
		assert_string_equal(task->cwd, "/tmp/dir with spaces");
		break;
	case IMG_MM:
		assert_int_equal(mm->n_vmas, 3);
		assert_int_equal(mm->vmas[2]->kind, VMA_KIND__VMA_ANON_SHARED);
		assert_int_equal(mm->vmas[1]->madv, VMA_MADV_HUGEPAGE | VMA_LOCKED);
		assert_false(mm->vmas[1]->has_file_id);
		assert_int_equal(mm->auxv[1], 0x7ffd00001000ULL);
		break;
	case IMG_PAGEMAP:
		if (i == 0)
			assert_int_equal(((const PagemapHead *)m)->pages_id, 7);
		else if (i == 2)
			assert_int_equal(pe->nr_pages, 254);
		break;
	case IMG_FILES:
		if (i == 0)
			assert_int_equal(fe->reg->size, (1ULL << 40) + 17);
		else
			assert_null(fe->reg);
		break;
	case IMG_FDINFO:
		if (i == 2)
			assert_int_equal(fd->fd, 1023);
		break;
	case IMG_STATS_DUMP:
		assert_int_equal(st->dump->pages_lazy, 262144);
		assert_null(st->restore);
		break;
	case IMG_STATS_RESTORE:
		assert_int_equal(st->restore->frozen_window_us, 61000);
		assert_null(st->dump);
		break;
	case IMG_FILE_LOCKS:
		if (i == 1)
			assert_int_equal(((const FileLockEntry *)m)->start, 1ULL << 40);
		break;
	default:
		fail_msg("no checks for kind %d", kind);
	}
}

static void write_sample(int dirfd, enum img_kind kind)
{
	char err[512] = "";
	int r = sample_write(dirfd, kind, err, sizeof(err));

	if (r)
		fail_msg("writing the %s sample: %s", img_kind_desc(kind)->name, err);
}

static void test_roundtrip_every_kind(void **state)
{
	struct testdir *td = *state;

	for (int k = 0; k < IMG_KIND_MAX; k++) {
		const struct sample_img *s = sample_get((enum img_kind)k);
		ProtobufCMessage *msg;
		struct img img;
		char path[512];

		if (k == IMG_PAGES)
			continue;
		write_sample(td->dirfd, s->kind);
		assert_int_equal(img_open(&img, td->dirfd, s->kind, s->id, IMG_READ), 0);
		for (size_t i = 0; i < s->nr_entries; i++) {
			assert_int_equal(img_read(&img, &msg), 1);
			assert_msg_equal(msg, s->entries[i]);
			check_fields(s->kind, i, msg);
			img_msg_free(msg);
		}
		assert_int_equal(img_read(&img, &msg), 0);
		assert_int_equal(img.nr_entries, s->nr_entries);
		assert_int_equal(img_close(&img), 0);

		/* Opened by path, the kind comes from the magic. */
		testdir_path(td, img.name, path, sizeof(path));
		assert_int_equal(img_open_path(&img, path), 0);
		assert_int_equal(img.kind, s->kind);
		if (s->nr_entries == 1) {
			assert_int_equal(img_read_one(&img, &msg), 0);
			assert_msg_equal(msg, s->entries[0]);
			img_msg_free(msg);
		}
		img_close(&img);
	}
}

static void test_pages_roundtrip(void **state)
{
	struct testdir *td = *state;
	const struct sample_img *s = sample_get(IMG_PAGES);
	uint8_t page[IMG_PAGE_SIZE];
	struct img img;
	uint64_t n;

	write_sample(td->dirfd, IMG_PAGES);
	assert_int_equal(img_open(&img, td->dirfd, IMG_PAGES, s->id, IMG_READ), 0);
	assert_int_equal(img_pages_count(&img, &n), 0);
	assert_int_equal(n, SAMPLE_NR_PAGES);
	for (unsigned p = 0; p < SAMPLE_NR_PAGES; p++) {
		assert_int_equal(pread(img_pages_fd(&img), page, sizeof(page),
				       (off_t)img_pages_offset(p)),
				 sizeof(page));
		for (unsigned i = 0; i < sizeof(page); i++)
			if (page[i] != sample_page_byte(p, i))
				fail_msg("page %u byte %u: %u", p, i, page[i]);
	}
	assert_int_equal(img_read(&img, &(ProtobufCMessage *){ NULL }), -EINVAL);
	img_close(&img);
}

/* Every error must name the file and say where: "<name>: offset <n>: ...". */
static void assert_err_names(const struct img *img, const char *name, uint64_t off)
{
	char want[320];

	snprintf(want, sizeof(want), "%s: offset %llu: ", name, (unsigned long long)off);
	if (strncmp(img->err, want, strlen(want)))
		fail_msg("error '%s' does not start with '%s'", img->err, want);
}

/*
 * Read a message image cut to LEN bytes. Cut at an entry boundary it is a
 * shorter valid image (the format has no trailer); anywhere else the read
 * must fail at the offset of the entry that was cut.
 */
static void check_truncated_msgs(int dirfd, const struct sample_img *s, const uint64_t *bounds,
				 uint64_t len)
{
	ProtobufCMessage *msg;
	struct img img;
	size_t got = 0;
	int r;

	r = img_open(&img, dirfd, s->kind, s->id, IMG_READ);
	if (len < bounds[0]) {
		assert_true(r < 0);
		assert_err_names(&img, img.name, 0);
		return;
	}
	assert_int_equal(r, 0);
	while ((r = img_read(&img, &msg)) > 0) {
		img_msg_free(msg);
		got++;
	}
	if (len == bounds[got]) {
		assert_int_equal(r, 0);
	} else {
		if (r >= 0)
			fail_msg("%s cut to %llu bytes read without error", img.name,
				 (unsigned long long)len);
		assert_true(len > bounds[got] && len < bounds[got + 1]);
		assert_err_names(&img, img.name, bounds[got]);
	}
	img_close(&img);
}

static void check_truncated_pages(int dirfd, const struct sample_img *s, uint64_t len)
{
	struct img img;
	uint64_t n;
	int r;

	r = img_open(&img, dirfd, s->kind, s->id, IMG_READ);
	if (len < 8) {
		assert_true(r < 0);
		assert_err_names(&img, img.name, 0);
		return;
	}
	assert_int_equal(r, 0);
	r = img_pages_count(&img, &n);
	if (len >= IMG_PAGE_SIZE && len % IMG_PAGE_SIZE == 0) {
		assert_int_equal(r, 0);
		assert_int_equal(n, len / IMG_PAGE_SIZE - 1);
	} else {
		assert_true(r < 0);
		assert_err_names(&img, img.name, IMG_PAGE_SIZE);
	}
	img_close(&img);
}

static void test_truncated_every_byte(void **state)
{
	struct testdir *td = *state;

	for (int k = 0; k < IMG_KIND_MAX; k++) {
		const struct sample_img *s = sample_get((enum img_kind)k);
		uint64_t bounds[SAMPLE_MAX_ENTRIES + 2];
		char name[256];
		struct stat st;
		int fd;

		write_sample(td->dirfd, s->kind);
		img_file_name(s->kind, s->id, name, sizeof(name));
		fd = openat(td->dirfd, name, O_WRONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		/* Entry boundaries: after the header, then after each entry. */
		bounds[0] = 8;
		for (size_t i = 0; i < s->nr_entries; i++)
			bounds[i + 1] = bounds[i] + 4 +
					protobuf_c_message_get_packed_size(s->entries[i]);
		if (k != IMG_PAGES)
			assert_int_equal(bounds[s->nr_entries], st.st_size);
		/* Cut from the end down to zero bytes, one byte at a time. */
		for (int64_t len = st.st_size - 1; len >= 0; len--) {
			assert_int_equal(ftruncate(fd, len), 0);
			if (k == IMG_PAGES)
				check_truncated_pages(td->dirfd, s, (uint64_t)len);
			else
				check_truncated_msgs(td->dirfd, s, bounds, (uint64_t)len);
		}
		close(fd);
	}
}

static int open_bytes(struct testdir *td, struct img *img, const char *name, const void *buf,
		      size_t len)
{
	char path[512];

	testdir_write(td, name, buf, len);
	testdir_path(td, name, path, sizeof(path));
	return img_open_path(img, path);
}

static void test_wrong_magic(void **state)
{
	struct testdir *td = *state;
	uint32_t hdr[2] = { 0xdeadbeef, IMG_FORMAT_VERSION };
	struct img img;

	assert_int_equal(open_bytes(td, &img, "foreign.img", hdr, sizeof(hdr)), -EINVAL);
	assert_err_names(&img, "foreign.img", 0);
	assert_non_null(strstr(img.err, "bad magic 0xdeadbeef"));

	/* A valid magic of another kind, where the caller expects a core image. */
	hdr[0] = img_kind_desc(IMG_MM)->magic;
	testdir_write(td, "core-1.img", hdr, sizeof(hdr));
	assert_int_equal(img_open(&img, td->dirfd, IMG_CORE, 1, IMG_READ), -EINVAL);
	assert_err_names(&img, "core-1.img", 0);
	assert_non_null(strstr(img.err, "expected 0x"));
}

static void test_future_version(void **state)
{
	struct testdir *td = *state;
	uint32_t hdr[2] = { img_kind_desc(IMG_CORE)->magic, IMG_FORMAT_VERSION + 1 };
	struct img img;

	assert_int_equal(open_bytes(td, &img, "future.img", hdr, sizeof(hdr)), -EINVAL);
	assert_err_names(&img, "future.img", 0);
	assert_non_null(strstr(img.err, "format version 2"));
}

static void test_oversized_length(void **state)
{
	struct testdir *td = *state;
	uint32_t buf[4] = { img_kind_desc(IMG_PSTREE)->magic, IMG_FORMAT_VERSION,
			    IMG_MAX_ENTRY + 1, 0 };
	ProtobufCMessage *msg;
	struct img img;

	assert_int_equal(open_bytes(td, &img, "big.img", buf, sizeof(buf)), 0);
	assert_int_equal(img_read(&img, &msg), -EINVAL);
	assert_err_names(&img, "big.img", 8);
	assert_non_null(strstr(img.err, "exceeds the limit"));
	img_close(&img);

	buf[2] = 0xffffffff;
	assert_int_equal(open_bytes(td, &img, "big.img", buf, sizeof(buf)), 0);
	assert_int_equal(img_read(&img, &msg), -EINVAL);
	assert_non_null(strstr(img.err, "exceeds the limit"));
	img_close(&img);

	/* Exactly at the limit is allowed, and then the data is missing. */
	buf[2] = IMG_MAX_ENTRY;
	assert_int_equal(open_bytes(td, &img, "big.img", buf, sizeof(buf)), 0);
	assert_int_equal(img_read(&img, &msg), -EINVAL);
	assert_err_names(&img, "big.img", 8);
	assert_non_null(strstr(img.err, "truncated PstreeEntry entry: 4 of 16777216 bytes"));
	img_close(&img);
}

static void test_zero_length(void **state)
{
	struct testdir *td = *state;
	struct img img;

	assert_int_equal(open_bytes(td, &img, "empty.img", "", 0), -EINVAL);
	assert_err_names(&img, "empty.img", 0);
	assert_non_null(strstr(img.err, "empty file"));

	testdir_write(td, "inventory.img", "", 0);
	assert_int_equal(img_open(&img, td->dirfd, IMG_INVENTORY, 0, IMG_READ), -EINVAL);
	assert_err_names(&img, "inventory.img", 0);
}

static void test_undecodable_entry(void **state)
{
	struct testdir *td = *state;
	/* pstree entry with only pid = 1: the other required fields are missing. */
	uint8_t buf[14] = { 0 };
	uint32_t hdr[2] = { img_kind_desc(IMG_PSTREE)->magic, IMG_FORMAT_VERSION };
	ProtobufCMessage *msg;
	struct img img;

	memcpy(buf, hdr, 8);
	buf[8] = 2;
	buf[12] = 0x08;
	buf[13] = 0x01;
	assert_int_equal(open_bytes(td, &img, "partial.img", buf, sizeof(buf)), 0);
	assert_int_equal(img_read(&img, &msg), -EINVAL);
	assert_err_names(&img, "partial.img", 8);
	assert_non_null(strstr(img.err, "cannot decode a PstreeEntry"));
	img_close(&img);

	/* A single-entry image with no entry at all. */
	assert_int_equal(open_bytes(td, &img, "pstree-nothing.img", buf, 8), 0);
	assert_int_equal(img_read_one(&img, &msg), -EINVAL);
	assert_err_names(&img, "pstree-nothing.img", 8);
	img_close(&img);
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	/* xorshift64*: fixed seed, so a failure reproduces. */
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545f4914f6cdd1dULL;
}

/* Open and read everything; returns the first error (< 0) or 0. */
static int read_everything(const char *path, FILE *devnull, struct img *img)
{
	ProtobufCMessage *msg;
	int r;

	r = img_open_path(img, path);
	if (r)
		return r;
	if (img_kind_desc(img->kind)->msg) {
		while ((r = img_read(img, &msg)) > 0)
			img_msg_free(msg);
	} else {
		uint64_t n;

		r = img_pages_count(img, &n);
	}
	img_close(img);
	if (r)
		return r;
	r = img_open_path(img, path);
	assert_int_equal(r, 0);
	r = img_show(img, devnull);
	img_close(img);
	return r;
}

static void test_random_files(void **state)
{
	struct testdir *td = *state;
	FILE *devnull = fopen("/dev/null", "w");
	uint8_t buf[512];
	char path[512];
	struct img img;

	assert_non_null(devnull);
	testdir_path(td, "random.img", path, sizeof(path));
	for (int i = 0; i < NR_RANDOM_FILES; i++) {
		/* Even: a valid header of each kind in turn, then 1..300 random bytes. */
		bool with_header = i % 2 == 0;
		size_t off = with_header ? 8 : 0;
		size_t len = off + (with_header ? 1 : 0) + rnd() % 300;
		uint32_t hdr[2] = { img_kind_desc((enum img_kind)(i / 2 % IMG_KIND_MAX))->magic,
				    IMG_FORMAT_VERSION };

		for (size_t j = off; j < len; j += 8) {
			uint64_t v = rnd();

			memcpy(buf + j, &v, len - j < 8 ? len - j : 8);
		}
		if (with_header)
			memcpy(buf, hdr, sizeof(hdr));
		testdir_write(td, "random.img", buf, len);
		if (read_everything(path, devnull, &img) >= 0)
			fail_msg("random file %d (%zu bytes) read without error", i, len);
		assert_err_names(&img, "random.img", img.off);
	}
	fclose(devnull);
}

/*
 * Random protobuf bodies behind a length that fits: they get past the
 * framing into the decoder. Some decode (stats entries are all optional);
 * whatever happens must be an error with a place, or a clean render.
 */
static void test_random_bodies(void **state)
{
	struct testdir *td = *state;
	FILE *devnull = fopen("/dev/null", "w");
	uint8_t buf[256];
	char path[512];
	struct img img;

	assert_non_null(devnull);
	testdir_path(td, "body.img", path, sizeof(path));
	for (int i = 0; i < 5000; i++) {
		size_t body = rnd() % 200;
		uint32_t hdr[3] = { img_kind_desc((enum img_kind)(i % IMG_KIND_MAX))->magic,
				    IMG_FORMAT_VERSION, (uint32_t)body };

		for (size_t j = 0; j < body; j++)
			buf[12 + j] = (uint8_t)rnd();
		memcpy(buf, hdr, sizeof(hdr));
		testdir_write(td, "body.img", buf, 12 + body);
		if (read_everything(path, devnull, &img) < 0)
			assert_err_names(&img, "body.img", img.off);
	}
	fclose(devnull);
}

/*
 * Inputs on which the fuzzer once found a bug (regress/, may be empty) and
 * the fuzzer's minimized corpus (fuzz/corpus/img/), through the fuzz target's
 * own body: no crash, no leak, every failure with file and offset.
 */
static void test_regress_inputs(void **state)
{
	struct testdir *td = *state;
	unsigned n = testdir_replay(td, REGRESS_DIR, img_feed);
	unsigned m = testdir_replay(td, FUZZ_CORPUS_DIR, img_feed);

	print_message("replayed %u regression inputs and %u corpus inputs\n", n, m);
	assert_true(m > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_every_kind, testdir_setup,
						testdir_teardown),
		cmocka_unit_test_setup_teardown(test_pages_roundtrip, testdir_setup,
						testdir_teardown),
		cmocka_unit_test_setup_teardown(test_truncated_every_byte, testdir_setup,
						testdir_teardown),
		cmocka_unit_test_setup_teardown(test_wrong_magic, testdir_setup, testdir_teardown),
		cmocka_unit_test_setup_teardown(test_future_version, testdir_setup,
						testdir_teardown),
		cmocka_unit_test_setup_teardown(test_oversized_length, testdir_setup,
						testdir_teardown),
		cmocka_unit_test_setup_teardown(test_zero_length, testdir_setup, testdir_teardown),
		cmocka_unit_test_setup_teardown(test_undecodable_entry, testdir_setup,
						testdir_teardown),
		cmocka_unit_test_setup_teardown(test_random_files, testdir_setup,
						testdir_teardown),
		cmocka_unit_test_setup_teardown(test_random_bodies, testdir_setup,
						testdir_teardown),
		cmocka_unit_test_setup_teardown(test_regress_inputs, testdir_setup,
						testdir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
