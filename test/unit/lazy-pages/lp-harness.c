/*
 * End-to-end harness of `relive lazy-pages` without the real dump and
 * restore: `lp-harness MODE [MiB]` forks a victim that plays the restored
 * process (maps the lazy VMAs at the image's addresses, registers them with a
 * userfaultfd, hands it over on DIR/lazy-pages.sock, sends 'R', then reads
 * and writes random pages and checks every byte), writes a matching image
 * directory, starts the fake page server (lp-fake.c) and runs the daemon
 * (cmd_lazy_pages) in a child with its log in a file. Good modes must end
 * with exit 0 and every page right; hostile modes with a clear error, a
 * non-zero exit within a bound, and a victim that never saw a wrong byte.
 * Exit 0 pass, 1 fail, 77 skip (no userfaultfd).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "img.h"
#include "log.h"
#include "lp-harness.h"
#include "opts.h"

enum victim_kind { V_TOUCH, V_FORK, V_EVENTS, V_SPARSE };

struct mode {
	const char *name;
	enum h_server_mode srv;
	enum victim_kind victim;
	uint64_t mb;
	bool ok; /* daemon exits 0 and the victim checks out */
	const char *msg; /* must appear in the daemon's log */
};

static const struct mode modes[] = {
	{ "basic", HS_GOOD, V_TOUCH, 16, true, "by fault" },
	{ "fork", HS_GOOD, V_FORK, 16, true, "forked" },
	{ "events", HS_GOOD, V_EVENTS, 16, true, "by fault" },
	{ "drop", HS_DROP_ONCE, V_TOUCH, 64, true, "closing the connection" },
	{ "bench", HS_GOOD, V_TOUCH, 1024, true, "by fault" },
	/* one random touch every 200 us: fault latency and throughput of the stream itself */
	{ "bench-sparse", HS_GOOD, V_SPARSE, 1024, true, "by fault" },
	{ "bad-token", HS_BAD_TOKEN, V_TOUCH, 16, false, "wrong session token" },
	{ "garbage", HS_GARBAGE, V_TOUCH, 16, false, "malformed reply header" },
	{ "out-of-range", HS_OUT_OF_RANGE, V_TOUCH, 16, false, "never asked for" },
	{ "bad-csum", HS_BAD_CSUM, V_TOUCH, 16, false, "checksum mismatch" },
	{ "stall", HS_STALL, V_TOUCH, 16, false, "sent nothing for" },
	{ "vanish", HS_VANISH, V_TOUCH, 64, false, "never arrived" },
};

/* Special ranges of the events victim (see victim_events). */
#define EV_DONTNEED(l) ((l)->runs[2].vaddr + 100 * H_PAGE)
#define EV_MOVED_FROM(l) ((l)->runs[3].vaddr + 200 * H_PAGE)
#define EV_MOVED_TO 0x3e0000000000ULL
#define EV_UNMAPPED(l) ((l)->runs[0].vaddr + 32 * H_PAGE)
#define EV_N 64ULL

