/*
 * epoll and inotify instances, restored by the helper. An epoll instance is
 * created empty with the other fds; its watches are added by
 * rst_epoll_watch_all() once every fd of the task is at its number (an
 * epoll may watch any kind, another epoll included). Adding a watch polls
 * its file, so the ready set is the one the files give now; an
 * edge-triggered watch of a ready file reports that edge once more, and a
 * disarmed one-shot watch of a file with no event at all comes back armed.
 * An instance shared by several processes of a tree gets its watches from
 * the first of them, the one the dump checked the watched fd numbers in.
 * An inotify instance gets its watches back in increasing wd order: the
 * kernel hands out wds cyclically (last + 1), so a gap in the dumped wds
 * is skipped with a placeholder watch on a memfd, added and removed, and
 * the IN_IGNORED events of the placeholders are read away before the task
 * runs. A wd that does not come back as dumped fails the restore.
 */
#include "rst-fdkinds.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* The most placeholder watches one gap of wds may need. */
#define MAX_WD_GAP (1U << 20)
#define INOTIFY_MASK_BITS (IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK)
/* fs/eventpoll.c: the flag bits of a watch, kept when a one-shot fires */
#define EP_PRIVATE_BITS (EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE)
/* What a disarmed one-shot watch is added with so that it fires at once. */
#define DISARM_EVENTS (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLERR | EPOLLHUP)

void rst_notify_valid(const FileEntry *f, const char **ret_bad)
{
	if (f->type == FILE_TYPE__FILE_EPOLL) {
		if (!f->epoll)
			*ret_bad = "no epoll message";
		return;
	}
	if (!f->inotify) {
		*ret_bad = "no inotify message";
		return;
	}
	for (size_t i = 0; i < f->inotify->n_wds; i++) {
		const InotifyWdEntry *w = f->inotify->wds[i];

		if (w->wd < 1 || w->wd > INT32_MAX || (i && w->wd <= f->inotify->wds[i - 1]->wd))
			*ret_bad = "inotify wds out of range or not increasing";
		else if (w->path[0] != '/')
			*ret_bad = "inotify watch path is not absolute";
	}
}

int rst_epoll_open(struct rst_child *c, const struct rst_fd *fd)
{
	const EpollEntry *e = fd->file->epoll;
	int nfd = epoll_create1(EPOLL_CLOEXEC);

	if (nfd < 0) {
		rst_child_fail(c, "fd %u: epoll_create1: %s", fd->fd, strerror(errno));
		return -errno;
	}
	if ((e->flags & O_NONBLOCK) && fcntl(nfd, F_SETFL, O_NONBLOCK) < 0) {
		rst_child_fail(c, "fd %u: epoll: F_SETFL O_NONBLOCK: %s", fd->fd, strerror(errno));
		close(nfd);
		return -errno;
	}
	return nfd;
}

/* A one-shot watch that fired: only the flag bits are left. */
static bool disarmed(uint32_t events)
{
	return (events & EPOLLONESHOT) && !(events & ~EP_PRIVATE_BITS);
}

