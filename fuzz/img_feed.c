/*
 * Runs one input through img.c and the JSON writer of images/show.c, as a
 * file of every kind. The bytes go into a memfd that img_open_path() reopens
 * through /proc/self/fd, the same path `relive show FILE` takes. Besides not
 * crashing, the reader must keep its contract: every failure leaves an error
 * line in img->err that names the file and the byte offset.
 */
#include "img_feed.h"
#include "img.h"
#include "show.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int feed_fd = -1;
static FILE *devnull;
static char feed_path[64];

static int feed_init(void)
{
	if (feed_fd >= 0)
		return 0;
	feed_fd = memfd_create("relive-fuzz.img", MFD_CLOEXEC);
	if (feed_fd < 0)
		return -errno;
	devnull = fopen("/dev/null", "we");
	if (!devnull) {
		close(feed_fd);
		feed_fd = -1;
		return -errno;
	}
	snprintf(feed_path, sizeof(feed_path), "/proc/self/fd/%d", feed_fd);
	return 0;
}

static int feed_fill(const void *hdr, size_t hlen, const uint8_t *data, size_t size)
{
	if (ftruncate(feed_fd, 0))
		return -errno;
	if (hlen && pwrite(feed_fd, hdr, hlen, 0) != (ssize_t)hlen)
		return -EIO;
	if (size && pwrite(feed_fd, data, size, (off_t)hlen) != (ssize_t)size)
		return -EIO;
	return 0;
}

/* A failure must say where: "<name>: offset <n>: <why>". */
static void check_err(const struct img *img, int r)
{
	if (r >= 0)
		return;
	if (!strstr(img->err, img->name) || !strstr(img->err, ": offset ")) {
		fprintf(stderr, "error %d without file and offset: '%s'\n", r, img->err);
		abort();
	}
}

/* img_show() reads every entry through img_read() and renders it. */
static void feed_one(void)
{
	struct img img;
	int r;

	r = img_open_path(&img, feed_path);
	if (r) {
		check_err(&img, r);
		return;
	}
	r = img_show(&img, devnull);
	check_err(&img, r);
	img_close(&img);
}

int img_feed(const uint8_t *data, size_t size)
{
	uint32_t hdr[2];
	int r;

	r = feed_init();
	if (r)
		return r;
	r = feed_fill(NULL, 0, data, size);
	if (r)
		return r;
	feed_one();
	for (int k = 0; k < IMG_KIND_MAX; k++) {
		hdr[0] = img_kind_desc((enum img_kind)k)->magic;
		hdr[1] = IMG_FORMAT_VERSION;
		r = feed_fill(hdr, sizeof(hdr), data, size);
		if (r)
			return r;
		feed_one();
	}
	return 0;
}
