/*
 * Internal interface of the lazy-pages daemon: the context every part shares
 * (struct lp_ctx), the restored processes (struct lp_proc), page requests
 * (struct lp_req), the two page-server connections (struct lp_conn), and the
 * entry points of each file. lp-cmd.c loads the images and runs the loop;
 * lp-handover.c receives uffds; lp-uffd.c reads faults and events and
 * installs pages; lp-conn.c talks to the source; lp-stats.c counts.
 * Everything runs in one thread around one io_uring.
 */
#ifndef RELIVE_LAZY_PAGES_LP_H
#define RELIVE_LAZY_PAGES_LP_H

#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lp-sched.h"
#include "opts.h"
#include "ps-proto.h"

/* A fault fetches this many pages at most (the stream brings the neighbours). */
#define LP_FAULT_PAGES 1U
/* Stream pages requested and not yet installed. */
#define LP_STREAM_WINDOW (4U * PS_MAX_RUN_PAGES)
#define LP_STREAM_BUFS 3U
#define LP_FAULT_BUFS 4U
/*
 * Background data comes in steps, and the loop looks at its completions (a
 * fault reply) between steps: a step is what a fault reply waits behind.
 * One recv of 256 KiB; one UFFDIO_COPY of 64 pages, of 8 while a fault
 * waits (p99 222 -> 194 us on loopback at the same stream rate; 4 pages
 * with 64 KiB recvs gave 166 us but cost ~10 % of the stream,
 * docs/benchmarks.md).
 */
#define LP_RECV_CHUNK (256U << 10)
#define LP_INSTALL_CHUNK 64U
#define LP_INSTALL_CHUNK_FAULTS 8U
/*
 * Poll, not sleep, this long for a fault's reply: longer than a fault takes
 * on a LAN (~40-100 us), short enough that a slow link, where every fault
 * takes ~1 ms, does not keep a core busy for nothing.
 */
#define LP_FAULT_SPIN_US 300U
/* Consecutive failed connections (no page delivered in between) before giving up. */
#define LP_MAX_FAILS 3U

/* io_uring user_data: an object pointer with its kind in the low 3 bits. */
enum lp_ud {
	LP_UD_IGNORE = 0, /* cancellations, poll removals */
	LP_UD_UFFD = 1,
	LP_UD_CONNECT = 2,
	LP_UD_SEND = 3,
	LP_UD_RECV = 4,
	LP_UD_LISTEN = 5,
	LP_UD_HANDOVER = 6,
	LP_UD_PREFAULT = 7, /* MADV_POPULATE_WRITE of a receive buffer */
};
#define LP_UD_MASK 7ULL

static inline uint64_t lp_ud(void *p, enum lp_ud kind)
{
	return (uint64_t)(uintptr_t)p | kind;
}

struct lp_ctx;

struct lp_proc {
	struct lp_proc *next;
	uint32_t pid; /* pid of the image (0 for a forked child) */
	uint32_t src_pid; /* whose memory the source serves */
	uint32_t parent; /* for a forked child: the pid it forked from */
	int uffd;
	int pidfd; /* to stop a process whose memory will never come; -1 if unknown */
	bool expected; /* in pstree with lazy pages: must be handed over */
	bool handed; /* uffd received and 'A' sent */
	bool ready; /* 'R' received: pages may be installed */
	bool gone; /* exited (ESRCH) or handover failed */
	bool poll_armed;
	bool reshaped; /* saw REMAP/REMOVE/UNMAP: a successor could not re-learn its pages */
	struct lp_mm mm;
	uint64_t pages_fault, pages_stream, pages_zero;
};

enum lp_req_state { LP_REQ_QUEUED, LP_REQ_SENT, LP_REQ_RECV, LP_REQ_INSTALL };

struct lp_req {
	struct lp_req *prev, *next; /* ctx->reqs */
	struct lp_proc *proc;
	uint64_t vaddr; /* where to install */
	uint64_t src; /* where the source has it */
	uint32_t nr;
	uint32_t done; /* pages installed so far */
	int chan;
	enum lp_req_state state;
	bool urgent;
	bool cancelled; /* an event moved or dropped its pages: discard the reply */
	void *buf; /* the received pages (LP_REQ_INSTALL) */
	struct lp_conn *buf_owner;
	uint64_t t_sent;
};

