/*
 * Test client of the source page server (relive dump --lazy-pages): a good
 * session that fetches every LAZY run of pagemap-<pid>.img on the stream
 * channel (pipelined), checks each checksum, compares the pages with an
 * eager dump of the same frozen process, times single-page faults on the
 * fault channel (alone and while the stream runs) after a burst of
 * pipelined ones that must all be answered, and ends with DONE/BYE; and
 * hostile clients that the server must cut off.
 *
 *   ps-client DIR HOST PORT fetch [EAGER_DIR]
 *   ps-client DIR HOST PORT badtoken|garbage|badversion|outofrange|hugerun|unknownpid
 *   ps-client DIR HOST PORT silent|partial MAX_MS
 *
 * Exit 0 when the server behaved as required, 1 otherwise (the reason on
 * stderr). Output lines "stream: ..." and "fault: ..." carry the measures.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "img.h"
#include "ps-proto.h"

#define PAGE 4096ULL
#define BATCH 1024U /* pages per stream request */
#define WINDOW 8 /* stream requests in flight */
#define FAULT_SAMPLES 2000
#define FAULT_BURST 40 /* pipelined urgent GETs: more than the server's reply slots */
#define REPLY_TIMEOUT_S 10 /* a request left unanswered this long fails the test */

struct run {
	uint64_t vaddr, nr;
	uint32_t flags;
	uint64_t page; /* PRESENT: first page in the pages image */
};

struct task {
	uint8_t token[PS_TOKEN_LEN];
	uint32_t pid;
	struct run *runs;
	size_t nr;
	int pages_fd;
};

static const char *host, *port;
static struct task T, E; /* the lazy dump and the eager one */

__attribute__((noreturn)) static void die(const char *fmt, const char *a)
{
	fprintf(stderr, "ps-client: ");
	fprintf(stderr, fmt, a);
	fprintf(stderr, "\n");
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void load(const char *dir, struct task *t, bool need_pages)
{
	ProtobufCMessage *m;
	struct img img;
	uint64_t page = 0;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY), r;

	if (dfd < 0)
		die("cannot open %s", dir);
	if (img_open(&img, dfd, IMG_INVENTORY, 0, IMG_READ) || img_read_one(&img, &m) != 0)
		die("cannot read the inventory of %s", dir);
	InventoryEntry *ie = (InventoryEntry *)m;
	if (ie->session_token.len != PS_TOKEN_LEN)
		die("bad session token in %s", dir);
	memcpy(t->token, ie->session_token.data, PS_TOKEN_LEN);
	t->pid = ie->root_pid;
	img_msg_free(m);
	img_close(&img);
	if (img_open(&img, dfd, IMG_PAGEMAP, t->pid, IMG_READ))
		die("cannot open the pagemap in %s", dir);
	if (img_read(&img, &m) != 1)
		die("no pagemap head in %s", dir);
	img_msg_free(m);
	while ((r = img_read(&img, &m)) == 1) {
		PagemapEntry *pe = (PagemapEntry *)m;

		t->runs = realloc(t->runs, (t->nr + 1) * sizeof(*t->runs));
		t->runs[t->nr] = (struct run){ pe->vaddr, pe->nr_pages, pe->flags, page };
		if (pe->flags & PE_PRESENT)
			page += pe->nr_pages;
		t->nr++;
		img_msg_free(m);
	}
	if (r < 0)
		die("bad pagemap in %s", dir);
	img_close(&img);
	t->pages_fd = -1;
	if (need_pages) {
		if (img_open(&img, dfd, IMG_PAGES, t->pid, IMG_READ))
			die("cannot open the pages image in %s", dir);
		t->pages_fd = img_pages_fd(&img);
	}
	close(dfd);
}

static int dial(void)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	int fd, one = 1;

	if (getaddrinfo(host, port, &hints, &res))
		die("cannot resolve %s", host);
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen))
		die("cannot connect: %s", strerror(errno));
	freeaddrinfo(res);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* a reply that never comes ends in "short reply", not in a hang */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO,
		   &(struct timeval){ .tv_sec = REPLY_TIMEOUT_S }, sizeof(struct timeval));
	return fd;
}

static void xwrite(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			die("write to the server: %s", n ? strerror(errno) : "closed");
		p += n;
		len -= (size_t)n;
	}
}

