/*
 * Inet sockets at dump time (see dump-inet.h): the sock_diag table (TCP and
 * UDP, IPv4 and IPv6, every state) read with libnl once per dump, the
 * socket entry (addresses, state, backlog, common options) read from a copy
 * of the victim's socket taken with pidfd_getfd, and for an established
 * connection the network lock and repair mode, whose fate is decided by
 * dmp_inet_release(). The TCP_REPAIR reads themselves are in dump-tcp.c.
 */
#include "dump-inet.h"

#include "log.h"
#include "netlock.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

struct diag_sk {
	uint64_t ino;
	uint8_t family, protocol, state;
	uint32_t rqueue, wqueue;
};

/* One dump per relive process: the table, the copies in repair mode, the lock. */
static struct {
	bool collected, oom;
	struct diag_sk *sks;
	size_t nr, cap;
	int *held;
	size_t nr_held;
	char table[NETLOCK_TABLE_MAX];
} inet;

static const char *const tcp_states[] = {
	"?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
	"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
	"BOUND_INACTIVE",
};

static const char *state_name(unsigned int s)
{
	return s < sizeof(tcp_states) / sizeof(tcp_states[0]) ? tcp_states[s] : "?";
}

static int on_diag_msg(struct nl_msg *msg, void *arg)
{
	struct nlmsghdr *h = nlmsg_hdr(msg);
	const struct inet_diag_msg *m;
	struct diag_sk *n;

	(void)arg;
	if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || nlmsg_datalen(h) < (int)sizeof(*m))
		return NL_SKIP;
	m = nlmsg_data(h);
	if (inet.nr == inet.cap) {
		size_t cap = inet.cap ? inet.cap * 2 : 64;

		n = realloc(inet.sks, cap * sizeof(*n));
		if (!n) {
			inet.oom = true;
			return NL_STOP;
		}
		inet.sks = n;
		inet.cap = cap;
	}
	inet.sks[inet.nr++] = (struct diag_sk){ .ino = m->idiag_inode,
						.family = m->idiag_family,
						.protocol = (uint8_t)(uintptr_t)arg,
						.state = m->idiag_state,
						.rqueue = m->idiag_rqueue,
						.wqueue = m->idiag_wqueue };
	return NL_OK;
}

static int diag_dump(struct nl_sock *nl, uint8_t family, uint8_t protocol)
{
	struct inet_diag_req_v2 req = { .sdiag_family = family,
					.sdiag_protocol = protocol,
					.idiag_states = ~0U };
	int r;

	r = nl_socket_modify_cb(nl, NL_CB_VALID, NL_CB_CUSTOM, on_diag_msg,
				(void *)(uintptr_t)protocol);
	if (!r)
		r = nl_send_simple(nl, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &req, sizeof(req));
	if (r >= 0)
		r = nl_recvmsgs_default(nl);
	if (inet.oom)
		return -ENOMEM;
	if (r < 0) {
		pr_err("sock_diag dump of %s %s sockets: %s\n", family == AF_INET ? "IPv4" : "IPv6",
		       protocol == IPPROTO_TCP ? "TCP" : "UDP", nl_geterror(r));
		return -EIO;
	}
	return 0;
}

/* Every TCP and UDP socket of relive's network namespace. */
static int diag_collect(void)
{
	static const uint8_t fams[] = { AF_INET, AF_INET6 }, protos[] = { IPPROTO_TCP,
									 IPPROTO_UDP };
	struct nl_sock *nl = nl_socket_alloc();
	int r = 0;

	if (!nl)
		return -ENOMEM;
	nl_socket_disable_auto_ack(nl);
	r = nl_connect(nl, NETLINK_SOCK_DIAG);
	if (r < 0) {
		pr_err("cannot open a sock_diag netlink socket: %s\n", nl_geterror(r));
		nl_socket_free(nl);
		return -EIO;
	}
	for (size_t f = 0; !r && f < 2; f++)
		for (size_t p = 0; !r && p < 2; p++)
			r = diag_dump(nl, fams[f], protos[p]);
	nl_socket_free(nl);
	pr_debug("sock_diag: %zu inet sockets\n", inet.nr);
	return r;
}

