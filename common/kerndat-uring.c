/*
 * io_uring probes: set up a ring and do a NOP round trip, read the kernel's
 * opcode probe, then exercise each opcode the page path uses for real, one
 * fresh ring per test so a failed or still-armed request cannot leak into
 * the next: WRITE/READ on a memfd, multishot POLL_ADD on a pipe, SEND, RECV
 * and SEND_ZC over a loopback TCP connection, provided buffers with RECV
 * and multishot RECV, and a WRITE_FIXED from a registered buffer. Each test
 * checks the data with plain syscalls on the other side.
 */
#include "kerndat-internal.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG "relive-io_uring-probe"
#define MSG_LEN ((unsigned int)sizeof(MSG))
#define BGID 7
#define NR_BUFS 4
#define BUF_SZ 256

struct uring_env {
	int memfd;
	int sk[2];	/* sk[0] sends, sk[1] receives */
	bool tcp;	/* sk is a loopback TCP connection (SEND_ZC needs one) */
	char sk_why[96];
	char bufs[NR_BUFS][BUF_SZ];
};

typedef int (*uring_test_fn)(struct io_uring *ring, struct uring_env *env, char *why, size_t len);

/* Submit what is queued and collect exactly nr CQEs, each within 2 s. */
static int uring_run(struct io_uring *ring, struct io_uring_cqe *out, unsigned int nr)
{
	struct __kernel_timespec ts = { .tv_sec = 2 };
	struct io_uring_cqe *cqe;
	unsigned int i;
	int r;

	r = io_uring_submit(ring);
	if (r < 0)
		return r;
	for (i = 0; i < nr; i++) {
		r = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
		if (r < 0)
			return r;
		out[i] = *cqe;
		io_uring_cqe_seen(ring, cqe);
	}
	return 0;
}

/* Run the queued SQE and expect one CQE with res == want. */
static int uring_expect(struct io_uring *ring, int want, const char *what, char *why, size_t len)
{
	struct io_uring_cqe cqe;
	int r;

	r = uring_run(ring, &cqe, 1);
	if (r < 0) {
		snprintf(why, len, "%s: waiting for the completion: %s", what, strerror(-r));
		return r;
	}
	if (cqe.res != want) {
		snprintf(why, len, "%s: result %d (%s), expected %d", what, cqe.res,
			 cqe.res < 0 ? strerror(-cqe.res) : "short", want);
		return cqe.res < 0 ? cqe.res : -EIO;
	}
	return 0;
}

static int check_recv(int fd, const char *what, char *why, size_t len)
{
	char buf[64] = "";
	ssize_t n;

	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != MSG_LEN || memcmp(buf, MSG, MSG_LEN)) {
		snprintf(why, len, "%s: the peer received %zd bytes%s%s", what, n,
			 n < 0 ? ": " : " that differ", n < 0 ? strerror(errno) : "");
		return -EIO;
	}
	return 0;
}

static int test_write(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	char buf[64] = "";
	int r;

	io_uring_prep_write(io_uring_get_sqe(ring), env->memfd, MSG, MSG_LEN, 0);
	r = uring_expect(ring, MSG_LEN, "WRITE to a memfd", why, len);
	if (r)
		return r;
	if (pread(env->memfd, buf, MSG_LEN, 0) != MSG_LEN || memcmp(buf, MSG, MSG_LEN)) {
		snprintf(why, len, "WRITE to a memfd: pread does not return the data");
		return -EIO;
	}
	return 0;
}

static int test_read(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	char buf[64] = "";
	int r;

	if (pwrite(env->memfd, MSG, MSG_LEN, 64) != MSG_LEN) {
		snprintf(why, len, "pwrite to the memfd: %s", strerror(errno));
		return -errno;
	}
	io_uring_prep_read(io_uring_get_sqe(ring), env->memfd, buf, MSG_LEN, 64);
	r = uring_expect(ring, MSG_LEN, "READ from a memfd", why, len);
	if (!r && memcmp(buf, MSG, MSG_LEN)) {
		snprintf(why, len, "READ from a memfd: wrong data");
		return -EIO;
	}
	return r;
}

