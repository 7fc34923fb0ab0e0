/*
 * `relive lazy-pages`: the destination daemon of a lazy migration. Loads
 * what it needs from the image directory (the session token of
 * inventory.img, the pids of pstree.img, and per pid the LAZY runs of its
 * pagemap, checked against its VMAs), opens the handover socket and the two
 * connections to the source, and runs the one io_uring loop until every
 * page is in (then DONE/BYE, a summary, exit 0) or the source is gone for
 * good (the processes left without memory are named and stopped; exit 1).
 * Requests (struct lp_req) are allocated and freed here.
 */
#include "lp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "img.h"
#include "log.h"
#include "util.h"

struct lp_proc *lp_proc_find(struct lp_ctx *ctx, uint32_t pid)
{
	for (struct lp_proc *p = ctx->procs; p; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

struct lp_req *lp_req_new(struct lp_ctx *ctx, struct lp_proc *p, const struct lp_run *run,
			  bool urgent)
{
	struct lp_req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->proc = p;
	r->vaddr = run->vaddr;
	r->src = run->src;
	r->nr = run->nr;
	r->urgent = urgent;
	r->chan = -1;
	r->next = &ctx->reqs;
	r->prev = ctx->reqs.prev;
	ctx->reqs.prev->next = r;
	ctx->reqs.prev = r;
	return r;
}

void lp_req_free(struct lp_ctx *ctx, struct lp_req *r)
{
	r->prev->next = r->next;
	r->next->prev = r->prev;
	if (r->buf)
		lp_conn_buf_put(r->buf_owner, r->buf);
	if (r->chan == PS_CHAN_STREAM)
		ctx->conn[PS_CHAN_STREAM].stream_pages -= r->nr;
	free(r);
}

void lp_req_cancel(struct lp_ctx *ctx, struct lp_req *r)
{
	if (r->cancelled)
		return;
	r->cancelled = true;
	if (!r->proc->gone)
		lp_mm_requeue(&r->proc->mm, r->vaddr + (uint64_t)r->done * LP_PAGE, r->nr - r->done);
}

bool lp_all_done(const struct lp_ctx *ctx)
{
	for (const struct lp_proc *p = ctx->procs; p; p = p->next) {
		if (p->gone || (!p->expected && !p->handed))
			continue;
		if (!p->ready || !lp_mm_done(&p->mm))
			return false;
	}
	return true;
}

static int load_inventory(struct lp_ctx *ctx)
{
	InventoryEntry *inv;
	struct img img;
	int ret;

	ret = img_open(&img, ctx->dirfd, IMG_INVENTORY, 0, IMG_READ);
	if (!ret)
		ret = img_read_one(&img, (ProtobufCMessage **)&inv);
	if (ret) {
		pr_err("%s: %s\n", ctx->opts->images_dir, img.err);
		if (img.fd >= 0)
			img_close(&img);
		return ret;
	}
	img_close(&img);
	if (!(inv->flags & INV_FLAG_LAZY)) {
		pr_err("%s: not a lazy dump (inventory flags %#x): nothing to serve lazily\n",
		       ctx->opts->images_dir, inv->flags);
		ret = -EINVAL;
	} else if (inv->session_token.len != PS_TOKEN_LEN) {
		pr_err("%s: inventory.img holds a %zu-byte session token, expected %u\n",
		       ctx->opts->images_dir, inv->session_token.len, PS_TOKEN_LEN);
		ret = -EINVAL;
	} else {
		memcpy(ctx->token, inv->session_token.data, PS_TOKEN_LEN);
	}
	img_msg_free(&inv->base);
	return ret;
}

/* Read every entry of one image into a callback; 0 or -errno with the error logged. */
static int read_entries(struct lp_ctx *ctx, enum img_kind kind, uint32_t id,
			int (*fn)(struct lp_ctx *, void *, ProtobufCMessage *), void *arg)
{
	ProtobufCMessage *m;
	struct img img;
	int ret;

	ret = img_open(&img, ctx->dirfd, kind, id, IMG_READ);
	if (ret) {
		pr_err("%s: %s\n", ctx->opts->images_dir, img.err);
		return ret;
	}
	while ((ret = img_read(&img, &m)) == 1) {
		ret = fn(ctx, arg, m);
		img_msg_free(m);
		if (ret)
			break;
	}
	if (ret < 0 && img.err[0])
		pr_err("%s: %s\n", ctx->opts->images_dir, img.err);
	img_close(&img);
	return ret < 0 ? ret : 0;
}

static int add_pstree(struct lp_ctx *ctx, void *arg, ProtobufCMessage *m)
{
	PstreeEntry *e = (PstreeEntry *)m;
	struct lp_proc *p;

	if (e->zombie)
		return 0;
	if (!e->pid || lp_proc_find(ctx, e->pid)) {
		pr_err("pstree.img: pid %u is zero or listed twice\n", e->pid);
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pid = p->src_pid = e->pid;
	p->uffd = p->pidfd = -1;
	lp_mm_init(&p->mm);
	p->next = ctx->procs;
	ctx->procs = p;
	return 0;
}

struct pm_arg {
	struct lp_proc *p;
	MmEntry *mm;
	bool head;
};

static int add_pagemap(struct lp_ctx *ctx, void *arg, ProtobufCMessage *m)
{
	struct pm_arg *a = arg;
	PagemapEntry *e = (PagemapEntry *)m;
	uint64_t end;
	size_t i;
	int ret;

	if (!a->head) {
		a->head = true;
		return 0;
	}
	if (!(e->flags & PE_LAZY))
		return 0;
	end = e->vaddr + (uint64_t)e->nr_pages * LP_PAGE;
	for (i = 0; i < a->mm->n_vmas; i++)
		if (a->mm->vmas[i]->start <= e->vaddr && end <= a->mm->vmas[i]->end)
			break;
	if (i == a->mm->n_vmas || end <= e->vaddr) {
		pr_err("pagemap-%u.img: lazy run %#llx+%u pages lies in no VMA of mm-%u.img\n",
		       a->p->pid, (unsigned long long)e->vaddr, e->nr_pages, a->p->pid);
		return -EINVAL;
	}
	ret = lp_mm_add(&a->p->mm, e->vaddr, e->nr_pages);
	if (ret)
		pr_err("pagemap-%u.img: lazy run %#llx+%u pages: %s\n", a->p->pid,
		       (unsigned long long)e->vaddr, e->nr_pages,
		       ret == -EEXIST ? "overlaps another run" : strerror(-ret));
	return ret;
}

static int load_images(struct lp_ctx *ctx)
{
	int ret = load_inventory(ctx);

	if (!ret)
		ret = read_entries(ctx, IMG_PSTREE, 0, add_pstree, NULL);
	for (struct lp_proc *p = ctx->procs; p && !ret; p = p->next) {
		struct pm_arg a = { .p = p };
		struct img img;

		ret = img_open(&img, ctx->dirfd, IMG_MM, p->pid, IMG_READ);
		if (!ret)
			ret = img_read_one(&img, (ProtobufCMessage **)&a.mm);
		if (ret) {
			pr_err("%s: %s\n", ctx->opts->images_dir, img.err);
			if (img.fd >= 0)
				img_close(&img);
			break;
		}
		img_close(&img);
		ret = read_entries(ctx, IMG_PAGEMAP, p->pid, add_pagemap, &a);
		img_msg_free(&a.mm->base);
		p->expected = p->mm.nr_total > 0;
		ctx->total_pages += p->mm.nr_total;
	}
	return ret;
}

static int resolve(struct lp_ctx *ctx)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	char port[16];
	int ret;

	snprintf(port, sizeof(port), "%u", ctx->opts->port);
	ret = getaddrinfo(ctx->opts->address, port, &hints, &ai);
	if (ret) {
		pr_err("cannot resolve the source address %s: %s\n", ctx->opts->address,
		       gai_strerror(ret));
		return -EINVAL;
	}
	memcpy(&ctx->addr, ai->ai_addr, ai->ai_addrlen);
	ctx->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(ctx->addr_text, sizeof(ctx->addr_text), "%s:%u", ctx->opts->address,
		 ctx->opts->port);
	return 0;
}

static void stream_refill(struct lp_ctx *ctx)
{
	struct lp_conn *c = &ctx->conn[PS_CHAN_STREAM];

	while (c->state == LP_CONN_UP && c->stream_pages < LP_STREAM_WINDOW) {
		struct lp_proc *p = ctx->rr, *start;
		struct lp_run run;
		struct lp_req *r;

		if (!p)
			p = ctx->procs;
		start = p;
		/* round robin over the ready processes with missing pages */
		while (p->gone || !p->ready || !p->mm.nr_missing) {
			p = p->next ? p->next : ctx->procs;
			if (p == start)
				return;
		}
		ctx->rr = p->next;
		if (!lp_mm_next_batch(&p->mm, PS_MAX_RUN_PAGES, &run))
			continue;
		r = lp_req_new(ctx, p, &run, false);
		if (!r) {
			lp_mm_requeue(&p->mm, run.vaddr, run.nr);
			ctx->fatal = -ENOMEM;
			return;
		}
		lp_conn_queue(ctx, c, r);
	}
}

static void dispatch(struct lp_ctx *ctx, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *obj = (void *)(uintptr_t)(ud & ~LP_UD_MASK);
	enum lp_ud kind = (enum lp_ud)(ud & LP_UD_MASK);

	switch (kind) {
	case LP_UD_UFFD:
		lp_uffd_event(ctx, obj, cqe);
		break;
	case LP_UD_CONNECT:
	case LP_UD_SEND:
	case LP_UD_RECV:
		lp_conn_event(ctx, obj, kind, cqe->res);
		break;
	case LP_UD_LISTEN:
	case LP_UD_HANDOVER:
		lp_handover_event(ctx, obj, cqe);
		break;
	case LP_UD_PREFAULT:
		if (cqe->res < 0)
			pr_debug("populating a receive buffer: %s (its pages come at first use)\n",
				 strerror(-cqe->res));
		break;
	default:
		break;
	}
}

/* One turn: start what can start, wait (or not, with background work), handle completions. */
static void turn(struct lp_ctx *ctx, bool busy)
{
	struct __kernel_timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
	struct io_uring_cqe *cqe;
	unsigned int head, n = 0;

	if (busy)
		io_uring_submit_and_get_events(&ctx->ring);
	else
		io_uring_submit_and_wait_timeout(&ctx->ring, &cqe, 1, &ts, NULL);
	io_uring_for_each_cqe(&ctx->ring, head, cqe) {
		dispatch(ctx, cqe);
		n++;
	}
	io_uring_cq_advance(&ctx->ring, n);
	/* a fault request or the rest of a fault reply goes before any background copy */
	if (n && !ctx->fatal) {
		lp_conn_tick(ctx, &ctx->conn[PS_CHAN_FAULT], util_now_us());
		io_uring_submit(&ctx->ring);
	}
}

/*
 * Whether a fault's page is on the wire and was asked for moments ago. The
 * loop then polls instead of sleeping: on two busy cores a woken daemon can
 * wait for a core far longer than the reply takes to come (docs/lazy.md).
 * Past LP_FAULT_SPIN_US (a slow link) it sleeps again.
 */
static bool fault_awaited(const struct lp_ctx *ctx, uint64_t now)
{
	const struct lp_conn *c = &ctx->conn[PS_CHAN_FAULT];

	/* the newest fault is first */
	return ctx->faults && c->state == LP_CONN_UP && c->nr_wire &&
	       now - ctx->faults->t_us < LP_FAULT_SPIN_US;
}

static bool finished(struct lp_ctx *ctx, uint64_t now, uint64_t *deadline)
{
	if (!ctx->finishing) {
		if (!lp_all_done(ctx))
			return false;
		ctx->finishing = true;
		ctx->st.t_end_us = now;
		*deadline = now + MIN(ctx->stall_us, 2000000ULL);
		for (int i = 0; i < 2; i++)
			if (ctx->conn[i].state == LP_CONN_UP)
				lp_conn_queue(ctx, &ctx->conn[i], NULL);
		return false;
	}
	for (int i = 0; i < 2; i++) {
		const struct lp_conn *c = &ctx->conn[i];

		if (c->state == LP_CONN_UP || c->state == LP_CONN_DEAD ||
		    c->state == LP_CONN_HELLO || c->state == LP_CONN_CONNECTING) {
			if (now < *deadline && !(c->state == LP_CONN_DEAD && !c->ops))
				return false;
		}
	}
	if (!ctx->conn[0].bye && !ctx->conn[1].bye)
		pr_warn("page server %s: no BYE after DONE\n", ctx->addr_text);
	return true;
}

static int run_loop(struct lp_ctx *ctx)
{
	uint64_t deadline = 0, now;
	bool busy = false;

	for (;;) {
		now = util_now_us();
		if (!ctx->finishing)
			stream_refill(ctx);
		for (int i = 0; i < 2; i++)
			lp_conn_tick(ctx, &ctx->conn[i], now);
		if (ctx->fatal)
			return ctx->fatal;
		/*
		 * A restore that failed before resuming its processes wants to be
		 * retried: no DONE, so the source keeps their memory for a new daemon.
		 */
		if (ctx->nr_failed && !ctx->finishing && lp_all_done(ctx)) {
			pr_err("the restore of %u process(es) failed: the source is not told DONE and keeps serving (until its --lazy-timeout) for a new lazy-pages and restore\n",
			       ctx->nr_failed);
			return -ECHILD;
		}
		if (finished(ctx, now, &deadline))
			return 0;
		if (now > ctx->handover_deadline_us) {
			for (struct lp_proc *p = ctx->procs; p; p = p->next) {
				if (p->expected && !p->ready && !p->gone) {
					pr_err("pid %u: not handed over within %u s\n", p->pid,
					       ctx->opts->lazy_timeout);
					ctx->fatal = -ETIMEDOUT;
				}
			}
			if (ctx->fatal)
				return ctx->fatal;
		}
		lp_stats_progress(ctx, now, false);
		turn(ctx, busy);
		busy = lp_install_pending(ctx) || fault_awaited(ctx, util_now_us());
		lp_guard_sync(ctx);
	}
}

/* The source is gone or we gave up: nobody may run on memory that never came. */
static void abandon(struct lp_ctx *ctx, int err)
{
	for (struct lp_proc *p = ctx->procs; p; p = p->next) {
		if (p->gone)
			continue;
		if (p->handed && (!p->ready || !lp_mm_done(&p->mm)))
			lp_proc_drop(ctx, p, true, strerror(-err));
		else if (p->expected && !p->handed)
			pr_err("pid %u: never handed over; its %llu lazy pages were not served\n",
			       p->pid, (unsigned long long)p->mm.nr_total);
	}
}

static int ctx_init(struct lp_ctx *ctx, const struct relive_opts *opts)
{
	struct io_uring_params prm = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 4096 };
	uint64_t t = (uint64_t)opts->lazy_timeout * 1000000ULL;
	int ret;

	memset(ctx, 0, sizeof(*ctx));
	ctx->opts = opts;
	ctx->listen_fd = -1;
	ctx->reqs.next = ctx->reqs.prev = &ctx->reqs;
	ctx->st.t_start_us = util_now_us();
	ctx->st.tty = isatty(STDERR_FILENO);
	ctx->stall_us = MIN(t, 10000000ULL);
	ctx->reconnect_us = t;
	ctx->handover_deadline_us = ctx->st.t_start_us + t;
	ctx->conn[0].fd = ctx->conn[1].fd = -1;
	ctx->dirfd = open(opts->images_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ctx->dirfd < 0) {
		pr_perror("cannot open the images directory %s", opts->images_dir);
		return -errno;
	}
	ret = load_images(ctx);
	if (!ret)
		ret = resolve(ctx);
	if (ret)
		return ret;
	/*
	 * Completions are run when the loop asks for them (it does every
	 * turn), not by interrupting it: no IPI on every uffd wake-up and
	 * every packet, which in a VM costs the sender ~10 µs per fault reply.
	 */
	prm.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	ret = io_uring_queue_init_params(256, &ctx->ring, &prm);
	if (ret == -EINVAL) {
		prm.flags &= ~(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
		ret = io_uring_queue_init_params(256, &ctx->ring, &prm);
	}
	if (ret) {
		pr_err("io_uring setup: %s\n", strerror(-ret));
		return ret;
	}
	ctx->ring_ok = true;
	for (int i = 0; i < 2 && !ret; i++)
		ret = lp_conn_init(ctx, &ctx->conn[i], i);
	if (ret) {
		pr_err("out of memory for receive buffers\n");
		return ret;
	}
	return lp_handover_listen(ctx);
}

static void ctx_fini(struct lp_ctx *ctx)
{
	struct lp_req *r;

	lp_handover_fini(ctx);
	while ((r = ctx->reqs.next) != &ctx->reqs)
		lp_req_free(ctx, r);
	for (int i = 0; i < 2; i++)
		lp_conn_fini(&ctx->conn[i]);
	if (ctx->ring_ok)
		io_uring_queue_exit(&ctx->ring);
	while (ctx->procs) {
		struct lp_proc *p = ctx->procs;

		ctx->procs = p->next;
		if (p->uffd >= 0)
			close(p->uffd);
		if (p->pidfd >= 0)
			close(p->pidfd);
		lp_mm_fini(&p->mm);
		free(p);
	}
	while (ctx->faults) {
		struct lp_fault *f = ctx->faults;

		ctx->faults = f->next;
		free(f);
	}
	free(ctx->st.lat);
	if (ctx->dirfd >= 0)
		close(ctx->dirfd);
}

int cmd_lazy_pages(const struct relive_opts *opts)
{
	struct lp_ctx *ctx = calloc(1, sizeof(*ctx));
	int ret;

	if (!ctx) {
		pr_err("out of memory\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	ret = ctx_init(ctx, opts);
	if (!ret)
		ret = lp_guard_start(ctx);
	if (!ret) {
		ret = lp_takeover_try(ctx);
		ret = ret > 0 ? 0 : ret;
	}
	if (!ret && opts->status_fd >= 0) {
		/* as CRIU: one zero byte when the daemon is ready for restore */
		if (write(opts->status_fd, "", 1) != 1)
			pr_perror("cannot write to the status fd %d", opts->status_fd);
		close(opts->status_fd);
	}
	if (!ret) {
		lp_conn_prefault(ctx, &ctx->conn[PS_CHAN_STREAM]);
		ret = run_loop(ctx);
	}
	if (ctx->ring_ok && ret != -ENOMEM && ctx->total_pages) {
		if (ret) {
			lp_guard_abandon(ctx);
			abandon(ctx, ret);
		}
		if (!ctx->st.t_end_us)
			ctx->st.t_end_us = util_now_us();
		lp_stats_progress(ctx, util_now_us(), true);
		lp_stats_report(ctx);
		if (opts->stats_json && lp_stats_json(ctx, opts->stats_json) && !ret)
			ret = -EIO;
	}
	if (!ret && ctx->nr_failed)
		ret = -ECHILD;
	lp_guard_stop(ctx);
	ctx_fini(ctx);
	free(ctx);
	return ret ? 1 : 0;
}