enum lp_conn_state { LP_CONN_DOWN, LP_CONN_CONNECTING, LP_CONN_HELLO, LP_CONN_UP, LP_CONN_DEAD };

struct lp_conn {
	struct lp_ctx *ctx;
	int chan;
	int fd;
	enum lp_conn_state state;
	unsigned int ops; /* io_uring operations in flight on fd */
	bool send_busy, recv_busy;
	uint8_t hello[PS_HELLO_SIZE];
	uint8_t hello_reply[PS_HELLO_REPLY_SIZE];
	/* outgoing headers, sent by one SEND at a time */
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	size_t sending; /* bytes of out in the SEND in flight */
	/* receiving: a header, then pages + checksum into a buffer */
	bool rx_body;
	uint8_t rx_hdr[PS_HDR_SIZE];
	size_t rx_off, rx_len;
	struct lp_req *rx_req;
	void *rx_buf;
	size_t rx_hashed; /* bytes of rx_buf already fed to xxh */
	struct ps_csum *xxh; /* checksum of the reply being received */
	void **bufs; /* free page-aligned buffers */
	unsigned int nr_free, nr_bufs;
	size_t buf_size;
	uint32_t stream_pages; /* stream pages requested and not yet installed */
	uint32_t nr_wire; /* requests sent and not answered */
	bool rx_wait_buf; /* a header is in, waiting for a free buffer */
	bool done_sent, bye;
	unsigned int fails;
	uint64_t last_rx_us, down_since_us, retry_at_us, backoff_ms;
};

struct lp_stats {
	uint64_t t_start_us, t_first_ready_us, t_end_us;
	uint64_t pages_fault, pages_stream, pages_zero, pages_dropped;
	uint64_t bytes_rx;
	uint64_t faults; /* fault messages read */
	uint32_t *lat; /* fault service latencies (µs) of fetched faults */
	size_t nr_lat, cap_lat;
	uint64_t max_lat_us, max_lat_at_us; /* the slowest fault, and when it was served */
	uint64_t last_progress_us, last_progress_pages;
	bool tty;
};

/* A fault message whose page is not in yet. */
struct lp_fault {
	struct lp_fault *next;
	struct lp_proc *proc;
	uint64_t addr;
	uint64_t t_us;
};

struct lp_ctx {
	const struct relive_opts *opts;
	int dirfd;
	uint8_t token[PS_TOKEN_LEN];
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_text[128];
	struct io_uring ring;
	struct lp_proc *procs;
	struct lp_req reqs; /* list head */
	struct lp_fault *faults;
	struct lp_conn conn[2]; /* PS_CHAN_FAULT, PS_CHAN_STREAM */
	struct lp_proc *rr; /* round-robin position of the stream */
	int listen_fd;
	char sock_path[4096];
	uint64_t stall_us, reconnect_us, handover_deadline_us;
	uint64_t total_pages;
	bool finishing; /* DONE sent */
	bool ring_ok;
	unsigned int nr_failed; /* processes whose handover failed */
	int fatal; /* non-zero: stop the loop and exit with an error */
	struct lp_guard *guard; /* lp-guard.c: holds our uffds should we die */
	struct lp_stats st;
};

/* lp-cmd.c */
struct lp_proc *lp_proc_find(struct lp_ctx *ctx, uint32_t pid);
struct lp_req *lp_req_new(struct lp_ctx *ctx, struct lp_proc *p, const struct lp_run *run,
			  bool urgent);
void lp_req_free(struct lp_ctx *ctx, struct lp_req *r);
void lp_req_cancel(struct lp_ctx *ctx, struct lp_req *r);
bool lp_all_done(const struct lp_ctx *ctx);

/* lp-handover.c */
int lp_handover_listen(struct lp_ctx *ctx);
void lp_handover_event(struct lp_ctx *ctx, void *obj, const struct io_uring_cqe *cqe);
void lp_handover_fini(struct lp_ctx *ctx);

