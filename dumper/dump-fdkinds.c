/*
 * Descriptors beyond regular files, read from a frozen process through
 * /proc: which kinds are handled (dmp_fdkind_handles), and the state of
 * eventfd (counter, semaphore mode), timerfd (clock, remaining time,
 * interval, unread ticks), signalfd (mask), memfd (name, content, seals)
 * and regular files unlinked while open (path, content). Contents are read
 * through /proc/PID/fd/N reopened, which leaves the process's own offsets
 * alone; they are kept in the entry of the first description of an inode.
 * Pipes and FIFOs are in dump-pipes.c.
 */
#include "dump-fdkinds.h"
#include "dump-inet.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MEMFD_PREFIX "/memfd:"
#define DELETED_SUFFIX " (deleted)"

static bool ends_deleted(const char *link)
{
	size_t n = strlen(link), k = strlen(DELETED_SUFFIX);

	return n > k && !strcmp(link + n - k, DELETED_SUFFIX);
}

bool dmp_fdkind_handles(const char *link, const struct stat *st)
{
	if (S_ISFIFO(st->st_mode) || dmp_tty_handles(st))
		return true;
	if (dmp_inet_handles(st) || dmp_unix_handles(link, st))
		return true;
	if (!strcmp(link, "anon_inode:[eventfd]") || !strcmp(link, "anon_inode:[timerfd]") ||
	    !strcmp(link, "anon_inode:[signalfd]") || !strcmp(link, "anon_inode:[eventpoll]") ||
	    !strcmp(link, "anon_inode:inotify"))
		return true;
	/* Unlinked with no other name left: its content is all there is. */
	return S_ISREG(st->st_mode) && link[0] == '/' && ends_deleted(link) && st->st_nlink == 0;
}

/* The value after "KEY:" on a line of fdinfo TEXT, or NULL. */
static const char *field(const char *text, const char *key)
{
	size_t k = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, key, k) && p[k] == ':')
			return p + k + 1;
	}
	return NULL;
}

static int read_fdinfo_text(pid_t pid, int fd, char **ret)
{
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, fd);
	r = util_read_file(AT_FDCWD, path, ret, NULL);
	if (r)
		pr_err("cannot read %s: %s\n", path, strerror(-r));
	return r;
}

static int bad_fdinfo(pid_t pid, int fd, const char *key)
{
	pr_err("pid %d: fd %d: cannot parse '%s' in its fdinfo\n", (int)pid, fd, key);
	return -EINVAL;
}

static int fill_eventfd(pid_t pid, int fd, const char *text, uint32_t flags, FileEntry *fe)
{
	EventfdEntry *e = calloc(1, sizeof(*e));
	const char *v = field(text, "eventfd-count"), *sem = field(text, "eventfd-semaphore");
	char *end;

	if (!e)
		return -ENOMEM;
	eventfd_entry__init(e);
	fe->eventfd = e;
	fe->type = FILE_TYPE__FILE_EVENTFD;
	if (!v)
		return bad_fdinfo(pid, fd, "eventfd-count");
	e->count = strtoull(v, &end, 16); /* printed as %16llx */
	if (end == v)
		return bad_fdinfo(pid, fd, "eventfd-count");
	e->flags = flags & O_NONBLOCK;
	if (sem && strtoul(sem, NULL, 10))
		e->flags |= 1; /* EFD_SEMAPHORE */
	return 0;
}

static int fill_timerfd(pid_t pid, int fd, const char *text, uint32_t flags, FileEntry *fe)
{
	TimerfdEntry *t = calloc(1, sizeof(*t));
	const char *clk = field(text, "clockid"), *ticks = field(text, "ticks");
	const char *sf = field(text, "settime flags"), *val = field(text, "it_value");
	const char *itv = field(text, "it_interval");
	unsigned long long vs, vn, is, in;

	if (!t)
		return -ENOMEM;
	timerfd_entry__init(t);
	fe->timerfd = t;
	fe->type = FILE_TYPE__FILE_TIMERFD;
	if (!clk || !ticks || !sf || !val || !itv)
		return bad_fdinfo(pid, fd, "clockid/ticks/settime flags/it_value/it_interval");
	if (sscanf(val, " (%llu, %llu)", &vs, &vn) != 2)
		return bad_fdinfo(pid, fd, "it_value");
	if (sscanf(itv, " (%llu, %llu)", &is, &in) != 2)
		return bad_fdinfo(pid, fd, "it_interval");
	t->clockid = (uint32_t)strtoul(clk, NULL, 10);
	t->ticks = strtoull(ticks, NULL, 10);
	t->settime_flags = (uint32_t)strtoul(sf, NULL, 8);
	t->value_ns = vs * 1000000000ULL + vn;
	t->interval_ns = is * 1000000000ULL + in;
	t->flags = flags & O_NONBLOCK;
	/* An absolute timer keeps its deadline however long the images wait. */
	if ((t->settime_flags & 1 /* TFD_TIMER_ABSTIME */) && t->value_ns) {
		struct timespec now;

		if (clock_gettime((clockid_t)t->clockid, &now)) {
			int r = -errno;

			pr_perror("pid %d: fd %d: clock_gettime(%u)", (int)pid, fd, t->clockid);
			return r;
		}
		t->has_deadline_ns = true;
		t->deadline_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec +
				 t->value_ns;
	}
	return 0;
}

