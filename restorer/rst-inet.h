/*
 * Inet sockets at restore (rst-inet.c, rst-tcp.c): the plan-time check of
 * their entries, the socket of each descriptor rebuilt in the helper
 * (bound, listening, connected; an established TCP connection through
 * TCP_REPAIR), and the removal of the dump's network lock once the helpers
 * have put every socket back.
 */
#ifndef RELIVE_RESTORER_RST_INET_H
#define RELIVE_RESTORER_RST_INET_H

#include "rst.h"

/* NULL if F's inet message is sane, else what is wrong with it. */
const char *rst_inet_bad(const FileEntry *f);
/* Helper: a new socket (close-on-exec) as FD's was at the dump, or -errno (c->err set). */
int rst_inet_open(struct rst_child *c, const struct rst_fd *fd);
/* Parent: remove every network lock named in the plan's files (the restore is over). */
void rst_inet_unlock(const struct rst_plan *p);

/* rst-tcp.c, on a new socket in repair mode: before bind/connect, and after connect. */
int rst_tcp_before_connect(struct rst_child *c, int sk, const TcpStreamEntry *t,
			   const char *what);
/* Queues, options, window, repair mode off, then the bytes never sent. */
int rst_tcp_after_connect(struct rst_child *c, int sk, const TcpStreamEntry *t,
			  const char *what);

#endif