/* lp-uffd.c */
int lp_uffd_arm(struct lp_ctx *ctx, struct lp_proc *p);
void lp_uffd_event(struct lp_ctx *ctx, struct lp_proc *p, const struct io_uring_cqe *cqe);
/* Install what can be installed of r now; true when r is finished with. */
bool lp_uffd_install(struct lp_ctx *ctx, struct lp_req *r, uint32_t budget);
/* Fetch, zero-fill or keep waiting for each fault not served yet (after events, reconnects). */
void lp_faults_recheck(struct lp_ctx *ctx);
/* Install pending background data, a chunk at a time; true if any is left. */
bool lp_install_pending(struct lp_ctx *ctx);
/* The process is gone or lost: forget its pages; kill it if its memory never came. */
void lp_proc_drop(struct lp_ctx *ctx, struct lp_proc *p, bool kill_it, const char *why);

/* lp-guard.c: a process sharing our descriptor table that kills the
 * processes left incomplete should the daemon die (docs/failure-modes.md). */
int lp_guard_start(struct lp_ctx *ctx);
/* Before the handover is acknowledged: pid is guarded from now on. */
int lp_guard_add(struct lp_ctx *ctx, struct lp_proc *p, uint32_t pid);
void lp_guard_fork(struct lp_ctx *ctx, struct lp_proc *parent, struct lp_proc *child);
/* Once per loop turn: complete or not, forked children's pids. */
void lp_guard_sync(struct lp_ctx *ctx);
/* Giving up: kill the forked children the daemon cannot name (abandon() the rest). */
void lp_guard_abandon(struct lp_ctx *ctx);
/* The daemon exits on purpose: the guard leaves and is reaped. */
void lp_guard_stop(struct lp_ctx *ctx);
#define LP_TAKEOVER_SOCK "lazy-takeover.sock"
#define LP_TAKEOVER_MAGIC 0x4b544c52U /* "RLTK" */
#define LP_TAKEOVER_VERSION 2U /* 2: records carry the image pid too */
#define LP_TAKEOVER_MAX_WAIT_S 30U
/* DIR/lazy-takeover.sock, where a dead daemon's guard waits for a successor. */
int lp_takeover_path(const struct relive_opts *opts, char *buf, size_t len);
/* Seconds the guard of a dead daemon waits for a successor: min(--lazy-timeout, 30). */
unsigned int lp_takeover_wait_s(const struct relive_opts *opts);

/* lp-takeover.c: at start, take over the uffds a dead daemon's guard holds.
 * 1: taken over (no restore will come); 0: no guard waits; -errno. */
int lp_takeover_try(struct lp_ctx *ctx);

/* lp-conn.c */
int lp_conn_init(struct lp_ctx *ctx, struct lp_conn *c, int chan);
void lp_conn_fini(struct lp_conn *c);
/* Queue the population of c's receive buffers, done by io_uring off this thread. */
void lp_conn_prefault(struct lp_ctx *ctx, struct lp_conn *c);
void lp_conn_event(struct lp_ctx *ctx, struct lp_conn *c, enum lp_ud kind, int res);
/* Queue a GET (or DONE when r is NULL) on c. */
int lp_conn_queue(struct lp_ctx *ctx, struct lp_conn *c, struct lp_req *r);
/* Post sends/receives, connect, retry, notice stalls: once per loop turn. */
void lp_conn_tick(struct lp_ctx *ctx, struct lp_conn *c, uint64_t now);
void lp_conn_buf_put(struct lp_conn *c, void *buf);

/* lp-stats.c */
void lp_stats_fault(struct lp_stats *st, uint64_t lat_us, uint64_t now_us);
void lp_stats_progress(struct lp_ctx *ctx, uint64_t now, bool final);
void lp_stats_report(struct lp_ctx *ctx);
int lp_stats_json(struct lp_ctx *ctx, const char *path);

/* SQE, flushing the ring once if it is full. */
static inline struct io_uring_sqe *lp_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

#endif
