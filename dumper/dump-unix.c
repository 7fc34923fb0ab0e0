/*
 * Unix sockets of a frozen process: what sock_diag says about each (type,
 * state, name, peer, pending connections, queue lengths, shutdown), asked
 * through libnl; the options and the receive queue, read from a copy of the
 * socket taken with pidfd_getfd. The queue is peeked (SO_PEEK_OFF with
 * MSG_PEEK), never consumed, so a --leave-running victim keeps its data.
 * Once the whole tree is seen, dmp_unix_check() decides whether every peer
 * can be rebuilt: in the tree (two connected sockets, even in two processes;
 * a datagram socket connected to a name only within its process), or
 * outside it with --ext-unix-sk for a datagram socket connected to a name.
 */
#include "dump-fdkinds.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define NAME_MAX_LEN (sizeof(((struct sockaddr_un *)0)->sun_path))
/* One peek: a datagram larger than this is refused (SO_SNDBUF caps it far below). */
#define PEEK_BUF (4U << 20)

/* What sock_diag reports about one unix socket. */
struct udiag {
	uint64_t want; /* the inode asked for */
	bool found;
	uint8_t type, state, shutdown;
	bool has_peer;
	uint32_t peer;
	bool has_vfs;
	uint32_t vfs_ino;
	uint32_t rqueue, wqueue;
	uint32_t nr_icons;
	uint8_t name[NAME_MAX_LEN];
	size_t name_len;
};

static int diag_cb(struct nl_msg *msg, void *arg)
{
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct unix_diag_msg *m = nlmsg_data(nlh);
	struct nlattr *tb[UNIX_DIAG_MAX + 1];
	struct udiag *d = arg;

	if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY || m->udiag_ino != d->want)
		return NL_OK;
	if (nlmsg_parse(nlh, sizeof(*m), tb, UNIX_DIAG_MAX, NULL) < 0)
		return NL_OK;
	d->found = true;
	d->type = m->udiag_type;
	d->state = m->udiag_state;
	if (tb[UNIX_DIAG_NAME]) {
		d->name_len = (size_t)nla_len(tb[UNIX_DIAG_NAME]);
		if (d->name_len > sizeof(d->name))
			d->name_len = sizeof(d->name);
		memcpy(d->name, nla_data(tb[UNIX_DIAG_NAME]), d->name_len);
		/* A path comes with its terminating NUL; an abstract name is all bytes. */
		if (d->name_len && d->name[0])
			d->name_len = strnlen((const char *)d->name, d->name_len);
	}
	if (tb[UNIX_DIAG_VFS] && nla_len(tb[UNIX_DIAG_VFS]) >= (int)sizeof(struct unix_diag_vfs)) {
		d->has_vfs = true;
		d->vfs_ino = ((struct unix_diag_vfs *)nla_data(tb[UNIX_DIAG_VFS]))->udiag_vfs_ino;
	}
	if (tb[UNIX_DIAG_PEER]) {
		d->has_peer = true;
		d->peer = nla_get_u32(tb[UNIX_DIAG_PEER]);
	}
	if (tb[UNIX_DIAG_ICONS])
		d->nr_icons = (uint32_t)nla_len(tb[UNIX_DIAG_ICONS]) / sizeof(uint32_t);
	if (tb[UNIX_DIAG_RQLEN] &&
	    nla_len(tb[UNIX_DIAG_RQLEN]) >= (int)sizeof(struct unix_diag_rqlen)) {
		struct unix_diag_rqlen *q = nla_data(tb[UNIX_DIAG_RQLEN]);

		d->rqueue = q->udiag_rqueue;
		d->wqueue = q->udiag_wqueue;
	}
	if (tb[UNIX_DIAG_SHUTDOWN])
		d->shutdown = nla_get_u8(tb[UNIX_DIAG_SHUTDOWN]);
	return NL_OK;
}

/*
 * sock_diag's view of unix socket INO (a dump of every unix socket of our
 * network namespace, filtered here). 0 with ret->found false: not a unix
 * socket. QUIET: no log (the caller only wants to know the family).
 */
