/*
 * A pty pair held inside the process: master at fd 30, slave at fd 31,
 * the slave canonical with ICRNL, OPOST|ONLCR, no echo, 9600 baud, its own
 * VINTR/VERASE, a 33x77 (640x480) window, packet mode on the master. Queued
 * at the dump: "out-before\n" written by the slave (the master holds
 * "out-before\r\n") and "in-line\r" written to the master (the slave holds
 * the line "in-line\n"). The check: the same termios, window size and
 * packet mode; the master reads exactly the queued output (one TIOCPKT_DATA
 * byte, no doubled \r: not processed twice), the slave the queued line;
 * then both directions still work ("ping\r" -> "ping\n", "pong\n" ->
 * "pong\r\n"). The slave's number may change; it is logged.
 * Plus the memory part, so a lazy migration has pages to fetch.
 *
 * Built with -DPTY_SPLIT (victim-pty-split): the pair split between two
 * processes, as an expect-like tool drives a program. The root keeps only
 * the master; a child keeps only the slave, in a session of its own whose
 * controlling terminal the slave is. The child wrote "out-before\n" and the
 * root "in-line\r" before the dump. The check: the root finds the settings
 * (through the master) and the queued output, and has no slave; on SIGUSR1
 * the child finds no master, the slave still its controlling terminal (its
 * session's, its group in the foreground, its tty in /proc/self/stat), reads
 * the queued line, answers "pong\n", reads the root's "ping\r" as "ping\n"
 * and exits 0; the root reads "pong\r\n" and wants that exit status.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define FD_M 30
#define FD_S 31

extern const struct victim_part victim_part_mem;

static const char OUT_BEFORE[] = "out-before\n", OUT_SEEN[] = "out-before\r\n";
static const char IN_BEFORE[] = "in-line\r", IN_SEEN[] = "in-line\n";

#ifdef PTY_SPLIT
static const bool split = true;
#else
static const bool split = false;
#endif
static pid_t child; /* split: the process holding the slave */
static volatile sig_atomic_t child_go;

static void want_termios(struct termios *t)
{
	memset(t, 0, sizeof(*t));
	t->c_iflag = ICRNL;
	t->c_oflag = OPOST | ONLCR;
	t->c_cflag = CS8 | CREAD | CLOCAL;
	t->c_lflag = ICANON | ISIG;
	t->c_cc[VINTR] = 0x07;
	t->c_cc[VERASE] = 0x08;
	t->c_cc[VEOF] = 0x04;
	t->c_cc[VMIN] = 1;
	cfsetspeed(t, B9600);
}

static int expect_master(const char *want, char *err, size_t len);
static int expect_slave(const char *want, char *err, size_t len);
static int check_settings(char *err, size_t len);

static void on_usr1(int sig)
{
	(void)sig;
	child_go = 1;
}

/* The child's check: its terminal, the queued line, one exchange each way. */
static int child_check(char *err, size_t len)
{
	unsigned int nr = 0;
	struct stat st;
	FILE *f;

	if (fcntl(FD_M, F_GETFD) >= 0 || errno != EBADF)
		return victim_fail(err, len, "the child holds fd %d: the master came back here",
				   FD_M);
	if (tcgetsid(FD_S) != getpid() || tcgetpgrp(FD_S) != getpid())
		return victim_fail(err, len, "the slave is not the controlling terminal of its "
				   "session %d (tcgetsid %d, foreground %d): %s", (int)getpid(),
				   (int)tcgetsid(FD_S), (int)tcgetpgrp(FD_S), strerror(errno));
	/* The kernel's word: field 7 of /proc/self/stat is the controlling tty. */
	f = fopen("/proc/self/stat", "re");
	if (!f || fscanf(f, "%*d (%*[^)]) %*c %*d %*d %*d %u", &nr) != 1 || fstat(FD_S, &st))
		return victim_fail(err, len, "/proc/self/stat: %s", strerror(errno));
	fclose(f);
	if (major(st.st_rdev) != ((nr >> 8) & 0xfff) ||
	    minor(st.st_rdev) != ((nr & 0xff) | ((nr >> 12) & 0xfff00)))
		return victim_fail(err, len, "its controlling tty is %u:%u, not the slave %u:%u",
				   (nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00),
				   major(st.st_rdev), minor(st.st_rdev));
	if (expect_slave(IN_SEEN, err, len))
		return -1;
	if (write(FD_S, "pong\n", 5) != 5)
		return victim_fail(err, len, "write to slave: %s", strerror(errno));
	return expect_slave("ping\n", err, len);
}

