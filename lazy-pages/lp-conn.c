/*
 * The two TCP connections of the lazy-pages daemon to the page server: the
 * fault channel (urgent single-page GETs, never bulk data) and the stream
 * channel (large background batches). Each is a state machine driven by
 * io_uring completions: connect, hello, then pipelined GETs out of one send
 * buffer and replies in: a header, then pages and checksum received into a
 * preallocated page-aligned buffer in bounded chunks. A reply is accepted
 * only for a run we asked for and only after its checksum; anything else
 * closes the connection, puts its requests back, and reconnects with backoff
 * for a bounded time. Installing the pages is lp-uffd.c's business.
 */
#include "lp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *chan_name(const struct lp_conn *c)
{
	return c->chan == PS_CHAN_FAULT ? "fault" : "stream";
}

int lp_conn_init(struct lp_ctx *ctx, struct lp_conn *c, int chan)
{
	unsigned int n = chan == PS_CHAN_STREAM ? LP_STREAM_BUFS : LP_FAULT_BUFS;
	uint32_t pages = chan == PS_CHAN_STREAM ? PS_MAX_RUN_PAGES : LP_FAULT_PAGES;

	memset(c, 0, sizeof(*c));
	c->ctx = ctx;
	c->chan = chan;
	c->fd = -1;
	c->backoff_ms = 50;
	/* the checksum lands in one extra page after the run */
	c->buf_size = (size_t)(pages + 1) * PS_PAGE_SIZE;
	c->bufs = calloc(n, sizeof(void *));
	c->xxh = ps_csum_new();
	if (!c->xxh)
		return -ENOMEM;
	c->out_cap = 64 << 10;
	c->out = malloc(c->out_cap);
	if (!c->bufs || !c->out)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		void *b = aligned_alloc(PS_PAGE_SIZE, c->buf_size);

		if (!b)
			return -ENOMEM;
		/*
		 * First-touch costs must not land on the page path, nor in the
		 * frozen window: the daemon starts after the source froze, and
		 * three 4 MiB stream buffers take ~6 ms to touch in this VM.
		 * A fault buffer is touched now; stream buffers are populated
		 * off this thread once the daemon is ready (lp_conn_prefault).
		 */
		if (chan != PS_CHAN_STREAM)
			memset(b, 0, c->buf_size);
		c->bufs[c->nr_free++] = b;
	}
	c->nr_bufs = n;
	return 0;
}

void lp_conn_prefault(struct lp_ctx *ctx, struct lp_conn *c)
{
	/*
	 * IORING_OP_MADVISE runs in an io-wq worker, which shares our memory:
	 * the loop goes on meanwhile. MADV_POPULATE_WRITE writes no data, so a
	 * receive into a buffer being populated is safe; on an old kernel it
	 * fails and the pages come at first use, as before.
	 */
	for (unsigned int i = 0; i < c->nr_free; i++) {
		struct io_uring_sqe *sqe = lp_sqe(&ctx->ring);

		if (!sqe)
			return;
		io_uring_prep_madvise(sqe, c->bufs[i], c->buf_size, MADV_POPULATE_WRITE);
		io_uring_sqe_set_data64(sqe, LP_UD_PREFAULT);
	}
}

void lp_conn_fini(struct lp_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	for (unsigned int i = 0; i < c->nr_free; i++)
		free(c->bufs[i]);
	free(c->rx_buf);
	c->rx_buf = NULL;
	free(c->bufs);
	free(c->out);
	ps_csum_free(c->xxh);
	c->xxh = NULL;
	c->bufs = NULL;
	c->out = NULL;
}

void lp_conn_buf_put(struct lp_conn *c, void *buf)
{
	c->bufs[c->nr_free++] = buf;
}

static void put_out(struct lp_conn *c, const uint8_t *p, size_t len)
{
	if (c->out_off && c->out_off == c->out_len && !c->send_busy)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap * 2 + len;
		uint8_t *n = realloc(c->out, cap);

		if (!n) {
			pr_err("out of memory for the request buffer of the %s channel\n",
			       chan_name(c));
			c->ctx->fatal = -ENOMEM;
			return;
		}
		c->out = n;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, p, len);
	c->out_len += len;
}

