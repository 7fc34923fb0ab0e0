/*
 * victim-inet (protocol: victim.c): inet sockets must come back from a
 * dump. Setup makes a TCP listener on 127.0.0.1 and one on [::1] (v6only),
 * a UDP socket bound on 127.0.0.1, a UDP socket on [::1] connected to
 * another, and an established TCP connection to a peer outside the tree
 * (test/integration/inet-peer.py; RELIVE_INET_PEER="4 PORT" or "6 PORT").
 * The peer sends "N\n" lines, N = 1, 2, ...; the main loop reads them a
 * few bytes at a time (so the receive queue is rarely empty at a dump),
 * fails on a skipped number or a closed connection, and echoes each
 * number. After the trigger it checks: numbers kept coming after the
 * longest pause of the loop (the frozen window), each listener accepts a
 * new client on its port, the UDP sockets still receive on their ports,
 * the options are still set; then it says "BYE" and the peer gives its
 * own verdict. With RELIVE_INET_UNSUP set, fd 50 is a userfaultfd, which
 * the dump refuses after it has locked the connection.
 */
#include "victim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MIN_AFTER 20 /* numbers that must arrive after the frozen window */
#define ECHO_LEN 64 /* bytes of an echo */
#define UNSUP_FD 50 /* RELIVE_INET_UNSUP: a userfaultfd here */

static int lis4 = -1, lis6 = -1, udp4 = -1, udp6 = -1, udp6_target = -1, conn = -1;
static struct sockaddr_storage name_lis4, name_lis6, name_udp4, name_udp6, name_target;
static uint64_t last, after_gap;
static int64_t max_gap_ns;
static char inbuf[256], outbuf[256 * 1024 + 1];
static size_t inlen, outlen;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static socklen_t loopback(int family, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (void *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (void *)ss;

	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	in6->sin6_addr = in6addr_loopback;
	return sizeof(*in6);
}

static socklen_t sslen(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
					  sizeof(struct sockaddr_in6);
}

/* A socket bound to the loopback of FAMILY on an ephemeral port; its name in RET. */
static int bound(int family, int type, struct sockaddr_storage *ret, char *err, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t l = loopback(family, 0, &ss);
	int one = 1, s = socket(family, type, 0);

	if (s < 0)
		return victim_fail(err, len, "socket: %s", strerror(errno)), -1;
	if (family == AF_INET6 && setsockopt(s, SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one)))
		return victim_fail(err, len, "IPV6_V6ONLY: %s", strerror(errno)), -1;
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(s, (struct sockaddr *)&ss, l))
		return victim_fail(err, len, "bind: %s", strerror(errno)), -1;
	l = sizeof(*ret);
	if (getsockname(s, (struct sockaddr *)ret, &l))
		return victim_fail(err, len, "getsockname: %s", strerror(errno)), -1;
	return s;
}

static int connect_peer(char *err, size_t len)
{
	const char *env = getenv("RELIVE_INET_PEER");
	struct sockaddr_storage ss;
	unsigned int fam, port;
	int one = 1, fl;
	socklen_t l;

	if (!env || sscanf(env, "%u %u", &fam, &port) != 2 || (fam != 4 && fam != 6))
		return victim_fail(err, len, "RELIVE_INET_PEER is not \"4|6 PORT\"");
	l = loopback(fam == 4 ? AF_INET : AF_INET6, (uint16_t)port, &ss);
	conn = socket(ss.ss_family, SOCK_STREAM, 0);
	if (conn < 0 || connect(conn, (struct sockaddr *)&ss, l))
		return victim_fail(err, len, "connect to the peer on port %u: %s", port,
				   strerror(errno));
	fl = fcntl(conn, F_GETFL);
	if (setsockopt(conn, SOL_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    fcntl(conn, F_SETFL, fl | O_NONBLOCK))
		return victim_fail(err, len, "conn options: %s", strerror(errno));
	return 0;
}

static int inet_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	socklen_t l = loopback(AF_INET6, 0, &name_target);

	(void)ctx;
	(void)l;
	lis4 = bound(AF_INET, SOCK_STREAM, &name_lis4, err, len);
	if (lis4 < 0 || listen(lis4, 7))
		return lis4 < 0 ? -1 : victim_fail(err, len, "listen: %s", strerror(errno));
	lis6 = bound(AF_INET6, SOCK_STREAM, &name_lis6, err, len);
	if (lis6 < 0 || listen(lis6, 5))
		return lis6 < 0 ? -1 : victim_fail(err, len, "listen v6: %s", strerror(errno));
	udp4 = bound(AF_INET, SOCK_DGRAM, &name_udp4, err, len);
	udp6 = bound(AF_INET6, SOCK_DGRAM, &name_udp6, err, len);
	udp6_target = bound(AF_INET6, SOCK_DGRAM, &name_target, err, len);
	if (udp4 < 0 || udp6 < 0 || udp6_target < 0)
		return -1;
	if (connect(udp6, (struct sockaddr *)&name_target, sslen(&name_target)))
		return victim_fail(err, len, "connect udp6: %s", strerror(errno));
	if (connect_peer(err, len))
		return -1;
	/* A kind the dump refuses, after the connection: the dump fails once it is locked. */
	if (getenv("RELIVE_INET_UNSUP")) {
		int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

		if (u < 0 || dup2(u, UNSUP_FD) != UNSUP_FD)
			return victim_fail(err, len, "userfaultfd at fd %d: %s", UNSUP_FD,
					   strerror(errno));
		close(u);
	}
	return 0;
}

