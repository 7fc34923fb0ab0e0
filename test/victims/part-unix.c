/*
 * The unix sockets part of the victims. Setup builds, all in this process:
 * a stream pair with data queued both ways (the first bytes already read;
 * small SO_RCVBUF/SO_SNDBUF), a datagram pair and a seqpacket pair with
 * messages of different sizes queued (a non-blocking end), a stream
 * listener bound to a path (mode 0640, backlog 7) and a seqpacket listener
 * on an abstract name, a datagram server bound to a path (SO_PASSCRED) with
 * a client connected to it and messages from it queued, a datagram server
 * on an abstract name with messages from a socket closed since, a stream
 * pair shut down for writing one way with data before the EOF, and the
 * surviving end of a pair whose other end was closed with data in flight.
 * The check reads every queue back in order with its message boundaries,
 * sees the EOFs, the options and the names, makes each pair talk both ways
 * and has each listener accept a new client. With RELIVE_UNIX_EXT=PATH in
 * the environment, fd 70 is also a socket connected to PATH outside the
 * tree (RELIVE_UNIX_EXT_TYPE=stream, else datagram) that sends "ext-setup"
 * at setup and "ext-check" at the check. With RELIVE_UNIX_SCM=1, fd 73 holds
 * a queued message carrying a descriptor (SCM_RIGHTS) from fd 72. With
 * RELIVE_UNIX_FORK=1, a child holds one end of a stream pair and this
 * process the other, with data queued both ways; at the check the child
 * reads its queue and answers with its verdict and the bytes it read. With
 * RELIVE_UNIX_PENDING=1, the listener at fd 74 has a connection from fd 75
 * not accepted yet; the check accepts it and they talk.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <poll.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

#define ST_SKIP 100
#define ST_AB 3000 /* queued in s[1], after ST_SKIP bytes read */
#define ST_BA 500 /* queued in s[0] */
#define SH_DATA 200
#define GONE_DATA 50
#define EXT_FD 70
#define SCM_FD 72
#define PEND_FD 74
#define FK_P2C 2500 /* queued in the child's end */
#define FK_C2P 700 /* queued in ours */

static const size_t dg_sizes[] = { 1, 100, 1000, 3000, 7 };
static const size_t sq_sizes[] = { 64, 1, 2048, 5 };
static const size_t srv_sizes[] = { 10, 20, 30 };
static const size_t abs_sizes[] = { 77, 4000 };
#define NR(a) (sizeof(a) / sizeof((a)[0]))

static int s[2] = { -1, -1 }, dg[2] = { -1, -1 }, sq[2] = { -1, -1 }, sh[2] = { -1, -1 };
static int lst = -1, lsq = -1, dsrv = -1, dcli = -1, dabs = -1, gone = -1;
static int rcvbuf0, sndbuf1;
static char lst_path[PATH_MAX], dsrv_path[PATH_MAX];
static struct sockaddr_un lsq_addr, dabs_addr;
static socklen_t lsq_len, dabs_len;

static unsigned char pat(size_t i, unsigned int seed)
{
	return (unsigned char)(victim_mix(i / 8, seed) >> (8 * (i % 8)));
}

static void fill(unsigned char *buf, size_t from, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = pat(from + i, seed);
}

static int put(int fd, size_t from, size_t n, unsigned int seed, char *err, size_t len)
{
	unsigned char buf[8192];

	fill(buf, from, n, seed);
	if (write(fd, buf, n) != (ssize_t)n)
		return victim_fail(err, len, "write of %zu bytes to fd %d: %s", n, fd,
				   strerror(errno));
	return 0;
}