int lp_conn_queue(struct lp_ctx *ctx, struct lp_conn *c, struct lp_req *r)
{
	struct ps_hdr h = { .cmd = PS_DONE };
	uint8_t buf[PS_HDR_SIZE];

	if (r) {
		h.cmd = PS_GET;
		h.flags = r->urgent ? PS_F_URGENT : 0;
		h.pid = r->proc->src_pid;
		h.nr_pages = r->nr;
		h.vaddr = r->src;
		r->chan = c->chan;
		r->state = LP_REQ_QUEUED;
		r->t_sent = util_now_us();
		if (!c->nr_wire++)
			c->last_rx_us = r->t_sent;
		if (c->chan == PS_CHAN_STREAM)
			c->stream_pages += r->nr;
	} else {
		c->done_sent = true;
		c->last_rx_us = util_now_us();
	}
	ps_hdr_encode(&h, buf);
	put_out(c, buf, sizeof(buf));
	return 0;
}

/* Shut the connection down: its requests go back to the scheduler. */
static void conn_fail(struct lp_ctx *ctx, struct lp_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void conn_fail(struct lp_ctx *ctx, struct lp_conn *c, const char *fmt, ...)
{
	struct lp_req *r, *n;
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (c->state == LP_CONN_DEAD || c->state == LP_CONN_DOWN)
		return;
	if (c->done_sent)
		pr_info("page server %s, %s channel: %s\n", ctx->addr_text, chan_name(c), why);
	else
		pr_err("page server %s, %s channel: %s; closing the connection\n", ctx->addr_text,
		       chan_name(c), why);
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	/* a refused connect is bounded by time; a misbehaving peer by attempts */
	if (c->state == LP_CONN_UP || c->state == LP_CONN_HELLO)
		c->fails++;
	if (!c->down_since_us)
		c->down_since_us = util_now_us();
	c->state = LP_CONN_DEAD;
	for (r = ctx->reqs.next; r != &ctx->reqs; r = n) {
		n = r->next;
		if (r->chan != c->chan || r->state == LP_REQ_INSTALL)
			continue;
		if (!r->cancelled && r->proc && !r->proc->gone)
			lp_mm_requeue(&r->proc->mm, r->vaddr, r->nr);
		lp_req_free(ctx, r);
	}
	c->rx_req = NULL;
	c->nr_wire = 0;
	c->out_len = c->out_off = 0;
	c->rx_body = false;
	c->rx_wait_buf = false;
}

static int post(struct lp_ctx *ctx, struct lp_conn *c, struct io_uring_sqe *sqe, enum lp_ud k)
{
	if (!sqe) {
		pr_err("io_uring submission queue full\n");
		ctx->fatal = -EBUSY;
		return -EBUSY;
	}
	io_uring_sqe_set_data64(sqe, lp_ud(c, k));
	c->ops++;
	return 0;
}

static void post_recv(struct lp_ctx *ctx, struct lp_conn *c, void *buf, size_t len)
{
	struct io_uring_sqe *sqe = lp_sqe(&ctx->ring);

	if (sqe)
		io_uring_prep_recv(sqe, c->fd, buf, len, MSG_WAITALL);
	if (!post(ctx, c, sqe, LP_UD_RECV))
		c->recv_busy = true;
}

static void post_send(struct lp_ctx *ctx, struct lp_conn *c, const void *buf, size_t len)
{
	struct io_uring_sqe *sqe = lp_sqe(&ctx->ring);

	if (sqe)
		io_uring_prep_send(sqe, c->fd, buf, len, MSG_NOSIGNAL);
	if (!post(ctx, c, sqe, LP_UD_SEND)) {
		c->send_busy = true;
		c->sending = len;
	}
}

static void start_connect(struct lp_ctx *ctx, struct lp_conn *c)
{
	struct io_uring_sqe *sqe;
	struct ps_hello h = { .magic = PS_MAGIC, .version = PS_VERSION, .channel = c->chan };
	int one = 1;

	c->fd = socket(ctx->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		pr_perror("cannot create a socket for the %s channel", chan_name(c));
		ctx->fatal = -errno;
		return;
	}
	/* a fault request is 24 bytes: never wait for Nagle */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		pr_warn("TCP_NODELAY on the %s channel: %s\n", chan_name(c), strerror(errno));
	memcpy(h.token, ctx->token, PS_TOKEN_LEN);
	ps_hello_encode(&h, c->hello);
	c->state = LP_CONN_CONNECTING;
	c->done_sent = c->bye = false;
	sqe = lp_sqe(&ctx->ring);
	if (sqe)
		io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&ctx->addr, ctx->addrlen);
	post(ctx, c, sqe, LP_UD_CONNECT);
}