/* Echoes not yet taken by the socket (the peer may stop reading for a while). */
static int flush_out(char *err, size_t len)
{
	while (outlen) {
		ssize_t n = send(conn, outbuf, outlen, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0)
			return victim_fail(err, len, "echo after %" PRIu64 ": %s", last,
					   strerror(errno));
		memmove(outbuf, outbuf + n, outlen - (size_t)n);
		outlen -= (size_t)n;
	}
	return 0;
}

/* Complete lines of inbuf: check each number and queue its echo. */
static int take_lines(char *err, size_t len)
{
	char *nl;

	while (outlen + ECHO_LEN <= sizeof(outbuf) && (nl = memchr(inbuf, '\n', inlen))) {
		size_t n = (size_t)(nl - inbuf);
		uint64_t v;

		*nl = 0;
		if (n >= 24 || sscanf(inbuf, "%" SCNu64, &v) != 1)
			return victim_fail(err, len, "bad line from the peer '%.24s'", inbuf);
		if (v != last + 1)
			return victim_fail(err, len, "peer sent %" PRIu64 " after %" PRIu64, v,
					   last);
		last = v;
		after_gap++;
		/* Padded: a peer that stops reading fills up its window soon. */
		snprintf(outbuf + outlen, ECHO_LEN + 1, "%-*" PRIu64 "\n", ECHO_LEN - 1, v);
		outlen += ECHO_LEN;
		memmove(inbuf, nl + 1, inlen - n - 1);
		inlen -= n + 1;
	}
	return flush_out(err, len);
}

static int inet_run(struct victim_ctx *ctx, char *err, size_t len)
{
	struct timespec ts = { 0, 2 * 1000 * 1000 };
	int64_t prev = now_ns(), t;
	ssize_t n;

	(void)ctx;
	/*
	 * After the trigger, go on until MIN_AFTER numbers came after the
	 * frozen window (the peer resends on its retransmission timer, which
	 * backs off while the connection is locked), at most 10 s.
	 */
	for (int64_t stop_at = 0;;) {
		if (victim_stop && !stop_at)
			stop_at = now_ns() + 10000000000LL;
		if (victim_stop && (after_gap >= MIN_AFTER || now_ns() > stop_at))
			break;
		victim_counter++;
		t = now_ns();
		if (t - prev > max_gap_ns) {
			max_gap_ns = t - prev;
			after_gap = 0;
		}
		prev = t;
		/* A few bytes per round: the rest waits in the receive queue. */
		if (inlen + 12 <= sizeof(inbuf)) {
			n = recv(conn, inbuf + inlen, 12, 0);
			if (n == 0)
				return victim_fail(err, len, "the peer closed the connection after "
						   "%" PRIu64, last);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return victim_fail(err, len, "recv after %" PRIu64 ": %s", last,
						   strerror(errno));
			if (n > 0)
				inlen += (size_t)n;
		}
		if (take_lines(err, len))
			return -1;
		if (inlen + 12 > sizeof(inbuf) && !memchr(inbuf, '\n', inlen))
			return victim_fail(err, len, "no line end in %zu bytes", inlen);
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int same_name(int s, const struct sockaddr_storage *want, char *err, size_t len,
		     const char *what)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);

	if (getsockname(s, (struct sockaddr *)&ss, &l) || l != sslen(want) ||
	    memcmp(&ss, want, l))
		return victim_fail(err, len, "%s is no longer bound where it was", what);
	return 0;
}