static __attribute__((noreturn)) void child_main(pid_t parent, int ready)
{
	char err[256] = "";
	int code = 0;

	close(FD_M);
	if (setsid() < 0 || ioctl(FD_S, TIOCSCTTY, 0) ||
	    write(FD_S, OUT_BEFORE, strlen(OUT_BEFORE)) != (ssize_t)strlen(OUT_BEFORE)) {
		fprintf(stderr, "victim-pty child: setup: %s\n", strerror(errno));
		_exit(1);
	}
	if (write(ready, "r", 1) != 1)
		_exit(1);
	close(ready);
	/* Until the root's check; a child whose parent is gone (a failed test) exits. */
	while (!child_go) {
		if (getppid() != parent)
			_exit(2);
		nanosleep(&(struct timespec){ .tv_nsec = 2 * 1000 * 1000 }, NULL);
	}
	if (child_check(err, sizeof(err))) {
		fprintf(stderr, "victim-pty child (pid %d): %s\n", (int)getpid(), err);
		code = 1;
	}
	_exit(code);
}

/* Split: fork the child that keeps the slave; the root keeps the master only. */
static int start_child(char *err, size_t len)
{
	struct pollfd p;
	pid_t parent = getpid();
	int rp[2];
	char b;

	signal(SIGUSR1, on_usr1);
	if (pipe2(rp, O_CLOEXEC))
		return victim_fail(err, len, "pipe2: %s", strerror(errno));
	child = fork();
	if (child < 0)
		return victim_fail(err, len, "fork: %s", strerror(errno));
	if (child == 0) {
		close(rp[0]);
		child_main(parent, rp[1]);
	}
	close(rp[1]);
	close(FD_S);
	p = (struct pollfd){ .fd = rp[0], .events = POLLIN };
	if (poll(&p, 1, 5000) != 1 || read(rp[0], &b, 1) != 1) {
		close(rp[0]);
		return victim_fail(err, len, "the child (pid %d) did not set its terminal up",
				   (int)child);
	}
	close(rp[0]);
	return 0;
}

/* The child's exit status within 10 s (killed after that). */
static int wait_child(char *err, size_t len)
{
	int st = 0;

	for (int ms = 0; ms < 10000; ms += 10) {
		pid_t w = waitpid(child, &st, WNOHANG);

		if (w == child) {
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				return victim_fail(err, len, "the child (pid %d) failed its check "
						   "(wait status %#x; its reason is in the log)",
						   (int)child, st);
			return 0;
		}
		if (w < 0)
			return victim_fail(err, len, "waitpid %d: %s", (int)child,
					   strerror(errno));
		usleep(10000);
	}
	kill(child, SIGKILL);
	waitpid(child, &st, 0);
	return victim_fail(err, len, "the child (pid %d) did not finish its check in 10 s",
			   (int)child);
}

static int split_exchange(char *err, size_t len)
{
	if (fcntl(FD_S, F_GETFD) >= 0 || errno != EBADF)
		return victim_fail(err, len, "the root holds fd %d: the slave came back here",
				   FD_S);
	if (check_settings(err, len) || expect_master(OUT_SEEN, err, len))
		return -1;
	if (kill(child, SIGUSR1))
		return victim_fail(err, len, "kill child %d: %s", (int)child, strerror(errno));
	if (expect_master("pong\r\n", err, len))
		return -1;
	if (write(FD_M, "ping\r", 5) != 5)
		return victim_fail(err, len, "write to master: %s", strerror(errno));
	return 0;
}

static int split_check(char *err, size_t len)
{
	int st;

	if (split_exchange(err, len)) {
		kill(child, SIGKILL);
		waitpid(child, &st, 0);
		return -1;
	}
	return wait_child(err, len);
}

static int pty_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	struct winsize ws = { .ws_row = 33, .ws_col = 77, .ws_xpixel = 640, .ws_ypixel = 480 };
	struct termios t;
	int m, s, one = 1;

	m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m))
		return victim_fail(err, len, "posix_openpt: %s", strerror(errno));
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	if (s < 0 || dup2(m, FD_M) != FD_M || dup2(s, FD_S) != FD_S)
		return victim_fail(err, len, "slave %s: %s", ptsname(m), strerror(errno));
	close(m);
	close(s);
	want_termios(&t);
	if (tcsetattr(FD_S, TCSANOW, &t) || ioctl(FD_M, TIOCSWINSZ, &ws) ||
	    ioctl(FD_M, TIOCPKT, &one))
		return victim_fail(err, len, "pty settings: %s", strerror(errno));
	if (split && start_child(err, len))
		return -1;
	if ((!split && write(FD_S, OUT_BEFORE, strlen(OUT_BEFORE)) != (ssize_t)strlen(OUT_BEFORE)) ||
	    write(FD_M, IN_BEFORE, strlen(IN_BEFORE)) != (ssize_t)strlen(IN_BEFORE))
		return victim_fail(err, len, "queueing: %s", strerror(errno));
	printf("pty: slave %s%s\n", ptsname(FD_M), split ? ", held by the child" : "");
	fflush(stdout);
	return 0;
}

