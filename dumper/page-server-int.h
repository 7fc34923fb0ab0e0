/*
 * Internals of the page server shared by page-server.c (the session: loops,
 * threads, timeouts, the end) and page-server-conn.c (one connection: hello,
 * requests, replies). Nothing else includes this.
 */
#ifndef RELIVE_DUMPER_PAGE_SERVER_INT_H
#define RELIVE_DUMPER_PAGE_SERVER_INT_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "page-server.h"

#define PSS_SLOTS 8 /* replies in flight per connection */
#define PSS_SLOT_HEAD 4096 /* the pages start page-aligned after the header */
#define PSS_SLOT_SIZE (PSS_SLOT_HEAD + PS_MAX_RUN_PAGES * PS_PAGE_SIZE + PS_PAGE_SIZE)
#define PSS_RX_SIZE (64 * 1024)
#define PSS_READ_CHUNK (256 * 1024) /* bytes per process_vm_readv: bounded kernel time */
#define PSS_MAX_CONNS 32 /* per loop */

/* user_data tags (low bits of a pointer aligned to 8) */
enum {
	TAG_RECV = 1,
	TAG_SEND = 2,
	TAG_ACCEPT = 3,
	TAG_WAKE = 4,
	TAG_PIDFD = 5,
	TAG_SIGNAL = 6,
};

struct pss_srv;
struct pss_loop;

enum pss_state { C_HELLO, C_SERVING };

struct pss_conn {
	struct pss_loop *loop;
	int fd;
	enum pss_state state;
	uint32_t channel;
	char peer[80];
	bool closing, rx_posted, tx_posted, done_rcvd, bye_sent, authed;
	int inflight;
	uint64_t t_open_ms, t_rx_ms, t_tx_ms;
	uint8_t *slots; /* PSS_SLOTS * PSS_SLOT_SIZE, mapped at authentication */
	unsigned int q_head, q_n; /* FIFO of queued replies, in slot order */
	size_t q_len[PSS_SLOTS]; /* bytes of each reply, from PSS_SLOT_HEAD - PS_HDR_SIZE */
	bool q_bye[PSS_SLOTS];
	size_t sent; /* of the head reply */
	struct iovec iov[PSS_SLOTS];
	struct msghdr msg;
	uint64_t gets, pages;
	size_t rx_len, rx_off; /* received; parsed */
	uint8_t rx[PSS_RX_SIZE];
};

struct pss_loop {
	struct pss_srv *srv;
	const char *name;
	struct io_uring ring;
	bool ring_ok;
	struct pss_conn *conns[PSS_MAX_CONNS];
	int nr;
	int wake_fd;
	uint64_t wake_buf;
	bool wake_posted;
	/* the main loop only */
	int listen_fd;
	bool accept_posted, sig_posted;
	struct sockaddr_storage acc_addr;
	socklen_t acc_len;
};

/* A served process: its LAZY runs, and whether its keeper's pidfd is polled. */
struct pss_proc {
	const struct ps_proc *cfg;
	uint64_t (*lazy)[2]; /* [start, end) of the LAZY runs, sorted */
	size_t nr_lazy;
	bool pidfd_posted; /* main loop */
};

struct pss_srv {
	const struct ps_server_cfg *cfg;
	struct pss_proc *procs; /* per cfg->procs */
	struct pss_loop main, fault;
	int sig_fd;
	pthread_mutex_t lock;
	struct pss_conn *handoff[PSS_MAX_CONNS]; /* authenticated fault channels for the fault loop */
	int nr_handoff;
	atomic_int stop;
	atomic_int result;
	atomic_int nr_authed;
	atomic_uint_least64_t last_activity_ms;
	atomic_uint_least64_t served_pages, served_gets;
};

uint64_t pss_now_ms(void);
/* End the session with RESULT (the first one wins) and wake both loops. */
void pss_stop(struct pss_srv *srv, int result);
void pss_wake(struct pss_loop *loop);
struct io_uring_sqe *pss_sqe(struct pss_loop *loop);

/* The served process with this pid, or NULL. */
const struct pss_proc *pss_proc_find(const struct pss_srv *srv, uint32_t pid);

/* page-server-conn.c */
struct pss_conn *pss_conn_new(struct pss_loop *loop, int fd, const struct sockaddr *sa,
			      socklen_t len);
/* Post what the connection needs next (recv, send) or finish its close. */
void pss_conn_kick(struct pss_conn *c);
void pss_conn_complete(struct pss_conn *c, int tag, int res);
/* Cut it off (REASON logged unless NULL); it is freed once nothing is in flight. */
void pss_conn_close(struct pss_conn *c, const char *reason);
/* True once freed: the loop drops it from its table. */
bool pss_conn_reap(struct pss_conn *c);
/* A deadline passed: cut it off with a message. */
void pss_conn_check_idle(struct pss_conn *c, uint64_t now_ms);

#endif
