/*
 * One client connection of the page server: the hello and its token check,
 * then pipelined requests. Every GET is checked against the LAZY runs of the
 * pagemap, read from the keeper with process_vm_readv straight into one of a
 * few preallocated reply slots (header, pages, checksum contiguous), and the
 * queued replies leave in one sendmsg. Anything malformed, out of range or
 * stalled cuts the connection off with a logged reason; the session goes on.
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
	if (c->authed)
		atomic_fetch_sub(&c->loop->srv->nr_authed, 1);
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

static int serve_get(struct pss_conn *c, const struct ps_hdr *h)
{
	struct pss_srv *srv = c->loop->srv;
	const struct pss_proc *pp = pss_proc_find(srv, h->pid);
	unsigned int slot = (c->q_head + c->q_n) % PSS_SLOTS;
	uint8_t *hdr = slot_hdr(c, slot), *pages = hdr + PS_HDR_SIZE;
	size_t len = (size_t)h->nr_pages * PS_PAGE_SIZE;
	struct iovec local = { pages, len };
	struct iovec remote = { (void *)(uintptr_t)h->vaddr, len };
	struct ps_hdr rep = *h;
	uint64_t csum;
	ssize_t n = 0;

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
	/*
	 * In pieces: this kernel (PREEMPT_NONE) hands the core to a woken fault
	 * thread only when we return to user space; no single copy may take long.
	 */
	for (size_t off = 0, piece; off < len; off += piece) {
		piece = MIN(len - off, (size_t)PSS_READ_CHUNK);
		local = (struct iovec){ pages + off, piece };
		remote = (struct iovec){ (void *)(uintptr_t)(h->vaddr + off), piece };
		n = process_vm_readv(pp->cfg->keeper, &local, 1, &remote, 1, 0);
		if (n != (ssize_t)piece)
			break;
		n = (ssize_t)(off + piece);
	}
	if (n != (ssize_t)len) {
		int err = n < 0 ? errno : EIO;

		if (err == ESRCH) {
			pr_err("page server: keeper %d of pid %d is gone: its memory is lost\n",
			       (int)pp->cfg->keeper, (int)pp->cfg->pid);
			pss_stop(srv, -ESRCH);
		}
		cut(c, true, "cannot read %#llx + %u pages from keeper %d: %s",
		    (unsigned long long)h->vaddr, h->nr_pages, (int)pp->cfg->keeper,
		    n < 0 ? strerror(err) : "short read");
		return -err;
	}
	csum = htole64(ps_csum(pages, len));
	memcpy(pages + len, &csum, sizeof(csum));
	rep.cmd = PS_PAGES;
	ps_hdr_encode(&rep, hdr);
	c->q_len[slot] = PS_HDR_SIZE + len + PS_CSUM_SIZE;
	c->q_bye[slot] = false;
	c->q_n++;
	c->gets++;
	c->pages += h->nr_pages;
	atomic_fetch_add_explicit(&srv->served_pages, h->nr_pages, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv->served_gets, 1, memory_order_relaxed);
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

/* Parse every complete request there is room to answer. */
static void process_rx(struct pss_conn *c)
{
	size_t pos = c->rx_off;

	while (c->rx_len - pos >= PS_HDR_SIZE && !c->done_rcvd && c->q_n < PSS_SLOTS) {
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
		if (serve_get(c, &h))
			return;
	}
	/* Compacted only when no recv is in flight into the buffer (kick). */
	c->rx_off = c->done_rcvd ? c->rx_len : pos;
}

/* Hand an authenticated fault channel to the fault loop's thread. */
static void hand_off(struct pss_conn *c)
{
	struct pss_loop *from = c->loop;
	struct pss_srv *srv = from->srv;

	for (int i = 0; i < from->nr; i++) {
		if (from->conns[i] == c) {
			from->conns[i] = from->conns[--from->nr];
			break;
		}
	}
	pthread_mutex_lock(&srv->lock);
	c->loop = &srv->fault;
	srv->handoff[srv->nr_handoff++] = c;
	pthread_mutex_unlock(&srv->lock);
	pss_wake(&srv->fault);
}

/* Returns true when C now belongs to the fault loop (the caller lets go). */
static bool do_hello(struct pss_conn *c)
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
		return false;
	}
	if (r) {
		cut(c, true, "refused (%s): %s", strerror(-r), why);
		return false;
	}
	if (srv->nr_authed >= PSS_MAX_CONNS / 2) {
		cut(c, true, "too many open sessions");
		return false;
	}
	c->slots = mmap(NULL, (size_t)PSS_SLOTS * PSS_SLOT_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->slots == MAP_FAILED) {
		c->slots = NULL;
		cut(c, true, "cannot map reply buffers: %s", strerror(errno));
		return false;
	}
	c->rx_len = 0;
	c->rx_off = 0;
	c->state = C_SERVING;
	c->channel = h.channel;
	c->authed = true;
	atomic_fetch_add(&srv->nr_authed, 1);
	pr_info("page server: client %s authenticated (%s)\n", c->peer, chan_name(c));
	if (c->channel == PS_CHAN_FAULT && c->loop == &srv->main) {
		hand_off(c);
		return true;
	}
	return false;
}

static void post_send(struct pss_conn *c)
{
	struct io_uring_sqe *sqe;
	unsigned int i;

	for (i = 0; i < c->q_n; i++) {
		unsigned int slot = (c->q_head + i) % PSS_SLOTS;
		size_t off = i ? 0 : c->sent;

		c->iov[i].iov_base = slot_hdr(c, slot) + off;
		c->iov[i].iov_len = c->q_len[slot] - off;
	}
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = c->q_n;
	sqe = pss_sqe(c->loop);
	if (!sqe) {
		cut(c, true, "no room in the submission queue");
		return;
	}
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL | MSG_WAITALL);
	/*
	 * Stream batches are copied into the socket by an io-wq worker, on
	 * another core, while this thread reads and checksums the next ones;
	 * a fault reply is small: sent inline, at once.
	 */
	if (c->channel == PS_CHAN_STREAM)
		io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
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
		atomic_store_explicit(&srv->last_activity_ms, pss_now_ms(), memory_order_relaxed);
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
			if (do_hello(c))
				return;
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
