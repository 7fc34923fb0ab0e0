/*
 * One established TCP connection read through TCP_REPAIR, on a socket the
 * caller already put in repair mode and locked: the sequence numbers at the
 * end of the send and receive queues, both queues (peeked, nothing is
 * consumed), the part of the send queue never sent, the options the
 * handshake agreed on (mss, window scales, SACK, timestamps), the timestamp
 * clock and the window. Restored by restorer/rst-tcp.c.
 */
#include "dump-inet.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* Largest queue kept in the image (an image entry holds at most 16 MiB). */
#define TCP_QUEUE_MAX (4U << 20)

static int sockopt_get(int sk, int opt, void *val, socklen_t len, const char *what,
		       const char *name)
{
	socklen_t l = len;

	if (getsockopt(sk, SOL_TCP, opt, val, &l)) {
		int r = -errno;

		pr_perror("%s: getsockopt(%s)", what, name);
		return r;
	}
	return 0;
}

static int select_queue(int sk, int q, const char *what)
{
	if (setsockopt(sk, SOL_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q))) {
		int r = -errno;

		pr_perror("%s: setsockopt(TCP_REPAIR_QUEUE, %d)", what, q);
		return r;
	}
	return 0;
}

/* Sequence number at the end of queue Q and its LEN bytes, peeked. */
static int read_queue(int sk, int q, uint32_t len, uint32_t *ret_seq, ProtobufCBinaryData *ret,
		      const char *what)
{
	const char *name = q == TCP_SEND_QUEUE ? "send" : "receive";
	ssize_t n = 0;
	int r;

	if (len > TCP_QUEUE_MAX) {
		pr_err("%s: %u bytes in its %s queue: more than %u is not supported\n", what, len,
		       name, TCP_QUEUE_MAX);
		return -E2BIG;
	}
	r = select_queue(sk, q, what);
	if (!r)
		r = sockopt_get(sk, TCP_QUEUE_SEQ, ret_seq, sizeof(*ret_seq), what,
				"TCP_QUEUE_SEQ");
	if (r)
		return r;
	ret->len = 0;
	ret->data = malloc(len ? len : 1);
	if (!ret->data)
		return -ENOMEM;
	if (len)
		n = recv(sk, ret->data, len, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0) {
		r = -errno;
		pr_perror("%s: peek of its %s queue (%u bytes)", what, name, len);
		return r;
	}
	if ((uint32_t)n != len) {
		pr_err("%s: peek of its %s queue gave %zd of %u bytes\n", what, name, n, len);
		return -EIO;
	}
	ret->len = len;
	return 0;
}

static int read_queues(int sk, const char *what, TcpStreamEntry *t)
{
	int outq, unsent, inq, r;

	if (ioctl(sk, SIOCOUTQ, &outq) || ioctl(sk, SIOCOUTQNSD, &unsent) ||
	    ioctl(sk, SIOCINQ, &inq)) {
		r = -errno;
		pr_perror("%s: cannot read its queue lengths", what);
		return r;
	}
	if (outq < 0 || unsent < 0 || inq < 0 || unsent > outq) {
		pr_err("%s: queue lengths out of range (out %d, unsent %d, in %d)\n", what, outq,
		       unsent, inq);
		return -EIO;
	}
	t->unsent_len = (uint32_t)unsent;
	r = read_queue(sk, TCP_SEND_QUEUE, (uint32_t)outq, &t->snd_seq, &t->snd_queue, what);
	if (!r)
		r = read_queue(sk, TCP_RECV_QUEUE, (uint32_t)inq, &t->rcv_seq, &t->rcv_queue,
			       what);
	if (!r)
		r = select_queue(sk, TCP_NO_QUEUE, what);
	pr_debug("%s: send queue %d bytes (%d unsent) up to seq %u, receive queue %d up to %u\n",
		 what, outq, unsent, t->snd_seq, inq, t->rcv_seq);
	return r;
}

int dmp_tcp_read(int sk, const char *what, TcpStreamEntry *t)
{
	struct tcp_repair_window w;
	struct tcp_info ti;
	int r;

	r = read_queues(sk, what, t);
	if (r)
		return r;
	memset(&ti, 0, sizeof(ti));
	r = sockopt_get(sk, TCP_INFO, &ti, sizeof(ti), what, "TCP_INFO");
	/* In repair mode TCP_MAXSEG gives mss_clamp, what TCPOPT_MAXSEG restores. */
	if (!r)
		r = sockopt_get(sk, TCP_MAXSEG, &t->mss, sizeof(t->mss), what, "TCP_MAXSEG");
	if (!r)
		r = sockopt_get(sk, TCP_TIMESTAMP, &t->timestamp, sizeof(t->timestamp), what,
				"TCP_TIMESTAMP");
	if (!r)
		r = sockopt_get(sk, TCP_REPAIR_WINDOW, &w, sizeof(w), what, "TCP_REPAIR_WINDOW");
	if (r)
		return r;
	t->opts = ti.tcpi_options;
	t->snd_wscale = ti.tcpi_snd_wscale;
	t->rcv_wscale = ti.tcpi_rcv_wscale;
	t->snd_wl1 = w.snd_wl1;
	t->snd_wnd = w.snd_wnd;
	t->max_window = w.max_window;
	t->rcv_wnd = w.rcv_wnd;
	t->rcv_wup = w.rcv_wup;
	return 0;
}
