/*
 * The page server's session: the listening socket and one io_uring event
 * loop on one thread that accepts, checks hellos and serves both channels,
 * and the ends of the session: DONE/BYE (success), no client or a silent one
 * past --lazy-timeout, a signal, the keeper's death.
 *
 * One thread on purpose: a fault request is served as soon as it is read,
 * and the stream advances by one bounded step (at most 64 KiB read and
 * hashed, cut short when a completion comes in, then a 64 KiB send) per
 * loop turn in between. A fault thread of its own had to wait for a core
 * held by the stream's thread or its send worker, and on a kernel that does
 * not preempt kernel code, that wait was the whole tail of fault latency
 * (docs/benchmarks.md). Connections themselves are page-server-conn.c.
 */
#include "page-server-int.h"

#include "dump.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define PSS_RING_ENTRIES 256
#define PSS_TICK_MS 100

uint64_t pss_now_ms(void)
{
	return util_now_us() / 1000;
}

int ps_listen(const char *address, uint16_t port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL, *ai;
	char serv[8];
	int fd = -1, r, one = 1, err = 0;

	snprintf(serv, sizeof(serv), "%u", port);
	r = getaddrinfo(address, serv, &hints, &res);
	if (r) {
		pr_err("page server: cannot resolve %s: %s\n", address, gai_strerror(r));
		return -EADDRNOTAVAIL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, 16))
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		pr_err("page server: cannot listen on %s port %u: %s\n", address, port,
		       strerror(err));
		return -err;
	}
	return fd;
}

struct io_uring_sqe *pss_sqe(struct pss_loop *loop)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);

	if (!sqe) {
		io_uring_submit(&loop->ring);
		sqe = io_uring_get_sqe(&loop->ring);
	}
	return sqe;
}

bool pss_urgent(struct pss_loop *loop)
{
	return io_uring_cq_ready(&loop->ring) ||
	       (IO_URING_READ_ONCE(*loop->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

void pss_stop(struct pss_srv *srv, int result)
{
	if (srv->stop)
		return;
	srv->stop = true;
	srv->result = result;
}

/* Watch the keeper of process PP: its death ends the session. */
static void post_pidfd(struct pss_loop *loop, struct pss_proc *pp)
{
	struct io_uring_sqe *sqe = pss_sqe(loop);

	if (!sqe) {
		pr_err("page server: the submission queue is full\n");
		pss_stop(loop->srv, -ENOSPC);
		return;
	}
	io_uring_prep_poll_add(sqe, pp->cfg->keeper_pidfd, POLLIN);
	pp->pidfd_posted = true;
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)pp | (uint64_t)TAG_PIDFD);
}

static void post_loop_op(struct pss_loop *loop, int tag)
{
	struct io_uring_sqe *sqe = pss_sqe(loop);
	struct pss_srv *srv = loop->srv;

	if (!sqe) {
		pr_err("page server: the submission queue is full\n");
		pss_stop(srv, -ENOSPC);
		return;
	}
	switch (tag) {
	case TAG_ACCEPT:
		loop->acc_len = sizeof(loop->acc_addr);
		io_uring_prep_accept(sqe, loop->listen_fd, (struct sockaddr *)&loop->acc_addr,
				     &loop->acc_len, SOCK_CLOEXEC);
		loop->accept_posted = true;
		break;
	case TAG_SIGNAL:
		io_uring_prep_poll_add(sqe, srv->sig_fd, POLLIN);
		loop->sig_posted = true;
		break;
	}
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)loop | (uint64_t)tag);
}

static void add_conn(struct pss_loop *loop, struct pss_conn *c)
{
	if (loop->nr == PSS_MAX_CONNS) {
		pr_err("page server: too many connections; closing the one from %s\n", c->peer);
		c->closing = true;
		pss_conn_reap(c);
		return;
	}
	loop->conns[loop->nr++] = c;
	pss_conn_kick(c);
}

static void accepted(struct pss_loop *loop, int res)
{
	struct pss_conn *c;

	loop->accept_posted = false;
	if (res < 0) {
		if (res != -EINTR && res != -ECONNABORTED)
			pr_err("page server: accept failed: %s\n", strerror(-res));
		return;
	}
	c = pss_conn_new(loop, res, (struct sockaddr *)&loop->acc_addr, loop->acc_len);
	if (!c) {
		close(res);
		return;
	}
	pr_info("page server: connection from %s\n", c->peer);
	add_conn(loop, c);
}