/* Read what the master has within 2 s, packet headers checked and removed. */
static int read_master(char *buf, size_t cap, size_t want, char *err, size_t len)
{
	size_t got = 0;

	while (got < want) {
		struct pollfd p = { .fd = FD_M, .events = POLLIN };
		char tmp[256];
		ssize_t n;

		if (poll(&p, 1, 2000) != 1)
			return victim_fail(err, len, "master: %zu of %zu bytes came: '%.*s'",
					   got, want, (int)got, buf);
		n = read(FD_M, tmp, sizeof(tmp));
		if (n <= 0)
			return victim_fail(err, len, "master read: %s", strerror(errno));
		if (tmp[0] != TIOCPKT_DATA)
			continue; /* a status packet */
		if (got + (size_t)n - 1 > cap)
			return victim_fail(err, len, "master: too much data");
		memcpy(buf + got, tmp + 1, (size_t)n - 1);
		got += (size_t)n - 1;
	}
	return (int)got;
}

static int expect_master(const char *want, char *err, size_t len)
{
	char buf[256];
	int n = read_master(buf, sizeof(buf), strlen(want), err, len);

	if (n < 0)
		return -1;
	if ((size_t)n != strlen(want) || memcmp(buf, want, (size_t)n))
		return victim_fail(err, len, "master read '%.*s' (%d bytes), expected '%s'", n, buf,
				   n, want);
	return 0;
}

static int expect_slave(const char *want, char *err, size_t len)
{
	struct pollfd p = { .fd = FD_S, .events = POLLIN };
	char buf[256];
	ssize_t n;

	if (poll(&p, 1, 2000) != 1)
		return victim_fail(err, len, "slave: no line within 2 s (expected '%s')", want);
	n = read(FD_S, buf, sizeof(buf));
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n))
		return victim_fail(err, len, "slave read '%.*s' (%zd bytes), expected '%s'",
				   (int)(n > 0 ? n : 0), buf, n, want);
	return 0;
}

static int check_settings(char *err, size_t len)
{
	struct termios t, w;
	struct winsize ws;
	int pkt = 0;

	want_termios(&w);
	/* TCGETS on a master reads its slave's termios. */
	if (tcgetattr(split ? FD_M : FD_S, &t) || ioctl(FD_M, TIOCGWINSZ, &ws) ||
	    ioctl(FD_M, TIOCGPKT, &pkt))
		return victim_fail(err, len, "reading the settings: %s", strerror(errno));
	if (t.c_iflag != w.c_iflag || t.c_oflag != w.c_oflag || t.c_lflag != w.c_lflag ||
	    (t.c_cflag & ~CBAUD) != (w.c_cflag & ~CBAUD) || cfgetospeed(&t) != B9600)
		return victim_fail(err, len, "termios iflag %#x oflag %#x cflag %#x lflag %#x, "
				   "expected %#x %#x %#x %#x", t.c_iflag, t.c_oflag, t.c_cflag,
				   t.c_lflag, w.c_iflag, w.c_oflag, w.c_cflag, w.c_lflag);
	if (t.c_cc[VINTR] != 0x07 || t.c_cc[VERASE] != 0x08)
		return victim_fail(err, len, "c_cc VINTR %#x VERASE %#x", t.c_cc[VINTR],
				   t.c_cc[VERASE]);
	if (ws.ws_row != 33 || ws.ws_col != 77 || ws.ws_xpixel != 640 || ws.ws_ypixel != 480)
		return victim_fail(err, len, "window %ux%u (%ux%u)", ws.ws_row, ws.ws_col,
				   ws.ws_xpixel, ws.ws_ypixel);
	if (!pkt)
		return victim_fail(err, len, "packet mode is off");
	return 0;
}

static int pty_check(struct victim_ctx *ctx, char *err, size_t len)
{
	printf("pty: slave now %s\n", ptsname(FD_M));
	fflush(stdout);
	if (split)
		return split_check(err, len);
	if (check_settings(err, len) || expect_master(OUT_SEEN, err, len) ||
	    expect_slave(IN_SEEN, err, len))
		return -1;
	if (write(FD_M, "ping\r", 5) != 5)
		return victim_fail(err, len, "write to master: %s", strerror(errno));
	if (expect_slave("ping\n", err, len))
		return -1;
	if (write(FD_S, "pong\n", 5) != 5)
		return victim_fail(err, len, "write to slave: %s", strerror(errno));
	return expect_master("pong\r\n", err, len);
}

static const struct victim_part part_pty = {
	.name = "pty",
	.setup = pty_setup,
	.check = pty_check,
};

const struct victim_part *const victim_parts[] = { &victim_part_mem, &part_pty, NULL };
