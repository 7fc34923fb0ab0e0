/*
 * Pipes and FIFOs in the helper. A pipe is created once, at its first end,
 * sized as dumped, with the bytes that were in flight written back; its two
 * ends are held until every task fd is in place. A task fd gets the end's
 * own description the first time, a reopen through /proc/self/fd after that
 * (the dump saw separate descriptions). A FIFO is opened by path, first
 * O_RDWR as the holder (never blocks, and keeps the bytes written back
 * alive), then once per description with its dumped access mode.
 */
#include "rst-fdkinds.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The bytes in flight of pipe ID: in one entry of the plan, the first dumped. */
static const PipeEntry *pipe_data(const struct rst_plan *p, uint32_t type, uint64_t id)
{
	for (size_t i = 0; i < p->nr_files; i++) {
		const FileEntry *f = p->files[i];

		if (f->type == type && f->pipe && f->pipe->pipe_id == id && f->pipe->has_data)
			return f->pipe;
	}
	return NULL;
}

/* Size PIPE_FD's pipe and write back the data. */
static int pipe_fill(struct rst_child *c, const struct rst_fd *fd, int pipe_fd, int wr_fd)
{
	const PipeEntry *pe = fd->file->pipe;
	const PipeEntry *d = pipe_data(c->plan, fd->file->type, pe->pipe_id);

	if (fcntl(pipe_fd, F_SETPIPE_SZ, (int)pe->size) < 0) {
		rst_child_fail(c, "fd %u: cannot size the pipe to %u bytes: %s", fd->fd, pe->size,
			       strerror(errno));
		return -errno;
	}
	if (d && util_write_full(wr_fd, d->data.data, d->data.len)) {
		rst_child_fail(c, "fd %u: cannot write back the %zu bytes in flight: %s", fd->fd,
			       d->data.len, strerror(errno));
		return -EIO;
	}
	return 0;
}

static struct rst_fdobj *make_pipe(struct rst_child *c, const struct rst_fd *fd)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		rst_child_fail(c, "fd %u: pipe2: %s", fd->fd, strerror(errno));
		return NULL;
	}
	if (pipe_fill(c, fd, p[1], p[1])) {
		close(p[0]);
		close(p[1]);
		return NULL;
	}
	return rst_fdobj_add(c, FILE_TYPE__FILE_PIPE, fd->file->pipe->pipe_id, NULL, p[0], p[1]);
}

static struct rst_fdobj *make_fifo(struct rst_child *c, const struct rst_fd *fd)
{
	const PipeEntry *pe = fd->file->pipe;
	struct stat st;
	int h;

	h = open(pe->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (h < 0) {
		rst_child_fail(c, "fd %u: cannot open the FIFO %s: %s", fd->fd, pe->path,
			       strerror(errno));
		return NULL;
	}
	if (fstat(h, &st) || !S_ISFIFO(st.st_mode)) {
		rst_child_fail(c, "fd %u: %s is not a FIFO any more", fd->fd, pe->path);
		close(h);
		return NULL;
	}
	if (pipe_fill(c, fd, h, h)) {
		close(h);
		return NULL;
	}
	return rst_fdobj_add(c, FILE_TYPE__FILE_FIFO, pe->pipe_id, pe->path, h, -1);
}

int rst_pipe_open(struct rst_child *c, const struct rst_fd *fd)
{
	const PipeEntry *pe = fd->file->pipe;
	uint32_t type = fd->file->type;
	int acc = (int)pe->flags & O_ACCMODE, nfd, end;
	struct rst_fdobj *o;
	char what[64];

	o = rst_fdobj_find(type, pe->pipe_id, type == FILE_TYPE__FILE_FIFO ? pe->path : NULL);
	if (!o)
		o = type == FILE_TYPE__FILE_FIFO ? make_fifo(c, fd) : make_pipe(c, fd);
	if (!o)
		return -EIO;
	snprintf(what, sizeof(what), "fd %u", fd->fd);
	end = acc == O_WRONLY ? 1 : 0;
	if (type == FILE_TYPE__FILE_FIFO) {
		nfd = open(pe->path, acc | O_NONBLOCK | O_CLOEXEC);
		if (nfd < 0) {
			rst_child_fail(c, "fd %u: cannot open the FIFO %s: %s", fd->fd, pe->path,
				       strerror(errno));
			return -errno;
		}
	} else if (acc != O_RDWR && !o->used[end]) {
		nfd = fcntl(o->fds[end], F_DUPFD_CLOEXEC, 0);
		if (nfd < 0) {
			rst_child_fail(c, "fd %u: dup of the pipe end: %s", fd->fd,
				       strerror(errno));
			return -errno;
		}
		o->used[end] = true;
	} else {
		nfd = rst_fdobj_reopen(c, o->fds[0], acc, what);
		if (nfd < 0)
			return nfd;
	}
	if (fcntl(nfd, F_SETFL, (int)pe->flags & (O_NONBLOCK | O_DIRECT | O_APPEND)) < 0) {
		rst_child_fail(c, "fd %u: F_SETFL %#o: %s", fd->fd, pe->flags, strerror(errno));
		close(nfd);
		return -errno;
	}
	return nfd;
}