struct victim {
	struct h_layout l;
	bool events;
	uint8_t *written; /* per page of the VMAs */
	uint64_t nr_pages;
	uint64_t bad;
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static bool in(uint64_t a, uint64_t start, uint64_t n)
{
	return a >= start && a < start + n * H_PAGE;
}

/*
 * What page addr should hold: false to leave it alone; *ret_src is the
 * source address of its first word, or 0 for a zero page.
 */
static bool expect(const struct victim *v, uint64_t addr, uint64_t *ret_src)
{
	const struct h_layout *l = &v->l;
	const struct h_run *r;

	if (v->events) {
		if (in(addr, EV_UNMAPPED(l), EV_N) || in(addr, EV_MOVED_FROM(l), EV_N))
			return false;
		if (in(addr, EV_DONTNEED(l), EV_N)) {
			*ret_src = 0;
			return true;
		}
		if (in(addr, EV_MOVED_TO, EV_N)) {
			*ret_src = addr - EV_MOVED_TO + EV_MOVED_FROM(l);
			return true;
		}
	}
	r = h_layout_run(l, addr);
	*ret_src = r && r->flags == PE_LAZY ? addr : 0;
	return true;
}

static uint64_t page_addr(const struct victim *v, uint64_t idx)
{
	uint64_t n0 = (v->l.vmas[0].end - v->l.vmas[0].start) / H_PAGE;

	if (idx < n0)
		return v->l.vmas[0].start + idx * H_PAGE;
	if (v->events && idx >= v->nr_pages - EV_N)
		return EV_MOVED_TO + (idx - (v->nr_pages - EV_N)) * H_PAGE;
	return v->l.vmas[1].start + (idx - n0) * H_PAGE;
}

static void check_page(struct victim *v, uint64_t idx)
{
	uint64_t addr = page_addr(v, idx), src;
	const uint64_t *p = (const uint64_t *)addr;

	if (!expect(v, addr, &src))
		return;
	for (uint64_t i = 0; i < H_PAGE / 8; i++) {
		uint64_t w = src ? h_word(src + i * 8, v->l.pid) : 0;

		if (i == 0 && v->written[idx])
			w = ~w;
		if (p[i] != w) {
			if (v->bad++ < 5)
				fprintf(stderr, "victim %u: word %#llx is %#llx, expected %#llx\n",
					v->l.pid, (unsigned long long)(addr + i * 8),
					(unsigned long long)p[i], (unsigned long long)w);
			return;
		}
	}
}

static void touch(struct victim *v, uint64_t idx, bool write)
{
	uint64_t addr = page_addr(v, idx), want;

	check_page(v, idx);
	if (!write || !expect(v, addr, &want))
		return;
	*(volatile uint64_t *)addr = ~*(volatile uint64_t *)addr;
	v->written[idx] ^= 1;
}

static int victim_setup(struct victim *v, int *ret_uffd)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			    UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP,
	};
	int uffd;

	for (int i = 0; i < v->l.nr_vmas; i++) {
		uint64_t len = v->l.vmas[i].end - v->l.vmas[i].start;
		void *p = mmap((void *)v->l.vmas[i].start, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);

		if (p != (void *)v->l.vmas[i].start) {
			perror("victim: mmap");
			return -1;
		}
	}
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) {
		perror("victim: userfaultfd");
		return -1;
	}
	for (int i = 0; i < v->l.nr_vmas; i++) {
		struct uffdio_register reg = {
			.range = { v->l.vmas[i].start, v->l.vmas[i].end - v->l.vmas[i].start },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
			perror("victim: UFFDIO_REGISTER");
			return -1;
		}
	}
	*ret_uffd = uffd;
	return 0;
}

