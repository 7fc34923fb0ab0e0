/*
 * The inotify part of the victims: a non-blocking instance at fd 71 with
 * watches whose wds have gaps (scratch watches added and removed around
 * them): a directory watched for IN_CREATE|IN_DELETE and a file watched for
 * IN_MODIFY|IN_EXCL_UNLINK, both in the workdir. The check compares the
 * watch list of fdinfo (wd, mask) with the one at setup, then creates a
 * file in the directory and writes the file: each event must come with the
 * wd of its watch and the right name. Nothing is left queued at the dump
 * (queued events are not kept, docs/images.md).
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define IN_FD 71

static int wd_dir = -1, wd_file = -1;
static char dir[PATH_MAX], file[PATH_MAX], scratch[PATH_MAX], marks[512];

/* "wd:X mask:Y" of every watch line of our fdinfo. */
static int mark_list(char *out, size_t len)
{
	char path[64], line[512];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", IN_FD);
	f = fopen(path, "r");
	if (!f)
		return -1;
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned int wd, mask;

		if (sscanf(line, "inotify wd:%x ino:%*x sdev:%*x mask:%x", &wd, &mask) != 2)
			continue;
		n += (size_t)snprintf(out + n, len > n ? len - n : 0, "%u/%x ", wd, mask);
	}
	fclose(f);
	return 0;
}

/* Read every queued event away; 0 or -1. */
static int drain(void)
{
	char buf[4096];

	while (read(IN_FD, buf, sizeof(buf)) > 0)
		;
	return errno == EAGAIN ? 0 : -1;
}

static int inotify_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	int fd, tmp, wd;

	snprintf(dir, sizeof(dir), "%s/inotify-dir", ctx->workdir);
	snprintf(file, sizeof(file), "%s/inotify-file", ctx->workdir);
	snprintf(scratch, sizeof(scratch), "%s/inotify-scratch", ctx->workdir);
	if ((mkdir(dir, 0755) && errno != EEXIST) || (mkdir(scratch, 0755) && errno != EEXIST))
		return victim_fail(err, len, "mkdir in %s: %s", ctx->workdir, strerror(errno));
	tmp = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (tmp < 0)
		return victim_fail(err, len, "create %s: %s", file, strerror(errno));
	close(tmp);
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0 || dup2(fd, IN_FD) != IN_FD)
		return victim_fail(err, len, "inotify_init1/dup2: %s", strerror(errno));
	close(fd);
	/* wd 1 and 3 removed: the restore must skip them to give 2 and 4 back. */
	wd = inotify_add_watch(IN_FD, scratch, IN_ATTRIB);
	wd_dir = inotify_add_watch(IN_FD, dir, IN_CREATE | IN_DELETE);
	if (wd < 0 || wd_dir < 0 || inotify_rm_watch(IN_FD, wd))
		return victim_fail(err, len, "inotify watches: %s", strerror(errno));
	wd = inotify_add_watch(IN_FD, scratch, IN_ATTRIB);
	wd_file = inotify_add_watch(IN_FD, file, IN_MODIFY | IN_EXCL_UNLINK);
	if (wd < 0 || wd_file < 0 || inotify_rm_watch(IN_FD, wd))
		return victim_fail(err, len, "inotify watches: %s", strerror(errno));
	if (drain() || mark_list(marks, sizeof(marks)))
		return victim_fail(err, len, "inotify fd %d: %s", IN_FD, strerror(errno));
	if (wd_dir != 2 || wd_file != 4)
		return victim_fail(err, len, "inotify wds %d and %d, expected 2 and 4", wd_dir,
				   wd_file);
	return 0;
}

static char evbuf[4096] __attribute__((aligned(8)));
static size_t evpos, evend;

/* The next event (one read may bring several): its wd, mask and name must be these. */
static int expect_event(int wd, uint32_t mask, const char *name, char *err, size_t len)
{
	struct pollfd p = { .fd = IN_FD, .events = POLLIN };
	const struct inotify_event *e;
	ssize_t n;

	if (evpos >= evend) {
		if (poll(&p, 1, 2000) != 1)
			return victim_fail(err, len, "inotify fd %d: no event for wd %d in 2 s",
					   IN_FD, wd);
		n = read(IN_FD, evbuf, sizeof(evbuf));
		if (n < (ssize_t)sizeof(*e))
			return victim_fail(err, len, "inotify fd %d: read: %s", IN_FD,
					   strerror(errno));
		evpos = 0;
		evend = (size_t)n;
	}
	e = (const void *)(evbuf + evpos);
	evpos += sizeof(*e) + e->len;
	if (e->wd != wd || !(e->mask & mask) || strcmp(e->len ? e->name : "", name))
		return victim_fail(err, len, "inotify fd %d: event wd %d mask %#x name '%s', "
				   "expected wd %d mask %#x name '%s'", IN_FD, e->wd, e->mask,
				   e->len ? e->name : "", wd, mask, name);
	return 0;
}

static int inotify_check(struct victim_ctx *ctx, char *err, size_t len)
{
	char now[512], path[PATH_MAX + 16];
	int fd, fl = fcntl(IN_FD, F_GETFL);

	(void)ctx;
	if (fl < 0 || !(fl & O_NONBLOCK))
		return victim_fail(err, len, "inotify fd %d: flags %#x, not non-blocking", IN_FD,
				   fl);
	if (mark_list(now, sizeof(now)))
		return victim_fail(err, len, "fdinfo of inotify fd %d: %s", IN_FD, strerror(errno));
	if (strcmp(now, marks))
		return victim_fail(err, len, "inotify fd %d watches '%s', not '%s'", IN_FD, now,
				   marks);
	if (drain())
		return victim_fail(err, len, "inotify fd %d: read: %s", IN_FD, strerror(errno));
	snprintf(path, sizeof(path), "%s/new", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return victim_fail(err, len, "create %s: %s", path, strerror(errno));
	close(fd);
	unlink(path);
	if (expect_event(wd_dir, IN_CREATE, "new", err, len))
		return -1;
	if (expect_event(wd_dir, IN_DELETE, "new", err, len))
		return -1;
	fd = open(file, O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, "x", 1) != 1)
		return victim_fail(err, len, "write %s: %s", file, strerror(errno));
	close(fd);
	return expect_event(wd_file, IN_MODIFY, "", err, len);
}

const struct victim_part victim_part_inotify = {
	.name = "inotify",
	.setup = inotify_setup,
	.check = inotify_check,
};
