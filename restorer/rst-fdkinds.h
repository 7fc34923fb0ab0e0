/*
 * Restore of descriptors other than regular files (see dumper/dump-fdkinds.h):
 * the plan-time check of their entries (epoll and inotify: rst-notify.c),
 * and in the helper the creation of
 * each and its placement at the dumped number. Objects shared by several
 * descriptions (a pipe and its ends, a memfd opened twice) are made once per
 * helper and held above c->fd_base until close_others() drops the holders.
 */
#ifndef RELIVE_RESTORER_RST_FDKINDS_H
#define RELIVE_RESTORER_RST_FDKINDS_H

#include "rst.h"

/* 0 if F is a kind restored here with a sane message, else logs naming IMG and WHAT. */
int rst_fdkind_valid(const FileEntry *f, const char *img, const char *what);
/* Helper: a new description (close-on-exec) of FD's file, or -errno (c->err set). */
int rst_fdkind_open(struct rst_child *c, const struct rst_fd *fd);

/* An object made once per helper; fds[] hold it above c->fd_base. */
struct rst_fdobj {
	uint32_t type; /* FileType */
	uint64_t id; /* pipe id or inode */
	const char *name; /* memfd name, unlinked path, FIFO path, or NULL */
	int fds[2]; /* pipes: read and write end; others: fds[0] */
	bool used[2]; /* the end's own description went to a task fd */
};
struct rst_fdobj *rst_fdobj_find(uint32_t type, uint64_t id, const char *name);
/* Record an object; FDS are moved above c->fd_base. NULL on failure (c->err set). */
struct rst_fdobj *rst_fdobj_add(struct rst_child *c, uint32_t type, uint64_t id,
				const char *name, int fd0, int fd1);
/* A new description of the object held at HOLDER, through /proc/self/fd. */
int rst_fdobj_reopen(struct rst_child *c, int holder, int flags, const char *what);

/* rst-pipes.c: a new fd (close-on-exec) for a pipe end or FIFO, or -errno. */
int rst_pipe_open(struct rst_child *c, const struct rst_fd *fd);

/* rst-notify.c: epoll and inotify. Valid: sets *ret_bad on a bad entry. */
void rst_notify_valid(const FileEntry *f, const char **ret_bad);
int rst_epoll_open(struct rst_child *c, const struct rst_fd *fd);
int rst_inotify_open(struct rst_child *c, const struct rst_fd *fd);
/* Once every fd of the task is in place: the watches of its epoll instances. */
int rst_epoll_watch_all(struct rst_child *c);

/* rst-unix.c: unix sockets. Bad: why the entry is unusable, or NULL. */
const char *rst_unix_bad(const FileEntry *f);
int rst_unix_open(struct rst_child *c, const struct rst_fd *fd);

/* rst-tty.c: pty pairs and the caller's terminal (--shell-job). */
const char *rst_tty_bad(const FileEntry *f);
int rst_tty_open(struct rst_child *c, const struct rst_fd *fd);
/* In a session leader, once its fds are in place: its pty becomes its terminal again. */
int rst_tty_ctty(struct rst_child *c);

#endif