static struct lp_req *match_reply(struct lp_ctx *ctx, struct lp_conn *c, const struct ps_hdr *h)
{
	struct lp_req *r, *found = NULL;

	for (r = ctx->reqs.next; r != &ctx->reqs; r = r->next) {
		if (r->chan != c->chan || r->state != LP_REQ_QUEUED || r->src != h->vaddr ||
		    r->nr != h->nr_pages || !r->proc || r->proc->src_pid != h->pid)
			continue;
		/* same run asked twice (a cancelled request): same data, either will do */
		if (!found || (found->cancelled && !r->cancelled))
			found = r;
	}
	return found;
}

static void start_body(struct lp_ctx *ctx, struct lp_conn *c)
{
	c->rx_buf = c->bufs[--c->nr_free];
	c->rx_wait_buf = false;
	c->rx_body = true;
	c->rx_off = 0;
	c->rx_len = (size_t)c->rx_req->nr * PS_PAGE_SIZE + PS_CSUM_SIZE;
	c->rx_hashed = 0;
	ps_csum_reset(c->xxh);
}

/* Hash the pages as they come, so no single step of the loop hashes 4 MiB. */
static void hash_more(struct lp_conn *c)
{
	size_t pages_len = c->rx_len - PS_CSUM_SIZE, upto = MIN(c->rx_off, pages_len);

	if (upto > c->rx_hashed) {
		ps_csum_update(c->xxh, (const uint8_t *)c->rx_buf + c->rx_hashed,
			       upto - c->rx_hashed);
		c->rx_hashed = upto;
	}
}

static void got_header(struct lp_ctx *ctx, struct lp_conn *c)
{
	struct ps_hdr h;
	const char *why = NULL;
	struct lp_req *r;

	if (ps_hdr_decode(c->rx_hdr, false, &h, &why)) {
		conn_fail(ctx, c, "malformed reply header: %s", why);
		return;
	}
	if (h.cmd == PS_BYE) {
		if (!c->done_sent) {
			conn_fail(ctx, c, "BYE before we said DONE");
			return;
		}
		c->bye = true;
		conn_fail(ctx, c, "BYE received");
		return;
	}
	r = match_reply(ctx, c, &h);
	if (!r) {
		conn_fail(ctx, c, "reply for pid %u run %#llx+%u pages that was never asked for",
			  h.pid, (unsigned long long)h.vaddr, h.nr_pages);
		return;
	}
	r->state = LP_REQ_RECV;
	c->nr_wire--;
	c->rx_req = r;
	if (c->nr_free)
		start_body(ctx, c);
	else
		c->rx_wait_buf = true;
}

static void got_body(struct lp_ctx *ctx, struct lp_conn *c)
{
	struct lp_req *r = c->rx_req;
	size_t len = (size_t)r->nr * PS_PAGE_SIZE;
	const uint8_t *p = (const uint8_t *)c->rx_buf + len;
	uint64_t want = 0, got;

	for (int i = 7; i >= 0; i--)
		want = want << 8 | p[i];
	/* the same as ps_csum(), computed chunk by chunk */
	hash_more(c);
	got = ps_csum_digest(c->xxh);
	if (got != want) {
		conn_fail(ctx, c, "checksum mismatch for pid %u run %#llx+%u pages (got %016llx, expected %016llx)",
			  r->proc->src_pid, (unsigned long long)r->src, r->nr,
			  (unsigned long long)got, (unsigned long long)want);
		return;
	}
	c->fails = 0;
	c->rx_body = false;
	c->rx_req = NULL;
	ctx->st.bytes_rx += len;
	r->state = LP_REQ_INSTALL;
	r->buf = c->rx_buf;
	r->buf_owner = c;
	c->rx_buf = NULL;
	if (r->cancelled || !r->proc || r->proc->gone) {
		lp_req_free(ctx, r);
		return;
	}
	/* a fault is installed at once; background data a chunk at a time */
	if (r->urgent && lp_uffd_install(ctx, r, UINT32_MAX))
		lp_req_free(ctx, r);
}

/*
 * A fault reply's page follows its header in the same segment: take it now
 * with a plain non-blocking recv, not a loop turn (a background chunk) later.
 * Whatever is not there yet, or an error, is left to the next io_uring recv.
 */
