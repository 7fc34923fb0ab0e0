/*
 * Inet sockets of the dumped tree (dump-inet.c, dump-tcp.c): TCP and UDP
 * over IPv4 and IPv6. Which descriptors are inet sockets comes from a
 * sock_diag table of relive's network namespace, read once per dump after
 * the freeze; the state of each socket from a copy of it taken with
 * pidfd_getfd. Established TCP connections (--tcp-established) are locked
 * (common/netlock.h), put in repair mode and read through TCP_REPAIR; the
 * copies stay open until dmp_inet_release() decides what happens to them.
 */
#ifndef RELIVE_DUMPER_DUMP_INET_H
#define RELIVE_DUMPER_DUMP_INET_H

#include "dump.h"

#include <stdbool.h>
#include <sys/stat.h>

/* True if ST (an fd of a frozen process of the dump) is an inet socket. */
bool dmp_inet_handles(const struct stat *st);
/* Fill FE (FILE_INET_SK) for fd of ctx->pid. */
int dmp_inet_fill(struct dump_ctx *ctx, int fd, const struct stat *st,
		  const struct proc_fdinfo *info, FileEntry *fe);
/*
 * The end of the dump, before the tree is killed or resumed. KEEP (a
 * complete dump whose processes are killed): the connections stay in repair
 * mode, so the kill sends nothing, and the lock stays for the restore.
 * Otherwise (failure, --leave-running): repair mode off, lock removed.
 */
void dmp_inet_release(bool keep);

/* dump-tcp.c: the state of established connection SK (repair mode on) into T. */
int dmp_tcp_read(int sk, const char *what, TcpStreamEntry *t);

#endif
