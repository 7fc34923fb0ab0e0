/*
 * Descriptors other than regular files and character devices: pipes and
 * FIFOs (dump-pipes.c), eventfd, timerfd, signalfd, memfd and unlinked
 * regular files (dump-fdkinds.c), epoll and inotify (dump-notify.c).
 * dump-files.c asks dmp_fdkind_handles()
 * and hands the new file entry to dmp_fdkind_fill().
 */
#ifndef RELIVE_DUMPER_DUMP_FDKINDS_H
#define RELIVE_DUMPER_DUMP_FDKINDS_H

#include "dump.h"

#include <stdbool.h>
#include <sys/stat.h>

/* Largest content of a memfd or unlinked file, or data in flight in a pipe,
 * kept in its file entry (an image entry holds at most 16 MiB). */
#define DMP_ANON_MAX_DATA (8U << 20)

/* True if fd LINK (the /proc/PID/fd/N link) of ST is one of these kinds. */
bool dmp_fdkind_handles(const char *link, const struct stat *st);
/* Fill FE (id already set, not yet in ctx->files) for fd of ctx->pid. */
int dmp_fdkind_fill(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		    const struct proc_fdinfo *info, FileEntry *fe);

/* dump-pipes.c */
int dmp_pipe_fill(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		  const struct proc_fdinfo *info, FileEntry *fe);

/* dump-notify.c: epoll (watches) and inotify (watches with their paths) */
int dmp_epoll_fill(struct dump_ctx *ctx, int fd, const struct proc_fdinfo *info, FileEntry *fe);
int dmp_inotify_fill(struct dump_ctx *ctx, int fd, const struct proc_fdinfo *info, FileEntry *fe);

/* dump-unix.c: unix sockets (sock_diag through libnl, queues peeked). After
 * every process of the tree: dmp_unix_check() that each peer can be rebuilt. */
bool dmp_unix_handles(const char *link, const struct stat *st);
int dmp_unix_fill(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		  const struct proc_fdinfo *info, FileEntry *fe);
int dmp_unix_check(struct dump_files *files, const struct relive_opts *opts);

/* dump-tty.c: pty masters and slaves, and the caller's terminal (--shell-job) */
bool dmp_tty_handles(const struct stat *st);
int dmp_tty_fill(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		 const struct proc_fdinfo *info, FileEntry *fe);

#endif