static void rx_body_now(struct lp_ctx *ctx, struct lp_conn *c)
{
	while (c->rx_off < c->rx_len) {
		ssize_t n = recv(c->fd, (uint8_t *)c->rx_buf + c->rx_off, c->rx_len - c->rx_off,
				 MSG_DONTWAIT);

		if (n <= 0)
			return;
		c->last_rx_us = util_now_us();
		c->rx_off += (size_t)n;
	}
	got_body(ctx, c);
}

/*
 * Faults of many threads at once queue their replies up on the fault
 * channel: take every complete one already there now, not one per loop
 * turn, each behind a background step. A header is taken only whole
 * (peeked first); the rest is left to the next io_uring recv.
 */
static void rx_faults_now(struct lp_ctx *ctx, struct lp_conn *c)
{
	while (c->state == LP_CONN_UP && !c->rx_body && !c->rx_wait_buf) {
		ssize_t n = recv(c->fd, c->rx_hdr, PS_HDR_SIZE, MSG_DONTWAIT | MSG_PEEK);

		if (n != PS_HDR_SIZE)
			return;
		if (recv(c->fd, c->rx_hdr, PS_HDR_SIZE, MSG_DONTWAIT) != PS_HDR_SIZE) {
			conn_fail(ctx, c, "a peeked reply header went missing");
			return;
		}
		c->last_rx_us = util_now_us();
		c->rx_off = PS_HDR_SIZE;
		got_header(ctx, c);
		if (c->rx_body && c->state == LP_CONN_UP)
			rx_body_now(ctx, c);
	}
}

static void on_recv(struct lp_ctx *ctx, struct lp_conn *c, int res)
{
	c->recv_busy = false;
	if (c->state == LP_CONN_DEAD)
		return;
	if (res <= 0) {
		if (res == 0 && c->done_sent)
			conn_fail(ctx, c, "closed after DONE");
		else if (res == 0)
			conn_fail(ctx, c, "the source closed the connection%s",
				  c->rx_off ? " in the middle of a reply" : "");
		else
			conn_fail(ctx, c, "receive failed: %s", strerror(-res));
		return;
	}
	c->last_rx_us = util_now_us();
	c->rx_off += (size_t)res;
	if (c->state == LP_CONN_HELLO) {
		struct ps_hello_reply hr;
		const char *why = NULL;

		if (c->rx_off < PS_HELLO_REPLY_SIZE)
			return;
		c->rx_off = 0;
		if (ps_hello_reply_decode(c->hello_reply, &hr, &why)) {
			conn_fail(ctx, c, "bad hello reply: %s", why);
			return;
		}
		if (hr.status) {
			conn_fail(ctx, c, "the source refused the hello: %s%s", strerror(-hr.status),
				  hr.status == -EACCES ?
					  " (wrong session token: these images are not from this dump)" :
					  "");
			ctx->fatal = hr.status;
			return;
		}
		pr_info("page server %s: %s channel up\n", ctx->addr_text, chan_name(c));
		c->state = LP_CONN_UP;
		c->backoff_ms = 50;
		c->down_since_us = 0;
		/* faults that waited for a connection go out now */
		lp_faults_recheck(ctx);
		return;
	}
	if (!c->rx_body) {
		if (c->rx_off != PS_HDR_SIZE)
			return;
		got_header(ctx, c);
		if (c->chan == PS_CHAN_FAULT && c->rx_body && c->state == LP_CONN_UP)
			rx_body_now(ctx, c);
	} else if (c->rx_off == c->rx_len) {
		got_body(ctx, c);
	} else {
		hash_more(c);
		return;
	}
	if (c->chan == PS_CHAN_FAULT)
		rx_faults_now(ctx, c);
}

