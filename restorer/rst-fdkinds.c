/*
 * Descriptors other than regular files, restored by the helper: eventfd
 * (counter written back), timerfd (rearmed with the time that was left, or
 * at the same absolute time, plus its unread ticks), signalfd (mask), memfd
 * (content, size, then seals) and unlinked regular files (recreated at their
 * path, filled, unlinked; in the same directory with O_TMPFILE if the name
 * was taken since). Pipes and FIFOs are in rst-pipes.c. Also the table of
 * objects shared by several descriptions: the helper is a process of its
 * own, so the table is simply its memory, released when it execs the blob.
 */
#include "rst-fdkinds.h"
#include "rst-inet.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

#define MAX_PIPE_SIZE (1U << 30)
#define MAX_ANON_SIZE (1ULL << 30)

static struct rst_fdobj *objs;
static size_t nr_objs;

struct rst_fdobj *rst_fdobj_find(uint32_t type, uint64_t id, const char *name)
{
	for (size_t i = 0; i < nr_objs; i++) {
		struct rst_fdobj *o = &objs[i];

		if (o->type == type && o->id == id &&
		    (!name || !o->name || !strcmp(name, o->name)))
			return o;
	}
	return NULL;
}

/* Move FD to c->fd_base or above, where no task fd goes. */
static int hold(struct rst_child *c, int fd)
{
	int h;

	if (fd < 0 || fd >= c->fd_base)
		return fd;
	h = fcntl(fd, F_DUPFD_CLOEXEC, c->fd_base);
	if (h < 0) {
		rst_child_fail(c, "cannot move fd %d above %d: %s", fd, c->fd_base,
			       strerror(errno));
		close(fd);
		return -errno;
	}
	close(fd);
	return h;
}

struct rst_fdobj *rst_fdobj_add(struct rst_child *c, uint32_t type, uint64_t id,
				const char *name, int fd0, int fd1)
{
	struct rst_fdobj *n = realloc(objs, (nr_objs + 1) * sizeof(*n)), *o;

	if (!n) {
		rst_child_fail(c, "out of memory");
		close(fd0);
		if (fd1 >= 0)
			close(fd1);
		return NULL;
	}
	objs = n;
	fd0 = hold(c, fd0);
	fd1 = hold(c, fd1);
	if (fd0 < 0 || (fd1 < 0 && fd1 != -1)) {
		if (fd0 >= 0)
			close(fd0);
		if (fd1 >= 0)
			close(fd1);
		return NULL;
	}
	o = &objs[nr_objs++];
	*o = (struct rst_fdobj){ .type = type, .id = id, .name = name, .fds = { fd0, fd1 } };
	return o;
}

int rst_fdobj_reopen(struct rst_child *c, int holder, int flags, const char *what)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", holder);
	fd = open(path, (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC)) | O_CLOEXEC);
	if (fd < 0) {
		rst_child_fail(c, "%s: cannot reopen %s: %s", what, path, strerror(errno));
		return -errno;
	}
	return fd;
}

int rst_fdkind_valid(const FileEntry *f, const char *img, const char *what)
{
	const PipeEntry *pe = f->pipe;
	const AnonFileEntry *a = f->anon;
	const char *bad = NULL;

	switch (f->type) {
	case FILE_TYPE__FILE_PIPE:
	case FILE_TYPE__FILE_FIFO:
		if (!pe)
			bad = "no pipe message";
		else if (pe->size < 4096 || pe->size > MAX_PIPE_SIZE)
			bad = "pipe size out of range";
		else if (pe->has_data && pe->data.len > pe->size)
			bad = "more bytes in flight than the pipe holds";
		else if ((f->type == FILE_TYPE__FILE_FIFO) != (pe->path != NULL))
			bad = "a FIFO needs a path, a pipe has none";
		else if (pe->path && pe->path[0] != '/')
			bad = "FIFO path is not absolute";
		break;
	case FILE_TYPE__FILE_EVENTFD:
		if (!f->eventfd || f->eventfd->count == UINT64_MAX)
			bad = "no eventfd message, or a counter out of range";
		break;
	case FILE_TYPE__FILE_TIMERFD:
		if (!f->timerfd)
			bad = "no timerfd message";
		break;
	case FILE_TYPE__FILE_SIGNALFD:
		if (!f->signalfd)
			bad = "no signalfd message";
		break;
	case FILE_TYPE__FILE_MEMFD:
	case FILE_TYPE__FILE_UNLINKED:
		if (!a)
			bad = "no anon_file message";
		else if (a->size > MAX_ANON_SIZE || (a->has_data && a->data.len != a->size))
			bad = "content does not match the size";
		else if (f->type == FILE_TYPE__FILE_UNLINKED && a->name[0] != '/')
			bad = "unlinked file path is not absolute";
		break;
	case FILE_TYPE__FILE_EPOLL:
	case FILE_TYPE__FILE_INOTIFY:
		rst_notify_valid(f, &bad);
		break;
	case FILE_TYPE__FILE_INET_SK:
		bad = rst_inet_bad(f);
		break;
	case FILE_TYPE__FILE_UNIX_SK:
		bad = rst_unix_bad(f);
		break;
	case FILE_TYPE__FILE_TTY:
		bad = rst_tty_bad(f);
		break;
	default:
		pr_err("%s: %s is a file of type %d: not supported yet\n", img, what,
		       (int)f->type);
		return -ENOTSUP;
	}
	if (bad) {
		pr_err("%s: %s (files.img id %u, type %d): %s\n", img, what, f->id, (int)f->type,
		       bad);
		return -EINVAL;
	}
	return 0;
}

