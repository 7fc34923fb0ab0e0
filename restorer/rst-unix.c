/*
 * Unix sockets in the helper (dumped by dumper/dump-unix.c). Two sockets
 * connected to each other come back as one socketpair(); a stream socket
 * whose peer had closed is one end of a pair whose other end is closed once
 * the queue is written. Others are a socket() bound to their name (a stale
 * socket file at the path is unlinked first, then its mode and owner are put
 * back), listening with their backlog, and for datagram sockets connected
 * to a name: connected to it (the peer made first when it is ours, the name
 * outside the tree with --ext-unix-sk). Queued messages are sent again,
 * oldest first, from the peer end of a pair or from a throwaway socket to
 * the socket's name, so they land in the right receive queue with their
 * boundaries; then buffer sizes, SO_PASSCRED, SO_PEEK_OFF and shutdown.
 * Names of connected stream sockets are not bound again (an accepted
 * socket carries its listener's name, which the listener owns). A pair
 * whose ends live in two processes is made by the root helper before it
 * forks (rst-shared.c keys both ends as one object).
 */
#include "rst-fdkinds.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SUN_LEN_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

const char *rst_unix_bad(const FileEntry *f)
{
	const UnixSkEntry *u = f->unix_sk;

	if (!u)
		return "no unix_sk message";
	if (u->type != SOCK_STREAM && u->type != SOCK_DGRAM && u->type != SOCK_SEQPACKET)
		return "unix socket type out of range";
	if ((u->has_name && (!u->name.len || u->name.len > SUN_LEN_MAX)) ||
	    (u->has_ext_peer_name && (!u->ext_peer_name.len || u->ext_peer_name.len > SUN_LEN_MAX)))
		return "unix socket name longer than sun_path";
	if (u->has_name && u->name.data[0] != 0 && u->name.data[0] != '/')
		return "unix socket path is not absolute";
	if (u->n_queue && u->state == TCP_LISTEN)
		return "a listening socket with queued data";
	if (u->type == SOCK_STREAM && u->n_queue > 1)
		return "a stream socket queue in several pieces";
	return NULL;
}

static const UnixSkEntry *find_sk(const struct rst_plan *p, uint64_t ino)
{
	for (size_t i = 0; i < p->nr_files; i++) {
		const UnixSkEntry *u = p->files[i]->unix_sk;

		if (p->files[i]->type == FILE_TYPE__FILE_UNIX_SK && u && u->ino == ino)
			return u;
	}
	return NULL;
}

static socklen_t make_addr(const ProtobufCBinaryData *name, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, name->data, name->len);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name->len);
}

/* NAME for messages: a path, or @abstract. */
static const char *name_str(const ProtobufCBinaryData *name, char *buf, size_t len)
{
	bool abstract = name->data[0] == 0;

	snprintf(buf, len, "%s%.*s", abstract ? "@" : "", (int)name->len - abstract,
		 (const char *)name->data + abstract);
	return buf;
}

static int bind_name(struct rst_child *c, int s, const UnixSkEntry *u)
{
	char what[SUN_LEN_MAX + 2];
	struct sockaddr_un sa;
	socklen_t l = make_addr(&u->name, &sa);
	struct stat st;

	name_str(&u->name, what, sizeof(what));
	if (sa.sun_path[0] && !lstat(sa.sun_path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			rst_child_fail(c, "unix socket ino %" PRIu64 ": %s exists and is not a "
				       "socket", u->ino, what);
			return -EEXIST;
		}
		if (unlink(sa.sun_path)) {
			rst_child_fail(c, "unix socket ino %" PRIu64 ": cannot unlink the stale "
				       "%s: %s", u->ino, what, strerror(errno));
			return -errno;
		}
	}
	if (bind(s, (struct sockaddr *)&sa, l)) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": bind to %s: %s", u->ino, what,
			       strerror(errno));
		return -errno;
	}
	if (sa.sun_path[0] && u->has_mode &&
	    (chmod(sa.sun_path, (mode_t)u->mode) || lchown(sa.sun_path, u->uid, u->gid))) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": cannot give %s mode %o, owner "
			       "%u:%u: %s", u->ino, what, u->mode, u->uid, u->gid, strerror(errno));
		return -errno;
	}
	return 0;
}

static int set_int(struct rst_child *c, int s, int opt, const char *name, int v, uint64_t ino)
{
	if (setsockopt(s, SOL_SOCKET, opt, &v, sizeof(v))) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": setsockopt(%s, %d): %s", ino, name,
			       v, strerror(errno));
		return -errno;
	}
	return 0;
}