static void loop_event(struct pss_loop *loop, uint64_t data, int res)
{
	struct pss_srv *srv = loop->srv;
	int tag = (int)(data & 7);
	void *p = (void *)(uintptr_t)(data & ~7ULL);

	switch (tag) {
	case TAG_RECV:
	case TAG_SEND:
		pss_conn_complete(p, tag, res);
		break;
	case TAG_ACCEPT:
		accepted(loop, res);
		break;
	case TAG_PIDFD: {
		struct pss_proc *pp = p;

		pp->pidfd_posted = false;
		pr_err("page server: keeper %d of pid %d died: its memory is lost\n",
		       (int)pp->cfg->keeper, (int)pp->cfg->pid);
		pss_stop(srv, -ESRCH);
		break;
	}
	case TAG_SIGNAL: {
		struct signalfd_siginfo si;

		loop->sig_posted = false;
		if (read(srv->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			pr_err("page server: interrupted by signal %u (%s)\n", si.ssi_signo,
			       strsignal((int)si.ssi_signo));
			pss_stop(srv, -EINTR);
		}
		break;
	}
	}
}

/* --lazy-timeout, with or without a client. */
static void check_session(struct pss_srv *srv, uint64_t now)
{
	uint64_t last = srv->last_activity_ms;
	uint64_t limit = (uint64_t)srv->cfg->lazy_timeout_s * 1000;

	if (now - last < limit || now < last)
		return;
	if (srv->nr_authed)
		pr_err("page server: the client of pid %d has been silent for %u s (--lazy-timeout);"
		       " giving up\n", (int)srv->cfg->procs[0].pid, srv->cfg->lazy_timeout_s);
	else
		pr_err("page server: no client for the pages of pid %d came within %u s "
		       "(--lazy-timeout); giving up\n", (int)srv->cfg->procs[0].pid,
		       srv->cfg->lazy_timeout_s);
	pss_stop(srv, -ETIMEDOUT);
}

/* One piece of every stream reply being read; whether any is left after it. */
static bool stream_step(struct pss_loop *loop)
{
	bool more = false;

	for (int i = 0; i < loop->nr; i++) {
		struct pss_conn *c = loop->conns[i];

		if (!pss_conn_filling(c))
			continue;
		pss_conn_fill_step(c);
		more |= pss_conn_filling(c);
	}
	return more;
}

static int loop_run(struct pss_loop *loop)
{
	struct pss_srv *srv = loop->srv;
	uint64_t last_tick = 0;
	bool busy = false;

	while (!srv->stop) {
		struct __kernel_timespec ts = { 0, PSS_TICK_MS * 1000000L };
		struct io_uring_cqe *cqe;
		unsigned int head, n = 0;
		uint64_t now;
		int r;

		if (!loop->accept_posted)
			post_loop_op(loop, TAG_ACCEPT);
		for (size_t i = 0; i < srv->cfg->nr_procs; i++)
			if (!srv->procs[i].pidfd_posted)
				post_pidfd(loop, &srv->procs[i]);
		if (!loop->sig_posted)
			post_loop_op(loop, TAG_SIGNAL);
		/* With stream work left, only collect what is there; else sleep. */
		if (busy)
			r = io_uring_submit_and_get_events(&loop->ring);
		else
			r = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, &ts, NULL);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY) {
			pr_err("page server: io_uring wait: %s\n", strerror(-r));
			pss_stop(srv, r);
			break;
		}
		io_uring_for_each_cqe(&loop->ring, head, cqe) {
			loop_event(loop, cqe->user_data, cqe->res);
			n++;
		}
		io_uring_cq_advance(&loop->ring, n);
		/* The fault replies those events queued leave before the next stream piece. */
		io_uring_submit(&loop->ring);
		now = pss_now_ms();
		if (now - last_tick >= PSS_TICK_MS) {
			last_tick = now;
			for (int i = 0; i < loop->nr; i++)
				pss_conn_check_idle(loop->conns[i], now);
			check_session(srv, now);
		}
		for (int i = 0; i < loop->nr;) {
			if (pss_conn_reap(loop->conns[i]))
				loop->conns[i] = loop->conns[--loop->nr];
			else
				i++;
		}
		busy = !srv->stop && stream_step(loop);
	}
	return 0;
}

/* Close every connection and wait for their operations before the ring goes. */
static void loop_drain(struct pss_loop *loop)
{
	uint64_t t0 = pss_now_ms();

	if (!loop->ring_ok)
		return;
	for (int i = 0; i < loop->nr; i++)
		pss_conn_close(loop->conns[i], NULL);
	io_uring_submit(&loop->ring);
	/* A shutdown socket completes its operations at once; the ring's exit cancels the rest. */
	while (loop->nr && pss_now_ms() - t0 < 2000) {
		struct __kernel_timespec ts = { 0, 50 * 1000000L };
		struct io_uring_cqe *cqe;
		unsigned int head, n = 0;

		io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe(&loop->ring, head, cqe) {
			uint64_t d = cqe->user_data;
			int tag = (int)(d & 7);

			if (tag == TAG_RECV || tag == TAG_SEND)
				pss_conn_complete((void *)(uintptr_t)(d & ~7ULL), tag, cqe->res);
			n++;
		}
		io_uring_cq_advance(&loop->ring, n);
		for (int i = 0; i < loop->nr;) {
			if (pss_conn_reap(loop->conns[i]))
				loop->conns[i] = loop->conns[--loop->nr];
			else
				i++;
		}
	}
	io_uring_queue_exit(&loop->ring);
	loop->ring_ok = false;
	/* Whatever is left had its operations cancelled with the ring. */
	for (int i = 0; i < loop->nr; i++) {
		loop->conns[i]->inflight = 0;
		pss_conn_reap(loop->conns[i]);
	}
	loop->nr = 0;
}

