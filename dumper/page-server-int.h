/*
 * Internals of the page server shared by page-server.c (the session: its one
 * event loop, timeouts, the end) and page-server-conn.c (one connection:
 * hello, requests, replies read in pieces). Nothing else includes this.
 */
#ifndef RELIVE_DUMPER_PAGE_SERVER_INT_H
#define RELIVE_DUMPER_PAGE_SERVER_INT_H

#include <liburing.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "page-server.h"

#define PSS_SLOTS 8 /* replies in flight per connection */
#define PSS_SLOT_HEAD 4096 /* the pages start page-aligned after the header */
#define PSS_SLOT_SIZE (PSS_SLOT_HEAD + PS_MAX_RUN_PAGES * PS_PAGE_SIZE + PS_PAGE_SIZE)
#define PSS_RX_SIZE (64 * 1024)
/*
 * The stream's bulk work comes in bounded pieces, and a fault request waits
 * for at most one of them: reads of 32 KiB, up to 64 KiB per loop turn
 * (fewer when a completion is in), sends of 64 KiB. 256 KiB steps doubled
 * the median fault on loopback; smaller ones cost stream rate
 * (docs/benchmarks.md).
 */
#define PSS_READ_CHUNK (32 * 1024)
#define PSS_STREAM_STEP (64 * 1024)
#define PSS_SEND_CHUNK (64 * 1024)
#define PSS_MAX_CONNS 32 /* per loop */

/* user_data tags (low bits of a pointer aligned to 8) */
enum {
	TAG_RECV = 1,
	TAG_SEND = 2,
	TAG_ACCEPT = 3,
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
	/*
	 * The newest queued reply while its pages are still being read from
	 * the keeper, a piece per loop turn on the stream channel; what is
	 * read already may leave before the rest.
	 */
	bool filling;
	struct ps_hdr fill_h;
	const struct pss_proc *fill_pp;
	size_t fill_off; /* bytes of its pages read and hashed */
	struct ps_csum *fill_hash; /* checksum of the reply being filled */
	struct iovec iov[PSS_SLOTS];
	struct msghdr msg;
	uint64_t gets, pages;
	size_t rx_len, rx_off; /* received; parsed */
	uint8_t rx[PSS_RX_SIZE];
};

struct pss_loop {
	struct pss_srv *srv;
	struct io_uring ring;
	bool ring_ok;
	struct pss_conn *conns[PSS_MAX_CONNS];
	int nr;
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
	struct pss_loop loop;
	int sig_fd;
	bool stop;
	int result;
	int nr_authed;
	uint64_t last_activity_ms;
	uint64_t served_pages, served_gets;
};

uint64_t pss_now_ms(void);
/* End the session with RESULT (the first one wins). */
void pss_stop(struct pss_srv *srv, int result);
struct io_uring_sqe *pss_sqe(struct pss_loop *loop);
/* Whether completions wait (or work that makes them): a fault request may be in. */
bool pss_urgent(struct pss_loop *loop);

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
/* Whether a reply of the stream channel is still being read. */
bool pss_conn_filling(const struct pss_conn *c);
/* Read and hash the next piece of that reply, queue what can leave. */
void pss_conn_fill_step(struct pss_conn *c);

#endif