/* SO_SNDBUF/SO_RCVBUF to the dumped (doubled) VALUE, forced past the sysctl cap. */
static int set_buf(struct rst_child *c, int s, int opt, int force, uint32_t value, uint64_t ino)
{
	int cur = 0, v = (int)(value / 2);
	socklen_t l = sizeof(cur);

	if (!getsockopt(s, SOL_SOCKET, opt, &cur, &l) && cur == (int)value)
		return 0;
	if (!setsockopt(s, SOL_SOCKET, force, &v, sizeof(v)))
		return 0;
	return set_int(c, s, opt, opt == SO_SNDBUF ? "SO_SNDBUF" : "SO_RCVBUF", v, ino);
}

/* Send U's queued messages from FROM (connected to it, or to NAME when given). */
static int refill(struct rst_child *c, int from, const UnixSkEntry *u, bool to_name)
{
	size_t need = 0;
	struct sockaddr_un sa;
	socklen_t l = to_name ? make_addr(&u->name, &sa) : 0;

	for (size_t i = 0; i < u->n_queue; i++)
		need += u->queue[i].len + 4096; /* with each buffer's own overhead */
	if (u->n_queue)
		set_buf(c, from, SO_SNDBUF, SO_SNDBUFFORCE, (uint32_t)MIN(need * 2, INT32_MAX),
			u->ino);
	for (size_t i = 0; i < u->n_queue; i++) {
		const ProtobufCBinaryData *m = &u->queue[i];
		size_t off = 0;

		do {
			ssize_t n = sendto(from, m->data + off, m->len - off,
					   MSG_DONTWAIT | MSG_NOSIGNAL,
					   to_name ? (struct sockaddr *)&sa : NULL, l);

			if (n < 0) {
				rst_child_fail(c, "unix socket ino %" PRIu64 ": cannot queue message "
					       "%zu of %zu (%zu bytes) again: %s", u->ino, i + 1,
					       u->n_queue, m->len, strerror(errno));
				return -errno;
			}
			off += (size_t)n;
		} while (off < m->len && u->type == SOCK_STREAM);
	}
	return 0;
}

/* Options and shutdown of U on S, once its queue is in. */
static int finish(struct rst_child *c, int s, const UnixSkEntry *u)
{
	static const int how[] = { -1, SHUT_RD, SHUT_WR, SHUT_RDWR };
	int r;

	r = set_buf(c, s, SO_RCVBUF, SO_RCVBUFFORCE, u->rcvbuf, u->ino);
	if (!r)
		r = set_buf(c, s, SO_SNDBUF, SO_SNDBUFFORCE, u->sndbuf, u->ino);
	if (!r && u->passcred)
		r = set_int(c, s, SO_PASSCRED, "SO_PASSCRED", 1, u->ino);
	if (!r && u->has_peek_off)
		r = set_int(c, s, SO_PEEK_OFF, "SO_PEEK_OFF", u->peek_off, u->ino);
	if (r)
		return r;
	if ((u->shutdown & 3) && shutdown(s, how[u->shutdown & 3]) &&
	    !(errno == ENOTCONN && u->type != SOCK_DGRAM)) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": shutdown(%d): %s", u->ino,
			       how[u->shutdown & 3], strerror(errno));
		return -errno;
	}
	return 0;
}

/* Two sockets connected to each other (P NULL: U's peer had closed). */
static struct rst_fdobj *make_pair(struct rst_child *c, const UnixSkEntry *u,
				   const UnixSkEntry *p)
{
	int sv[2], r;

	if (socketpair(AF_UNIX, (int)u->type | SOCK_CLOEXEC, 0, sv)) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": socketpair: %s", u->ino,
			       strerror(errno));
		return NULL;
	}
	r = 0;
	/* Only a datagram socket receives by its name; a stream pair keeps none. */
	if (u->type == SOCK_DGRAM && u->has_name)
		r = bind_name(c, sv[0], u);
	if (!r && p && p->type == SOCK_DGRAM && p->has_name)
		r = bind_name(c, sv[1], p);
	if (!r)
		r = refill(c, sv[1], u, false);
	if (!r && p)
		r = refill(c, sv[0], p, false);
	if (!r && !p) {
		close(sv[1]);
		sv[1] = -1;
	}
	if (!r)
		r = finish(c, sv[0], u);
	if (!r && p)
		r = finish(c, sv[1], p);
	if (r) {
		close(sv[0]);
		if (sv[1] >= 0)
			close(sv[1]);
		return NULL;
	}
	if (p && !rst_fdobj_add(c, FILE_TYPE__FILE_UNIX_SK, p->ino, NULL, sv[1], -1)) {
		close(sv[0]);
		return NULL;
	}
	return rst_fdobj_add(c, FILE_TYPE__FILE_UNIX_SK, u->ino, NULL, sv[0], -1);
}

