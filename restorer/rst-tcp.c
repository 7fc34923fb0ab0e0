/*
 * An established TCP connection rebuilt through TCP_REPAIR (the dump side
 * is dumper/dump-tcp.c). In repair mode, connect() sends nothing and makes
 * the socket established at once, writes to the receive queue land there as
 * if they came from the peer, and writes to the send queue count as sent
 * but unacknowledged (the retransmission timer resends them). The order
 * matters: the sequence numbers before connect, the receive queue before
 * the window (the kernel checks the window against rcv_nxt), and the bytes
 * that were never sent only after repair mode is off, as ordinary writes.
 */
#include "rst-inet.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#ifndef TCPOPT_MAXSEG
#define TCPOPT_MAXSEG 2
#endif
#ifndef TCPOPT_WINDOW
#define TCPOPT_WINDOW 3
#endif
#ifndef TCPOPT_SACK_PERMITTED
#define TCPOPT_SACK_PERMITTED 4
#endif
#ifndef TCPOPT_TIMESTAMP
#define TCPOPT_TIMESTAMP 8
#endif

static int tcp_set(struct rst_child *c, int sk, int opt, const void *val, socklen_t len,
		   const char *what, const char *name)
{
	if (setsockopt(sk, SOL_TCP, opt, val, len)) {
		int r = -errno;

		rst_child_fail(c, "%s: setsockopt(%s): %s", what, name, strerror(errno));
		return r;
	}
	return 0;
}

static int set_queue_seq(struct rst_child *c, int sk, int q, uint32_t seq, const char *what)
{
	int r = tcp_set(c, sk, TCP_REPAIR_QUEUE, &q, sizeof(q), what, "TCP_REPAIR_QUEUE");

	if (!r)
		r = tcp_set(c, sk, TCP_QUEUE_SEQ, &seq, sizeof(seq), what, "TCP_QUEUE_SEQ");
	return r;
}

int rst_tcp_before_connect(struct rst_child *c, int sk, const TcpStreamEntry *t,
			   const char *what)
{
	int r;

	/* The queues are written back after connect: start where they start. */
	r = set_queue_seq(c, sk, TCP_SEND_QUEUE, t->snd_seq - (uint32_t)t->snd_queue.len, what);
	if (!r)
		r = set_queue_seq(c, sk, TCP_RECV_QUEUE, t->rcv_seq - (uint32_t)t->rcv_queue.len,
				  what);
	if (!r && (t->opts & TCPI_OPT_TIMESTAMPS))
		r = tcp_set(c, sk, TCP_TIMESTAMP, &t->timestamp, sizeof(t->timestamp), what,
			    "TCP_TIMESTAMP");
	return r;
}

static int set_options(struct rst_child *c, int sk, const TcpStreamEntry *t, const char *what)
{
	struct tcp_repair_opt o[4];
	int n = 0;

	o[n++] = (struct tcp_repair_opt){ TCPOPT_MAXSEG, t->mss };
	if (t->opts & TCPI_OPT_WSCALE)
		o[n++] = (struct tcp_repair_opt){ TCPOPT_WINDOW,
						  t->snd_wscale | (t->rcv_wscale << 16) };
	if (t->opts & TCPI_OPT_SACK)
		o[n++] = (struct tcp_repair_opt){ TCPOPT_SACK_PERMITTED, 0 };
	if (t->opts & TCPI_OPT_TIMESTAMPS)
		o[n++] = (struct tcp_repair_opt){ TCPOPT_TIMESTAMP, 0 };
	return tcp_set(c, sk, TCP_REPAIR_OPTIONS, o, (socklen_t)(n * sizeof(o[0])), what,
		       "TCP_REPAIR_OPTIONS");
}

/* LEN bytes of BUF into the socket; in repair mode the kernel may take them in parts. */
static int write_all(struct rst_child *c, int sk, const uint8_t *buf, size_t len,
		     const char *what, const char *queue)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = send(sk, buf + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n <= 0) {
			int r = n < 0 ? -errno : -EIO;

			rst_child_fail(c, "%s: %s queue stopped at %zu of %zu bytes: %s", what,
				       queue, off, len, n < 0 ? strerror(errno) : "no progress");
			return r;
		}
		off += (size_t)n;
	}
	return 0;
}

static int fill_queue(struct rst_child *c, int sk, int q, const uint8_t *buf, size_t len,
		      const char *what)
{
	int r;

	if (!len)
		return 0;
	r = tcp_set(c, sk, TCP_REPAIR_QUEUE, &q, sizeof(q), what, "TCP_REPAIR_QUEUE");
	if (!r)
		r = write_all(c, sk, buf, len, what, q == TCP_SEND_QUEUE ? "send" : "receive");
	return r;
}

int rst_tcp_after_connect(struct rst_child *c, int sk, const TcpStreamEntry *t,
			  const char *what)
{
	size_t sent = t->snd_queue.len - t->unsent_len;
	struct tcp_repair_window w = { .snd_wl1 = t->snd_wl1,
				       .snd_wnd = t->snd_wnd,
				       .max_window = t->max_window,
				       .rcv_wnd = t->rcv_wnd,
				       .rcv_wup = t->rcv_wup };
	int off = 0, none = TCP_NO_QUEUE, r;

	r = set_options(c, sk, t, what);
	if (!r)
		r = fill_queue(c, sk, TCP_RECV_QUEUE, t->rcv_queue.data, t->rcv_queue.len, what);
	if (!r)
		r = fill_queue(c, sk, TCP_SEND_QUEUE, t->snd_queue.data, sent, what);
	if (!r)
		r = tcp_set(c, sk, TCP_REPAIR_WINDOW, &w, sizeof(w), what, "TCP_REPAIR_WINDOW");
	if (!r)
		r = tcp_set(c, sk, TCP_REPAIR_QUEUE, &none, sizeof(none), what,
			    "TCP_REPAIR_QUEUE");
	/* Repair off: the kernel sends a window probe, the peer learns we are back. */
	if (!r)
		r = tcp_set(c, sk, TCP_REPAIR, &off, sizeof(off), what, "TCP_REPAIR off");
	if (!r && t->unsent_len)
		r = write_all(c, sk, t->snd_queue.data + sent, t->unsent_len, what, "unsent");
	return r;
}
