/*
 * epoll and inotify instances of a frozen process, from /proc/PID/fdinfo.
 * epoll: every watch (fd number, events with their EPOLLET/ONESHOT/
 * EXCLUSIVE flags, user data), each checked with kcmp(KCMP_EPOLL_TFD) to be
 * the file now at that number: a watch whose fd was closed (the file lives
 * on through a dup) cannot be re-added at restore and fails the dump.
 * inotify: every watch (wd, mask) with the path of its inode, found by
 * opening the file handle of fdinfo on a mount of the inode's device.
 * Events queued in an inotify instance cannot be put back: they are lost,
 * and the dump says how many bytes. Dispatch: dump-fdkinds.c.
 */
#include "dump-fdkinds.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int read_text(pid_t pid, int fd, char **ret)
{
	char what[32];

	snprintf(what, sizeof(what), "fdinfo/%d", fd);
	return proc_read_text(pid, what, ret);
}

static int add_tfd(EpollEntry *e, uint32_t tfd, uint32_t events, uint64_t data)
{
	EpollTfdEntry **n = realloc(e->tfds, (e->n_tfds + 1) * sizeof(*n));
	EpollTfdEntry *t = calloc(1, sizeof(*t));

	if (n)
		e->tfds = n;
	if (!n || !t) {
		free(t);
		return -ENOMEM;
	}
	epoll_tfd_entry__init(t);
	t->tfd = tfd;
	t->events = events;
	t->data = data;
	e->tfds[e->n_tfds++] = t;
	return 0;
}

/* The watch is on the file now at fd tfd (the toff-th watch of that number). */
static int check_tfd(pid_t pid, int efd, uint32_t tfd, uint32_t toff)
{
	struct kcmp_epoll_slot slot = { (uint32_t)efd, tfd, toff };
	long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, tfd, &slot);

	if (r == 0)
		return 0;
	if (r < 0 && errno != EBADF && errno != ENOENT) {
		r = -errno;
		pr_perror("pid %d: epoll fd %d: kcmp of its watch of fd %u", (int)pid, efd, tfd);
		return (int)r;
	}
	pr_err("pid %d: epoll fd %d watches a file once at fd %u that is no longer there (closed, "
	       "still watched through a dup): such a watch cannot be restored\n",
	       (int)pid, efd, tfd);
	return -ENOTSUP;
}

int dmp_epoll_fill(struct dump_ctx *ctx, int fd, const struct proc_fdinfo *info, FileEntry *fe)
{
	_cleanup_free_ char *text = NULL;
	EpollEntry *e = calloc(1, sizeof(*e));
	int r;

	if (!e)
		return -ENOMEM;
	epoll_entry__init(e);
	fe->epoll = e;
	fe->type = FILE_TYPE__FILE_EPOLL;
	e->flags = info->flags & ~O_CLOEXEC;
	r = read_text(ctx->pid, fd, &text);
	if (r)
		return r;
	for (const char *p = text; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		unsigned int tfd, events;
		unsigned long long data;
		uint32_t toff = 0;

		if (strncmp(p, "tfd:", 4))
			continue;
		if (sscanf(p, "tfd: %u events: %x data: %llx", &tfd, &events, &data) != 3) {
			pr_err("pid %d: epoll fd %d: cannot parse its fdinfo line '%.60s'\n",
			       (int)ctx->pid, fd, p);
			return -EINVAL;
		}
		/* Several watches of one fd number: files that held it in turn. */
		for (size_t i = 0; i < e->n_tfds; i++)
			toff += e->tfds[i]->tfd == tfd;
		r = check_tfd(ctx->pid, fd, tfd, toff);
		if (!r)
			r = add_tfd(e, tfd, events, data);
		if (r)
			return r;
	}
	pr_debug("pid %d: epoll fd %d: %zu watches\n", (int)ctx->pid, fd, e->n_tfds);
	return 0;
}

/* A mount of device SDEV (the kernel's encoding, as fdinfo prints it), opened. */
static int open_mount_of(pid_t pid, unsigned int sdev)
{
	unsigned int want_maj = sdev >> 20, want_min = sdev & 0xfffff;
	_cleanup_free_ char *text = NULL;
	int r;

	r = proc_read_text(pid, "mountinfo", &text);
	if (r)
		return r;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned int maj, min;
		char root[4096], mnt[4096];
		int fd;

		if (sscanf(line, "%*u %*u %u:%u %4095s %4095s", &maj, &min, root, mnt) != 4 ||
		    maj != want_maj || min != want_min)
			continue;
		fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0)
			return fd;
	}
	pr_err("pid %d: no mount of device %u:%u, where an inotify watch is\n", (int)pid,
	       want_maj, want_min);
	return -ENOENT;
}

