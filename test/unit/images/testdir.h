/*
 * A scratch directory per cmocka test (setup/teardown), with helpers to
 * write files into it and to replay every file of a directory through a
 * function. Header-only: each test binary of the module includes it once.
 */
#ifndef RELIVE_TEST_TESTDIR_H
#define RELIVE_TEST_TESTDIR_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

struct testdir {
	char path[256];
	int dirfd;
};

static inline int testdir_setup(void **state)
{
	struct testdir *td = calloc(1, sizeof(*td));
	const char *tmp = getenv("TMPDIR");

	if (!td)
		return -1;
	/*
	 * tmpfs by default: rewriting and truncating thousands of small files on
	 * ext4 waits for writeback (auto_da_alloc) and is 20x slower under load.
	 */
	if (!tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(td->path, sizeof(td->path), "%s/relive-test-XXXXXX", tmp);
	if (!mkdtemp(td->path)) {
		free(td);
		return -1;
	}
	td->dirfd = open(td->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (td->dirfd < 0) {
		rmdir(td->path);
		free(td);
		return -1;
	}
	*state = td;
	return 0;
}

static inline int testdir_teardown(void **state)
{
	struct testdir *td = *state;
	DIR *d = fdopendir(dup(td->dirfd));
	struct dirent *de;

	if (d) {
		while ((de = readdir(d)))
			if (de->d_name[0] != '.')
				unlinkat(td->dirfd, de->d_name, 0);
		closedir(d);
	}
	close(td->dirfd);
	rmdir(td->path);
	free(td);
	return 0;
}

static inline void testdir_path(const struct testdir *td, const char *name, char *buf,
				size_t len)
{
	snprintf(buf, len, "%s/%s", td->path, name);
}

/* Replace NAME in the directory with exactly LEN bytes of BUF. */
static inline void testdir_write(const struct testdir *td, const char *name, const void *buf,
				 size_t len)
{
	int fd = openat(td->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

/* Call FN on the contents of every regular file in DIR; returns how many. */
static inline unsigned testdir_replay(const struct testdir *td, const char *dir,
				      int (*fn)(const uint8_t *, size_t))
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned n = 0;

	(void)td;
	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[1024];
		struct stat st;
		uint8_t *buf;
		int fd;

		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) || !S_ISREG(st.st_mode) || !strcmp(de->d_name, "README"))
			continue;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		buf = malloc(st.st_size ? st.st_size : 1);
		assert_non_null(buf);
		assert_int_equal(read(fd, buf, st.st_size), st.st_size);
		close(fd);
		if (fn(buf, st.st_size))
			fail_msg("replaying %s failed", path);
		free(buf);
		n++;
	}
	closedir(d);
	return n;
}

#endif
