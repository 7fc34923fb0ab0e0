/*
 * Pipes and FIFOs of a frozen process. The ends of one pipe share a pipe id
 * (the pipe inode), so the restore can rebuild one pipe for both. The bytes
 * in flight are copied without being consumed: the pipe is reopened through
 * /proc/PID/fd/N (a new reader, never blocking), FIONREAD says how much it
 * holds, and tee(2) duplicates all of it into a pipe of ours at least as
 * large, from which it is read. They are kept in the first entry of a pipe.
 */
#include "dump-fdkinds.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* An entry of ctx->files already holds pipe ID. */
static bool pipe_known(const struct dump_ctx *ctx, uint64_t id)
{
	for (size_t i = 0; i < ctx->files.nr; i++) {
		const FileEntry *f = ctx->files.entries[i];

		if (f->pipe && f->pipe->pipe_id == id)
			return true;
	}
	return false;
}

/* Copy the bytes in SRC (a pipe of SIZE bytes) without consuming them. */
static int pipe_peek(int src, uint32_t size, const char *what, uint8_t **ret_data,
		     size_t *ret_len)
{
	_cleanup_close_ int rd = -1, wr = -1;
	_cleanup_free_ uint8_t *buf = NULL;
	int p[2], avail = 0;
	ssize_t n;

	*ret_data = NULL;
	*ret_len = 0;
	if (ioctl(src, FIONREAD, &avail) < 0) {
		int r = -errno;

		pr_perror("%s: FIONREAD", what);
		return r;
	}
	if (avail <= 0)
		return 0;
	if ((uint32_t)avail > size) {
		pr_err("%s: holds %d bytes, more than its size %u\n", what, avail, size);
		return -EIO;
	}
	if ((uint32_t)avail > DMP_ANON_MAX_DATA) {
		pr_err("%s: %d bytes in flight: more than %u is not supported\n", what, avail,
		       DMP_ANON_MAX_DATA);
		return -ENOTSUP;
	}
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK)) {
		int r = -errno;

		pr_perror("%s: cannot create a pipe to copy its data", what);
		return r;
	}
	rd = p[0];
	wr = p[1];
	if (fcntl(wr, F_SETPIPE_SZ, (int)size) < (int)size) {
		int r = -errno;

		pr_perror("%s: cannot size our copy pipe to %u bytes", what, size);
		return r;
	}
	n = tee(src, wr, (size_t)avail, SPLICE_F_NONBLOCK);
	if (n != avail) {
		int r = n < 0 ? -errno : -EIO;

		if (n < 0)
			pr_perror("%s: tee of its %d bytes", what, avail);
		else
			pr_err("%s: tee copied %zd of its %d bytes\n", what, n, avail);
		return r;
	}
	buf = malloc((size_t)avail);
	if (!buf)
		return -ENOMEM;
	if (util_read_full(rd, buf, (size_t)avail)) {
		pr_err("%s: cannot read back the %d bytes copied\n", what, avail);
		return -EIO;
	}
	*ret_len = (size_t)avail;
	*ret_data = TAKE_PTR(buf);
	return 0;
}

int dmp_pipe_fill(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		  const struct proc_fdinfo *info, FileEntry *fe)
{
	PipeEntry *pe = calloc(1, sizeof(*pe));
	_cleanup_close_ int src = -1;
	char path[64], what[4200];
	bool fifo = link[0] == '/';
	int size, r;

	if (!pe)
		return -ENOMEM;
	pipe_entry__init(pe);
	fe->pipe = pe;
	fe->type = fifo ? FILE_TYPE__FILE_FIFO : FILE_TYPE__FILE_PIPE;
	snprintf(what, sizeof(what), "pid %d: fd %d (%s)", (int)ctx->pid, fd, link);
	if (fifo) {
		if (strstr(link, " (deleted)")) {
			pr_err("%s: the FIFO was unlinked: not supported\n", what);
			return -ENOTSUP;
		}
		pe->path = strdup(link);
		if (!pe->path)
			return -ENOMEM;
	}
	pe->pipe_id = st->st_ino;
	pe->flags = info->flags & ~O_CLOEXEC;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)ctx->pid, fd);
	src = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (src < 0) {
		r = -errno;
		pr_perror("%s: cannot reopen it to read its data", what);
		return r;
	}
	size = fcntl(src, F_GETPIPE_SZ);
	if (size <= 0) {
		r = -errno;
		pr_perror("%s: F_GETPIPE_SZ", what);
		return r;
	}
	pe->size = (uint32_t)size;
	if (pipe_known(ctx, pe->pipe_id))
		return 0;
	r = pipe_peek(src, pe->size, what, &pe->data.data, &pe->data.len);
	if (r)
		return r;
	pe->has_data = pe->data.len > 0;
	if (pe->has_data)
		pr_debug("%s: %zu bytes in flight\n", what, pe->data.len);
	return 0;
}