static int loop_init(struct pss_srv *srv, struct pss_loop *loop, int listen_fd)
{
	struct io_uring_params p = { 0 };
	int r;

	loop->srv = srv;
	loop->listen_fd = listen_fd;
	/*
	 * No interrupts to run completions: the loop collects them itself
	 * between stream pieces; the flag tells liburing when they wait.
	 */
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	r = io_uring_queue_init_params(PSS_RING_ENTRIES, &loop->ring, &p);
	if (r == -EINVAL) {
		memset(&p, 0, sizeof(p));
		r = io_uring_queue_init_params(PSS_RING_ENTRIES, &loop->ring, &p);
	}
	if (r) {
		pr_err("page server: io_uring_queue_init: %s\n", strerror(-r));
		return r;
	}
	loop->ring_ok = true;
	return 0;
}

static int build_lazy(struct pss_proc *pp)
{
	const struct ps_proc *cfg = pp->cfg;
	size_t n = 0;

	pp->lazy = calloc(cfg->nr_runs ? cfg->nr_runs : 1, sizeof(*pp->lazy));
	if (!pp->lazy)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->nr_runs; i++) {
		const struct page_run *r = &cfg->runs[i];

		if (!r->lazy)
			continue;
		if (n && r->vaddr < pp->lazy[n - 1][1]) {
			pr_err("page server: lazy runs of pid %d are not sorted at %#llx\n",
			       (int)cfg->pid, (unsigned long long)r->vaddr);
			return -EINVAL;
		}
		pp->lazy[n][0] = r->vaddr;
		pp->lazy[n][1] = r->vaddr + (uint64_t)r->nr_pages * PS_PAGE_SIZE;
		n++;
	}
	pp->nr_lazy = n;
	return 0;
}

static int build_procs(struct pss_srv *srv, const struct ps_server_cfg *cfg)
{
	int r = 0;

	if (!cfg->nr_procs) {
		pr_err("page server: no process to serve\n");
		return -EINVAL;
	}
	srv->procs = calloc(cfg->nr_procs, sizeof(*srv->procs));
	if (!srv->procs)
		return -ENOMEM;
	for (size_t i = 0; !r && i < cfg->nr_procs; i++) {
		srv->procs[i].cfg = &cfg->procs[i];
		r = build_lazy(&srv->procs[i]);
	}
	return r;
}

const struct pss_proc *pss_proc_find(const struct pss_srv *srv, uint32_t pid)
{
	for (size_t i = 0; i < srv->cfg->nr_procs; i++)
		if ((uint32_t)srv->procs[i].cfg->pid == pid)
			return &srv->procs[i];
	return NULL;
}

int ps_serve(int listen_fd, const struct ps_server_cfg *cfg)
{
	struct pss_srv *srv = calloc(1, sizeof(*srv));
	sigset_t mask, old;
	uint64_t t0 = util_now_us(), us;
	int r;

	if (!srv) {
		close(listen_fd);
		return -ENOMEM;
	}
	srv->cfg = cfg;
	srv->sig_fd = -1;
	srv->loop.listen_fd = -1;
	srv->last_activity_ms = pss_now_ms();
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	srv->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	r = srv->sig_fd < 0 ? -errno : 0;
	if (r)
		pr_perror("page server: signalfd");
	if (!r)
		r = build_procs(srv, cfg);
	if (!r)
		r = loop_init(srv, &srv->loop, listen_fd);
	if (!r) {
		for (size_t i = 0; i < cfg->nr_procs; i++)
			pr_info("page server: serving %zu lazy runs of pid %d from keeper %d\n",
				srv->procs[i].nr_lazy, (int)cfg->procs[i].pid,
				(int)cfg->procs[i].keeper);
		loop_run(&srv->loop);
		r = srv->result;
	}
	pss_stop(srv, r);
	loop_drain(&srv->loop);
	us = util_now_us() - t0;
	pr_info("page server: %llu requests, %llu pages served in %llu ms\n",
		(unsigned long long)srv->served_gets, (unsigned long long)srv->served_pages,
		(unsigned long long)(us / 1000));
	close(listen_fd);
	if (srv->sig_fd >= 0)
		close(srv->sig_fd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	for (size_t i = 0; srv->procs && i < cfg->nr_procs; i++)
		free(srv->procs[i].lazy);
	free(srv->procs);
	free(srv);
	return r;
}