static int diag_get(uint64_t ino, struct udiag *ret, bool quiet)
{
	struct unix_diag_req req = {
		.sdiag_family = AF_UNIX,
		.udiag_states = ~0U,
		.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER |
			      UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN,
	};
	struct nl_sock *sk;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->want = ino;
	sk = nl_socket_alloc();
	if (!sk)
		return -ENOMEM;
	nl_socket_disable_auto_ack(sk);
	r = nl_connect(sk, NETLINK_SOCK_DIAG);
	if (!r)
		r = nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, diag_cb, ret);
	if (!r)
		r = nl_send_simple(sk, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &req, sizeof(req));
	if (r >= 0)
		r = nl_recvmsgs_default(sk);
	nl_socket_free(sk);
	if (r < 0) {
		if (!quiet)
			pr_err("sock_diag (NETLINK_SOCK_DIAG, AF_UNIX) for socket ino %" PRIu64
			       ": %s\n", ino, nl_geterror(r));
		return -EIO;
	}
	return 0;
}

/* The inode of a "socket:[N]" link, or 0. */
static uint64_t link_ino(const char *link)
{
	unsigned long long v;

	if (sscanf(link, "socket:[%llu]", &v) != 1)
		return 0;
	return v;
}

bool dmp_unix_handles(const char *link, const struct stat *st)
{
	struct udiag d;

	if (!S_ISSOCK(st->st_mode) || !link_ino(link))
		return false;
	return !diag_get(st->st_ino, &d, true) && d.found;
}

static int get_int(int sk, int opt, const char *name, const char *what, int *ret)
{
	socklen_t l = sizeof(*ret);

	if (getsockopt(sk, SOL_SOCKET, opt, ret, &l)) {
		int r = -errno;

		pr_perror("%s: getsockopt(%s)", what, name);
		return r;
	}
	return 0;
}

/* True (and the fds closed) if MH carries SCM_RIGHTS. */
static bool carries_fds(struct msghdr *mh)
{
	bool fds = false;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		fds = true;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
			close(((int *)CMSG_DATA(c))[i]);
	}
	return fds;
}

static int queue_append(UnixSkEntry *ue, const uint8_t *buf, size_t n, size_t *total)
{
	ProtobufCBinaryData *q = realloc(ue->queue, (ue->n_queue + 1) * sizeof(*q));

	if (!q)
		return -ENOMEM;
	ue->queue = q;
	q[ue->n_queue].data = malloc(n ? n : 1);
	if (!q[ue->n_queue].data)
		return -ENOMEM;
	memcpy(q[ue->n_queue].data, buf, n);
	q[ue->n_queue++].len = n;
	*total += n;
	return 0;
}

/* Every message of SK's receive queue from peek offset 0 on, without consuming. */
static int peek_all(int sk, bool stream, const char *what, UnixSkEntry *ue)
{
	_cleanup_free_ uint8_t *buf = malloc(PEEK_BUF);
	union {
		struct cmsghdr h;
		uint8_t b[CMSG_SPACE(253 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
	} cm;
	size_t total = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct iovec iov = { buf, PEEK_BUF };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
				     .msg_controllen = sizeof(cm.b) };
		ssize_t n = recvmsg(sk, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		int r;

		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0) {
			r = -errno;
			pr_perror("%s: peek at byte %zu of its receive queue", what, total);
			return r;
		}
		if (carries_fds(&mh) || (mh.msg_flags & MSG_CTRUNC)) {
			pr_err("%s: its receive queue holds a message with file descriptors "
			       "(SCM_RIGHTS) after %zu bytes: not supported\n", what, total);
			return -ENOTSUP;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			pr_err("%s: a queued message is larger than %u bytes\n", what, PEEK_BUF);
			return -ENOTSUP;
		}
		if (n == 0 && stream)
			return 0; /* end of file: the peer is gone */
		if (n == 0) {
			/* Peeking cannot step past it. */
			pr_err("%s: a zero-length message is queued after %zu bytes: not "
			       "supported\n", what, total);
			return -ENOTSUP;
		}
		if (total + (size_t)n > DMP_ANON_MAX_DATA) {
			pr_err("%s: more than %u bytes queued: not supported\n", what,
			       DMP_ANON_MAX_DATA);
			return -ENOTSUP;
		}
		if (stream && ue->n_queue) {
			ProtobufCBinaryData *q = &ue->queue[0];
			uint8_t *m = realloc(q->data, q->len + (size_t)n);

			if (!m)
				return -ENOMEM;
			memcpy(m + q->len, buf, (size_t)n);
			q->data = m;
			q->len += (size_t)n;
			total += (size_t)n;
			continue;
		}
		r = queue_append(ue, buf, (size_t)n, &total);
		if (r)
			return r;
	}
}

