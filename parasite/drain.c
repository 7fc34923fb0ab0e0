/*
 * Draining memory without copying it through relive: the parasite vmsplices
 * runs of its own memory into a pipe, relive splices the pipe into the output
 * file. Runs go to the parasite in batches through the args area; the pipe
 * is created once per infection and sized to the system maximum.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "psite-internal.h"
#include "util.h"

static uint64_t pipe_max_size(void)
{
	_cleanup_free_ char *buf = NULL;
	uint64_t v;
	char *nl;

	if (util_read_file(AT_FDCWD, "/proc/sys/fs/pipe-max-size", &buf, NULL))
		return 1 << 20;
	nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
	if (util_parse_u64(buf, 4096, 1ULL << 30, &v))
		return 1 << 20;
	return v;
}

static int open_pipe(struct psite_ctl *ctl)
{
	int p[2], sz;

	if (pipe2(p, O_CLOEXEC)) {
		pr_perror("pid %d: cannot create the drain pipe", (int)ctl->f->pid);
		return -errno;
	}
	ctl->pipe_r = p[0];
	ctl->pipe_w = p[1];
	/* Only our end is non-blocking: the parasite's vmsplice waits for room. */
	if (fcntl(p[0], F_SETFL, O_NONBLOCK)) {
		pr_perror("pid %d: cannot make the drain pipe non-blocking", (int)ctl->f->pid);
		return -errno;
	}
	if (fcntl(p[0], F_SETPIPE_SZ, (int)pipe_max_size()) < 0)
		pr_warn("pid %d: cannot grow the drain pipe: %s\n", (int)ctl->f->pid,
			strerror(errno));
	sz = fcntl(p[0], F_GETPIPE_SZ);
	if (sz < 0) {
		pr_perror("pid %d: F_GETPIPE_SZ on the drain pipe", (int)ctl->f->pid);
		return -errno;
	}
	ctl->pipe_size = (uint64_t)sz;
	return 0;
}

/* "fd N (path)" for error messages: the caller only gave us a descriptor. */
static const char *fd_name(int fd, char *buf, size_t len)
{
	char link[64], path[256];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		snprintf(buf, len, "fd %d", fd);
	else
		snprintf(buf, len, "fd %d (%.*s)", fd, (int)n, path);
	return buf;
}

/* Splice what the pipe holds, up to LEN, into OUT_FD: bytes moved, 0 if empty, or -errno. */
static ssize_t splice_out(struct psite_ctl *ctl, int out_fd, uint64_t len)
{
	char name[320];

	for (;;) {
		ssize_t n = splice(ctl->pipe_r, NULL, out_fd, NULL, len,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return 0;
		n = -errno;
		pr_perror("pid %d: splice from the drain pipe into %s", (int)ctl->f->pid,
			  fd_name(out_fd, name, sizeof(name)));
		return n;
	}
}

/* Throw away what is in the pipe (after an output error, or stray bytes). */
static void flush_pipe(struct psite_ctl *ctl)
{
	char buf[65536];

	while (read(ctl->pipe_r, buf, sizeof(buf)) > 0)
		;
}

/*
 * Move EXPECT bytes from the pipe to OUT_FD while the parasite fills it, then
 * take its reply. On an output error, the rest is discarded so that the
 * parasite is not left blocked on a full pipe.
 */
static int pump_batch(struct psite_ctl *ctl, int out_fd, uint64_t expect, uint64_t *done)
{
	struct pollfd pfd[2] = {
		{ .fd = ctl->pipe_r, .events = POLLIN },
		{ .fd = ctl->sock, .events = POLLIN },
	};
	struct psite_reply_hdr rep;
	uint64_t got = 0;
	int r = 0, r2;

	while (got < expect) {
		ssize_t n = r ? 0 : splice_out(ctl, out_fd, expect - got);

		if (n < 0) {
			r = (int)n;
			continue;
		}
		if (n > 0) {
			got += (uint64_t)n;
			*done += (uint64_t)n;
			continue;
		}
		if (r)
			flush_pipe(ctl);
		n = psite_rpc_poll(ctl, pfd, 2);
		if (n < 0)
			return (int)n;
		if (!(pfd[0].revents & POLLIN) && (pfd[1].revents & (POLLIN | POLLHUP)))
			break; /* the parasite answered early: it failed */
	}
	memset(&rep, 0, sizeof(rep));
	r2 = psite_rpc_recv(ctl, PSITE_CMD_DRAIN, &rep, sizeof(rep));
	/* Bytes it managed to put in before failing are still ours to write. */
	while (!r && got < rep.value) {
		ssize_t n = splice_out(ctl, out_fd, rep.value - got);

		if (n <= 0) {
			r = n ? (int)n : -EIO;
			break;
		}
		got += (uint64_t)n;
		*done += (uint64_t)n;
	}
	flush_pipe(ctl);
	if (!r && !r2 && rep.value != expect) {
		pr_err("pid %d: the parasite drained %llu bytes of %llu\n", (int)ctl->f->pid,
		       (unsigned long long)rep.value, (unsigned long long)expect);
		r2 = -EIO;
	}
	return r ? r : r2;
}

int psite_drain(struct psite_ctl *ctl, const struct iovec *runs, size_t nr, int out_fd,
		uint64_t *ret_bytes)
{
	_cleanup_free_ struct psite_iov *batch = NULL;
	size_t i = 0;
	int r;

	*ret_bytes = 0;
	if (ctl->pipe_r < 0) {
		r = open_pipe(ctl);
		if (r)
			return r;
	}
	batch = calloc(MIN(nr, PSITE_MAX_IOV) + 1, sizeof(*batch));
	if (!batch)
		return -ENOMEM;
	while (i < nr) {
		uint32_t n = (uint32_t)MIN(nr - i, PSITE_MAX_IOV);
		uint64_t expect = 0;

		for (uint32_t k = 0; k < n; k++) {
			batch[k].base = (uint64_t)(uintptr_t)runs[i + k].iov_base;
			batch[k].len = runs[i + k].iov_len;
			expect += batch[k].len;
		}
		r = psite_write_victim(ctl, ctl->args, batch, n * sizeof(*batch));
		if (!r)
			r = psite_rpc_send(ctl, PSITE_CMD_DRAIN, n, ctl->pipe_size, ctl->pipe_w);
		if (!r)
			r = pump_batch(ctl, out_fd, expect, ret_bytes);
		if (r) {
			pr_err("pid %d: drain failed after %llu bytes\n", (int)ctl->f->pid,
			       (unsigned long long)*ret_bytes);
			return r;
		}
		i += n;
	}
	return 0;
}
