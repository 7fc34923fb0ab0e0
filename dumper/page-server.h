/*
 * The source side of a lazy migration: the page server that `relive dump
 * --lazy-pages` becomes once the images are written and the victim is dead.
 * It serves the LAZY runs of the pagemap, read from the keeper (a process
 * sharing the dead victim's address space; one per process of the tree, a
 * request names its pid), to a client that presents the
 * session token, over the protocol of docs/protocol.md. One thread, one
 * io_uring loop: a fault request is served as soon as it is read, the
 * stream's bulk data in bounded pieces in between.
 */
#ifndef RELIVE_DUMPER_PAGE_SERVER_H
#define RELIVE_DUMPER_PAGE_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ps-proto.h"

struct page_run;

/* One process whose memory is served: the pid of the images and its keeper. */
struct ps_proc {
	pid_t pid; /* the dumped pid, as in the images */
	pid_t keeper; /* the process the memory is read from */
	int keeper_pidfd; /* its death ends the session */
	const struct page_run *runs; /* the pagemap's runs; only the lazy ones are served */
	size_t nr_runs;
};

struct ps_server_cfg {
	const struct ps_proc *procs; /* every process of the tree with memory (no zombies) */
	size_t nr_procs;
	uint8_t token[PS_TOKEN_LEN];
	unsigned int lazy_timeout_s; /* no client, or a silent one, for this long: fail */
	unsigned int idle_timeout_ms; /* a connection stalled mid-message (or before its hello) */
};

/* Default of idle_timeout_ms; RELIVE_PS_IDLE_TIMEOUT_MS overrides it (tests). */
#define PS_IDLE_TIMEOUT_MS 10000U

/* A listening TCP socket on ADDRESS:PORT (IPv4 or IPv6 literal, or a name). */
int ps_listen(const char *address, uint16_t port);

/*
 * Serve until a client sends DONE and has its BYE (returns 0), or fail:
 * -ETIMEDOUT (no client, or a silent one, past lazy_timeout_s), -EINTR
 * (SIGINT/SIGTERM/SIGHUP), -ESRCH (the keeper died), other -errno. Closes
 * LISTEN_FD. The keeper is the caller's to kill.
 */
int ps_serve(int listen_fd, const struct ps_server_cfg *cfg);

#endif
