/*
 * The source side of the lazy-pages test harness: a synthetic image
 * directory (inventory, pstree, mm, pagemap with LAZY and ZERO runs, written
 * through images/img.h), and a fake page server speaking docs/protocol.md
 * through common/ps-proto.h, serving h_word() contents, with one thread per
 * connection so the fault channel is never stuck behind the stream. Its
 * misbehaviours (enum h_server_mode) drive the hostile tests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "img.h"
#include "lp-harness.h"
#include "ps-proto.h"

#define BASE0 0x3c0000000000ULL /* clear of ASan's allocator at 0x6000... */
#define BASE1 0x3d0000000000ULL

void h_layout_make(struct h_layout *l, uint32_t pid, uint64_t lazy_mb)
{
	uint64_t n = lazy_mb * 256;

	memset(l, 0, sizeof(*l));
	l->pid = pid;
	l->vmas[0] = (struct h_vma){ BASE0, BASE0 + (2 << 20) };
	l->vmas[1] = (struct h_vma){ BASE1, BASE1 + n * H_PAGE };
	l->nr_vmas = 2;
	l->runs[0] = (struct h_run){ BASE0, 256, PE_LAZY };
	l->runs[1] = (struct h_run){ BASE0 + (1 << 20), 64, PE_ZERO };
	/* a 16-page hole between two lazy runs: zero on first touch */
	l->runs[2] = (struct h_run){ BASE1, n / 2, PE_LAZY };
	l->runs[3] = (struct h_run){ BASE1 + (n / 2 + 16) * H_PAGE, n - n / 2 - 16, PE_LAZY };
	l->nr_runs = 4;
	l->lazy_pages = 256 + n - 16;
	for (int i = 0; i < 32; i++)
		l->token[i] = (uint8_t)(i * 37 + pid);
}

const struct h_run *h_layout_run(const struct h_layout *l, uint64_t addr)
{
	for (int i = 0; i < l->nr_runs; i++)
		if (addr >= l->runs[i].vaddr && addr < l->runs[i].vaddr + l->runs[i].nr * H_PAGE)
			return &l->runs[i];
	return NULL;
}

static int write_one(int dirfd, enum img_kind kind, uint32_t id, const ProtobufCMessage **m,
		     int n)
{
	struct img img;
	int ret = img_open(&img, dirfd, kind, id, IMG_WRITE);

	for (int i = 0; !ret && i < n; i++)
		ret = img_write(&img, m[i]);
	if (ret)
		fprintf(stderr, "harness: %s\n", img.err);
	if (img.fd >= 0 && img_close(&img) && !ret)
		ret = -EIO;
	return ret;
}

int h_write_images(const char *dir, const struct h_layout *l)
{
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	MmEntry mm = MM_ENTRY__INIT;
	PagemapHead head = PAGEMAP_HEAD__INIT;
	VmaEntry vmas[H_MAX_VMAS], *vp[H_MAX_VMAS];
	PagemapEntry pes[H_MAX_RUNS];
	const ProtobufCMessage *msgs[H_MAX_RUNS + 1];
	uint32_t threads[1] = { l->pid };
	int dirfd, ret;

	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	inv.format_version = IMG_FORMAT_VERSION;
	inv.kernel_release = (char *)"test";
	inv.page_size = 4096;
	inv.flags = INV_FLAG_LAZY;
	inv.session_token.len = 32;
	inv.session_token.data = (uint8_t *)l->token;
	inv.root_pid = l->pid;
	ps.pid = ps.pgid = ps.sid = l->pid;
	ps.ppid = 1;
	ps.n_threads = 1;
	ps.threads = threads;
	for (int i = 0; i < l->nr_vmas; i++) {
		vma_entry__init(&vmas[i]);
		vmas[i].start = l->vmas[i].start;
		vmas[i].end = l->vmas[i].end;
		vmas[i].prot = PROT_READ | PROT_WRITE;
		vmas[i].flags = MAP_PRIVATE | MAP_ANONYMOUS;
		vmas[i].kind = VMA_KIND__VMA_ANON_PRIVATE;
		vp[i] = &vmas[i];
	}
	mm.n_vmas = (size_t)l->nr_vmas;
	mm.vmas = vp;
	head.pages_id = l->pid;
	msgs[0] = &head.base;
	for (int i = 0; i < l->nr_runs; i++) {
		pagemap_entry__init(&pes[i]);
		pes[i].vaddr = l->runs[i].vaddr;
		pes[i].nr_pages = (uint32_t)l->runs[i].nr;
		pes[i].flags = l->runs[i].flags;
		msgs[i + 1] = &pes[i].base;
	}
	ret = write_one(dirfd, IMG_PSTREE, 0, (const ProtobufCMessage *[]){ &ps.base }, 1);
	if (!ret)
		ret = write_one(dirfd, IMG_MM, l->pid, (const ProtobufCMessage *[]){ &mm.base }, 1);
	if (!ret)
		ret = write_one(dirfd, IMG_PAGEMAP, l->pid, msgs, l->nr_runs + 1);
	if (!ret)
		ret = write_one(dirfd, IMG_INVENTORY, 0, (const ProtobufCMessage *[]){ &inv.base }, 1);
	close(dirfd);
	return ret;
}

/* ---- the fake page server ---- */

struct srv {
	const struct h_layout *l;
	enum h_server_mode mode;
	atomic_uint replies;
	atomic_uint byes;
	atomic_bool dropped;
};

struct srv_conn {
	struct srv *s;
	int fd;
};