/* Read exactly N stream bytes of pattern SEED from FROM on. */
static int expect(int fd, const char *what, size_t from, size_t n, unsigned int seed,
		  char *err, size_t len)
{
	unsigned char buf[8192];

	for (size_t done = 0; done < n;) {
		/* Everything was queued before the dump: waiting would hide a loss. */
		ssize_t got = recv(fd, buf, MIN(n - done, sizeof(buf)), MSG_DONTWAIT);

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

/* One message per size, each its own pattern; they must come back whole. */
static int put_msgs(int fd, const size_t *sizes, size_t nr, unsigned int seed, char *err,
		    size_t len)
{
	for (size_t i = 0; i < nr; i++)
		if (put(fd, 0, sizes[i], seed + (unsigned int)i, err, len))
			return -1;
	return 0;
}

static int expect_msgs(int fd, const char *what, const size_t *sizes, size_t nr,
		       unsigned int seed, char *err, size_t len)
{
	unsigned char buf[16384], want[8192];

	for (size_t i = 0; i < nr; i++) {
		ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (got < 0)
			return victim_fail(err, len, "%s: message %zu of %zu: %s", what, i + 1, nr,
					   strerror(errno));
		if ((size_t)got != sizes[i])
			return victim_fail(err, len, "%s: message %zu has %zd bytes, not %zu "
					   "(boundaries lost)", what, i + 1, got, sizes[i]);
		fill(want, 0, sizes[i], seed + (unsigned int)i);
		if (memcmp(buf, want, sizes[i]))
			return victim_fail(err, len, "%s: message %zu is wrong", what, i + 1);
	}
	if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0 || errno != EAGAIN)
		return victim_fail(err, len, "%s: more than %zu messages queued", what, nr);
	return 0;
}

static int set_addr(struct sockaddr_un *sa, const char *path, bool abstract)
{
	size_t n = strnlen(path, sizeof(sa->sun_path) - 1 - abstract); /* workdirs are short */

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path + abstract, path, n);
	return (int)(offsetof(struct sockaddr_un, sun_path) + abstract + n);
}

static int make_bound(int type, const char *path, bool abstract, struct sockaddr_un *ret_sa,
		      socklen_t *ret_len, char *err, size_t len)
{
	struct sockaddr_un sa;
	socklen_t l = (socklen_t)set_addr(&sa, path, abstract);
	int fd = socket(AF_UNIX, type, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, l))
		return victim_fail(err, len, "socket/bind %s%s: %s", abstract ? "@" : "", path,
				   strerror(errno));
	if (ret_sa) {
		*ret_sa = sa;
		*ret_len = l;
	}
	return fd;
}

static int setup_pairs(char *err, size_t len)
{
	unsigned char skip[ST_SKIP];
	int one = 1, v = 65536, w = 100000, g[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) || socketpair(AF_UNIX, SOCK_STREAM, 0, sh) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, g))
		return victim_fail(err, len, "socketpair: %s", strerror(errno));
	if (setsockopt(s[0], SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) ||
	    setsockopt(s[1], SOL_SOCKET, SO_SNDBUF, &w, sizeof(w)))
		return victim_fail(err, len, "SO_RCVBUF/SO_SNDBUF: %s", strerror(errno));
	socklen_t l = sizeof(rcvbuf0);
	getsockopt(s[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf0, &l);
	l = sizeof(sndbuf1);
	getsockopt(s[1], SOL_SOCKET, SO_SNDBUF, &sndbuf1, &l);
	if (put(s[0], 0, ST_SKIP + ST_AB, 11, err, len) || put(s[1], 0, ST_BA, 12, err, len))
		return -1;
	if (read(s[1], skip, ST_SKIP) != ST_SKIP)
		return victim_fail(err, len, "read of the first stream bytes: %s", strerror(errno));
	if (put_msgs(dg[0], dg_sizes, NR(dg_sizes), 20, err, len) ||
	    put_msgs(dg[1], dg_sizes, 2, 30, err, len) ||
	    put_msgs(sq[0], sq_sizes, NR(sq_sizes), 40, err, len) ||
	    put_msgs(sq[1], sq_sizes, 2, 50, err, len))
		return -1;
	if (fcntl(dg[1], F_SETFL, O_NONBLOCK) || setsockopt(dg[1], SOL_SOCKET, SO_PASSCRED,
							     &one, sizeof(one)))
		return victim_fail(err, len, "O_NONBLOCK/SO_PASSCRED: %s", strerror(errno));
	if (put(sh[0], 0, SH_DATA, 60, err, len) || shutdown(sh[0], SHUT_WR))
		return victim_fail(err, len, "shutdown: %s", strerror(errno));
	if (put(g[0], 0, GONE_DATA, 70, err, len))
		return -1;
	close(g[0]);
	gone = g[1];
	return 0;
}

