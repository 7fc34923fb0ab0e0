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
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#define FD_M 30
#define FD_S 31

extern const struct victim_part victim_part_mem;

static const char OUT_BEFORE[] = "out-before\n", OUT_SEEN[] = "out-before\r\n";
static const char IN_BEFORE[] = "in-line\r", IN_SEEN[] = "in-line\n";

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
	if (write(FD_S, OUT_BEFORE, strlen(OUT_BEFORE)) != (ssize_t)strlen(OUT_BEFORE) ||
	    write(FD_M, IN_BEFORE, strlen(IN_BEFORE)) != (ssize_t)strlen(IN_BEFORE))
		return victim_fail(err, len, "queueing: %s", strerror(errno));
	printf("pty: slave %s\n", ptsname(FD_M));
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
	if (tcgetattr(FD_S, &t) || ioctl(FD_M, TIOCGWINSZ, &ws) || ioctl(FD_M, TIOCGPKT, &pkt))
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
