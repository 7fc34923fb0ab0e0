/*
 * Test helper for show-json.sh: `mkimages DIR` writes the sample image of
 * every kind into DIR; `mkimages --corrupt DIR` writes broken images, one
 * per failure the reader must report (each name says which). Not installed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "img.h"
#include "sample.h"

static int put(int dirfd, const char *name, const void *buf, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t n;

	if (fd < 0) {
		fprintf(stderr, "mkimages: cannot create %s: %s\n", name, strerror(errno));
		return -errno;
	}
	n = write(fd, buf, len);
	close(fd);
	if (n != (ssize_t)len) {
		fprintf(stderr, "mkimages: short write to %s\n", name);
		return -EIO;
	}
	return 0;
}

/* The sample of KIND, cut to CUT bytes, under NAME. */
static int put_cut_sample(int dirfd, enum img_kind kind, size_t cut, const char *name)
{
	const struct sample_img *s = sample_get(kind);
	char src[256], err[512];
	uint8_t buf[1024];
	ssize_t n;
	int fd, r;

	r = sample_write(dirfd, kind, err, sizeof(err));
	if (r) {
		fprintf(stderr, "mkimages: %s\n", err);
		return r;
	}
	img_file_name(kind, s->id, src, sizeof(src));
	fd = openat(dirfd, src, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	unlinkat(dirfd, src, 0);
	if (n < 0 || (size_t)n <= cut)
		return -EIO;
	return put(dirfd, name, buf, cut);
}

static int write_corrupt(int dirfd)
{
	uint32_t core = img_kind_desc(IMG_CORE)->magic, pst = img_kind_desc(IMG_PSTREE)->magic;
	uint32_t bad_magic[2] = { 0x46464f54, IMG_FORMAT_VERSION };
	uint32_t future[2] = { core, IMG_FORMAT_VERSION + 1 };
	uint32_t huge[3] = { pst, IMG_FORMAT_VERSION, 0xffffff00 };
	uint32_t garbage[6] = { core, IMG_FORMAT_VERSION, 0x7a, 0xdeadbeef, 0x12345678, 1 };
	uint8_t undecodable[14] = { 0 };
	uint8_t pages[IMG_PAGE_SIZE + 100] = { 0 };
	uint32_t pages_hdr[2] = { img_kind_desc(IMG_PAGES)->magic, IMG_FORMAT_VERSION };
	int r = 0;

	memcpy(undecodable, huge, 8);
	undecodable[8] = 2;
	undecodable[12] = 0x08;
	undecodable[13] = 0x01;
	memcpy(pages, pages_hdr, sizeof(pages_hdr));
	r |= put(dirfd, "empty.img", "", 0);
	r |= put(dirfd, "short-header.img", bad_magic, 3);
	r |= put(dirfd, "bad-magic.img", bad_magic, sizeof(bad_magic));
	r |= put(dirfd, "future-version.img", future, sizeof(future));
	r |= put(dirfd, "oversized-length.img", huge, sizeof(huge));
	r |= put(dirfd, "garbage-entry.img", garbage, sizeof(garbage));
	r |= put(dirfd, "undecodable-entry.img", undecodable, sizeof(undecodable));
	r |= put(dirfd, "partial-page.img", pages, sizeof(pages));
	r |= put_cut_sample(dirfd, IMG_CORE, 100, "truncated-core.img");
	r |= put_cut_sample(dirfd, IMG_PSTREE, 10, "truncated-length.img");
	return r ? -EIO : 0;
}

int main(int argc, char **argv)
{
	bool corrupt = argc == 3 && !strcmp(argv[1], "--corrupt");
	const char *dir = argv[argc - 1];
	char err[512];
	int dirfd, r = 0;

	if (argc != 2 && !corrupt) {
		fprintf(stderr, "usage: mkimages [--corrupt] DIR\n");
		return 2;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "mkimages: cannot create %s: %s\n", dir, strerror(errno));
		return 1;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		fprintf(stderr, "mkimages: cannot open %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (corrupt) {
		r = write_corrupt(dirfd);
	} else {
		for (int k = 0; k < IMG_KIND_MAX && !r; k++) {
			r = sample_write(dirfd, (enum img_kind)k, err, sizeof(err));
			if (r)
				fprintf(stderr, "mkimages: %s\n", err);
		}
	}
	close(dirfd);
	return r ? 1 : 0;
}