static int fill_signalfd(pid_t pid, int fd, const char *text, uint32_t flags, FileEntry *fe)
{
	SignalfdEntry *s = calloc(1, sizeof(*s));
	const char *m = field(text, "sigmask");
	char *end;

	if (!s)
		return -ENOMEM;
	signalfd_entry__init(s);
	fe->signalfd = s;
	fe->type = FILE_TYPE__FILE_SIGNALFD;
	if (!m)
		return bad_fdinfo(pid, fd, "sigmask");
	s->sigmask = strtoull(m, &end, 16);
	if (end == m)
		return bad_fdinfo(pid, fd, "sigmask");
	s->flags = flags & O_NONBLOCK;
	return 0;
}

static bool anon_known(const struct dump_ctx *ctx, uint64_t ino, const char *name)
{
	for (size_t i = 0; i < ctx->files.nr; i++) {
		const FileEntry *f = ctx->files.entries[i];

		if (f->anon && f->anon->ino == ino && !strcmp(f->anon->name, name))
			return true;
	}
	return false;
}

/* The whole content of the file open as fd of pid, through a reopen. */
static int read_content(pid_t pid, int fd, const char *what, uint64_t size, uint8_t **ret,
			uint32_t *ret_seals)
{
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int src = -1;
	char path[64];
	int seals;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	src = open(path, O_RDONLY | O_CLOEXEC);
	if (src < 0) {
		int r = -errno;

		pr_perror("%s: cannot reopen it to read its content", what);
		return r;
	}
	seals = fcntl(src, F_GET_SEALS);
	*ret_seals = seals > 0 ? (uint32_t)seals : 0;
	if (!size)
		return 0;
	buf = malloc(size);
	if (!buf)
		return -ENOMEM;
	for (uint64_t off = 0; off < size;) {
		ssize_t n = pread(src, buf + off, size - off, (off_t)off);

		if (n <= 0) {
			int r = n < 0 ? -errno : -EIO;

			pr_err("%s: read of its content stopped at %" PRIu64 " of %" PRIu64
			       " bytes: %s\n", what, off, size, n < 0 ? strerror(errno) : "EOF");
			return r;
		}
		off += (uint64_t)n;
	}
	*ret = TAKE_PTR(buf);
	return 0;
}

static int fill_anon(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		     const struct proc_fdinfo *info, FileEntry *fe)
{
	AnonFileEntry *a = calloc(1, sizeof(*a));
	bool memfd = !strncmp(link, MEMFD_PREFIX, strlen(MEMFD_PREFIX));
	char what[4200];
	uint32_t seals = 0;
	size_t n;
	int r;

	if (!a)
		return -ENOMEM;
	anon_file_entry__init(a);
	fe->anon = a;
	fe->type = memfd ? FILE_TYPE__FILE_MEMFD : FILE_TYPE__FILE_UNLINKED;
	snprintf(what, sizeof(what), "pid %d: fd %d (%s)", (int)ctx->pid, fd, link);
	/* "/memfd:NAME (deleted)" -> NAME; "/PATH (deleted)" -> /PATH */
	if (memfd)
		link += strlen(MEMFD_PREFIX);
	n = strlen(link) - strlen(DELETED_SUFFIX);
	a->name = strndup(link, n);
	if (!a->name)
		return -ENOMEM;
	a->flags = info->flags & ~(O_CLOEXEC | O_TMPFILE); /* O_TMPFILE holds O_DIRECTORY */
	a->pos = info->pos;
	a->mode = st->st_mode & 07777;
	a->size = (uint64_t)st->st_size;
	a->ino = st->st_ino;
	if (anon_known(ctx, a->ino, a->name))
		return 0;
	if (a->size > DMP_ANON_MAX_DATA) {
		pr_err("%s: %" PRIu64 " bytes: content above %u bytes is not supported\n", what,
		       a->size, DMP_ANON_MAX_DATA);
		return -ENOTSUP;
	}
	r = read_content(ctx->pid, fd, what, a->size, &a->data.data, &seals);
	if (r)
		return r;
	a->data.len = a->size;
	a->has_data = a->size > 0;
	if (memfd) {
		a->has_seals = true;
		a->seals = seals;
	}
	return 0;
}

int dmp_fdkind_fill(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		    const struct proc_fdinfo *info, FileEntry *fe)
{
	_cleanup_free_ char *text = NULL;
	int r;

	if (S_ISFIFO(st->st_mode))
		return dmp_pipe_fill(ctx, fd, link, st, info, fe);
	if (dmp_tty_handles(st))
		return dmp_tty_fill(ctx, fd, link, st, info, fe);
	if (dmp_inet_handles(st))
		return dmp_inet_fill(ctx, fd, st, info, fe);
	if (S_ISSOCK(st->st_mode))
		return dmp_unix_fill(ctx, fd, link, st, info, fe);
	if (link[0] == '/')
		return fill_anon(ctx, fd, link, st, info, fe);
	if (!strcmp(link, "anon_inode:[eventpoll]"))
		return dmp_epoll_fill(ctx, fd, info, fe);
	if (!strcmp(link, "anon_inode:inotify"))
		return dmp_inotify_fill(ctx, fd, info, fe);
	r = read_fdinfo_text(ctx->pid, fd, &text);
	if (r)
		return r;
	if (!strcmp(link, "anon_inode:[eventfd]"))
		return fill_eventfd(ctx->pid, fd, text, info->flags, fe);
	if (!strcmp(link, "anon_inode:[timerfd]"))
		return fill_timerfd(ctx->pid, fd, text, info->flags, fe);
	return fill_signalfd(ctx->pid, fd, text, info->flags, fe);
}