static int test_poll_multi(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	_cleanup_close_ int rfd = -1, wfd = -1;
	struct io_uring_cqe cqe[2];
	int p[2], r;

	if (pipe2(p, O_CLOEXEC)) {
		snprintf(why, len, "pipe: %s", strerror(errno));
		return -errno;
	}
	rfd = p[0];
	wfd = p[1];
	io_uring_prep_poll_multishot(io_uring_get_sqe(ring), rfd, POLLIN);
	r = io_uring_submit(ring);
	if (r < 0) {
		snprintf(why, len, "submit POLL_ADD: %s", strerror(-r));
		return r;
	}
	/* two wakeups on one request: the second proves it stayed armed */
	for (int i = 0; i < 2; i++) {
		if (write(wfd, "x", 1) != 1) {
			snprintf(why, len, "write to the pipe: %s", strerror(errno));
			return -EIO;
		}
		r = uring_run(ring, &cqe[i], 1);
		if (r < 0) {
			snprintf(why, len, "multishot POLL_ADD, wakeup %d: %s", i + 1, strerror(-r));
			return r;
		}
		if (cqe[i].res < 0 || !(cqe[i].res & POLLIN) || !(cqe[i].flags & IORING_CQE_F_MORE)) {
			snprintf(why, len, "multishot POLL_ADD, wakeup %d: res %d%s, flags 0x%x",
				 i + 1, cqe[i].res, cqe[i].res < 0 ? " (error)" : "", cqe[i].flags);
			return cqe[i].res < 0 ? cqe[i].res : -ENOTSUP;
		}
	}
	return 0;
}

static int test_send(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	int r;

	io_uring_prep_send(io_uring_get_sqe(ring), env->sk[0], MSG, MSG_LEN, 0);
	r = uring_expect(ring, MSG_LEN, "SEND", why, len);
	return r ? r : check_recv(env->sk[1], "SEND", why, len);
}

static int test_recv(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	char buf[64] = "";
	int r;

	if (send(env->sk[0], MSG, MSG_LEN, 0) != MSG_LEN) {
		snprintf(why, len, "send: %s", strerror(errno));
		return -EIO;
	}
	io_uring_prep_recv(io_uring_get_sqe(ring), env->sk[1], buf, sizeof(buf), 0);
	r = uring_expect(ring, MSG_LEN, "RECV", why, len);
	if (!r && memcmp(buf, MSG, MSG_LEN)) {
		snprintf(why, len, "RECV: wrong data");
		return -EIO;
	}
	return r;
}

/* SEND_ZC completes twice: the send result (F_MORE), then the notification. */
static int test_send_zc(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	struct io_uring_cqe cqe[2];
	int r;

	if (!env->tcp) {
		snprintf(why, len, "no loopback TCP connection to send on: %s", env->sk_why);
		return -ENOTCONN;
	}
	io_uring_prep_send_zc(io_uring_get_sqe(ring), env->sk[0], MSG, MSG_LEN, 0, 0);
	r = uring_run(ring, cqe, 2);
	if (r < 0) {
		snprintf(why, len, "SEND_ZC: waiting for its two completions: %s", strerror(-r));
		return r;
	}
	if (cqe[0].res != (int)MSG_LEN || !(cqe[0].flags & IORING_CQE_F_MORE) ||
	    !(cqe[1].flags & IORING_CQE_F_NOTIF)) {
		snprintf(why, len, "SEND_ZC: res %d%s, flags 0x%x then 0x%x", cqe[0].res,
			 cqe[0].res < 0 ? strerror(-cqe[0].res) : "", cqe[0].flags, cqe[1].flags);
		return cqe[0].res < 0 ? cqe[0].res : -EIO;
	}
	return check_recv(env->sk[1], "SEND_ZC", why, len);
}

static int provide_bufs(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	struct io_uring_cqe cqe;
	int r;

	memset(env->bufs, 0, sizeof(env->bufs));
	io_uring_prep_provide_buffers(io_uring_get_sqe(ring), env->bufs, BUF_SZ, NR_BUFS, BGID, 0);
	r = uring_run(ring, &cqe, 1);
	if (!r && cqe.res < 0)
		r = cqe.res;
	if (r < 0)
		snprintf(why, len, "PROVIDE_BUFFERS (%d x %d bytes): %s", NR_BUFS, BUF_SZ,
			 strerror(-r));
	return r;
}

