/*
 * One client connection of the page server: the hello and its token check,
 * then pipelined requests. Every GET is checked against the LAZY runs of the
 * pagemap, then read from the keeper with process_vm_readv straight into one
 * of a few preallocated reply slots (header, pages, checksum contiguous) and
 * hashed as it comes. A fault channel's reply is read whole and sent at
 * once; a stream reply is read and sent in 256 KiB pieces, one per loop
 * turn, so that a fault never waits long behind it. Anything malformed, out
 * of range or stalled cuts the connection off with a logged reason; the
 * session goes on.
 */
#include "page-server-int.h"

#include "log.h"
#include "util.h"

#include <endian.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *chan_name(const struct pss_conn *c)
{
	if (c->state == C_HELLO)
		return "before hello";
	return c->channel == PS_CHAN_FAULT ? "fault channel" : "stream channel";
}

static void post(struct pss_conn *c, struct io_uring_sqe *sqe, int tag)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | (uint64_t)tag);
	c->inflight++;
}

struct pss_conn *pss_conn_new(struct pss_loop *loop, int fd, const struct sockaddr *sa,
			      socklen_t len)
{
	char host[INET6_ADDRSTRLEN + 8], serv[16];
	struct pss_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (!c)
		return NULL;
	c->loop = loop;
	c->fd = fd;
	c->state = C_HELLO;
	c->t_open_ms = c->t_rx_ms = c->t_tx_ms = pss_now_ms();
	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(c->peer, sizeof(c->peer), "fd %d", fd);
	else
		snprintf(c->peer, sizeof(c->peer), "%s port %s", host, serv);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return c;
}

__attribute__((format(printf, 3, 4))) static void cut(struct pss_conn *c, bool error,
						      const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (error)
		pr_err("page server: client %s (%s): %s; connection closed\n", c->peer,
		       chan_name(c), why);
	else
		pr_info("page server: client %s (%s): %s\n", c->peer, chan_name(c), why);
	pss_conn_close(c, NULL);
}

void pss_conn_close(struct pss_conn *c, const char *reason)
{
	if (c->closing)
		return;
	if (reason)
		pr_err("page server: client %s (%s): %s; connection closed\n", c->peer,
		       chan_name(c), reason);
	c->closing = true;
	/* Completes whatever recv or send is still in flight. */
	shutdown(c->fd, SHUT_RDWR);
}

bool pss_conn_reap(struct pss_conn *c)
{
	if (!c->closing || c->inflight)
		return false;
	close(c->fd);
	if (c->slots)
		munmap(c->slots, (size_t)PSS_SLOTS * PSS_SLOT_SIZE);
	if (c->fill_hash)
		ps_csum_free(c->fill_hash);
	if (c->authed)
		c->loop->srv->nr_authed--;
	if (c->gets)
		pr_info("page server: client %s (%s): %llu requests, %llu pages\n", c->peer,
			chan_name(c), (unsigned long long)c->gets, (unsigned long long)c->pages);
	free(c);
	return true;
}

static uint8_t *slot_hdr(struct pss_conn *c, unsigned int slot)
{
	return c->slots + (size_t)slot * PSS_SLOT_SIZE + PSS_SLOT_HEAD - PS_HDR_SIZE;
}