static int open_eventfd(struct rst_child *c, const struct rst_fd *fd)
{
	const EventfdEntry *e = fd->file->eventfd;
	int flags = EFD_CLOEXEC | (e->flags & (EFD_SEMAPHORE | EFD_NONBLOCK));
	int nfd = eventfd(0, flags);

	if (nfd < 0) {
		rst_child_fail(c, "fd %u: eventfd: %s", fd->fd, strerror(errno));
		return -errno;
	}
	if (e->count && write(nfd, &e->count, sizeof(e->count)) != sizeof(e->count)) {
		rst_child_fail(c, "fd %u: cannot set the eventfd counter to %" PRIu64 ": %s",
			       fd->fd, e->count, strerror(errno));
		close(nfd);
		return -EIO;
	}
	return nfd;
}

static struct timespec ns_ts(uint64_t ns)
{
	return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000ULL),
				  .tv_nsec = (long)(ns % 1000000000ULL) };
}

static int open_timerfd(struct rst_child *c, const struct rst_fd *fd)
{
	const TimerfdEntry *t = fd->file->timerfd;
	struct itimerspec its = { .it_interval = ns_ts(t->interval_ns) };
	uint64_t value = t->value_ns;
	int nfd, sflags = 0;

	nfd = timerfd_create((clockid_t)t->clockid, TFD_CLOEXEC | (t->flags & TFD_NONBLOCK));
	if (nfd < 0) {
		rst_child_fail(c, "fd %u: timerfd_create on clock %u: %s", fd->fd, t->clockid,
			       strerror(errno));
		return -errno;
	}
	/* An expiry due at the dump is due now: zero would disarm it. */
	if (!value && t->interval_ns)
		value = 1;
	if (value && (t->settime_flags & TFD_TIMER_ABSTIME) && t->has_deadline_ns) {
		value = t->deadline_ns;
		sflags = (int)t->settime_flags;
	} else if (value && (t->settime_flags & TFD_TIMER_ABSTIME)) {
		struct timespec now;

		if (clock_gettime((clockid_t)t->clockid, &now)) {
			rst_child_fail(c, "fd %u: clock_gettime(%u): %s", fd->fd, t->clockid,
				       strerror(errno));
			close(nfd);
			return -errno;
		}
		value += (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
		sflags = (int)t->settime_flags;
	}
	its.it_value = ns_ts(value);
	if (value && timerfd_settime(nfd, sflags, &its, NULL)) {
		rst_child_fail(c, "fd %u: timerfd_settime: %s", fd->fd, strerror(errno));
		close(nfd);
		return -errno;
	}
	if (t->ticks && ioctl(nfd, TFD_IOC_SET_TICKS, &t->ticks)) {
		rst_child_fail(c, "fd %u: cannot set %" PRIu64 " unread timerfd ticks: %s",
			       fd->fd, t->ticks, strerror(errno));
		close(nfd);
		return -errno;
	}
	return nfd;
}

static int open_signalfd(struct rst_child *c, const struct rst_fd *fd)
{
	const SignalfdEntry *s = fd->file->signalfd;
	sigset_t set;
	int nfd;

	sigemptyset(&set);
	for (int sig = 1; sig <= 64; sig++)
		if ((s->sigmask >> (sig - 1)) & 1)
			sigaddset(&set, sig);
	nfd = signalfd(-1, &set, SFD_CLOEXEC | (s->flags & SFD_NONBLOCK));
	if (nfd < 0) {
		rst_child_fail(c, "fd %u: signalfd with mask %#" PRIx64 ": %s", fd->fd,
			       s->sigmask, strerror(errno));
		return -errno;
	}
	return nfd;
}

/* The content of inode (TYPE, INO, NAME): in one entry, the first dumped. */
static const AnonFileEntry *anon_data(const struct rst_plan *p, uint32_t type,
				      const AnonFileEntry *a)
{
	for (size_t i = 0; i < p->nr_files; i++) {
		const FileEntry *f = p->files[i];

		if (f->type == type && f->anon && f->anon->ino == a->ino && f->anon->has_data &&
		    !strcmp(f->anon->name, a->name))
			return f->anon;
	}
	return NULL;
}

/* A new unlinked file at PATH (or, when the name is taken, in its directory). */
static int create_unlinked(struct rst_child *c, const struct rst_fd *fd, const char *path,
			   mode_t mode)
{
	char dir[PATH_MAX];
	int nfd;

	nfd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (nfd >= 0) {
		if (unlink(path)) {
			rst_child_fail(c, "fd %u: cannot unlink %s: %s", fd->fd, path,
				       strerror(errno));
			close(nfd);
			return -errno;
		}
		return nfd;
	}
	if (errno != EEXIST) {
		rst_child_fail(c, "fd %u: cannot recreate the unlinked file %s: %s", fd->fd, path,
			       strerror(errno));
		return -errno;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	nfd = open(dirname(dir), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
	if (nfd < 0) {
		rst_child_fail(c, "fd %u: %s is taken and O_TMPFILE in its directory failed: %s",
			       fd->fd, path, strerror(errno));
		return -errno;
	}
	return nfd;
}

static struct rst_fdobj *make_anon(struct rst_child *c, const struct rst_fd *fd)
{
	const FileEntry *f = fd->file;
	const AnonFileEntry *a = f->anon, *d = anon_data(c->plan, f->type, a);
	int h;

	if (f->type == FILE_TYPE__FILE_MEMFD)
		h = memfd_create(a->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	else
		h = create_unlinked(c, fd, a->name, (mode_t)a->mode);
	if (h < 0) {
		if (f->type == FILE_TYPE__FILE_MEMFD)
			rst_child_fail(c, "fd %u: memfd_create %s: %s", fd->fd, a->name,
				       strerror(errno));
		return NULL;
	}
	if ((d && util_write_full(h, d->data.data, d->data.len)) ||
	    ftruncate(h, (off_t)a->size) || fchmod(h, (mode_t)a->mode)) {
		rst_child_fail(c, "fd %u: cannot fill %s with its %" PRIu64 " bytes: %s", fd->fd,
			       a->name, a->size, strerror(errno));
		close(h);
		return NULL;
	}
	if (a->has_seals && a->seals && fcntl(h, F_ADD_SEALS, (int)a->seals)) {
		rst_child_fail(c, "fd %u: memfd %s: F_ADD_SEALS %#x: %s", fd->fd, a->name,
			       a->seals, strerror(errno));
		close(h);
		return NULL;
	}
	return rst_fdobj_add(c, f->type, a->ino, a->name, h, -1);
}

static int open_anon(struct rst_child *c, const struct rst_fd *fd)
{
	const AnonFileEntry *a = fd->file->anon;
	struct rst_fdobj *o = rst_fdobj_find(fd->file->type, a->ino, a->name);
	char what[64];
	int nfd;

	if (!o)
		o = make_anon(c, fd);
	if (!o)
		return -EIO;
	snprintf(what, sizeof(what), "fd %u (%s)", fd->fd, a->name);
	/* O_TMPFILE (it holds O_DIRECTORY) only means something at creation. */
	nfd = rst_fdobj_reopen(c, o->fds[0], (int)(a->flags & ~(uint32_t)O_TMPFILE), what);
	if (nfd < 0)
		return nfd;
	if (lseek(nfd, (off_t)a->pos, SEEK_SET) < 0) {
		rst_child_fail(c, "%s: cannot seek to %" PRIu64 ": %s", what, a->pos,
			       strerror(errno));
		close(nfd);
		return -errno;
	}
	return nfd;
}

int rst_fdkind_open(struct rst_child *c, const struct rst_fd *fd)
{
	int nfd;

	switch (fd->file->type) {
	case FILE_TYPE__FILE_PIPE:
	case FILE_TYPE__FILE_FIFO:
		nfd = rst_pipe_open(c, fd);
		break;
	case FILE_TYPE__FILE_EVENTFD:
		nfd = open_eventfd(c, fd);
		break;
	case FILE_TYPE__FILE_TIMERFD:
		nfd = open_timerfd(c, fd);
		break;
	case FILE_TYPE__FILE_SIGNALFD:
		nfd = open_signalfd(c, fd);
		break;
	case FILE_TYPE__FILE_MEMFD:
	case FILE_TYPE__FILE_UNLINKED:
		nfd = open_anon(c, fd);
		break;
	case FILE_TYPE__FILE_EPOLL:
		nfd = rst_epoll_open(c, fd);
		break;
	case FILE_TYPE__FILE_INOTIFY:
		nfd = rst_inotify_open(c, fd);
		break;
	case FILE_TYPE__FILE_INET_SK:
		nfd = rst_inet_open(c, fd);
		break;
	case FILE_TYPE__FILE_UNIX_SK:
		nfd = rst_unix_open(c, fd);
		break;
	case FILE_TYPE__FILE_TTY:
		nfd = rst_tty_open(c, fd);
		break;
	default:
		rst_child_fail(c, "fd %u: file type %d is not supported", fd->fd,
			       (int)fd->file->type);
		return -ENOTSUP;
	}
	return nfd;
}