/* Read exactly LEN bytes: 0, or -1 at EOF/reset (no byte lost in a partial read). */
static int xread(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send a hello; returns the server's status. */
static int hello(int fd, uint32_t channel, const uint8_t *token, uint32_t version)
{
	struct ps_hello h = { PS_MAGIC, version, channel, 0, { 0 } };
	uint8_t buf[PS_HELLO_SIZE], rbuf[PS_HELLO_REPLY_SIZE];
	struct ps_hello_reply rep;
	const char *why;

	memcpy(h.token, token, PS_TOKEN_LEN);
	ps_hello_encode(&h, buf);
	xwrite(fd, buf, sizeof(buf));
	if (xread(fd, rbuf, sizeof(rbuf)))
		die("%s", "no hello reply");
	if (ps_hello_reply_decode(rbuf, &rep, &why) && rep.magic == PS_MAGIC && !rep.status)
		die("bad hello reply: %s", why);
	return rep.status;
}

static void send_hdr(int fd, uint32_t cmd, uint32_t flags, uint32_t pid, uint32_t nr,
		     uint64_t vaddr)
{
	struct ps_hdr h = { cmd, flags, pid, nr, vaddr };
	uint8_t buf[PS_HDR_SIZE];

	ps_hdr_encode(&h, buf);
	xwrite(fd, buf, sizeof(buf));
}

/* Read one PAGES reply for (vaddr, nr) into BUF and check it. */
static void recv_pages(int fd, uint64_t vaddr, uint32_t nr, uint8_t *buf)
{
	uint8_t hb[PS_HDR_SIZE];
	struct ps_hdr h;
	const char *why;
	uint64_t csum = 0;

	if (xread(fd, hb, sizeof(hb)))
		die("%s", "the server closed instead of a PAGES reply");
	if (ps_hdr_decode(hb, false, &h, &why))
		die("bad reply header: %s", why);
	if (h.cmd != PS_PAGES || h.vaddr != vaddr || h.nr_pages != nr || h.pid != T.pid)
		die("%s", "reply does not match the request");
	if (xread(fd, buf, nr * PAGE) || xread(fd, &csum, sizeof(csum)))
		die("%s", "short PAGES reply");
	if (le64toh(csum) != ps_csum(buf, nr * PAGE))
		die("checksum mismatch at %s", "reply");
}

/* The eager dump's copy of the page at vaddr, into OUT; false if it has none. */
static bool eager_page(uint64_t vaddr, uint8_t *out)
{
	for (size_t i = 0; i < E.nr; i++) {
		const struct run *r = &E.runs[i];

		if (!(r->flags & PE_PRESENT) || vaddr < r->vaddr || vaddr >= r->vaddr + r->nr * PAGE)
			continue;
		off_t off = (off_t)img_pages_offset(r->page + (vaddr - r->vaddr) / PAGE);
		return pread(E.pages_fd, out, PAGE, off) == (ssize_t)PAGE;
	}
	return false;
}

static volatile int streaming;
static uint64_t lat_stream[FAULT_SAMPLES], lat_idle[FAULT_SAMPLES];
static size_t nr_lat_stream;
static int fault_fd;

static uint64_t lazy_pages(void)
{
	uint64_t n = 0;

	for (size_t i = 0; i < T.nr; i++)
		if (T.runs[i].flags & PE_LAZY)
			n += T.runs[i].nr;
	return n;
}

/* The I-th lazy page, spread over every lazy run. */
static uint64_t nth_lazy(uint64_t i)
{
	uint64_t total = lazy_pages(), k = (i * 7919) % total;

	for (size_t r = 0; r < T.nr; r++) {
		if (!(T.runs[r].flags & PE_LAZY))
			continue;
		if (k < T.runs[r].nr)
			return T.runs[r].vaddr + k * PAGE;
		k -= T.runs[r].nr;
	}
	return 0;
}

static uint64_t one_fault(uint64_t i)
{
	static uint8_t buf[PAGE];
	uint64_t va = nth_lazy(i), t0 = now_ns();

	send_hdr(fault_fd, PS_GET, PS_F_URGENT, T.pid, 1, va);
	recv_pages(fault_fd, va, 1, buf);
	return now_ns() - t0;
}

static void *fault_thread(void *arg)
{
	(void)arg;
	while (streaming && nr_lat_stream < FAULT_SAMPLES) {
		lat_stream[nr_lat_stream] = one_fault(nr_lat_stream);
		nr_lat_stream++;
		usleep(200);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report_lat(const char *what, uint64_t *v, size_t n)
{
	if (!n) {
		printf("fault: %s: no samples\n", what);
		return;
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	printf("fault: %s: %zu samples, min %.1f us, median %.1f us, p99 %.1f us, max %.1f us\n",
	       what, n, v[0] / 1e3, v[n / 2] / 1e3, v[n * 99 / 100] / 1e3, v[n - 1] / 1e3);
}

struct req {
	uint64_t vaddr;
	uint32_t nr;
};

static int do_fetch(const char *eager)
{
	static uint8_t buf[BATCH * PAGE], ebuf[PAGE];
	struct req *reqs = NULL;
	size_t nr_reqs = 0, sent = 0, got = 0;
	uint64_t bytes = 0, cmp = 0, t0, t1;
	pthread_t th;
	int fd;

	if (eager)
		load(eager, &E, true);
	for (size_t i = 0; i < T.nr; i++) {
		if (!(T.runs[i].flags & PE_LAZY))
			continue;
		for (uint64_t off = 0; off < T.runs[i].nr; off += BATCH) {
			reqs = realloc(reqs, (nr_reqs + 1) * sizeof(*reqs));
			reqs[nr_reqs].vaddr = T.runs[i].vaddr + off * PAGE;
			reqs[nr_reqs].nr = (uint32_t)(T.runs[i].nr - off < BATCH ? T.runs[i].nr - off : BATCH);
			nr_reqs++;
		}
	}
	if (!nr_reqs)
		die("%s", "the pagemap has no LAZY run");
	fault_fd = dial();
	if (hello(fault_fd, PS_CHAN_FAULT, T.token, PS_VERSION))
		die("%s", "fault channel refused");
	fd = dial();
	if (hello(fd, PS_CHAN_STREAM, T.token, PS_VERSION))
		die("%s", "stream channel refused");
	/*
	 * Faults of many threads come at once: every one is answered, in order,
	 * also past the replies the server can hold at a time.
	 */
	for (uint64_t i = 0; i < FAULT_BURST; i++)
		send_hdr(fault_fd, PS_GET, PS_F_URGENT, T.pid, 1, nth_lazy(i + 777));
	for (uint64_t i = 0; i < FAULT_BURST; i++)
		recv_pages(fault_fd, nth_lazy(i + 777), 1, buf);
	printf("fault: a burst of %d pipelined requests, each answered\n", FAULT_BURST);
	for (int i = 0; i < FAULT_SAMPLES; i++)
		lat_idle[i] = one_fault((uint64_t)i + 12345);
	streaming = 1;
	pthread_create(&th, NULL, fault_thread, NULL);
	t0 = now_ns();
	while (got < nr_reqs) {
		while (sent < nr_reqs && sent - got < WINDOW) {
			send_hdr(fd, PS_GET, 0, T.pid, reqs[sent].nr, reqs[sent].vaddr);
			sent++;
		}
		recv_pages(fd, reqs[got].vaddr, reqs[got].nr, buf);
		bytes += reqs[got].nr * PAGE;
		for (uint32_t p = 0; eager && p < reqs[got].nr; p++) {
			uint64_t va = reqs[got].vaddr + p * PAGE;

			if (!eager_page(va, ebuf)) {
				fprintf(stderr, "ps-client: page %#llx is not in the eager dump\n",
					(unsigned long long)va);
				return 1;
			}
			if (memcmp(ebuf, buf + p * PAGE, PAGE)) {
				const uint64_t *x = (const void *)ebuf, *y = (const void *)(buf + p * PAGE);
				size_t w = 0;

				while (x[w] == y[w])
					w++;
				fprintf(stderr, "ps-client: page %#llx differs from the eager dump: "
					"word %zu is %#llx, eager %#llx\n", (unsigned long long)va, w,
					(unsigned long long)y[w], (unsigned long long)x[w]);
				return 1;
			}
			cmp++;
		}
		got++;
	}
	t1 = now_ns();
	streaming = 0;
	pthread_join(th, NULL);
	printf("stream: %zu requests, %llu MiB in %.1f ms: %.2f GiB/s%s\n", nr_reqs,
	       (unsigned long long)(bytes >> 20), (t1 - t0) / 1e6,
	       (double)bytes / (1 << 30) / ((t1 - t0) / 1e9), eager ? " (with comparison)" : "");
	if (eager)
		printf("compare: %llu pages equal to the eager dump\n", (unsigned long long)cmp);
	report_lat("idle", lat_idle, FAULT_SAMPLES);
	report_lat("during the stream", lat_stream, nr_lat_stream);
	send_hdr(fd, PS_DONE, 0, 0, 0, 0);
	{
		uint8_t hb[PS_HDR_SIZE];
		struct ps_hdr h;
		const char *why;

		if (xread(fd, hb, sizeof(hb)) || ps_hdr_decode(hb, false, &h, &why) || h.cmd != PS_BYE)
			die("%s", "no BYE after DONE");
	}
	printf("bye: the server acknowledged DONE\n");
	close(fd);
	close(fault_fd);
	free(reqs);
	return 0;
}

/* After a hostile request the server must close without a reply. */
static int expect_closed(int fd, const char *what)
{
	uint8_t b;
	ssize_t n = read(fd, &b, 1);

	if (n > 0) {
		fprintf(stderr, "ps-client: %s: the server answered instead of closing\n", what);
		return 1;
	}
	printf("%s: connection closed by the server\n", what);
	return 0;
}

static uint64_t first_lazy(void)
{
	for (size_t i = 0; i < T.nr; i++)
		if (T.runs[i].flags & PE_LAZY)
			return T.runs[i].vaddr;
	die("%s", "no LAZY run");
	return 0;
}

static int hostile(const char *mode, int max_ms)
{
	uint8_t tok[PS_TOKEN_LEN];
	int fd = dial(), st;

	if (!strcmp(mode, "badtoken") || !strcmp(mode, "badversion")) {
		memcpy(tok, T.token, sizeof(tok));
		if (!strcmp(mode, "badtoken"))
			tok[7] ^= 0x40;
		st = hello(fd, PS_CHAN_STREAM, tok, !strcmp(mode, "badtoken") ? PS_VERSION : 99);
		if (st != (!strcmp(mode, "badtoken") ? -EACCES : -EPROTONOSUPPORT)) {
			fprintf(stderr, "ps-client: %s: status %d\n", mode, st);
			return 1;
		}
		printf("%s: refused with %s\n", mode, strerror(-st));
		return expect_closed(fd, mode);
	}
	if (!strcmp(mode, "garbage")) {
		uint8_t junk[PS_HELLO_SIZE], rbuf[PS_HELLO_REPLY_SIZE];
		struct ps_hello_reply rep;
		const char *why;

		memset(junk, 0xa5, sizeof(junk));
		xwrite(fd, junk, sizeof(junk));
		if (xread(fd, rbuf, sizeof(rbuf)) || ps_hello_reply_decode(rbuf, &rep, &why) ||
		    rep.status != -EPROTO) {
			fprintf(stderr, "ps-client: garbage: no -EPROTO reply\n");
			return 1;
		}
		printf("garbage: refused with %s\n", strerror(-rep.status));
		return expect_closed(fd, mode);
	}
	if (!strcmp(mode, "silent") || !strcmp(mode, "partial")) {
		uint64_t t0 = now_ns(), ms;
		uint8_t b;

		if (!strcmp(mode, "partial")) {
			if (hello(fd, PS_CHAN_STREAM, T.token, PS_VERSION))
				die("%s", "refused");
			xwrite(fd, "\x01\x00\x00\x00\x00", 5);
		}
		if (read(fd, &b, 1) > 0) {
			fprintf(stderr, "ps-client: %s: the server sent data\n", mode);
			return 1;
		}
		ms = (now_ns() - t0) / 1000000;
		printf("%s: cut off after %llu ms\n", mode, (unsigned long long)ms);
		if ((int)ms > max_ms) {
			fprintf(stderr, "ps-client: %s: cut off after %llu ms, limit %d\n", mode,
				(unsigned long long)ms, max_ms);
			return 1;
		}
		return 0;
	}
	if (hello(fd, PS_CHAN_STREAM, T.token, PS_VERSION))
		die("%s", "refused");
	if (!strcmp(mode, "outofrange")) {
		/* Below the first lazy run: its VMA's start or an unmapped page. */
		send_hdr(fd, PS_GET, 0, T.pid, 1, 0x10000);
	} else if (!strcmp(mode, "hugerun")) {
		send_hdr(fd, PS_GET, 0, T.pid, PS_MAX_RUN_PAGES + 1, first_lazy());
	} else if (!strcmp(mode, "unknownpid")) {
		send_hdr(fd, PS_GET, 0, T.pid + 1, 1, first_lazy());
	} else {
		die("unknown mode %s", mode);
	}
	return expect_closed(fd, mode);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s DIR HOST PORT MODE [ARG]\n", argv[0]);
		return 2;
	}
	host = argv[2];
	port = argv[3];
	load(argv[1], &T, false);
	if (!strcmp(argv[4], "fetch"))
		return do_fetch(argc > 5 ? argv[5] : NULL);
	return hostile(argv[4], argc > 5 ? atoi(argv[5]) : 0);
}