/* The listener accepts a new client; one byte goes through. */
static int check_listener(int lis, const struct sockaddr_storage *name, char *err, size_t len,
			  const char *what)
{
	struct pollfd p = { .fd = lis, .events = POLLIN };
	int c = socket(name->ss_family, SOCK_STREAM, 0), a;
	char b = 0;

	if (same_name(lis, name, err, len, what))
		return -1;
	if (c < 0 || connect(c, (const struct sockaddr *)name, sslen(name)))
		return victim_fail(err, len, "%s: connect: %s", what, strerror(errno));
	if (poll(&p, 1, 2000) != 1)
		return victim_fail(err, len, "%s: no connection to accept", what);
	a = accept(lis, NULL, NULL);
	if (a < 0 || send(c, "x", 1, 0) != 1 || recv(a, &b, 1, 0) != 1 || b != 'x')
		return victim_fail(err, len, "%s: accept/exchange: %s", what, strerror(errno));
	close(a);
	close(c);
	return 0;
}

static int check_udp(int s, const struct sockaddr_storage *name, int from, char *err,
		     size_t len, const char *what)
{
	struct pollfd p = { .fd = s, .events = POLLIN };
	char b[8] = "";
	ssize_t n;

	if (same_name(s, name, err, len, what))
		return -1;
	/* A connected socket sends without an address: its peer must be back. */
	if (from >= 0)
		n = send(from, "udp", 3, 0);
	else if ((from = socket(name->ss_family, SOCK_DGRAM, 0)) >= 0)
		n = sendto(from, "udp", 3, 0, (const struct sockaddr *)name, sslen(name));
	else
		n = -1;
	if (n != 3)
		return victim_fail(err, len, "%s: send: %s", what, strerror(errno));
	if (poll(&p, 1, 2000) != 1 || recv(s, b, sizeof(b), 0) != 3 || memcmp(b, "udp", 3))
		return victim_fail(err, len, "%s: the datagram did not arrive", what);
	return 0;
}

static int check_options(char *err, size_t len)
{
	int v = 0;
	socklen_t l = sizeof(v);

	if (getsockopt(lis4, SOL_SOCKET, SO_REUSEADDR, &v, &l) || !v)
		return victim_fail(err, len, "SO_REUSEADDR of the listener is gone");
	l = sizeof(v);
	if (getsockopt(conn, SOL_TCP, TCP_NODELAY, &v, &l) || !v)
		return victim_fail(err, len, "TCP_NODELAY of the connection is gone");
	l = sizeof(v);
	if (getsockopt(lis6, SOL_IPV6, IPV6_V6ONLY, &v, &l) || !v)
		return victim_fail(err, len, "IPV6_V6ONLY of the v6 listener is gone");
	if (!(fcntl(conn, F_GETFL) & O_NONBLOCK))
		return victim_fail(err, len, "O_NONBLOCK of the connection is gone");
	return 0;
}

static int inet_check(struct victim_ctx *ctx, char *err, size_t len)
{
	int fl;

	(void)ctx;
	printf("inet: last number %" PRIu64 ", %" PRIu64 " after the longest pause (%" PRId64
	       " ms)\n",
	       last, after_gap, max_gap_ns / 1000000);
	if (after_gap < MIN_AFTER)
		return victim_fail(err, len, "only %" PRIu64 " numbers after the longest pause "
				   "(%" PRId64 " ms): the exchange did not go on",
				   after_gap, max_gap_ns / 1000000);
	if (check_options(err, len) ||
	    check_listener(lis4, &name_lis4, err, len, "TCP listener 127.0.0.1") ||
	    check_listener(lis6, &name_lis6, err, len, "TCP listener [::1]") ||
	    check_udp(udp4, &name_udp4, -1, err, len, "UDP 127.0.0.1") ||
	    check_udp(udp6_target, &name_target, udp6, err, len, "UDP [::1] (connected)"))
		return -1;
	fl = fcntl(conn, F_GETFL);
	if (fcntl(conn, F_SETFL, fl & ~O_NONBLOCK) ||
	    (outlen && send(conn, outbuf, outlen, MSG_NOSIGNAL) != (ssize_t)outlen) ||
	    send(conn, "BYE\n", 4, MSG_NOSIGNAL) != 4)
		return victim_fail(err, len, "BYE to the peer: %s", strerror(errno));
	/*
	 * Exiting now, with the peer's numbers unread, would reset the
	 * connection before the peer reads BYE: wait until it has closed.
	 */
	for (int i = 0; i < 500; i++) {
		struct pollfd p = { .fd = conn, .events = POLLIN };
		char b[512];

		if (poll(&p, 1, 10) == 1 && recv(conn, b, sizeof(b), MSG_DONTWAIT) <= 0)
			break;
	}
	return 0;
}

static const struct victim_part inet_part = {
	.name = "inet",
	.setup = inet_setup,
	.check = inet_check,
	.run = inet_run,
};

const struct victim_part *const victim_parts[] = { &inet_part, NULL };