/* The socket connected outside the tree, when the driver asks for one. */
static int setup_ext(char *err, size_t len)
{
	const char *path = getenv("RELIVE_UNIX_EXT"), *type = getenv("RELIVE_UNIX_EXT_TYPE");
	bool stream = type && !strcmp(type, "stream");
	struct sockaddr_un sa;
	socklen_t l;
	int fd;

	if (!path)
		return 0;
	l = (socklen_t)set_addr(&sa, path, false);
	fd = socket(AF_UNIX, stream ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, l) || dup2(fd, EXT_FD) != EXT_FD)
		return victim_fail(err, len, "socket connected to %s at fd %d: %s", path, EXT_FD,
				   strerror(errno));
	close(fd);
	if (send(EXT_FD, "ext-setup", 9, 0) != 9)
		return victim_fail(err, len, "send to %s: %s", path, strerror(errno));
	return 0;
}

/* A message with a descriptor (stdin) queued in SCM_FD + 1, when asked for. */
static int setup_scm(char *err, size_t len)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm = { 0 };
	struct iovec iov = { "f", 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
			     .msg_controllen = sizeof(cm.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	int p[2], in = 0;

	if (!getenv("RELIVE_UNIX_SCM"))
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) || dup2(p[0], SCM_FD) != SCM_FD ||
	    dup2(p[1], SCM_FD + 1) != SCM_FD + 1)
		return victim_fail(err, len, "socketpair at fd %d: %s", SCM_FD, strerror(errno));
	close(p[0]);
	close(p[1]);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &in, sizeof(in));
	if (sendmsg(SCM_FD, &mh, 0) != 1)
		return victim_fail(err, len, "sendmsg with SCM_RIGHTS: %s", strerror(errno));
	return 0;
}

/* The descriptor is still queued in SCM_FD + 1. */
static int check_scm(char *err, size_t len)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	char c;
	struct iovec iov = { &c, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
			     .msg_controllen = sizeof(cm.b) };
	struct cmsghdr *h;
	int fd;

	if (!getenv("RELIVE_UNIX_SCM"))
		return 0;
	if (recvmsg(SCM_FD + 1, &mh, MSG_DONTWAIT) != 1 || !(h = CMSG_FIRSTHDR(&mh)) ||
	    h->cmsg_type != SCM_RIGHTS)
		return victim_fail(err, len, "fd %d: the message with a descriptor is gone: %s",
				   SCM_FD + 1, strerror(errno));
	memcpy(&fd, CMSG_DATA(h), sizeof(fd));
	close(fd);
	return 0;
}

static int fk = -1;
static pid_t fk_child = -1;

static volatile sig_atomic_t fk_go;

static void on_sigusr1(int sig)
{
	(void)sig;
	fk_go = 1;
}

/*
 * The child: on SIGUSR1, check its queue, answer 'P' or 'F' then the bytes.
 * It naps rather than waits in sigtimedwait: the kernel unblocks the waited
 * signals during that call, so a dump taken then sees a different mask.
 */
static void fork_child(int sk)
{
	unsigned char buf[FK_P2C + 1];
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	char err[256];

	for (int i = 0; i < 60000 && getppid() != 1; i++) {
		if (!fk_go) {
			nanosleep(&ts, NULL);
			continue;
		}
		buf[0] = expect(sk, "child's end", 0, FK_P2C, 100, err, sizeof(err)) ? 'F' : 'P';
		fill(buf + 1, 0, FK_P2C, 100);
		_exit(write(sk, buf, sizeof(buf)) == (ssize_t)sizeof(buf) ? 0 : 1);
	}
	_exit(2); /* orphaned or never asked: do not linger */
}