/* A buffer-select receive of MSG: completion with F_BUFFER and the data in it. */
static int recv_selected(struct io_uring *ring, struct uring_env *env, bool multishot,
			 char *why, size_t len)
{
	const char *what = multishot ? "multishot RECV" : "RECV with a provided buffer";
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe cqe;
	unsigned int bid;
	int r;

	if (multishot)
		io_uring_prep_recv_multishot(sqe, env->sk[1], NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, env->sk[1], NULL, BUF_SZ, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	r = io_uring_submit(ring);
	if (r < 0) {
		snprintf(why, len, "%s: submit: %s", what, strerror(-r));
		return r;
	}
	if (send(env->sk[0], MSG, MSG_LEN, 0) != MSG_LEN) {
		snprintf(why, len, "send: %s", strerror(errno));
		return -EIO;
	}
	r = uring_run(ring, &cqe, 1);
	if (!r && cqe.res < 0)
		r = cqe.res;
	if (r < 0) {
		snprintf(why, len, "%s: %s", what, strerror(-r));
		return r;
	}
	bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
	if (cqe.res != (int)MSG_LEN || !(cqe.flags & IORING_CQE_F_BUFFER) || bid >= NR_BUFS ||
	    (multishot && !(cqe.flags & IORING_CQE_F_MORE)) ||
	    memcmp(env->bufs[bid], MSG, MSG_LEN)) {
		snprintf(why, len, "%s: res %d, flags 0x%x, or the data is not in buffer %u", what,
			 cqe.res, cqe.flags, bid);
		return -EIO;
	}
	return 0;
}

static int test_provide_buffers(struct io_uring *ring, struct uring_env *env, char *why,
				size_t len)
{
	int r = provide_bufs(ring, env, why, len);

	return r ? r : recv_selected(ring, env, false, why, len);
}

static int test_recv_multi(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	int r = provide_bufs(ring, env, why, len);

	return r ? r : recv_selected(ring, env, true, why, len);
}

static int test_fixed_buffers(struct io_uring *ring, struct uring_env *env, char *why, size_t len)
{
	struct iovec iov = { .iov_base = env->bufs[0], .iov_len = BUF_SZ };
	char buf[64] = "";
	int r;

	memcpy(env->bufs[0], MSG, MSG_LEN);
	r = io_uring_register_buffers(ring, &iov, 1);
	if (r < 0) {
		snprintf(why, len, "io_uring_register_buffers (1 x %d bytes): %s", BUF_SZ,
			 strerror(-r));
		return r;
	}
	io_uring_prep_write_fixed(io_uring_get_sqe(ring), env->memfd, env->bufs[0], MSG_LEN, 128, 0);
	r = uring_expect(ring, MSG_LEN, "WRITE_FIXED to a memfd", why, len);
	if (!r && (pread(env->memfd, buf, MSG_LEN, 128) != MSG_LEN || memcmp(buf, MSG, MSG_LEN))) {
		snprintf(why, len, "WRITE_FIXED to a memfd: pread does not return the data");
		r = -EIO;
	}
	io_uring_unregister_buffers(ring);
	return r;
}

/* A loopback TCP connection; a unix socketpair when TCP is not possible. */
static void env_sockets(struct uring_env *env)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	_cleanup_close_ int lsk = -1;
	int sk[2];

	env->sk[0] = env->sk[1] = -1;
	lsk = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lsk < 0 || bind(lsk, (struct sockaddr *)&sa, sizeof(sa)) || listen(lsk, 1) ||
	    getsockname(lsk, (struct sockaddr *)&sa, &sl)) {
		snprintf(env->sk_why, sizeof(env->sk_why), "listen on 127.0.0.1: %s", strerror(errno));
		goto fallback;
	}
	env->sk[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (env->sk[0] < 0 || connect(env->sk[0], (struct sockaddr *)&sa, sizeof(sa))) {
		snprintf(env->sk_why, sizeof(env->sk_why), "connect to 127.0.0.1:%u: %s",
			 ntohs(sa.sin_port), strerror(errno));
		goto fallback;
	}
	env->sk[1] = accept4(lsk, NULL, NULL, SOCK_CLOEXEC);
	if (env->sk[1] < 0) {
		snprintf(env->sk_why, sizeof(env->sk_why), "accept on 127.0.0.1: %s", strerror(errno));
		goto fallback;
	}
	env->tcp = true;
	return;

fallback:
	closep(&env->sk[0]);
	env->sk[0] = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sk) == 0) {
		env->sk[0] = sk[0];
		env->sk[1] = sk[1];
	}
}

static const struct {
	enum kerndat_feature feature;
	int opcode;
	uring_test_fn fn;
	bool needs_socket;
} uring_tests[] = {
	{ KD_URING_WRITE, IORING_OP_WRITE, test_write, false },
	{ KD_URING_READ, IORING_OP_READ, test_read, false },
	{ KD_URING_POLL_MULTI, IORING_OP_POLL_ADD, test_poll_multi, false },
	{ KD_URING_SEND, IORING_OP_SEND, test_send, true },
	{ KD_URING_RECV, IORING_OP_RECV, test_recv, true },
	{ KD_URING_SEND_ZC, IORING_OP_SEND_ZC, test_send_zc, true },
	{ KD_URING_PROVIDE_BUFFERS, IORING_OP_PROVIDE_BUFFERS, test_provide_buffers, true },
	{ KD_URING_FIXED_BUFFERS, IORING_OP_WRITE_FIXED, test_fixed_buffers, false },
	/* last: a multishot receive stays armed until its ring is gone */
	{ KD_URING_RECV_MULTI, IORING_OP_RECV, test_recv_multi, true },
};