/* The queue of SK (a copy of the victim's socket), its peek offset put back. */
static int read_queue(int sk, bool stream, const char *what, UnixSkEntry *ue)
{
	int old, zero = 0, r, r2 = 0;

	r = get_int(sk, SO_PEEK_OFF, "SO_PEEK_OFF", what, &old);
	if (r)
		return r;
	ue->has_peek_off = old >= 0;
	ue->peek_off = old;
	if (setsockopt(sk, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero))) {
		r = -errno;
		pr_perror("%s: setsockopt(SO_PEEK_OFF, 0)", what);
		return r;
	}
	r = peek_all(sk, stream, what, ue);
	if (setsockopt(sk, SOL_SOCKET, SO_PEEK_OFF, &old, sizeof(old))) {
		r2 = -errno;
		pr_perror("%s: cannot put SO_PEEK_OFF back to %d", what, old);
	}
	return r ? r : r2;
}

/* A bound path: it must still name this socket; its mode and owner. */
static int fill_path(const struct udiag *d, const char *what, UnixSkEntry *ue)
{
	char path[NAME_MAX_LEN + 1];
	struct stat st;

	memcpy(path, d->name, d->name_len);
	path[d->name_len] = 0;
	if (path[0] != '/') {
		pr_err("%s: bound to the relative path '%s': not supported\n", what, path);
		return -ENOTSUP;
	}
	if (lstat(path, &st) || !S_ISSOCK(st.st_mode) || !d->has_vfs ||
	    (uint32_t)st.st_ino != d->vfs_ino) {
		pr_err("%s: bound to %s, which was removed or replaced since: not supported\n",
		       what, path);
		return -ENOTSUP;
	}
	ue->has_mode = ue->has_uid = ue->has_gid = true;
	ue->mode = st.st_mode & 07777;
	ue->uid = st.st_uid;
	ue->gid = st.st_gid;
	return 0;
}

static int fill_from_diag(const struct udiag *d, const char *what, UnixSkEntry *ue)
{
	bool stream = d->type != SOCK_DGRAM;

	if (d->type != SOCK_STREAM && d->type != SOCK_DGRAM && d->type != SOCK_SEQPACKET) {
		pr_err("%s: unix socket of type %u: not supported\n", what, d->type);
		return -ENOTSUP;
	}
	if (d->state == TCP_LISTEN && (d->nr_icons || d->rqueue)) {
		pr_err("%s: listening socket with %u connection(s) not accepted yet: not "
		       "supported\n", what, d->nr_icons ? d->nr_icons : d->rqueue);
		return -ENOTSUP;
	}
	/* A closed stream peer shuts the socket down both ways; an embryo does not. */
	if (stream && d->has_peer && !d->peer && d->shutdown != 3) {
		pr_err("%s: connected to a connection its listener has not accepted yet: not "
		       "supported\n", what);
		return -ENOTSUP;
	}
	ue->type = d->type;
	ue->state = d->state;
	ue->has_shutdown = true;
	ue->shutdown = d->shutdown;
	if (d->has_peer) {
		ue->has_peer_ino = true;
		ue->peer_ino = d->peer;
		ue->has_peer_gone = !d->peer;
		ue->peer_gone = !d->peer;
	}
	if (d->state == TCP_LISTEN) {
		ue->has_backlog = true;
		ue->backlog = d->wqueue;
	}
	if (d->name_len) {
		ue->has_name = true;
		ue->name.len = d->name_len;
		ue->name.data = malloc(d->name_len);
		if (!ue->name.data)
			return -ENOMEM;
		memcpy(ue->name.data, d->name, d->name_len);
		if (d->name[0])
			return fill_path(d, what, ue);
	}
	return 0;
}

int dmp_unix_fill(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		  const struct proc_fdinfo *info, FileEntry *fe)
{
	UnixSkEntry *ue = calloc(1, sizeof(*ue));
	_cleanup_close_ int sk = -1;
	int rcvbuf, sndbuf, passcred, r;
	char what[96];
	struct udiag d;

	if (!ue)
		return -ENOMEM;
	unix_sk_entry__init(ue);
	fe->unix_sk = ue;
	fe->type = FILE_TYPE__FILE_UNIX_SK;
	snprintf(what, sizeof(what), "pid %d: fd %d (%s)", (int)ctx->pid, fd, link);
	ue->ino = st->st_ino;
	ue->flags = info->flags & ~O_CLOEXEC;
	ue->has_owner_pid = ue->has_owner_fd = true;
	ue->owner_pid = (uint32_t)ctx->pid;
	ue->owner_fd = (uint32_t)fd;
	r = diag_get(st->st_ino, &d, false);
	if (!r && !d.found) {
		pr_err("%s: sock_diag does not know this unix socket (another network "
		       "namespace?)\n", what);
		r = -ENOENT;
	}
	if (!r)
		r = fill_from_diag(&d, what, ue);
	if (r)
		return r;
	sk = proc_fd_copy(ctx->pid, fd);
	if (sk < 0)
		return sk;
	r = get_int(sk, SO_RCVBUF, "SO_RCVBUF", what, &rcvbuf);
	if (!r)
		r = get_int(sk, SO_SNDBUF, "SO_SNDBUF", what, &sndbuf);
	if (!r)
		r = get_int(sk, SO_PASSCRED, "SO_PASSCRED", what, &passcred);
	if (r)
		return r;
	ue->rcvbuf = (uint32_t)rcvbuf;
	ue->sndbuf = (uint32_t)sndbuf;
	ue->has_passcred = true;
	ue->passcred = passcred != 0;
	if (d.state == TCP_LISTEN)
		return 0;
	r = read_queue(sk, d.type == SOCK_STREAM, what, ue);
	if (!r && ue->n_queue)
		pr_debug("%s: %zu message(s) queued\n", what, ue->n_queue);
	return r;
}

