/*
 * The pipes part of the victims: a pipe with both ends open, resized to
 * 256 KiB, 100 KiB in flight whose first bytes were already read, a
 * non-blocking read end and a dup of the write end at fd 120; a pipe whose
 * write end is closed (its bytes then EOF); a pipe whose read end is closed
 * (writes fail with EPIPE); a FIFO in the workdir open for reading and for
 * writing with 3000 bytes in flight. The check reads every byte back in
 * order, then makes each pipe carry new data.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define A_SIZE (256 * 1024)
#define A_SKIP 1000
#define A_DATA (100 * 1024)
#define A_DUP 120
#define B_DATA 5000
#define F_DATA 3000

static int a_rd = -1, a_wr = -1, b_rd = -1, c_wr = -1, f_rd = -1, f_wr = -1;
static char fifo_path[PATH_MAX];

static unsigned char pat(size_t i, unsigned int seed)
{
	return (unsigned char)(victim_mix(i / 8, seed) >> (8 * (i % 8)));
}

static int put(int fd, size_t from, size_t n, unsigned int seed, char *err, size_t len)
{
	unsigned char buf[4096];

	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);

		for (size_t i = 0; i < k; i++)
			buf[i] = pat(from + done + i, seed);
		if (write(fd, buf, k) != (ssize_t)k)
			return victim_fail(err, len, "write to fd %d: %s", fd, strerror(errno));
		done += k;
	}
	return 0;
}

/* Read exactly n bytes of pattern seed starting at from; anything else fails. */
static int expect(int fd, const char *what, size_t from, size_t n, unsigned int seed,
		  char *err, size_t len)
{
	unsigned char buf[4096];

	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		ssize_t got = read(fd, buf, k);

		if (got <= 0)
			return victim_fail(err, len, "%s: read at byte %zu of %zu: %s", what, done,
					   n, got < 0 ? strerror(errno) : "EOF");
		for (ssize_t i = 0; i < got; i++)
			if (buf[i] != pat(from + done + (size_t)i, seed))
				return victim_fail(err, len, "%s: byte %zu is wrong", what,
						   done + (size_t)i);
		done += (size_t)got;
	}
	return 0;
}

static int pipes_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	unsigned char skip[A_SKIP];
	int p[2];

	signal(SIGPIPE, SIG_IGN);
	if (pipe(p))
		return victim_fail(err, len, "pipe: %s", strerror(errno));
	a_rd = p[0];
	a_wr = p[1];
	if (fcntl(a_wr, F_SETPIPE_SZ, A_SIZE) < A_SIZE)
		return victim_fail(err, len, "F_SETPIPE_SZ %d: %s", A_SIZE, strerror(errno));
	if (put(a_wr, 0, A_SKIP + A_DATA, 1, err, len))
		return -1;
	if (read(a_rd, skip, A_SKIP) != A_SKIP)
		return victim_fail(err, len, "read of the first bytes: %s", strerror(errno));
	if (fcntl(a_rd, F_SETFL, O_NONBLOCK) || dup2(a_wr, A_DUP) != A_DUP)
		return victim_fail(err, len, "O_NONBLOCK / dup2: %s", strerror(errno));

	if (pipe(p))
		return victim_fail(err, len, "pipe: %s", strerror(errno));
	b_rd = p[0];
	if (put(p[1], 0, B_DATA, 2, err, len))
		return -1;
	close(p[1]);

	if (pipe(p))
		return victim_fail(err, len, "pipe: %s", strerror(errno));
	c_wr = p[1];
	close(p[0]);

	snprintf(fifo_path, sizeof(fifo_path), "%s/fifo", ctx->workdir);
	if (mkfifo(fifo_path, 0600))
		return victim_fail(err, len, "mkfifo %s: %s", fifo_path, strerror(errno));
	f_rd = open(fifo_path, O_RDONLY | O_NONBLOCK);
	f_wr = open(fifo_path, O_WRONLY);
	if (f_rd < 0 || f_wr < 0)
		return victim_fail(err, len, "open %s: %s", fifo_path, strerror(errno));
	if (fcntl(f_rd, F_SETFL, 0))
		return victim_fail(err, len, "F_SETFL %s: %s", fifo_path, strerror(errno));
	return put(f_wr, 0, F_DATA, 3, err, len);
}

static int same_pipe(int a, int b)
{
	struct stat sa, sb;

	return !fstat(a, &sa) && !fstat(b, &sb) && S_ISFIFO(sa.st_mode) && sa.st_ino == sb.st_ino &&
	       sa.st_dev == sb.st_dev;
}

static int check_pipe_a(char *err, size_t len)
{
	int fl = fcntl(a_rd, F_GETFL), sz = fcntl(a_rd, F_GETPIPE_SZ);
	char c;

	if (!same_pipe(a_rd, a_wr) || !same_pipe(a_rd, A_DUP))
		return victim_fail(err, len, "fds %d, %d and %d are no longer one pipe", a_rd,
				   a_wr, A_DUP);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY || !(fl & O_NONBLOCK))
		return victim_fail(err, len, "read end fd %d: flags %#o", a_rd, fl);
	if ((fcntl(a_wr, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != O_WRONLY)
		return victim_fail(err, len, "write end fd %d: flags %#o", a_wr,
				   fcntl(a_wr, F_GETFL));
	if (sz != A_SIZE)
		return victim_fail(err, len, "pipe size %d, expected %d", sz, A_SIZE);
	if (expect(a_rd, "pipe A", A_SKIP, A_DATA, 1, err, len))
		return -1;
	if (read(a_rd, &c, 1) != -1 || errno != EAGAIN)
		return victim_fail(err, len, "pipe A holds more than was written");
	/* The dup shares the write end's description: writes through it arrive. */
	if (put(A_DUP, 0, 5000, 4, err, len) || expect(a_rd, "pipe A via fd 120", 0, 5000, 4,
						      err, len))
		return -1;
	if (put(a_wr, 7, 70000, 5, err, len) || expect(a_rd, "pipe A again", 7, 70000, 5, err,
						       len))
		return -1;
	return 0;
}

static int pipes_check(struct victim_ctx *ctx, char *err, size_t len)
{
	struct stat st, fst;
	char c;

	(void)ctx;
	if (check_pipe_a(err, len))
		return -1;
	if (expect(b_rd, "pipe B", 0, B_DATA, 2, err, len))
		return -1;
	if (read(b_rd, &c, 1) != 0)
		return victim_fail(err, len, "pipe B: no EOF after its data (a writer appeared?)");
	if (write(c_wr, "x", 1) != -1 || errno != EPIPE)
		return victim_fail(err, len, "pipe C: write without a reader did not fail with "
				   "EPIPE: %s", strerror(errno));
	if (stat(fifo_path, &st) || fstat(f_rd, &fst) || st.st_ino != fst.st_ino ||
	    !same_pipe(f_rd, f_wr))
		return victim_fail(err, len, "fds %d and %d are no longer the FIFO %s", f_rd, f_wr,
				   fifo_path);
	if ((fcntl(f_rd, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != O_RDONLY ||
	    (fcntl(f_wr, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != O_WRONLY)
		return victim_fail(err, len, "FIFO fds have the wrong flags");
	if (expect(f_rd, "FIFO", 0, F_DATA, 3, err, len))
		return -1;
	if (put(f_wr, 0, 20000, 6, err, len) || expect(f_rd, "FIFO again", 0, 20000, 6, err, len))
		return -1;
	return 0;
}

const struct victim_part victim_part_pipes = {
	.name = "pipes",
	.setup = pipes_setup,
	.check = pipes_check,
};