void lp_conn_event(struct lp_ctx *ctx, struct lp_conn *c, enum lp_ud kind, int res)
{
	c->ops--;
	switch (kind) {
	case LP_UD_CONNECT:
		if (c->state != LP_CONN_CONNECTING)
			return;
		if (res < 0) {
			conn_fail(ctx, c, "cannot connect: %s", strerror(-res));
			return;
		}
		c->state = LP_CONN_HELLO;
		c->rx_off = 0;
		c->last_rx_us = util_now_us();
		post_send(ctx, c, c->hello, PS_HELLO_SIZE);
		post_recv(ctx, c, c->hello_reply, PS_HELLO_REPLY_SIZE);
		return;
	case LP_UD_SEND:
		c->send_busy = false;
		if (c->state == LP_CONN_DEAD)
			return;
		if (res < 0) {
			conn_fail(ctx, c, "send failed: %s", strerror(-res));
			return;
		}
		if (c->state == LP_CONN_HELLO) {
			if ((size_t)res != PS_HELLO_SIZE)
				conn_fail(ctx, c, "short send of the hello");
			return;
		}
		c->out_off += (size_t)res;
		return;
	case LP_UD_RECV:
		on_recv(ctx, c, res);
		return;
	default:
		return;
	}
}

static void tick_down(struct lp_ctx *ctx, struct lp_conn *c, uint64_t now)
{
	if (c->state == LP_CONN_DEAD) {
		if (c->ops)
			return;
		close(c->fd);
		c->fd = -1;
		c->send_busy = c->recv_busy = false;
		if (c->rx_buf) {
			lp_conn_buf_put(c, c->rx_buf);
			c->rx_buf = NULL;
		}
		c->state = LP_CONN_DOWN;
		c->retry_at_us = now + c->backoff_ms * 1000;
		c->backoff_ms = MIN(c->backoff_ms * 2, 1000);
		/* faults that were on this connection are asked again elsewhere or later */
		lp_faults_recheck(ctx);
	}
	if (c->done_sent || ctx->finishing)
		return;
	if (!c->down_since_us)
		c->down_since_us = now;
	if (c->fails >= LP_MAX_FAILS) {
		pr_err("page server %s, %s channel: %u attempts in a row failed; giving up\n",
		       ctx->addr_text, chan_name(c), c->fails);
		ctx->fatal = -ECONNABORTED;
		return;
	}
	if (now - c->down_since_us > ctx->reconnect_us) {
		pr_err("page server %s, %s channel: unreachable for %llu s; giving up\n",
		       ctx->addr_text, chan_name(c),
		       (unsigned long long)(now - c->down_since_us) / 1000000);
		ctx->fatal = -ETIMEDOUT;
		return;
	}
	if (now >= c->retry_at_us)
		start_connect(ctx, c);
}

void lp_conn_tick(struct lp_ctx *ctx, struct lp_conn *c, uint64_t now)
{
	if (c->state == LP_CONN_DOWN || c->state == LP_CONN_DEAD) {
		tick_down(ctx, c, now);
		return;
	}
	if (c->state == LP_CONN_CONNECTING || c->state == LP_CONN_HELLO) {
		if (c->state == LP_CONN_HELLO && now > c->last_rx_us + ctx->stall_us)
			conn_fail(ctx, c, "no hello reply for %llu ms",
				  (unsigned long long)(now - c->last_rx_us) / 1000);
		else if (c->state == LP_CONN_HELLO && !c->recv_busy && c->rx_off < PS_HELLO_REPLY_SIZE)
			post_recv(ctx, c, c->hello_reply + c->rx_off, PS_HELLO_REPLY_SIZE - c->rx_off);
		return;
	}
	if ((c->nr_wire || c->rx_body || c->done_sent) && now > c->last_rx_us + ctx->stall_us) {
		conn_fail(ctx, c, "the source sent nothing for %llu ms with %u requests pending",
			  (unsigned long long)(now - c->last_rx_us) / 1000,
			  c->nr_wire + (c->rx_body ? 1 : 0));
		return;
	}
	if (!c->send_busy && c->out_len > c->out_off)
		post_send(ctx, c, c->out + c->out_off, c->out_len - c->out_off);
	if (c->recv_busy)
		return;
	if (c->rx_wait_buf && c->nr_free)
		start_body(ctx, c);
	if (c->rx_wait_buf)
		return;
	if (c->rx_body) {
		size_t len = MIN(c->rx_len - c->rx_off, (size_t)LP_RECV_CHUNK);

		post_recv(ctx, c, (uint8_t *)c->rx_buf + c->rx_off, len);
	} else if (c->rx_off < PS_HDR_SIZE) {
		post_recv(ctx, c, c->rx_hdr + c->rx_off, PS_HDR_SIZE - c->rx_off);
	} else {
		c->rx_off = 0;
		post_recv(ctx, c, c->rx_hdr, PS_HDR_SIZE);
	}
}