/* The path of the inode behind an fdinfo file handle (HEX of BYTES bytes, TYPE). */
static int handle_path(pid_t pid, unsigned int sdev, unsigned int bytes, int type,
		       const char *hex, uint64_t ino, char *ret, size_t len)
{
	_cleanup_free_ struct file_handle *h = NULL;
	_cleanup_close_ int mfd = -1, fd = -1;
	char link[64];
	struct stat st;
	ssize_t n;

	if (bytes > MAX_HANDLE_SZ || strlen(hex) < 2 * (size_t)bytes)
		return -EINVAL;
	h = calloc(1, sizeof(*h) + bytes);
	if (!h)
		return -ENOMEM;
	h->handle_bytes = bytes;
	h->handle_type = type;
	for (unsigned int i = 0; i < bytes; i++) {
		unsigned int b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -EINVAL;
		h->f_handle[i] = (unsigned char)b;
	}
	mfd = open_mount_of(pid, sdev);
	if (mfd < 0)
		return mfd;
	fd = open_by_handle_at(mfd, h, O_PATH | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		int r = -errno;

		pr_perror("pid %d: cannot open inode %" PRIu64 " of an inotify watch by its handle",
			  (int)pid, ino);
		return r;
	}
	if (st.st_ino != ino) {
		pr_err("pid %d: the handle of an inotify watch gave inode %" PRIu64 ", not %" PRIu64
		       "\n", (int)pid, (uint64_t)st.st_ino, ino);
		return -ESTALE;
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, ret, len - 1);
	if (n < 0) {
		int r = -errno;

		pr_perror("pid %d: readlink %s (inotify inode %" PRIu64 ")", (int)pid, link, ino);
		return r;
	}
	ret[n] = 0;
	if (ret[0] != '/' || strstr(ret, " (deleted)")) {
		pr_err("pid %d: inotify watch of inode %" PRIu64 " at %s: the inode has no path\n",
		       (int)pid, ino, ret);
		return -ENOTSUP;
	}
	return 0;
}

static int add_wd(InotifyEntry *e, InotifyWdEntry *w)
{
	InotifyWdEntry **n = realloc(e->wds, (e->n_wds + 1) * sizeof(*n));
	size_t i;

	if (!n)
		return -ENOMEM;
	e->wds = n;
	/* Increasing wd order: the order restore adds them in. */
	for (i = e->n_wds; i > 0 && e->wds[i - 1]->wd > w->wd; i--)
		e->wds[i] = e->wds[i - 1];
	e->wds[i] = w;
	e->n_wds++;
	return 0;
}

static int parse_wd(pid_t pid, int fd, const char *line, InotifyEntry *e)
{
	unsigned int wd, sdev, mask, ign, bytes;
	unsigned long long ino;
	int type, r;
	char hex[2 * MAX_HANDLE_SZ + 1], path[4096];
	InotifyWdEntry *w;

	if (sscanf(line, "inotify wd:%x ino:%llx sdev:%x mask:%x ignored_mask:%x "
			 "fhandle-bytes:%x fhandle-type:%x f_handle:%256s",
		   &wd, &ino, &sdev, &mask, &ign, &bytes, &type, hex) != 8) {
		pr_err("pid %d: inotify fd %d: cannot parse its fdinfo line '%.80s'\n", (int)pid,
		       fd, line);
		return -EINVAL;
	}
	r = handle_path(pid, sdev, bytes, type, hex, ino, path, sizeof(path));
	if (r == -EINVAL)
		pr_err("pid %d: inotify fd %d: bad file handle in '%.80s'\n", (int)pid, fd, line);
	if (r) {
		pr_err("pid %d: inotify fd %d: watch wd %u cannot be resolved to a path\n",
		       (int)pid, fd, wd);
		return r;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	inotify_wd_entry__init(w);
	w->wd = wd;
	w->mask = mask;
	w->ignored_mask = ign;
	w->ino = ino;
	w->dev = sdev;
	w->path = strdup(path);
	if (!w->path || add_wd(e, w)) {
		free(w->path);
		free(w);
		return -ENOMEM;
	}
	pr_debug("pid %d: inotify fd %d: wd %u mask %#x on %s\n", (int)pid, fd, wd, mask, path);
	return 0;
}

/* Bytes of events queued in the instance, through a copy of the fd. */
static int queued_bytes(pid_t pid, int fd, int *ret)
{
	_cleanup_close_ int copy = proc_fd_copy(pid, fd);

	if (copy < 0)
		return copy;
	if (ioctl(copy, FIONREAD, ret)) {
		int r = -errno;

		pr_perror("pid %d: inotify fd %d: cannot count its queued events", (int)pid, fd);
		return r;
	}
	return 0;
}

int dmp_inotify_fill(struct dump_ctx *ctx, int fd, const struct proc_fdinfo *info, FileEntry *fe)
{
	_cleanup_free_ char *text = NULL;
	InotifyEntry *e = calloc(1, sizeof(*e));
	int r, queued = 0;

	if (!e)
		return -ENOMEM;
	inotify_entry__init(e);
	fe->inotify = e;
	fe->type = FILE_TYPE__FILE_INOTIFY;
	e->flags = info->flags & ~O_CLOEXEC;
	r = read_text(ctx->pid, fd, &text);
	if (r)
		return r;
	for (const char *p = text; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, "inotify wd:", 11))
			continue;
		r = parse_wd(ctx->pid, fd, p, e);
		if (r)
			return r;
	}
	r = queued_bytes(ctx->pid, fd, &queued);
	if (r)
		return r;
	if (queued)
		pr_warn("pid %d: inotify fd %d: %d bytes of queued events are not kept: "
			"the restored instance starts empty\n", (int)ctx->pid, fd, queued);
	return 0;
}
