/*
 * Inet sockets at restore (see rst-inet.h). A socket is created with its
 * family, type and protocol, then: an unbound or bound TCP/UDP socket is
 * bound to its address; a listener is bound and listens with its backlog
 * (SO_REUSEADDR on meanwhile, so connections of the dumped process in
 * TIME_WAIT do not keep it from its port); a UDP socket is connected again
 * when it was; an established TCP connection goes through rst-tcp.c. The
 * dumped options and O_NONBLOCK come last. Datagrams queued on a UDP socket
 * are not kept (as for a datagram lost on the wire).
 */
#include "rst-inet.h"

#include "log.h"
#include "netlock.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static bool good_table(const char *t)
{
	size_t k = strlen(NETLOCK_TABLE_PREFIX), n = strlen(t);

	if (n <= k || n >= NETLOCK_TABLE_MAX || strncmp(t, NETLOCK_TABLE_PREFIX, k))
		return false;
	/* The name goes into an nft script: digits only after the prefix. */
	for (size_t i = k; i < n; i++)
		if (t[i] < '0' || t[i] > '9')
			return false;
	return true;
}

const char *rst_inet_bad(const FileEntry *f)
{
	const InetSkEntry *ie = f->inet;
	size_t alen;

	if (!ie)
		return "no inet socket message";
	if (ie->family != AF_INET && ie->family != AF_INET6)
		return "family is neither AF_INET nor AF_INET6";
	alen = ie->family == AF_INET ? 4 : 16;
	if (!((ie->type == SOCK_STREAM && ie->protocol == IPPROTO_TCP) ||
	      (ie->type == SOCK_DGRAM && ie->protocol == IPPROTO_UDP)))
		return "not a TCP stream or a UDP datagram socket";
	if (!ie->has_src_addr || ie->src_addr.len != alen || ie->src_port > 65535)
		return "bad bound address";
	if (ie->state != TCP_CLOSE && ie->state != TCP_ESTABLISHED && ie->state != TCP_LISTEN)
		return "state is not CLOSE, ESTABLISHED or LISTEN";
	if (ie->state == TCP_LISTEN && (ie->protocol != IPPROTO_TCP || !ie->has_backlog))
		return "a listener must be TCP and have a backlog";
	if (ie->state == TCP_ESTABLISHED &&
	    (!ie->has_dst_addr || ie->dst_addr.len != alen || !ie->dst_port ||
	     ie->dst_port > 65535))
		return "bad peer address";
	if ((ie->protocol == IPPROTO_TCP && ie->state == TCP_ESTABLISHED) != (ie->tcp != NULL))
		return "an established TCP connection, and only one, has a tcp message";
	if (ie->tcp && ie->tcp->unsent_len > ie->tcp->snd_queue.len)
		return "more unsent bytes than bytes in the send queue";
	if (ie->tcp && ie->tcp->lock_table && !good_table(ie->tcp->lock_table))
		return "bad network lock table name";
	return NULL;
}