static int setup_fork(char *err, size_t len)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	struct pollfd pfd;
	int p[2];

	if (!getenv("RELIVE_UNIX_FORK"))
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, p))
		return victim_fail(err, len, "socketpair: %s", strerror(errno));
	if (put(p[0], 0, FK_P2C, 100, err, len))
		return -1;
	if (sigaction(SIGUSR1, &sa, NULL))
		return victim_fail(err, len, "sigaction(SIGUSR1): %s", strerror(errno));
	fk_child = fork();
	if (fk_child < 0)
		return victim_fail(err, len, "fork: %s", strerror(errno));
	if (fk_child == 0) {
		close(p[0]);
		if (put(p[1], 0, FK_C2P, 101, err, len))
			_exit(3);
		fork_child(p[1]);
	}
	close(p[1]);
	fk = p[0];
	pfd = (struct pollfd){ .fd = fk, .events = POLLIN };
	if (poll(&pfd, 1, 10000) != 1) /* the child's bytes are queued before READY */
		return victim_fail(err, len, "the child's bytes did not come: %s", strerror(errno));
	return 0;
}

/* Our queue, then the child's verdict on its own and its answer. */
static int check_fork(char *err, size_t len)
{
	struct pollfd pfd = { .fd = fk, .events = POLLIN };
	unsigned char v = 0;
	int st;

	if (fk < 0)
		return 0;
	if (expect(fk, "parent's end (from the child)", 0, FK_C2P, 101, err, len))
		return -1;
	if (kill(fk_child, SIGUSR1))
		return victim_fail(err, len, "child %d: %s", (int)fk_child, strerror(errno));
	if (poll(&pfd, 1, 10000) != 1 || read(fk, &v, 1) != 1)
		return victim_fail(err, len, "child %d did not answer", (int)fk_child);
	if (v != 'P')
		return victim_fail(err, len, "child %d: its queued bytes were wrong", (int)fk_child);
	if (expect(fk, "child's answer", 0, FK_P2C, 100, err, len))
		return -1;
	if (waitpid(fk_child, &st, 0) != fk_child || !WIFEXITED(st) || WEXITSTATUS(st))
		return victim_fail(err, len, "child %d did not exit cleanly", (int)fk_child);
	return 0;
}

static int talks(int a, int b, const char *what, char *err, size_t len);

/* A listener with a connection it has not accepted, when asked for. */
static int setup_pending(char *err, size_t len)
{
	struct sockaddr_un sa;
	socklen_t l;
	char name[64];
	int ls, cl;

	if (!getenv("RELIVE_UNIX_PENDING"))
		return 0;
	snprintf(name, sizeof(name), "relive-unix-pend-%d", (int)getpid());
	ls = make_bound(SOCK_STREAM, name, true, &sa, &l, err, len);
	if (ls < 0 || listen(ls, 4) || dup2(ls, PEND_FD) != PEND_FD)
		return victim_fail(err, len, "listener at fd %d: %s", PEND_FD, strerror(errno));
	close(ls);
	cl = socket(AF_UNIX, SOCK_STREAM, 0);
	if (cl < 0 || connect(cl, (struct sockaddr *)&sa, l) || dup2(cl, PEND_FD + 1) != PEND_FD + 1)
		return victim_fail(err, len, "client at fd %d: %s", PEND_FD + 1, strerror(errno));
	close(cl);
	return 0;
}

static int check_pending(char *err, size_t len)
{
	int sv, r;

	if (!getenv("RELIVE_UNIX_PENDING"))
		return 0;
	sv = accept4(PEND_FD, NULL, NULL, 0);
	if (sv < 0)
		return victim_fail(err, len, "fd %d: the pending connection is gone: %s", PEND_FD,
				   strerror(errno));
	r = talks(PEND_FD + 1, sv, "pending connection", err, len);
	close(sv);
	return r;
}