static const UnixSkEntry *find_sk(const struct dump_files *files, uint64_t ino)
{
	for (size_t i = 0; i < files->nr; i++) {
		const UnixSkEntry *u = files->entries[i]->unix_sk;

		if (u && u->ino == ino)
			return u;
	}
	return NULL;
}

/* U's peer is outside the tree: the name to reconnect a datagram socket to. */
static int external_peer(UnixSkEntry *u, const struct relive_opts *opts)
{
	char name[2 * NAME_MAX_LEN + 3] = "no name";
	struct udiag d;
	int r;

	r = diag_get(u->peer_ino, &d, false);
	if (r)
		return r;
	if (d.found && d.name_len) {
		snprintf(name, sizeof(name), "%s%.*s", d.name[0] ? "" : "@",
			 (int)d.name_len - !d.name[0], (const char *)d.name + !d.name[0]);
	}
	if (!opts->ext_unix_sk) {
		pr_err("pid %u: fd %u: unix socket connected to socket ino %" PRIu64 " (%s) "
		       "outside the dumped tree (--ext-unix-sk reconnects a datagram socket "
		       "to its peer's name)\n",
		       u->owner_pid, u->owner_fd, u->peer_ino, name);
		return -ENOTSUP;
	}
	if (u->type != SOCK_DGRAM) {
		pr_err("pid %u: fd %u: %s socket connected to socket ino %" PRIu64 " (%s) outside "
		       "the dumped tree: a stream connection cannot be re-established on "
		       "restore, even with --ext-unix-sk\n",
		       u->owner_pid, u->owner_fd, u->type == SOCK_STREAM ? "stream" : "seqpacket",
		       u->peer_ino, name);
		return -ENOTSUP;
	}
	if (!d.found || !d.name_len) {
		pr_err("pid %u: fd %u: datagram socket connected to socket ino %" PRIu64 " outside "
		       "the dumped tree, which has no name to reconnect to\n",
		       u->owner_pid, u->owner_fd, u->peer_ino);
		return -ENOTSUP;
	}
	u->has_ext_peer_name = true;
	u->ext_peer_name.data = malloc(d.name_len);
	if (!u->ext_peer_name.data)
		return -ENOMEM;
	memcpy(u->ext_peer_name.data, d.name, d.name_len);
	u->ext_peer_name.len = d.name_len;
	pr_info("pid %u: fd %u: connected to %s outside the tree: reconnected on restore\n",
		u->owner_pid, u->owner_fd, name);
	return 0;
}

int dmp_unix_check(struct dump_files *files, const struct relive_opts *opts)
{
	for (size_t i = 0; i < files->nr; i++) {
		UnixSkEntry *u = files->entries[i]->unix_sk;
		const UnixSkEntry *p;
		int r;

		if (!u || !u->has_peer_ino || !u->peer_ino)
			continue;
		p = find_sk(files, u->peer_ino);
		if (!p) {
			r = external_peer(u, opts);
			if (r)
				return r;
			continue;
		}
		/* Both ends are made by the restore's root (restorer/rst-shared.c); a
		 * name bound in one process cannot be connected to from another yet. */
		if (p->owner_pid != u->owner_pid && p->peer_ino != u->ino) {
			pr_err("pid %u: fd %u: datagram socket connected to the name of fd %u "
			       "of pid %u: across two processes of the tree this is not "
			       "supported yet\n",
			       u->owner_pid, u->owner_fd, p->owner_fd, p->owner_pid);
			return -ENOTSUP;
		}
	}
	return 0;
}