static int handover(const char *sock_path, int uffd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint32_t hello[4] = { 0x504c4c52, 1, (uint32_t)getpid(), 0 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { hello, sizeof(hello) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	struct timeval tv = { .tv_sec = 10 };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	char a = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (strlen(sock_path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) || sendmsg(fd, &mh, 0) != sizeof(hello) ||
	    read(fd, &a, 1) != 1 || a != 'A') {
		fprintf(stderr, "victim %d: handover refused (%s)\n", getpid(), strerror(errno));
		return -1;
	}
	/* the daemon holds the only uffd now, as after a real restore */
	close(uffd);
	if (write(fd, "R", 1) != 1)
		return -1;
	close(fd);
	return 0;
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

static void victim_events(struct victim *v)
{
	const struct h_layout *l = &v->l;

	if (madvise((void *)EV_DONTNEED(l), EV_N * H_PAGE, MADV_DONTNEED) ||
	    mremap((void *)EV_MOVED_FROM(l), EV_N * H_PAGE, EV_N * H_PAGE,
		   MREMAP_MAYMOVE | MREMAP_FIXED, (void *)EV_MOVED_TO) != (void *)EV_MOVED_TO ||
	    munmap((void *)EV_UNMAPPED(l), EV_N * H_PAGE)) {
		perror("victim: madvise/mremap/munmap");
		_exit(2);
	}
}

static int victim_main(uint64_t mb, enum victim_kind kind, int go_fd, int done_fd, const char *sock)
{
	struct victim v = { .events = kind == V_EVENTS };
	uint64_t seed = (uint64_t)getpid() * 2654435761ULL, touches = 0;
	pid_t child = 0;
	char c;
	int uffd, st;

	h_layout_make(&v.l, (uint32_t)getpid(), mb);
	v.nr_pages = (v.l.vmas[0].end - v.l.vmas[0].start + v.l.vmas[1].end - v.l.vmas[1].start) /
		     H_PAGE + (v.events ? EV_N : 0);
	v.written = calloc(v.nr_pages, 1);
	if (!v.written || victim_setup(&v, &uffd))
		return 2;
	if (read(go_fd, &c, 1) != 1 || handover(sock, uffd))
		return 3;
	if (kind == V_EVENTS)
		victim_events(&v);
	if (kind == V_FORK) {
		child = fork();
		if (child == 0) {
			/* the forked child reads everything through its own uffd */
			for (uint64_t i = 0; i < v.nr_pages; i++)
				check_page(&v, (i * 7919) % v.nr_pages);
			_exit(v.bad ? 1 : 0);
		}
	}
	while (!readable(done_fd)) {
		for (int i = 0; i < 1024; i++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			touch(&v, (seed >> 17) % v.nr_pages, seed >> 63);
			touches++;
			if (kind == V_SPARSE) {
				usleep(200);
				break;
			}
		}
	}
	if (read(done_fd, &c, 1) != 1)
		return 2;
	for (uint64_t i = 0; i < v.nr_pages; i++)
		check_page(&v, i);
	if (child && (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st))) {
		fprintf(stderr, "victim %d: its forked child failed (status %#x)\n", getpid(), st);
		return 1;
	}
	fprintf(stderr, "victim %d: %llu random touches, %llu pages checked, %llu bad\n", getpid(),
		(unsigned long long)touches, (unsigned long long)v.nr_pages,
		(unsigned long long)v.bad);
	return v.bad ? 1 : 0;
}

static pid_t start_daemon(const char *img, const char *log, const char *json, uint16_t port,
			  unsigned int timeout, int status_fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct relive_opts o = { .cmd = CMD_LAZY_PAGES, .cmd_name = "lazy-pages" };
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
			_exit(127);
		log_init();
		log_set_level(LOG_INFO);
		o.images_dir = img;
		o.address = "127.0.0.1";
		o.port = port;
		o.port_set = true;
		o.status_fd = status_fd;
		o.lazy_timeout = timeout;
		o.stats_json = json;
		_exit(cmd_lazy_pages(&o));
	}
	return pid;
}

/* waitpid with a bound; -1 on timeout (the child is left running). */
static int wait_bounded(pid_t pid, int *status, uint64_t limit_us)
{
	uint64_t end = now_us() + limit_us;

	while (now_us() < end) {
		struct rusage ru;
		pid_t r = wait4(pid, status, WNOHANG, &ru);

		if (r == pid) {
			if (getenv("LP_HARNESS_VERBOSE"))
				fprintf(stderr, "pid %d: %.3f s user, %.3f s system\n", pid,
					ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
					ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
			return 0;
		}
		usleep(2000);
	}
	return -1;
}

static void warm_up(uint64_t mb)
{
	/* DESIGN.md: the VM backs memory on first touch; do that once, untimed */
	size_t len = (mb + 256) << 20;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p != MAP_FAILED) {
		memset(p, 1, len);
		munmap(p, len);
	}
}

static void dump_file(const char *path, const char *prefix)
{
	char line[1024];
	FILE *f = fopen(path, "r");

	while (f && fgets(line, sizeof(line), f))
		fprintf(stderr, "%s%s", prefix, line);
	if (f)
		fclose(f);
}

static bool file_has(const char *path, const char *needle)
{
	static char buf[1 << 20];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

static int run(const struct mode *m, uint64_t mb)
{
	char dir[] = "/tmp/lp-harness-XXXXXX", img[256], sock[300], log[256], json[256], vpid[32];
	int go[2], done[2], status[2], dst, vst, sst, fail = 0;
	unsigned int timeout = m->ok ? 30 : 2;
	struct h_layout l;
	uint64_t t0, t_daemon;
	pid_t victim, server, daemon;
	uint16_t port;
	char c;

	if (!mkdtemp(dir) || pipe2(go, O_CLOEXEC) || pipe2(done, O_CLOEXEC) || pipe(status))
		return 1;
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(sock, sizeof(sock), "%s/lazy-pages.sock", img);
	snprintf(log, sizeof(log), "%s/daemon.log", dir);
	snprintf(json, sizeof(json), "%s/stats.json", dir);
	mkdir(img, 0700);
	if (m->mb >= 1024)
		warm_up(mb);
	victim = fork();
	if (victim == 0) {
		close(go[1]);
		close(done[1]);
		_exit(victim_main(mb, m->victim, go[0], done[0], sock));
	}
	snprintf(vpid, sizeof(vpid), "pid %d", victim);
	h_layout_make(&l, (uint32_t)victim, mb);
	if (h_write_images(img, &l))
		return 1;
	server = h_server_start(&l, m->srv, &port);
	if (server < 0)
		return 1;
	daemon = start_daemon(img, log, json, port, timeout, status[1]);
	close(status[1]);
	if (read(status[0], &c, 1) != 1) {
		fprintf(stderr, "%s: the daemon never said it was ready\n", m->name);
		fail = 1;
	}
	t0 = now_us();
	if (write(go[1], "g", 1) != 1)
		fail = 1;
	if (wait_bounded(daemon, &dst, (m->ok ? 60 : 20) * 1000000ULL)) {
		fprintf(stderr, "%s: the daemon did not exit in time\n", m->name);
		kill(daemon, SIGKILL);
		waitpid(daemon, &dst, 0);
		fail = 1;
	}
	t_daemon = now_us() - t0;
	if (write(done[1], "d", 1) != 1)
		fail = 1;
	if (wait_bounded(victim, &vst, 30000000ULL)) {
		fprintf(stderr, "%s: the victim hangs after the daemon exited\n", m->name);
		kill(victim, SIGKILL);
		waitpid(victim, &vst, 0);
		fail = 1;
	}
	kill(server, SIGKILL);
	wait_bounded(server, &sst, 5000000ULL);

	if (m->ok) {
		if (!WIFEXITED(dst) || WEXITSTATUS(dst)) {
			fprintf(stderr, "%s: daemon status %#x, expected exit 0\n", m->name, dst);
			fail = 1;
		}
		if (!WIFEXITED(vst) || WEXITSTATUS(vst)) {
			fprintf(stderr, "%s: victim status %#x, expected exit 0\n", m->name, vst);
			fail = 1;
		}
	} else {
		if (WIFEXITED(dst) && WEXITSTATUS(dst) == 0) {
			fprintf(stderr, "%s: the daemon exited 0 against a hostile source\n", m->name);
			fail = 1;
		}
		/* killed by the daemon, or refused at handover: never ran on wrong data */
		if (!(WIFSIGNALED(vst) && WTERMSIG(vst) == SIGKILL) &&
		    !(WIFEXITED(vst) && (WEXITSTATUS(vst) == 0 || WEXITSTATUS(vst) == 3))) {
			fprintf(stderr, "%s: victim status %#x\n", m->name, vst);
			fail = 1;
		}
		if (m->srv == HS_VANISH && !file_has(log, vpid)) {
			fprintf(stderr, "%s: the log does not name %s\n", m->name, vpid);
			fail = 1;
		}
	}
	if (!file_has(log, m->msg)) {
		fprintf(stderr, "%s: the log lacks \"%s\"\n", m->name, m->msg);
		fail = 1;
	}
	fprintf(stderr, "%s: daemon done after %.3f s (status %#x), victim status %#x\n", m->name,
		(double)t_daemon / 1e6, dst, vst);
	if (m->ok)
		dump_file(json, "  stats: ");
	if (fail || getenv("LP_HARNESS_VERBOSE"))
		dump_file(log, "  daemon: ");
	if (!fail) {
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			fprintf(stderr, "cannot remove %s\n", dir);
	}
	return fail;
}

int main(int argc, char **argv)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "skipped: userfaultfd: %s\n", strerror(errno));
		return 77;
	}
	close(fd);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; argc > 1 && i < sizeof(modes) / sizeof(modes[0]); i++) {
		uint64_t mb = argc > 2 ? strtoull(argv[2], NULL, 0) : modes[i].mb;

		if (strcmp(argv[1], modes[i].name) == 0)
			return run(&modes[i], mb);
	}
	fprintf(stderr, "usage: %s MODE [MiB]; modes:", argv[0]);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		fprintf(stderr, " %s", modes[i].name);
	fprintf(stderr, "\n");
	return 2;
}