static int unix_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	char name[64];
	struct sockaddr_un sa;
	socklen_t l;
	int one = 1, tmp;

	if (strlen(ctx->workdir) + sizeof("/listen.sock") > sizeof(sa.sun_path))
		return victim_fail(err, len, "workdir %s too long for a socket path", ctx->workdir);
	if (setup_pairs(err, len) || setup_ext(err, len) || setup_scm(err, len) ||
	    setup_fork(err, len) || setup_pending(err, len))
		return -1;
	snprintf(lst_path, sizeof(lst_path), "%s/listen.sock", ctx->workdir);
	lst = make_bound(SOCK_STREAM, lst_path, false, NULL, NULL, err, len);
	if (lst < 0 || listen(lst, 7) || chmod(lst_path, 0640))
		return victim_fail(err, len, "listen/chmod %s: %s", lst_path, strerror(errno));
	snprintf(name, sizeof(name), "relive-unix-sq-%d", (int)getpid());
	lsq = make_bound(SOCK_SEQPACKET, name, true, &lsq_addr, &lsq_len, err, len);
	if (lsq < 0 || listen(lsq, 3))
		return victim_fail(err, len, "listen @%s: %s", name, strerror(errno));

	snprintf(dsrv_path, sizeof(dsrv_path), "%s/dgram.sock", ctx->workdir);
	dsrv = make_bound(SOCK_DGRAM, dsrv_path, false, &sa, &l, err, len);
	dcli = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (dsrv < 0 || dcli < 0 || connect(dcli, (struct sockaddr *)&sa, l) ||
	    setsockopt(dsrv, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)))
		return victim_fail(err, len, "dgram client of %s: %s", dsrv_path, strerror(errno));
	if (put_msgs(dcli, srv_sizes, NR(srv_sizes), 80, err, len))
		return -1;

	snprintf(name, sizeof(name), "relive-unix-dg-%d", (int)getpid());
	dabs = make_bound(SOCK_DGRAM, name, true, &dabs_addr, &dabs_len, err, len);
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (dabs < 0 || tmp < 0 || connect(tmp, (struct sockaddr *)&dabs_addr, dabs_len))
		return victim_fail(err, len, "dgram client of @%s: %s", name, strerror(errno));
	if (put_msgs(tmp, abs_sizes, NR(abs_sizes), 90, err, len))
		return -1;
	close(tmp);
	return 0;
}

/* Both ends of a connected pair carry a new byte each way. */
static int talks(int a, int b, const char *what, char *err, size_t len)
{
	char c = 0;

	if (write(a, "x", 1) != 1 || read(b, &c, 1) != 1 || c != 'x' || write(b, "y", 1) != 1 ||
	    read(a, &c, 1) != 1 || c != 'y')
		return victim_fail(err, len, "%s: no longer talks both ways: %s", what,
				   strerror(errno));
	return 0;
}

/* LISTENER accepts a new client connected to SA; they talk. */
static int accepts(int listener, int type, const struct sockaddr_un *sa, socklen_t l,
		   const char *what, char *err, size_t len)
{
	int cl = socket(AF_UNIX, type, 0), sv, r;

	if (cl < 0 || connect(cl, (const struct sockaddr *)sa, l))
		return victim_fail(err, len, "%s: a new client cannot connect: %s", what,
				   strerror(errno));
	sv = accept(listener, NULL, NULL);
	if (sv < 0) {
		close(cl);
		return victim_fail(err, len, "%s: accept: %s", what, strerror(errno));
	}
	r = talks(cl, sv, what, err, len);
	close(cl);
	close(sv);
	return r;
}

/* FROM (unless -1) writes one byte, TO reads it. */
static int one_byte(int from, int to, const char *what, char *err, size_t len)
{
	char c = 0;

	if ((from >= 0 && write(from, "o", 1) != 1) || recv(to, &c, 1, MSG_DONTWAIT) != 1 ||
	    (from >= 0 && c != 'o'))
		return victim_fail(err, len, "%s: a new byte does not pass: %s", what,
				   strerror(errno));
	return 0;
}

static int eof(int fd, const char *what, char *err, size_t len)
{
	char c;

	if (read(fd, &c, 1) != 0)
		return victim_fail(err, len, "%s: no EOF after the queued data", what);
	return 0;
}