static const struct diag_sk *diag_find(uint64_t ino)
{
	for (size_t i = 0; i < inet.nr; i++)
		if (inet.sks[i].ino == ino)
			return &inet.sks[i];
	return NULL;
}

bool dmp_inet_handles(const struct stat *st)
{
	if (!S_ISSOCK(st->st_mode))
		return false;
	if (!inet.collected) {
		inet.collected = true;
		if (diag_collect())
			pr_warn("inet sockets cannot be recognized without sock_diag\n");
	}
	return diag_find(st->st_ino) != NULL;
}

/* "ADDR:PORT" or "[ADDR]:PORT" of the raw address A. */
static void fmt_addr(int family, const ProtobufCBinaryData *a, uint32_t port, char *ret,
		     size_t len)
{
	char s[INET6_ADDRSTRLEN] = "?";

	if (a->len == (family == AF_INET ? 4U : 16U))
		inet_ntop(family, a->data, s, sizeof(s));
	snprintf(ret, len, family == AF_INET6 ? "[%s]:%u" : "%s:%u", s, port);
}

static int get_name(int sk, bool peer, InetSkEntry *ie, const char *what)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	ProtobufCBinaryData *a = peer ? &ie->dst_addr : &ie->src_addr;
	const void *src;
	int r;

	r = peer ? getpeername(sk, (struct sockaddr *)&ss, &l) :
		   getsockname(sk, (struct sockaddr *)&ss, &l);
	if (r) {
		r = -errno;
		pr_perror("%s: %s", what, peer ? "getpeername" : "getsockname");
		return r;
	}
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)&ss;

		src = &in->sin_addr;
		a->len = 4;
		*(peer ? &ie->dst_port : &ie->src_port) = ntohs(in->sin_port);
	} else {
		const struct sockaddr_in6 *in6 = (const void *)&ss;

		src = &in6->sin6_addr;
		a->len = 16;
		*(peer ? &ie->dst_port : &ie->src_port) = ntohs(in6->sin6_port);
	}
	a->data = malloc(a->len);
	if (!a->data)
		return -ENOMEM;
	memcpy(a->data, src, a->len);
	*(peer ? &ie->has_dst_addr : &ie->has_src_addr) = true;
	*(peer ? &ie->has_dst_port : &ie->has_src_port) = true;
	return 0;
}

static int get_int(int sk, int level, int opt, int *ret)
{
	socklen_t l = sizeof(*ret);

	return getsockopt(sk, level, opt, ret, &l) ? -errno : 0;
}

/* The common options: the ones a socket of this kind does not have are left out. */
static void read_options(int sk, InetSkEntry *ie)
{
	int v;

#define OPT_BOOL(level, opt, field)                                                                \
	do {                                                                                       \
		if (!get_int(sk, level, opt, &v)) {                                                \
			ie->has_##field = true;                                                    \
			ie->field = v != 0;                                                        \
		}                                                                                  \
	} while (0)
#define OPT_U32(level, opt, field)                                                                 \
	do {                                                                                       \
		if (!get_int(sk, level, opt, &v)) {                                                \
			ie->has_##field = true;                                                    \
			ie->field = (uint32_t)v;                                                   \
		}                                                                                  \
	} while (0)
	OPT_BOOL(SOL_SOCKET, SO_REUSEADDR, reuseaddr);
	OPT_BOOL(SOL_SOCKET, SO_REUSEPORT, reuseport);
	OPT_BOOL(SOL_SOCKET, SO_KEEPALIVE, keepalive);
	OPT_BOOL(SOL_SOCKET, SO_BROADCAST, broadcast);
	OPT_U32(SOL_SOCKET, SO_SNDBUF, sndbuf);
	OPT_U32(SOL_SOCKET, SO_RCVBUF, rcvbuf);
	if (ie->family == AF_INET6)
		OPT_BOOL(SOL_IPV6, IPV6_V6ONLY, v6only);
	if (ie->protocol == IPPROTO_TCP) {
		OPT_BOOL(SOL_TCP, TCP_NODELAY, nodelay);
		OPT_BOOL(SOL_TCP, TCP_CORK, cork);
		OPT_U32(SOL_TCP, TCP_KEEPIDLE, keepidle);
		OPT_U32(SOL_TCP, TCP_KEEPINTVL, keepintvl);
		OPT_U32(SOL_TCP, TCP_KEEPCNT, keepcnt);
	}
#undef OPT_BOOL
#undef OPT_U32
}

