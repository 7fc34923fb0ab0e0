/*
 * File locks at restore (file-locks.img, dumped with --file-locks). The plan
 * reads and checks them: each names a process of the tree and one of its
 * fds of the recorded file. The helper takes each lock of its process once
 * every fd is in place and the others are closed: POSIX locks belong to the
 * process and die with any close of the file, so they are taken by the very
 * process that becomes the restored one, through its own fd. flock and OFD
 * locks belong to the open file description. A lock somebody else took
 * since the dump fails the restore, naming the holder.
 */
#include "rst.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *lock_bad(const struct rst_plan *p, const FileLockEntry *l)
{
	for (size_t i = 0; i < p->nr_tasks; i++) {
		const struct rst_task *t = &p->tasks[i];

		if (t->pid != l->pid)
			continue;
		if (t->zombie)
			return "held by a zombie";
		for (size_t k = 0; k < t->nr_fds; k++)
			if (t->fds[k].fd == l->fd)
				return t->fds[k].file->id == l->file_id ? NULL
									 : "fd holds another file";
		return "no such fd in the process";
	}
	return "no such process in the tree";
}

int rst_locks_load(int dirfd, struct rst_plan *p)
{
	ProtobufCMessage *m;
	struct img img;
	int r;

	r = img_open(&img, dirfd, IMG_FILE_LOCKS, 0, IMG_READ);
	if (r == -ENOENT)
		return 0; /* dumped before locks were: none */
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	while ((r = img_read(&img, &m)) == 1) {
		FileLockEntry *l = (FileLockEntry *)m, **n;
		const char *bad = lock_bad(p, l);

		if (!bad && (l->type != F_RDLCK && l->type != F_WRLCK))
			bad = "type is neither read nor write";
		if (!bad && (l->start > INT64_MAX || l->len > INT64_MAX - l->start))
			bad = "range out of bounds";
		if (bad) {
			pr_err("file-locks.img: lock of pid %u fd %u (kind %d): %s\n", l->pid,
			       l->fd, (int)l->kind, bad);
			img_msg_free(m);
			r = -EINVAL;
			break;
		}
		n = realloc(p->locks, (p->nr_locks + 1) * sizeof(*n));
		if (!n) {
			img_msg_free(m);
			r = -ENOMEM;
			break;
		}
		p->locks = n;
		p->locks[p->nr_locks++] = l;
	}
	if (r < 0 && img.err[0])
		pr_err("%s\n", img.err);
	img_close(&img);
	return r < 0 ? r : 0;
}

void rst_locks_free(struct rst_plan *p)
{
	for (size_t i = 0; i < p->nr_locks; i++)
		img_msg_free(&p->locks[i]->base);
	free(p->locks);
	p->locks = NULL;
	p->nr_locks = 0;
}

static bool same_inode(int a, int b)
{
	struct stat sa, sb;

	return a >= 0 && b >= 0 && !fstat(a, &sa) && !fstat(b, &sb) && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* The blob closes the fds it maps from: a close of the file drops POSIX locks. */
static int check_kept(struct rst_child *c, const FileLockEntry *l)
{
	bool hit = same_inode((int)l->fd, c->exe_fd) || same_inode((int)l->fd, c->pages_fd);

	for (size_t i = 0; !hit && i < c->task->nr_vmas; i++)
		hit = same_inode((int)l->fd, c->map_fds[i]);
	if (!hit)
		return 0;
	rst_child_fail(c, "fd %u: a POSIX lock on a file the process also maps or executes is "
		       "not supported (the restorer's close of its mapping fd would drop it)",
		       l->fd);
	return -ENOTSUP;
}

static const char *kind_name(FileLockKind k)
{
	return k == FILE_LOCK_KIND__LOCK_FLOCK ? "flock" :
	       k == FILE_LOCK_KIND__LOCK_POSIX ? "POSIX" : "OFD";
}

static int take_one(struct rst_child *c, const FileLockEntry *l)
{
	struct flock fl = { .l_type = (short)l->type, .l_whence = SEEK_SET,
			    .l_start = (off_t)l->start, .l_len = (off_t)l->len };
	int fd = (int)l->fd, ret;

	switch (l->kind) {
	case FILE_LOCK_KIND__LOCK_FLOCK:
		ret = flock(fd, (l->type == F_WRLCK ? LOCK_EX : LOCK_SH) | LOCK_NB);
		break;
	case FILE_LOCK_KIND__LOCK_POSIX:
		ret = check_kept(c, l);
		if (ret)
			return ret;
		ret = fcntl(fd, F_SETLK, &fl);
		break;
	case FILE_LOCK_KIND__LOCK_OFD:
		ret = fcntl(fd, F_OFD_SETLK, &fl);
		break;
	default:
		rst_child_fail(c, "fd %u: lock kind %d is not supported", l->fd, (int)l->kind);
		return -ENOTSUP;
	}
	if (!ret)
		return 0;
	ret = -errno;
	if (ret == -EAGAIN || ret == -EACCES) {
		struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
				   .l_start = (off_t)l->start, .l_len = (off_t)l->len };

		if (l->kind == FILE_LOCK_KIND__LOCK_FLOCK || fcntl(fd, F_GETLK, &q))
			q.l_pid = 0;
		rst_child_fail(c, "fd %u: the %s %s lock at %" PRIu64 " + %" PRIu64
			       " is held by another process since the dump (pid %d; 0: unknown, "
			       "-1: an OFD lock)",
			       l->fd, kind_name(l->kind), l->type == F_WRLCK ? "write" : "read",
			       l->start, l->len, (int)q.l_pid);
		return -EBUSY;
	}
	rst_child_fail(c, "fd %u: cannot take its %s lock at %" PRIu64 " + %" PRIu64 ": %s",
		       l->fd, kind_name(l->kind), l->start, l->len, strerror(-ret));
	return ret;
}

int rst_locks_take(struct rst_child *c)
{
	const struct rst_plan *p = c->plan;

	for (size_t i = 0; i < p->nr_locks; i++) {
		int r;

		if (p->locks[i]->pid != c->task->pid)
			continue;
		r = take_one(c, p->locks[i]);
		if (r)
			return r;
	}
	return 0;
}
