/*
 * File locks (with --file-locks): fd 40 holds an exclusive flock on
 * flock.dat, fd 41 POSIX locks on posix.dat (write on [100, 200), read from
 * 1000 to EOF), fd 42 OFD locks on ofd.dat (read on [10, 20), write on
 * [50, 60)). The check forks a checker process that must find each lock
 * conflicting exactly as before (flock refused, F_GETLK and F_OFD_GETLK
 * naming the same type, range and owner, nothing elsewhere); then closes
 * the three fds and a second checker must find every lock gone: the locks
 * belonged to this process and these descriptions, not to anything else.
 * Plus the memory part, so a lazy migration has pages to fetch.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#define FD_FLOCK 40
#define FD_POSIX 41
#define FD_OFD 42

extern const struct victim_part victim_part_mem;

static char dir[4096];

static int open_at(const char *name, int fd, char *err, size_t len)
{
	char path[4200];
	int f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0 || ftruncate(f, 4096) || dup2(f, fd) != fd)
		return victim_fail(err, len, "%s: %s", path, strerror(errno));
	close(f);
	return 0;
}

static int set(int fd, int cmd, short type, off_t start, off_t l, char *err, size_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = l };

	if (fcntl(fd, cmd, &fl))
		return victim_fail(err, len, "fd %d: lock at %ld: %s", fd, (long)start,
				   strerror(errno));
	return 0;
}

static int locks_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	snprintf(dir, sizeof(dir), "%s", ctx->workdir);
	if (open_at("flock.dat", FD_FLOCK, err, len) || open_at("posix.dat", FD_POSIX, err, len) ||
	    open_at("ofd.dat", FD_OFD, err, len))
		return -1;
	if (flock(FD_FLOCK, LOCK_EX | LOCK_NB))
		return victim_fail(err, len, "flock: %s", strerror(errno));
	if (set(FD_POSIX, F_SETLK, F_WRLCK, 100, 100, err, len) ||
	    set(FD_POSIX, F_SETLK, F_RDLCK, 1000, 0, err, len) ||
	    set(FD_OFD, F_OFD_SETLK, F_RDLCK, 10, 10, err, len) ||
	    set(FD_OFD, F_OFD_SETLK, F_WRLCK, 50, 10, err, len))
		return -1;
	return 0;
}

/* What a write (or read) lock on [start, start + l) of FD meets: its type, start, len, pid. */
static int probe(int fd, int cmd, short want, off_t start, off_t l, struct flock *ret)
{
	*ret = (struct flock){ .l_type = want, .l_whence = SEEK_SET, .l_start = start,
			       .l_len = l };
	return fcntl(fd, cmd, ret);
}

struct expect {
	int cmd;
	short probe_type;
	off_t start, len;
	short type; /* F_UNLCK: free */
	off_t got_start, got_len;
};

/* In the checker: the locks of process OWNER as seen from outside. */
static int checker(pid_t owner, bool held, char *err, size_t len)
{
	const struct expect ex[] = {
		{ F_GETLK, F_RDLCK, 150, 1, F_WRLCK, 100, 100 },
		{ F_GETLK, F_WRLCK, 5000, 1, F_RDLCK, 1000, 0 },
		{ F_GETLK, F_RDLCK, 5000, 1, F_UNLCK, 0, 0 },
		{ F_GETLK, F_WRLCK, 300, 600, F_UNLCK, 0, 0 },
		{ F_OFD_GETLK, F_WRLCK, 15, 1, F_RDLCK, 10, 10 },
		{ F_OFD_GETLK, F_RDLCK, 15, 1, F_UNLCK, 0, 0 },
		{ F_OFD_GETLK, F_RDLCK, 55, 1, F_WRLCK, 50, 10 },
		{ F_OFD_GETLK, F_WRLCK, 20, 30, F_UNLCK, 0, 0 },
	};
	char p[4200];
	int a, b, c;

	snprintf(p, sizeof(p), "%s/flock.dat", dir);
	a = open(p, O_RDWR);
	snprintf(p, sizeof(p), "%s/posix.dat", dir);
	b = open(p, O_RDWR);
	snprintf(p, sizeof(p), "%s/ofd.dat", dir);
	c = open(p, O_RDWR);
	if (a < 0 || b < 0 || c < 0)
		return victim_fail(err, len, "checker: open: %s", strerror(errno));
	if ((flock(a, LOCK_SH | LOCK_NB) == 0) == held)
		return victim_fail(err, len, "flock.dat: a shared flock %s", held ?
				   "was granted: the exclusive flock is lost" :
				   "is refused after fd 40 was closed");
	for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
		const struct expect *e = &ex[i];
		short want = held ? e->type : F_UNLCK;
		pid_t want_pid = e->cmd == F_OFD_GETLK ? -1 : owner;
		struct flock fl;

		if (probe(e->cmd == F_GETLK ? b : c, e->cmd, e->probe_type, e->start, e->len, &fl))
			return victim_fail(err, len, "probe %zu: %s", i, strerror(errno));
		if (fl.l_type != want)
			return victim_fail(err, len, "%s probe %zu at %ld: type %d, expected %d",
					   e->cmd == F_GETLK ? "POSIX" : "OFD", i,
					   (long)e->start, fl.l_type, want);
		if (want != F_UNLCK && (fl.l_start != e->got_start || fl.l_len != e->got_len ||
					fl.l_pid != want_pid))
			return victim_fail(err, len, "probe %zu: lock [%ld +%ld] of pid %d, "
					   "expected [%ld +%ld] of pid %d", i, (long)fl.l_start,
					   (long)fl.l_len, fl.l_pid, (long)e->got_start,
					   (long)e->got_len, want_pid);
	}
	return 0;
}

static int run_checker(bool held, char *err, size_t len)
{
	pid_t owner = getpid(), pid;
	int p[2], st;
	ssize_t n;

	if (pipe(p))
		return victim_fail(err, len, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		char e[512] = "";

		close(p[0]);
		if (checker(owner, held, e, sizeof(e)))
			(void)!write(p[1], e, strlen(e));
		_exit(0);
	}
	close(p[1]);
	if (pid < 0)
		return victim_fail(err, len, "fork: %s", strerror(errno));
	n = read(p[0], err, len - 1);
	close(p[0]);
	waitpid(pid, &st, 0);
	if (n > 0) {
		err[n] = '\0';
		return -1;
	}
	return 0;
}

static int locks_check(struct victim_ctx *ctx, char *err, size_t len)
{
	if (run_checker(true, err, len))
		return -1;
	close(FD_FLOCK);
	close(FD_POSIX);
	close(FD_OFD);
	return run_checker(false, err, len);
}

static const struct victim_part part_locks = {
	.name = "locks",
	.setup = locks_setup,
	.check = locks_check,
};

const struct victim_part *const victim_parts[] = { &victim_part_mem, &part_locks, NULL };