static int hold(int sk)
{
	int *n = realloc(inet.held, (inet.nr_held + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	inet.held = n;
	inet.held[inet.nr_held++] = sk;
	return 0;
}

/* Lock the connection, repair mode on (kept by hold()), then read it. */
static int dump_established(struct dump_ctx *ctx, int fd, int *sk, InetSkEntry *ie,
			    const char *what)
{
	struct netlock_conn c = { .family = (int)ie->family,
				  .sport = (uint16_t)ie->src_port,
				  .dport = (uint16_t)ie->dst_port };
	TcpStreamEntry *t;
	int on = 1, r;

	if (!ctx->opts->tcp_established) {
		pr_err("pid %d: fd %d: %s is an established TCP connection: dump it with "
		       "--tcp-established\n",
		       (int)ctx->pid, fd, what);
		return -ENOTSUP;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	tcp_stream_entry__init(t);
	ie->tcp = t;
	memcpy(c.src, ie->src_addr.data, ie->src_addr.len);
	memcpy(c.dst, ie->dst_addr.data, ie->dst_addr.len);
	if (!inet.table[0])
		netlock_table_name((int)ctx->opts->tree, inet.table, sizeof(inet.table));
	r = netlock_add(inet.table, &c);
	if (r)
		return r;
	t->lock_table = strdup(inet.table);
	if (!t->lock_table)
		return -ENOMEM;
	if (setsockopt(*sk, SOL_TCP, TCP_REPAIR, &on, sizeof(on))) {
		r = -errno;
		pr_perror("pid %d: fd %d: %s: TCP_REPAIR on", (int)ctx->pid, fd, what);
		return r;
	}
	r = hold(*sk);
	if (r) {
		on = 0;
		setsockopt(*sk, SOL_TCP, TCP_REPAIR, &on, sizeof(on));
		return r;
	}
	*sk = -1;
	return dmp_tcp_read(inet.held[inet.nr_held - 1], what, t);
}

/* The state of the socket is one relive restores; else a clear error. */
static int check_state(struct dump_ctx *ctx, int fd, const struct diag_sk *d, InetSkEntry *ie,
		       const char *what)
{
	const char *proto = ie->protocol == IPPROTO_TCP ? "TCP" : "UDP";

	if (ie->protocol == IPPROTO_UDP && (d->state == TCP_CLOSE || d->state == TCP_ESTABLISHED))
		return 0;
	if (ie->protocol == IPPROTO_TCP && d->state == TCP_LISTEN && d->rqueue) {
		pr_err("pid %d: fd %d: listening TCP socket %s has %u connections not yet "
		       "accepted: not supported\n",
		       (int)ctx->pid, fd, what, d->rqueue);
		return -ENOTSUP;
	}
	if (ie->protocol == IPPROTO_TCP &&
	    (d->state == TCP_LISTEN || d->state == TCP_ESTABLISHED || d->state == TCP_CLOSE ||
	     d->state == 13 /* TCP_BOUND_INACTIVE */))
		return 0;
	pr_err("pid %d: fd %d: %s socket %s in state %s: not supported\n", (int)ctx->pid, fd,
	       proto, what, state_name(d->state));
	return -ENOTSUP;
}

static int fill_entry(struct dump_ctx *ctx, int fd, int *sk, const struct diag_sk *d,
		      InetSkEntry *ie)
{
	char what[160], src[64], dst[64] = "";
	int v, r;

	ie->family = d->family;
	ie->protocol = d->protocol;
	ie->ino = d->ino;
	ie->state = d->state == 13 ? TCP_CLOSE : d->state;
	r = get_int(*sk, SOL_SOCKET, SO_TYPE, &v);
	if (r) {
		pr_err("pid %d: fd %d: getsockopt(SO_TYPE): %s\n", (int)ctx->pid, fd, strerror(-r));
		return r;
	}
	ie->type = (uint32_t)v;
	snprintf(what, sizeof(what), "socket:[%llu]", (unsigned long long)d->ino);
	r = get_name(*sk, false, ie, what);
	if (r)
		return r;
	fmt_addr(ie->family, &ie->src_addr, ie->src_port, src, sizeof(src));
	if (d->state == TCP_ESTABLISHED) {
		r = get_name(*sk, true, ie, what);
		if (r)
			return r;
		fmt_addr(ie->family, &ie->dst_addr, ie->dst_port, dst, sizeof(dst));
	}
	snprintf(what, sizeof(what), "%s%s%s", src, dst[0] ? " -> " : "", dst);
	r = check_state(ctx, fd, d, ie, what);
	if (r)
		return r;
	if (d->state == TCP_LISTEN) {
		ie->has_backlog = true;
		ie->backlog = d->wqueue; /* sk_max_ack_backlog, for a listener */
	}
	read_options(*sk, ie);
	pr_debug("pid %d: fd %d: %s %s %s\n", (int)ctx->pid, fd,
		 ie->protocol == IPPROTO_TCP ? "TCP" : "UDP", what, state_name(d->state));
	if (ie->protocol == IPPROTO_TCP && d->state == TCP_ESTABLISHED)
		return dump_established(ctx, fd, sk, ie, what);
	return 0;
}

int dmp_inet_fill(struct dump_ctx *ctx, int fd, const struct stat *st,
		  const struct proc_fdinfo *info, FileEntry *fe)
{
	const struct diag_sk *d = diag_find(st->st_ino);
	InetSkEntry *ie = calloc(1, sizeof(*ie));
	_cleanup_close_ int sk = -1;

	if (!ie)
		return -ENOMEM;
	inet_sk_entry__init(ie);
	fe->inet = ie;
	fe->type = FILE_TYPE__FILE_INET_SK;
	ie->flags = info->flags & O_NONBLOCK;
	if (!d) {
		pr_err("pid %d: fd %d: socket:[%llu] is not in the sock_diag table\n",
		       (int)ctx->pid, fd, (unsigned long long)st->st_ino);
		return -ENOENT;
	}
	sk = proc_fd_copy(ctx->pid, fd);
	if (sk < 0)
		return sk;
	return fill_entry(ctx, fd, &sk, d, ie);
}

void dmp_inet_release(bool keep)
{
	int off = 0;

	for (size_t i = 0; i < inet.nr_held; i++) {
		if (!keep && setsockopt(inet.held[i], SOL_TCP, TCP_REPAIR, &off, sizeof(off)))
			pr_perror("TCP_REPAIR off on a connection of the dump");
		close(inet.held[i]);
	}
	if (!keep && inet.table[0] && netlock_remove(inet.table))
		pr_err("the network lock %s is left: remove it with `nft delete table inet %s`\n",
		       inet.table, inet.table);
	else if (keep && inet.table[0])
		pr_info("network lock %s kept until the restore\n", inet.table);
	free(inet.held);
	free(inet.sks);
	memset(&inet, 0, sizeof(inet));
}