static struct rst_fdobj *make_sk(struct rst_child *c, const UnixSkEntry *u, int depth);

/* Connect datagram socket S of U to its peer: ours (made first) or outside. */
static int connect_peer(struct rst_child *c, int s, const UnixSkEntry *u, int depth)
{
	const ProtobufCBinaryData *name = u->has_ext_peer_name ? &u->ext_peer_name : NULL;
	char what[SUN_LEN_MAX + 2];
	struct sockaddr_un sa;
	socklen_t l;

	if (!name) {
		const UnixSkEntry *p = find_sk(c->plan, u->peer_ino);

		if (!p || !p->has_name) {
			rst_child_fail(c, "unix socket ino %" PRIu64 ": its peer ino %" PRIu64
				       " is %s", u->ino, u->peer_ino,
				       p ? "not bound to a name" : "not in the images");
			return -EINVAL;
		}
		if (!rst_fdobj_find(FILE_TYPE__FILE_UNIX_SK, p->ino, NULL) &&
		    !make_sk(c, p, depth + 1))
			return -EIO;
		name = &p->name;
	}
	l = make_addr(name, &sa);
	if (connect(s, (struct sockaddr *)&sa, l)) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": cannot connect to %s: %s", u->ino,
			       name_str(name, what, sizeof(what)), strerror(errno));
		return -errno;
	}
	return 0;
}

/* A socket of its own: bound, listening or connected to a name. */
static struct rst_fdobj *make_single(struct rst_child *c, const UnixSkEntry *u, int depth)
{
	int s = socket(AF_UNIX, (int)u->type | SOCK_CLOEXEC, 0), r = 0;
	int tmp = -1;

	if (s < 0) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": socket: %s", u->ino,
			       strerror(errno));
		return NULL;
	}
	if (u->has_name)
		r = bind_name(c, s, u);
	if (!r && u->state == TCP_LISTEN && listen(s, (int)u->backlog)) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": listen(%u): %s", u->ino,
			       u->backlog, strerror(errno));
		r = -errno;
	}
	/* Before it connects: a connected datagram socket takes only its peer's. */
	if (!r && u->n_queue && (u->type != SOCK_DGRAM || !u->has_name)) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": %zu queued message(s) but no "
			       "peer or name to send them from", u->ino, u->n_queue);
		r = -EINVAL;
	}
	if (!r && u->n_queue) {
		tmp = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		r = tmp < 0 ? -errno : refill(c, tmp, u, true);
		if (tmp < 0)
			rst_child_fail(c, "socket: %s", strerror(errno));
		else
			close(tmp);
	}
	if (!r && u->has_peer_ino && u->peer_ino)
		r = connect_peer(c, s, u, depth);
	if (!r)
		r = finish(c, s, u);
	if (r) {
		close(s);
		return NULL;
	}
	return rst_fdobj_add(c, FILE_TYPE__FILE_UNIX_SK, u->ino, NULL, s, -1);
}

static struct rst_fdobj *make_sk(struct rst_child *c, const UnixSkEntry *u, int depth)
{
	const UnixSkEntry *p = NULL;

	if (depth > 16) {
		rst_child_fail(c, "unix socket ino %" PRIu64 ": a chain of connected datagram "
			       "sockets too long", u->ino);
		return NULL;
	}
	if (u->has_peer_ino && u->peer_ino)
		p = find_sk(c->plan, u->peer_ino);
	if (p && p->has_peer_ino && p->peer_ino == u->ino)
		return make_pair(c, u, p);
	if (u->peer_gone)
		return make_pair(c, u, NULL);
	return make_single(c, u, depth);
}

int rst_unix_open(struct rst_child *c, const struct rst_fd *fd)
{
	const UnixSkEntry *u = fd->file->unix_sk;
	struct rst_fdobj *o = rst_fdobj_find(FILE_TYPE__FILE_UNIX_SK, u->ino, NULL);
	int nfd;

	if (!o)
		o = make_sk(c, u, 0);
	if (!o)
		return -EIO;
	nfd = fcntl(o->fds[0], F_DUPFD_CLOEXEC, 0);
	if (nfd < 0) {
		rst_child_fail(c, "fd %u: dup of unix socket ino %" PRIu64 ": %s", fd->fd, u->ino,
			       strerror(errno));
		return -errno;
	}
	if (fcntl(nfd, F_SETFL, (int)u->flags & O_NONBLOCK) < 0) {
		rst_child_fail(c, "fd %u: F_SETFL %#o: %s", fd->fd, u->flags, strerror(errno));
		close(nfd);
		return -errno;
	}
	return nfd;
}