static int add_one(struct rst_child *c, uint32_t efd, const EpollTfdEntry *t, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = t->data };

	if (epoll_ctl((int)efd, EPOLL_CTL_ADD, (int)t->tfd, &ev) < 0) {
		rst_child_fail(c, "epoll fd %u: cannot watch fd %u again (events %#x): %s", efd,
			       t->tfd, t->events, strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * Disarmed one-shot watches first, alone in the instance: ADD arms them (and
 * always adds EPOLLERR|EPOLLHUP), so they are added for every event and the
 * ones that fire at once are consumed here, which disarms them again.
 */
static int add_disarmed(struct rst_child *c, uint32_t efd, const EpollEntry *e)
{
	struct epoll_event evs[64];
	size_t n = 0;
	int r;

	for (size_t i = 0; i < e->n_tfds; i++) {
		if (!disarmed(e->tfds[i]->events))
			continue;
		r = add_one(c, efd, e->tfds[i], e->tfds[i]->events | DISARM_EVENTS);
		if (r)
			return r;
		n++;
	}
	while (n > 0) {
		r = epoll_wait((int)efd, evs, 64, 0);
		if (r < 0) {
			rst_child_fail(c, "epoll fd %u: epoll_wait: %s", efd, strerror(errno));
			return -errno;
		}
		if (r == 0)
			break;
		n -= (size_t)r < n ? (size_t)r : n;
	}
	return 0;
}

static int add_watches(struct rst_child *c, const struct rst_fd *fd)
{
	const EpollEntry *e = fd->file->epoll;
	int r = add_disarmed(c, fd->fd, e);

	for (size_t i = 0; i < e->n_tfds && !r; i++)
		if (!disarmed(e->tfds[i]->events))
			r = add_one(c, fd->fd, e->tfds[i], e->tfds[i]->events);
	return r;
}

/*
 * The first task of the plan with an fd on F adds its watches: it is the
 * process whose fd numbers the dump checked them against, and a description
 * shared by several processes is one instance (rst-shared.c) that gets its
 * watches once.
 */
static bool adds_watches(const struct rst_child *c, const FileEntry *f)
{
	const struct rst_plan *p = c->plan;

	for (size_t i = 0; i < p->nr_tasks; i++)
		for (size_t k = 0; k < p->tasks[i].nr_fds; k++)
			if (p->tasks[i].fds[k].file == f)
				return &p->tasks[i] == c->task;
	return false;
}

int rst_epoll_watch_all(struct rst_child *c)
{
	const struct rst_task *t = c->task;

	for (size_t i = 0; i < t->nr_fds; i++) {
		size_t j;
		int r;

		if (t->fds[i].file->type != FILE_TYPE__FILE_EPOLL)
			continue;
		/* Once per description: dups share the instance. */
		for (j = 0; j < i && t->fds[j].file != t->fds[i].file; j++)
			;
		if (j < i || !adds_watches(c, t->fds[i].file))
			continue;
		r = add_watches(c, &t->fds[i]);
		if (r)
			return r;
	}
	return 0;
}

/* A watch that only moves the wd counter: added on a memfd, removed at once. */
static int skip_wd(struct rst_child *c, int ifd, uint32_t fdnum, int want)
{
	static int holder = -1;
	char path[64];
	int wd;

	if (holder < 0) {
		/* Held above c->fd_base like the other objects, dropped with them. */
		int m = memfd_create("relive-inotify-placeholder", MFD_CLOEXEC);
		struct rst_fdobj *o;

		if (m < 0) {
			rst_child_fail(c, "fd %u: memfd for inotify placeholders: %s", fdnum,
				       strerror(errno));
			return -errno;
		}
		o = rst_fdobj_add(c, FILE_TYPE__FILE_MEMFD, 0, NULL, m, -1);
		if (!o)
			return -EIO;
		holder = o->fds[0];
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", holder);
	wd = inotify_add_watch(ifd, path, IN_ATTRIB);
	if (wd != want || inotify_rm_watch(ifd, wd) < 0) {
		rst_child_fail(c, "fd %u: inotify placeholder for wd %d gave wd %d: %s", fdnum,
			       want, wd, wd < 0 ? strerror(errno) : "unexpected wd");
		return -EIO;
	}
	return 0;
}

/* Read away the IN_IGNORED events of the placeholders. */
static int drain(struct rst_child *c, int ifd, uint32_t fdnum)
{
	char buf[4096];
	int n;

	while (ioctl(ifd, FIONREAD, &n) == 0 && n > 0) {
		if (read(ifd, buf, sizeof(buf)) <= 0) {
			rst_child_fail(c, "fd %u: reading inotify placeholder events: %s", fdnum,
				       strerror(errno));
			return -EIO;
		}
	}
	return 0;
}

int rst_inotify_open(struct rst_child *c, const struct rst_fd *fd)
{
	const InotifyEntry *e = fd->file->inotify;
	int nfd = inotify_init1(IN_CLOEXEC | (e->flags & IN_NONBLOCK));
	bool skipped = false;
	int next = 1, r = 0;

	if (nfd < 0) {
		rst_child_fail(c, "fd %u: inotify_init1: %s", fd->fd, strerror(errno));
		return -errno;
	}
	for (size_t i = 0; i < e->n_wds && !r; i++) {
		const InotifyWdEntry *w = e->wds[i];
		int wd;

		if (w->wd - (uint32_t)next > MAX_WD_GAP) {
			rst_child_fail(c, "fd %u: inotify wd %u is %u past the previous one: "
				       "too many placeholders", fd->fd, w->wd, w->wd - next);
			r = -E2BIG;
			break;
		}
		for (; next < (int)w->wd && !r; next++, skipped = true)
			r = skip_wd(c, nfd, fd->fd, next);
		if (r)
			break;
		wd = inotify_add_watch(nfd, w->path, (w->mask & INOTIFY_MASK_BITS) | IN_DONT_FOLLOW);
		if (wd != (int)w->wd) {
			rst_child_fail(c, "fd %u: inotify watch of %s came back as wd %d, not %u%s%s",
				       fd->fd, w->path, wd, w->wd, wd < 0 ? ": " : "",
				       wd < 0 ? strerror(errno) : "");
			r = -EIO;
			break;
		}
		next = wd + 1;
	}
	if (!r && skipped)
		r = drain(c, nfd, fd->fd);
	if (r) {
		close(nfd);
		return r;
	}
	return nfd;
}