static int full_read(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n <= 0)
			return n < 0 && errno == EINTR ? 0 : -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int full_writev(int fd, struct iovec *iov, int cnt)
{
	while (cnt) {
		ssize_t n = writev(fd, iov, cnt);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static void fill(uint64_t *buf, uint64_t vaddr, uint64_t nr, uint32_t pid)
{
	uint64_t k = (uint64_t)pid * 0x9E3779B97F4A7C15ULL;

	for (uint64_t i = 0; i < nr * (H_PAGE / 8); i++)
		buf[i] = (vaddr + i * 8) ^ k;
}

static bool run_ok(const struct h_layout *l, const struct ps_hdr *h)
{
	const struct h_run *r = h_layout_run(l, h->vaddr);

	return h->pid == l->pid && r && r->flags == PE_LAZY &&
	       h->vaddr + (uint64_t)h->nr_pages * H_PAGE <= r->vaddr + r->nr * H_PAGE;
}

static int serve_get(struct srv_conn *c, struct ps_hello *hello, struct ps_hdr *h, void *buf)
{
	struct srv *s = c->s;
	uint8_t hb[PS_HDR_SIZE], cb[8];
	struct ps_hdr rh = *h;
	struct iovec iov[3];
	uint64_t csum;
	unsigned int n = atomic_fetch_add(&s->replies, 1) + 1;

	if (s->mode == HS_STALL)
		return 0;
	if (s->mode == HS_VANISH && n > 50)
		_exit(0);
	if (s->mode == HS_DROP_ONCE && hello->channel == PS_CHAN_STREAM && n > 10 &&
	    !atomic_exchange(&s->dropped, true))
		return -1;
	if (s->mode == HS_GARBAGE) {
		memcpy(hb, "garbage!garbage!garbage!", PS_HDR_SIZE);
		iov[0] = (struct iovec){ hb, PS_HDR_SIZE };
		return full_writev(c->fd, iov, 1);
	}
	if (s->mode == HS_OUT_OF_RANGE)
		rh.vaddr += H_PAGE;
	rh.cmd = PS_PAGES;
	rh.flags = 0;
	fill(buf, rh.vaddr, rh.nr_pages, rh.pid);
	csum = ps_csum(buf, rh.nr_pages * H_PAGE);
	if (s->mode == HS_BAD_CSUM)
		csum ^= 1;
	for (int i = 0; i < 8; i++)
		cb[i] = (uint8_t)(csum >> (8 * i));
	ps_hdr_encode(&rh, hb);
	iov[0] = (struct iovec){ hb, PS_HDR_SIZE };
	iov[1] = (struct iovec){ buf, rh.nr_pages * H_PAGE };
	iov[2] = (struct iovec){ cb, 8 };
	return full_writev(c->fd, iov, 3);
}

static void *serve(void *arg)
{
	struct srv_conn *c = arg;
	struct srv *s = c->s;
	uint8_t in[PS_HELLO_SIZE], out[PS_HELLO_REPLY_SIZE];
	struct ps_hello_reply rep = { .magic = PS_MAGIC, .version = PS_VERSION };
	struct ps_hello hello;
	const char *why = "";
	void *buf = aligned_alloc(4096, PS_MAX_RUN_PAGES * H_PAGE + H_PAGE);

	if (!buf || full_read(c->fd, in, sizeof(in)))
		goto out;
	rep.status = ps_hello_decode(in, &hello, &why);
	if (!rep.status && (!ps_token_equal(hello.token, s->l->token) || s->mode == HS_BAD_TOKEN))
		rep.status = -EACCES;
	ps_hello_reply_encode(&rep, out);
	if (write(c->fd, out, sizeof(out)) != sizeof(out) || rep.status)
		goto out;
	for (;;) {
		uint8_t hb[PS_HDR_SIZE];
		struct ps_hdr h;

		if (full_read(c->fd, hb, sizeof(hb)))
			break;
		if (ps_hdr_decode(hb, true, &h, &why)) {
			fprintf(stderr, "fake server: bad request: %s\n", why);
			break;
		}
		if (h.cmd == PS_DONE) {
			struct ps_hdr bye = { .cmd = PS_BYE };
			struct iovec iov = { hb, PS_HDR_SIZE };

			ps_hdr_encode(&bye, hb);
			full_writev(c->fd, &iov, 1);
			if (atomic_fetch_add(&s->byes, 1) + 1 == 2)
				_exit(0);
			break;
		}
		if (!run_ok(s->l, &h)) {
			fprintf(stderr, "fake server: GET pid %u %#llx+%u outside the lazy runs\n",
				h.pid, (unsigned long long)h.vaddr, h.nr_pages);
			break;
		}
		if (serve_get(c, &hello, &h, buf))
			break;
	}
out:
	free(buf);
	close(c->fd);
	free(c);
	return NULL;
}

pid_t h_server_start(const struct h_layout *l, enum h_server_mode mode, uint16_t *ret_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int one = 1, fd;
	pid_t pid;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len)) {
		perror("fake server: listen");
		return -1;
	}
	*ret_port = ntohs(sa.sin_port);
	pid = fork();
	if (pid) {
		close(fd);
		return pid;
	}
	static struct srv s;
	s.l = l;
	s.mode = mode;
	for (;;) {
		struct srv_conn *c = calloc(1, sizeof(*c));
		pthread_t t;

		c->s = &s;
		c->fd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c->fd < 0)
			_exit(1);
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, NULL, serve, c))
			_exit(1);
		pthread_detach(t);
	}
}