static void run_uring_tests(struct kerndat *kd, struct uring_env *env)
{
	char why[KERNDAT_WHY_LEN];
	struct io_uring ring;
	unsigned int i;
	int r;

	for (i = 0; i < ARRAY_SIZE(uring_tests); i++) {
		enum kerndat_feature f = uring_tests[i].feature;
		int op = uring_tests[i].opcode;

		if (op >= 128 || !(kd->uring_ops[op / 64] & (1ULL << (op % 64)))) {
			kd_set(kd, f, false, "opcode %d not in the kernel's io_uring probe", op);
			continue;
		}
		if (uring_tests[i].needs_socket && env->sk[1] < 0) {
			kd_set(kd, f, false, "no socket pair to test on: %s", env->sk_why);
			continue;
		}
		r = io_uring_queue_init(8, &ring, 0);
		if (r < 0) {
			kd_set(kd, f, false, "io_uring_queue_init: %s", strerror(-r));
			continue;
		}
		why[0] = '\0';
		r = uring_tests[i].fn(&ring, env, why, sizeof(why));
		io_uring_queue_exit(&ring);
		if (r)
			kd_set(kd, f, false, "%s", why);
		else
			kd_set(kd, f, true, "%s", "");
	}
}

/* Ring setup, a NOP round trip, and the opcode bitmap from the kernel's probe. */
static int uring_basic(struct kerndat *kd, char *why, size_t len)
{
	struct io_uring_probe *probe;
	struct io_uring ring;
	int op, r;

	r = io_uring_queue_init(8, &ring, 0);
	if (r < 0) {
		uint64_t dis;

		if (kd_read_u64("/proc/sys/kernel/io_uring_disabled", &dis) == 0)
			snprintf(why, len, "io_uring_setup: %s; kernel.io_uring_disabled = %llu",
				 strerror(-r), (unsigned long long)dis);
		else
			snprintf(why, len, "io_uring_setup: %s", strerror(-r));
		return r;
	}
	io_uring_prep_nop(io_uring_get_sqe(&ring));
	r = uring_expect(&ring, 0, "NOP", why, len);
	if (r)
		goto out;
	probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		r = -ENOTSUP;
		snprintf(why, len, "IORING_REGISTER_PROBE failed");
		goto out;
	}
	for (op = 0; op <= probe->last_op && op < 128; op++)
		if (io_uring_opcode_supported(probe, op))
			kd->uring_ops[op / 64] |= 1ULL << (op % 64);
	io_uring_free_probe(probe);
out:
	io_uring_queue_exit(&ring);
	return r;
}

void kd_probe_uring(struct kerndat *kd)
{
	struct uring_env *env;
	char why[KERNDAT_WHY_LEN] = "";
	unsigned int i;

	if (uring_basic(kd, why, sizeof(why))) {
		kd_set(kd, KD_IO_URING, false, "%s", why);
		for (i = 0; i < ARRAY_SIZE(uring_tests); i++)
			kd_set_same(kd, uring_tests[i].feature, KD_IO_URING);
		return;
	}
	kd_set(kd, KD_IO_URING, true, "%s", "");

	/* page-aligned for the registered buffer */
	env = mmap(NULL, ALIGN_UP(sizeof(*env), 4096), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (env == MAP_FAILED) {
		for (i = 0; i < ARRAY_SIZE(uring_tests); i++)
			kd_set(kd, uring_tests[i].feature, false, "mmap: %s", strerror(errno));
		return;
	}
	env->memfd = memfd_create("relive-kerndat", MFD_CLOEXEC);
	env_sockets(env);
	if (env->memfd < 0) {
		for (i = 0; i < ARRAY_SIZE(uring_tests); i++)
			kd_set(kd, uring_tests[i].feature, false, "memfd_create: %s", strerror(errno));
	} else {
		run_uring_tests(kd, env);
	}
	closep(&env->memfd);
	closep(&env->sk[0]);
	closep(&env->sk[1]);
	munmap(env, ALIGN_UP(sizeof(*env), 4096));
}