/* Whether [vaddr, vaddr + len) lies inside the LAZY runs (possibly several adjacent ones). */
static bool lazy_covered(const struct pss_proc *pp, uint64_t vaddr, uint64_t len)
{
	size_t lo = 0, hi = pp->nr_lazy;
	uint64_t cur = vaddr, end = vaddr + len;

	/* The last run starting at or below vaddr. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pp->lazy[mid][0] <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	for (size_t i = lo - 1; i < pp->nr_lazy && cur < end; i++) {
		if (pp->lazy[i][0] > cur || pp->lazy[i][1] <= cur)
			return false;
		cur = pp->lazy[i][1];
	}
	return cur >= end;
}

/* Start the reply to a GET in the next slot: checked, its header encoded, no page read yet. */
static int start_get(struct pss_conn *c, const struct ps_hdr *h)
{
	struct pss_srv *srv = c->loop->srv;
	const struct pss_proc *pp = pss_proc_find(srv, h->pid);
	unsigned int slot = (c->q_head + c->q_n) % PSS_SLOTS;
	size_t len = (size_t)h->nr_pages * PS_PAGE_SIZE;
	struct ps_hdr rep = *h;

	if (!pp) {
		cut(c, true, "unknown pid %u (this session serves pid %d and its tree)", h->pid,
		    (int)srv->cfg->procs[0].pid);
		return -ESRCH;
	}
	if (!lazy_covered(pp, h->vaddr, len)) {
		cut(c, true, "run %#llx + %u pages is outside the lazy runs of pid %u",
		    (unsigned long long)h->vaddr, h->nr_pages, h->pid);
		return -ERANGE;
	}
	rep.cmd = PS_PAGES;
	ps_hdr_encode(&rep, slot_hdr(c, slot));
	c->q_len[slot] = PS_HDR_SIZE + len + PS_CSUM_SIZE;
	c->q_bye[slot] = false;
	c->q_n++;
	c->filling = true;
	c->fill_h = *h;
	c->fill_pp = pp;
	c->fill_off = 0;
	ps_csum_reset(c->fill_hash);
	return 0;
}

/*
 * Read the reply being filled from the keeper and hash it: all of it when
 * WHOLE, else one stream step, cut short when a completion (maybe a fault
 * request) comes in. The checksum goes after the last piece.
 */
static int fill(struct pss_conn *c, bool whole)
{
	struct pss_srv *srv = c->loop->srv;
	const struct pss_proc *pp = c->fill_pp;
	const struct ps_hdr *h = &c->fill_h;
	unsigned int slot = (c->q_head + c->q_n - 1) % PSS_SLOTS;
	uint8_t *pages = slot_hdr(c, slot) + PS_HDR_SIZE;
	size_t len = (size_t)h->nr_pages * PS_PAGE_SIZE;
	size_t step = 0;
	uint64_t csum;

	do {
		/*
		 * In pieces: this kernel (PREEMPT_NONE) gives the core up only
		 * on the way back to user space; no single copy may take long.
		 */
		size_t piece = MIN(len - c->fill_off, (size_t)PSS_READ_CHUNK);
		struct iovec local = { pages + c->fill_off, piece };
		struct iovec remote = { (void *)(uintptr_t)(h->vaddr + c->fill_off), piece };
		ssize_t n = process_vm_readv(pp->cfg->keeper, &local, 1, &remote, 1, 0);

		if (n != (ssize_t)piece) {
			int err = n < 0 ? errno : EIO;

			if (err == ESRCH) {
				pr_err("page server: keeper %d of pid %d is gone: its memory is lost\n",
				       (int)pp->cfg->keeper, (int)pp->cfg->pid);
				pss_stop(srv, -ESRCH);
			}
			cut(c, true, "cannot read %#llx + %u pages from keeper %d: %s",
			    (unsigned long long)h->vaddr, h->nr_pages, (int)pp->cfg->keeper,
			    n < 0 ? strerror(err) : "short read");
			c->filling = false;
			return -err;
		}
		ps_csum_update(c->fill_hash, pages + c->fill_off, piece);
		c->fill_off += piece;
		step += piece;
	} while (c->fill_off < len &&
		 (whole || (step < PSS_STREAM_STEP && !pss_urgent(c->loop))));
	if (c->fill_off < len)
		return 0;
	csum = htole64(ps_csum_digest(c->fill_hash));
	memcpy(pages + len, &csum, sizeof(csum));
	c->filling = false;
	c->gets++;
	c->pages += h->nr_pages;
	srv->served_pages += h->nr_pages;
	srv->served_gets++;
	return 0;
}

static void queue_bye(struct pss_conn *c)
{
	unsigned int slot = (c->q_head + c->q_n) % PSS_SLOTS;
	struct ps_hdr bye = { .cmd = PS_BYE };

	ps_hdr_encode(&bye, slot_hdr(c, slot));
	c->q_len[slot] = PS_HDR_SIZE;
	c->q_bye[slot] = true;
	c->q_n++;
	c->done_rcvd = true;
	pr_info("page server: client %s (%s): DONE, every page is in\n", c->peer, chan_name(c));
}

static void post_send(struct pss_conn *c);
static void sent(struct pss_conn *c, size_t n);

/*
 * Parse every complete request there is room to answer. A fault channel's
 * replies are read whole here; a stream reply is started, and read a piece
 * per loop turn (pss_conn_fill_step) before the next request is looked at.
 */
static void process_rx(struct pss_conn *c)
{
	size_t pos = c->rx_off;

	while (c->rx_len - pos >= PS_HDR_SIZE && !c->done_rcvd && !c->filling &&
	       c->q_n < PSS_SLOTS && !c->closing) {
		const char *why = "?";
		struct ps_hdr h;

		if (ps_hdr_decode(c->rx + pos, true, &h, &why)) {
			cut(c, true, "malformed request: %s", why);
			return;
		}
		pos += PS_HDR_SIZE;
		if (h.cmd == PS_DONE) {
			queue_bye(c);
			break;
		}
		if (start_get(c, &h))
			return;
		if (c->channel != PS_CHAN_FAULT)
			continue;
		if (fill(c, true))
			return;
		/* out now, and its slot free for the next request */
		if (!c->tx_posted)
			post_send(c);
	}
	/* Compacted only when no recv is in flight into the buffer (kick). */
	c->rx_off = c->done_rcvd ? c->rx_len : pos;
}

/*
 * The stream fills every slot within its first 32 MiB: populate them now, in
 * an io-wq worker (it shares our memory; MADV_POPULATE_WRITE writes no data),
 * so that those first touches do not lengthen the stream steps that faults
 * wait behind. Untagged: its completion is ignored, and failing is harmless.
 */
static void prefault_slots(struct pss_conn *c)
{
	struct io_uring_sqe *sqe = pss_sqe(c->loop);

	if (!sqe)
		return;
	io_uring_prep_madvise(sqe, c->slots, (off_t)PSS_SLOTS * PSS_SLOT_SIZE,
			      MADV_POPULATE_WRITE);
	io_uring_sqe_set_data64(sqe, 0);
}

static void do_hello(struct pss_conn *c)
{
	struct pss_srv *srv = c->loop->srv;
	struct ps_hello_reply rep = { .magic = PS_MAGIC, .version = PS_VERSION };
	uint8_t out[PS_HELLO_REPLY_SIZE];
	const char *why = "?";
	struct ps_hello h;
	int r;

	r = ps_hello_decode(c->rx, &h, &why);
	if (!r && !ps_token_equal(h.token, srv->cfg->token)) {
		r = -EACCES;
		why = "wrong session token";
	}
	rep.status = r;
	ps_hello_reply_encode(&rep, out);
	/* 16 bytes on a fresh connection: the socket buffer takes them at once. */
	if (send(c->fd, out, sizeof(out), MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof(out) &&
	    !r) {
		cut(c, true, "cannot send the hello reply: %s", strerror(errno));
		return;
	}
	if (r) {
		cut(c, true, "refused (%s): %s", strerror(-r), why);
		return;
	}
	if (srv->nr_authed >= PSS_MAX_CONNS / 2) {
		cut(c, true, "too many open sessions");
		return;
	}
	c->slots = mmap(NULL, (size_t)PSS_SLOTS * PSS_SLOT_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->slots == MAP_FAILED) {
		c->slots = NULL;
		cut(c, true, "cannot map reply buffers: %s", strerror(errno));
		return;
	}
	if (h.channel == PS_CHAN_STREAM)
		prefault_slots(c);
	c->fill_hash = ps_csum_new();
	if (!c->fill_hash) {
		cut(c, true, "out of memory for the reply hash");
		return;
	}
	c->rx_len = 0;
	c->rx_off = 0;
	c->state = C_SERVING;
	c->channel = h.channel;
	c->authed = true;
	srv->nr_authed++;
	pr_info("page server: client %s authenticated (%s)\n", c->peer, chan_name(c));
}

/*
 * Send what is ready, from the head reply on: whole replies, and of the one
 * being filled its header and the pages read so far. On the stream channel
 * at most PSS_SEND_CHUNK per send: it is copied inline, on this thread. A
 * fault reply leaves at once in a non-blocking sendmsg (a page on an idle
 * socket: it fits), not after the rest of this loop turn; what does not
 * fit goes through io_uring.
 */
static void post_send(struct pss_conn *c)
{
	size_t cap = c->channel == PS_CHAN_STREAM ? PSS_SEND_CHUNK : SIZE_MAX, total = 0;
	struct io_uring_sqe *sqe;
	unsigned int i, n = 0;

	for (i = 0; i < c->q_n && total < cap; i++) {
		unsigned int slot = (c->q_head + i) % PSS_SLOTS;
		size_t off = i ? 0 : c->sent;
		size_t end = c->q_len[slot];

		if (c->filling && i == c->q_n - 1)
			end = PS_HDR_SIZE + c->fill_off;
		if (end <= off)
			break;
		c->iov[n].iov_base = slot_hdr(c, slot) + off;
		c->iov[n].iov_len = MIN(end - off, cap - total);
		total += c->iov[n++].iov_len;
	}
	if (!n)
		return;
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = n;
	if (c->channel == PS_CHAN_FAULT) {
		ssize_t w = sendmsg(c->fd, &c->msg, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w > 0) {
			sent(c, (size_t)w);
			if ((size_t)w < total)
				post_send(c);
			return;
		}
	}
	sqe = pss_sqe(c->loop);
	if (!sqe) {
		cut(c, true, "no room in the submission queue");
		return;
	}
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL | MSG_WAITALL);
	post(c, sqe, TAG_SEND);
	c->tx_posted = true;
	c->t_tx_ms = pss_now_ms();
}

void pss_conn_kick(struct pss_conn *c)
{
	struct io_uring_sqe *sqe;
	size_t want;

	if (c->closing)
		return;
	if (c->state == C_SERVING && !c->tx_posted && c->q_n)
		post_send(c);
	if (c->closing || c->rx_posted || c->done_rcvd)
		return;
	if (c->rx_off) {
		memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
		c->rx_len -= c->rx_off;
		c->rx_off = 0;
	}
	want = c->state == C_HELLO ? PS_HELLO_SIZE - c->rx_len : PSS_RX_SIZE - c->rx_len;
	if (!want)
		return;
	sqe = pss_sqe(c->loop);
	if (!sqe) {
		cut(c, true, "no room in the submission queue");
		return;
	}
	io_uring_prep_recv(sqe, c->fd, c->rx + c->rx_len, want, 0);
	post(c, sqe, TAG_RECV);
	c->rx_posted = true;
}

static void sent(struct pss_conn *c, size_t n)
{
	struct pss_srv *srv = c->loop->srv;

	while (n && c->q_n) {
		size_t rem = c->q_len[c->q_head] - c->sent;

		if (n < rem) {
			c->sent += n;
			break;
		}
		n -= rem;
		c->sent = 0;
		if (c->q_bye[c->q_head])
			c->bye_sent = true;
		c->q_head = (c->q_head + 1) % PSS_SLOTS;
		c->q_n--;
	}
	if (c->bye_sent) {
		pr_info("page server: client %s (%s): BYE sent\n", c->peer, chan_name(c));
		pss_stop(srv, 0);
	}
}

void pss_conn_complete(struct pss_conn *c, int tag, int res)
{
	struct pss_srv *srv = c->loop->srv;

	c->inflight--;
	if (tag == TAG_RECV)
		c->rx_posted = false;
	else
		c->tx_posted = false;
	if (c->closing)
		return;
	if (res < 0) {
		cut(c, true, "%s failed: %s", tag == TAG_RECV ? "receive" : "send", strerror(-res));
		return;
	}
	if (c->authed)
		srv->last_activity_ms = pss_now_ms();
	if (tag == TAG_SEND) {
		c->t_tx_ms = pss_now_ms();
		sent(c, (size_t)res);
	} else if (res == 0) {
		if (c->state == C_HELLO)
			cut(c, true, "closed before a complete hello (%zu of %u bytes)", c->rx_len,
			    PS_HELLO_SIZE);
		else if (c->rx_len > c->rx_off && !c->done_rcvd)
			cut(c, true, "closed in the middle of a request");
		else
			cut(c, false, "closed the connection");
		return;
	} else {
		c->rx_len += (size_t)res;
		c->t_rx_ms = pss_now_ms();
		if (c->state == C_HELLO) {
			if (c->rx_len < PS_HELLO_SIZE)
				goto out;
			do_hello(c);
		}
	}
	if (!c->closing && c->state == C_SERVING)
		process_rx(c);
out:
	pss_conn_kick(c);
}

void pss_conn_check_idle(struct pss_conn *c, uint64_t now)
{
	uint64_t idle = c->loop->srv->cfg->idle_timeout_ms;

	if (c->closing)
		return;
	if (c->state == C_HELLO) {
		if (now - c->t_open_ms >= idle)
			cut(c, true, "no valid hello within %llu ms", (unsigned long long)idle);
	} else if (c->tx_posted) {
		if (now - c->t_tx_ms >= idle)
			cut(c, true, "has not read its replies for %llu ms",
			    (unsigned long long)idle);
	} else if (c->rx_len > c->rx_off && c->q_n < PSS_SLOTS && !c->done_rcvd) {
		if (now - c->t_rx_ms >= idle)
			cut(c, true, "stalled in the middle of a request for %llu ms",
			    (unsigned long long)idle);
	}
}

bool pss_conn_filling(const struct pss_conn *c)
{
	return c->filling && !c->closing;
}

void pss_conn_fill_step(struct pss_conn *c)
{
	if (fill(c, false))
		return;
	/* Done: the next request may start. */
	if (!c->filling)
		process_rx(c);
	pss_conn_kick(c);
}