static socklen_t make_addr(const InetSkEntry *ie, bool peer, struct sockaddr_storage *ss)
{
	const ProtobufCBinaryData *a = peer ? &ie->dst_addr : &ie->src_addr;
	uint16_t port = htons((uint16_t)(peer ? ie->dst_port : ie->src_port));

	memset(ss, 0, sizeof(*ss));
	if (ie->family == AF_INET) {
		struct sockaddr_in *in = (void *)ss;

		in->sin_family = AF_INET;
		in->sin_port = port;
		memcpy(&in->sin_addr, a->data, 4);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (void *)ss;

	in6->sin6_family = AF_INET6;
	in6->sin6_port = port;
	memcpy(&in6->sin6_addr, a->data, 16);
	return sizeof(*in6);
}

static int set_int(struct rst_child *c, int sk, int level, int opt, int v, const char *what,
		   const char *name)
{
	if (setsockopt(sk, level, opt, &v, sizeof(v))) {
		int r = -errno;

		rst_child_fail(c, "%s: setsockopt(%s, %d): %s", what, name, v, strerror(errno));
		return r;
	}
	return 0;
}

/* A buffer size as getsockopt gives it (doubled): set only if not the default. */
static int set_buf(struct rst_child *c, int sk, int opt, uint32_t v, const char *what,
		   const char *name)
{
	int cur;
	socklen_t l = sizeof(cur);

	if (!getsockopt(sk, SOL_SOCKET, opt, &cur, &l) && (uint32_t)cur == v)
		return 0;
	return set_int(c, sk, SOL_SOCKET, opt, (int)(v / 2), what, name);
}

static int set_options(struct rst_child *c, int sk, const InetSkEntry *ie, const char *what)
{
	int r = 0;

#define SET(level, opt, field)                                                                     \
	do {                                                                                       \
		if (!r && ie->has_##field)                                                         \
			r = set_int(c, sk, level, opt, (int)ie->field, what, #opt);                \
	} while (0)
	SET(SOL_SOCKET, SO_REUSEADDR, reuseaddr);
	SET(SOL_SOCKET, SO_REUSEPORT, reuseport);
	SET(SOL_SOCKET, SO_KEEPALIVE, keepalive);
	SET(SOL_SOCKET, SO_BROADCAST, broadcast);
	if (ie->protocol == IPPROTO_TCP) {
		SET(SOL_TCP, TCP_NODELAY, nodelay);
		SET(SOL_TCP, TCP_CORK, cork);
		SET(SOL_TCP, TCP_KEEPIDLE, keepidle);
		SET(SOL_TCP, TCP_KEEPINTVL, keepintvl);
		SET(SOL_TCP, TCP_KEEPCNT, keepcnt);
	}
#undef SET
	if (!r && ie->has_sndbuf)
		r = set_buf(c, sk, SO_SNDBUF, ie->sndbuf, what, "SO_SNDBUF");
	if (!r && ie->has_rcvbuf)
		r = set_buf(c, sk, SO_RCVBUF, ie->rcvbuf, what, "SO_RCVBUF");
	return r;
}

/* bind() to the dumped address, or connect() (PEER) to the dumped peer. */
static int bind_or_connect(struct rst_child *c, int sk, const InetSkEntry *ie, bool peer,
			   const char *what)
{
	struct sockaddr_storage ss;
	socklen_t l = make_addr(ie, peer, &ss);
	int r = peer ? connect(sk, (struct sockaddr *)&ss, l) : bind(sk, (struct sockaddr *)&ss, l);

	if (r) {
		r = -errno;
		rst_child_fail(c, "%s: %s: %s", what, peer ? "connect" : "bind", strerror(errno));
	}
	return r;
}

static int restore_established(struct rst_child *c, int sk, const InetSkEntry *ie,
			       const char *what)
{
	int r = set_int(c, sk, SOL_TCP, TCP_REPAIR, 1, what, "TCP_REPAIR");

	if (!r)
		r = rst_tcp_before_connect(c, sk, ie->tcp, what);
	/* In repair mode the port may be shared with a listener: the kernel allows it. */
	if (!r)
		r = bind_or_connect(c, sk, ie, false, what);
	if (!r)
		r = bind_or_connect(c, sk, ie, true, what);
	if (!r)
		r = rst_tcp_after_connect(c, sk, ie->tcp, what);
	return r;
}

static int restore_state(struct rst_child *c, int sk, const InetSkEntry *ie, const char *what)
{
	int r = 0;

	if (ie->family == AF_INET6 && ie->has_v6only)
		r = set_int(c, sk, SOL_IPV6, IPV6_V6ONLY, ie->v6only, what, "IPV6_V6ONLY");
	if (r)
		return r;
	if (ie->tcp)
		return restore_established(c, sk, ie, what);
	if (ie->state == TCP_LISTEN)
		r = set_int(c, sk, SOL_SOCKET, SO_REUSEADDR, 1, what, "SO_REUSEADDR");
	if (!r && ie->src_port)
		r = bind_or_connect(c, sk, ie, false, what);
	if (!r && ie->state == TCP_LISTEN && listen(sk, (int)ie->backlog)) {
		r = -errno;
		rst_child_fail(c, "%s: listen(%u): %s", what, ie->backlog, strerror(errno));
	}
	if (!r && ie->protocol == IPPROTO_UDP && ie->state == TCP_ESTABLISHED)
		r = bind_or_connect(c, sk, ie, true, what);
	return r;
}

int rst_inet_open(struct rst_child *c, const struct rst_fd *fd)
{
	const InetSkEntry *ie = fd->file->inet;
	char what[128], a[INET6_ADDRSTRLEN] = "?";
	int sk, r;

	inet_ntop((int)ie->family, ie->src_addr.data, a, sizeof(a));
	snprintf(what, sizeof(what), "fd %u (%s socket %s%s%s:%u)", fd->fd,
		 ie->protocol == IPPROTO_TCP ? "TCP" : "UDP", ie->family == AF_INET6 ? "[" : "",
		 a, ie->family == AF_INET6 ? "]" : "", ie->src_port);
	sk = socket((int)ie->family, (int)ie->type | SOCK_CLOEXEC, (int)ie->protocol);
	if (sk < 0) {
		r = -errno;
		rst_child_fail(c, "%s: socket: %s", what, strerror(errno));
		return r;
	}
	r = restore_state(c, sk, ie, what);
	if (!r)
		r = set_options(c, sk, ie, what);
	if (!r && (ie->flags & O_NONBLOCK) && fcntl(sk, F_SETFL, O_NONBLOCK)) {
		r = -errno;
		rst_child_fail(c, "%s: O_NONBLOCK: %s", what, strerror(errno));
	}
	if (r) {
		close(sk);
		return r;
	}
	return sk;
}

void rst_inet_unlock(const struct rst_plan *p)
{
	const char *done = NULL;

	for (size_t i = 0; i < p->nr_files; i++) {
		const FileEntry *f = p->files[i];
		const char *t;

		if (f->type != FILE_TYPE__FILE_INET_SK || !f->inet || !f->inet->tcp ||
		    !f->inet->tcp->lock_table)
			continue;
		t = f->inet->tcp->lock_table;
		/* One table per dump; checked by rst_inet_bad() at load. */
		if ((done && !strcmp(done, t)) || !good_table(t))
			continue;
		done = t;
		if (netlock_remove(t))
			pr_err("the network lock %s is left: remove it with `nft delete table inet "
			       "%s`\n",
			       t, t);
		else
			pr_info("network lock %s removed\n", t);
	}
}