static int check_opts(char *err, size_t len)
{
	int v = 0, pc = 0;
	socklen_t l = sizeof(v);
	struct stat st;

	if (getsockopt(s[0], SOL_SOCKET, SO_RCVBUF, &v, &l) || v != rcvbuf0)
		return victim_fail(err, len, "stream pair: SO_RCVBUF %d, was %d", v, rcvbuf0);
	if (getsockopt(s[1], SOL_SOCKET, SO_SNDBUF, &v, &l) || v != sndbuf1)
		return victim_fail(err, len, "stream pair: SO_SNDBUF %d, was %d", v, sndbuf1);
	if (!(fcntl(dg[1], F_GETFL) & O_NONBLOCK) || (fcntl(dg[0], F_GETFL) & O_NONBLOCK))
		return victim_fail(err, len, "dgram pair: O_NONBLOCK lost or added");
	if (getsockopt(dsrv, SOL_SOCKET, SO_PASSCRED, &pc, &l) || !pc)
		return victim_fail(err, len, "dgram server: SO_PASSCRED lost");
	if (stat(lst_path, &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0640)
		return victim_fail(err, len, "%s: not a socket of mode 0640 (%o)", lst_path,
				   (unsigned int)st.st_mode);
	return 0;
}

static int unix_check(struct victim_ctx *ctx, char *err, size_t len)
{
	struct sockaddr_un sa;
	socklen_t l;
	int tmp;

	(void)ctx;
	if (expect(s[1], "stream pair a->b", ST_SKIP, ST_AB, 11, err, len) ||
	    expect(s[0], "stream pair b->a", 0, ST_BA, 12, err, len) ||
	    expect_msgs(dg[1], "dgram pair a->b", dg_sizes, NR(dg_sizes), 20, err, len) ||
	    expect_msgs(dg[0], "dgram pair b->a", dg_sizes, 2, 30, err, len) ||
	    expect_msgs(sq[1], "seqpacket pair a->b", sq_sizes, NR(sq_sizes), 40, err, len) ||
	    expect_msgs(sq[0], "seqpacket pair b->a", sq_sizes, 2, 50, err, len) ||
	    expect_msgs(dsrv, "dgram server (path)", srv_sizes, NR(srv_sizes), 80, err, len) ||
	    expect_msgs(dabs, "dgram server (abstract)", abs_sizes, NR(abs_sizes), 90, err, len))
		return -1;
	if (expect(sh[1], "shut down pair", 0, SH_DATA, 60, err, len) ||
	    eof(sh[1], "shut down pair", err, len) ||
	    expect(gone, "pair with a closed end", 0, GONE_DATA, 70, err, len) ||
	    eof(gone, "pair with a closed end", err, len))
		return -1;
	if (one_byte(sh[1], sh[0], "shut down pair, open way", err, len))
		return -1;
	if (check_opts(err, len) || talks(s[0], s[1], "stream pair", err, len) ||
	    talks(dg[0], dg[1], "dgram pair", err, len) ||
	    talks(sq[0], sq[1], "seqpacket pair", err, len))
		return -1;
	if (one_byte(dcli, dsrv, "dgram client connected to the path server", err, len))
		return -1;
	l = (socklen_t)set_addr(&sa, lst_path, false);
	if (accepts(lst, SOCK_STREAM, &sa, l, "listener (path)", err, len) ||
	    accepts(lsq, SOCK_SEQPACKET, &lsq_addr, lsq_len, "listener (abstract)", err, len))
		return -1;
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (tmp < 0 || sendto(tmp, "d", 1, 0, (struct sockaddr *)&dabs_addr, dabs_len) != 1) {
		if (tmp >= 0)
			close(tmp);
		return victim_fail(err, len, "abstract dgram server: a new sender: %s",
				   strerror(errno));
	}
	close(tmp);
	if (one_byte(-1, dabs, "abstract dgram server", err, len))
		return -1;
	if (check_scm(err, len) || check_fork(err, len) || check_pending(err, len))
		return -1;
	if (getenv("RELIVE_UNIX_EXT") && send(EXT_FD, "ext-check", 9, 0) != 9)
		return victim_fail(err, len, "fd %d: send to %s: %s", EXT_FD,
				   getenv("RELIVE_UNIX_EXT"), strerror(errno));
	return 0;
}

const struct victim_part victim_part_unix = {
	.name = "unix",
	.setup = unix_setup,
	.check = unix_check,
};
