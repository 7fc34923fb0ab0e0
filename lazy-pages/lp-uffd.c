/*
 * The userfaultfd side of the lazy-pages daemon: a multishot io_uring poll on
 * every uffd, reading its messages, and UFFDIO_COPY/ZEROPAGE into the
 * restored processes. A fault on a missing page becomes an urgent GET on the
 * fault channel (or waits for the urgent GET already out); a fault on a page
 * that no lazy run holds any more gets a zero page. Events keep the scheduler
 * true to the address space: FORK adds the child's uffd, REMAP moves pending
 * pages, REMOVE/UNMAP drop them; requests they overlap are cancelled, so a
 * reply is never copied to where its pages no longer belong. The wire is
 * lp-conn.c's; the bookkeeping lp-sched.c's.
 */
#include "lp.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "util.h"

#define NR_MSGS 64

static void read_msgs(struct lp_ctx *ctx, struct lp_proc *p);

int lp_uffd_arm(struct lp_ctx *ctx, struct lp_proc *p)
{
	struct io_uring_sqe *sqe = lp_sqe(&ctx->ring);

	if (!sqe) {
		pr_err("pid %u: io_uring submission queue full\n", p->pid);
		return -EBUSY;
	}
	io_uring_prep_poll_multishot(sqe, p->uffd, POLLIN);
	io_uring_sqe_set_data64(sqe, lp_ud(p, LP_UD_UFFD));
	p->poll_armed = true;
	return 0;
}

static const char *proc_name(const struct lp_proc *p, char *buf, size_t len)
{
	if (p->pid)
		snprintf(buf, len, "pid %u", p->pid);
	else
		snprintf(buf, len, "a forked child of pid %u (uffd %d)", p->parent, p->uffd);
	return buf;
}

void lp_proc_drop(struct lp_ctx *ctx, struct lp_proc *p, bool kill_it, const char *why)
{
	struct lp_fault **pf = &ctx->faults;
	uint64_t left = p->mm.nr_missing + p->mm.nr_inflight;
	struct io_uring_sqe *sqe;
	char name[96];

	if (p->gone)
		return;
	p->gone = true;
	for (struct lp_req *r = ctx->reqs.next; r != &ctx->reqs; r = r->next)
		if (r->proc == p)
			r->cancelled = true;
	while (*pf) {
		struct lp_fault *f = *pf;

		if (f->proc == p) {
			*pf = f->next;
			free(f);
		} else {
			pf = &f->next;
		}
	}
	proc_name(p, name, sizeof(name));
	if (kill_it) {
		pr_err("%s: %s; %llu pages of its memory never arrived\n", name, why,
		       (unsigned long long)left);
		/* closing its uffd would let it run on zero pages: stop it instead */
		if (p->pidfd >= 0 && syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0))
			pr_perror("%s: cannot kill it", name);
		else if (p->pidfd >= 0)
			pr_err("%s: killed rather than left running without its memory\n", name);
	} else {
		pr_info("%s: %s; %llu pending pages dropped\n", name, why, (unsigned long long)left);
	}
	ctx->st.pages_dropped += left;
	lp_mm_fini(&p->mm);
	if (p->poll_armed) {
		sqe = lp_sqe(&ctx->ring);
		if (sqe) {
			io_uring_prep_poll_remove(sqe, lp_ud(p, LP_UD_UFFD));
			io_uring_sqe_set_data64(sqe, LP_UD_IGNORE);
		}
	}
	if (p->uffd >= 0)
		close(p->uffd);
	p->uffd = -1;
}

/* Faults of p in [start, end) are served (the pages are in, or gone). */
static void faults_done(struct lp_ctx *ctx, struct lp_proc *p, uint64_t start, uint64_t end,
			bool sample)
{
	struct lp_fault **pf = &ctx->faults;
	uint64_t now = 0;

	while (*pf) {
		struct lp_fault *f = *pf;

		if (f->proc != p || f->addr < start || f->addr >= end) {
			pf = &f->next;
			continue;
		}
		if (sample) {
			if (!now)
				now = util_now_us();
			lp_stats_fault(&ctx->st, now - f->t_us, now);
		}
		*pf = f->next;
		free(f);
	}
}

static void wake(struct lp_proc *p, uint64_t start, uint64_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	if (ioctl(p->uffd, UFFDIO_WAKE, &r) && errno != ESRCH)
		pr_warn("pid %u: UFFDIO_WAKE %#llx+%llu: %s\n", p->src_pid,
			(unsigned long long)start, (unsigned long long)len, strerror(errno));
}

/* 0 when the fault is served, -EAGAIN to try again after the events. */
static int zeropage(struct lp_ctx *ctx, struct lp_proc *p, uint64_t addr)
{
	struct uffdio_zeropage z = { .range = { .start = addr, .len = LP_PAGE } };

	if (!ioctl(p->uffd, UFFDIO_ZEROPAGE, &z)) {
		p->pages_zero++;
		ctx->st.pages_zero++;
		return 0;
	}
	switch (errno) {
	case EEXIST:
		/* installed meanwhile: the faulting thread may still sleep */
		wake(p, addr, LP_PAGE);
		return 0;
	case EAGAIN:
		return -EAGAIN;
	case ESRCH:
		lp_proc_drop(ctx, p, false, "exited");
		return 0;
	default:
		pr_err("pid %u: UFFDIO_ZEROPAGE at %#llx: %s\n", p->src_pid,
		       (unsigned long long)addr, strerror(errno));
		wake(p, addr, LP_PAGE);
		return 0;
	}
}

static bool urgent_covers(struct lp_ctx *ctx, struct lp_proc *p, uint64_t addr)
{
	for (struct lp_req *r = ctx->reqs.next; r != &ctx->reqs; r = r->next)
		if (r->proc == p && r->urgent && !r->cancelled && addr >= r->vaddr &&
		    addr < r->vaddr + (uint64_t)r->nr * LP_PAGE)
			return true;
	return false;
}

static struct lp_conn *fault_conn(struct lp_ctx *ctx)
{
	if (ctx->conn[PS_CHAN_FAULT].state == LP_CONN_UP)
		return &ctx->conn[PS_CHAN_FAULT];
	if (ctx->conn[PS_CHAN_STREAM].state == LP_CONN_UP)
		return &ctx->conn[PS_CHAN_STREAM];
	return NULL;
}

/*
 * Make sure the page of fault addr is on its way urgently. A page already in
 * a background batch gets its own urgent GET too: a fault never waits behind
 * bulk data; whichever copy comes second finds the page there (EEXIST).
 */
static int fetch(struct lp_ctx *ctx, struct lp_proc *p, uint64_t addr)
{
	struct lp_conn *c = fault_conn(ctx);
	struct lp_run run;
	struct lp_req *r;

	if (!c)
		return 0; /* after the reconnect, lp_faults_recheck asks again */
	switch (lp_mm_fault(&p->mm, addr, LP_FAULT_PAGES, &run)) {
	case LP_FAULT_NONE:
		return zeropage(ctx, p, addr) ? 0 : 1;
	case LP_FAULT_INFLIGHT:
		if (urgent_covers(ctx, p, addr) || !lp_mm_src(&p->mm, addr, &run.src))
			return 0;
		run.vaddr = addr;
		run.nr = 1;
		break;
	case LP_FAULT_FETCH:
		break;
	}
	r = lp_req_new(ctx, p, &run, true);
	if (!r) {
		lp_mm_requeue(&p->mm, run.vaddr, run.nr);
		return -ENOMEM;
	}
	return lp_conn_queue(ctx, c, r);
}

static void fault(struct lp_ctx *ctx, struct lp_proc *p, uint64_t addr)
{
	struct lp_fault *f = malloc(sizeof(*f));
	int ret;

	ctx->st.faults++;
	if (!f) {
		ctx->fatal = -ENOMEM;
		return;
	}
	*f = (struct lp_fault){ .proc = p, .addr = addr, .t_us = util_now_us() };
	f->next = ctx->faults;
	ctx->faults = f;
	ret = fetch(ctx, p, addr);
	if (ret == 1)
		faults_done(ctx, p, addr, addr + LP_PAGE, false);
	else if (ret < 0)
		ctx->fatal = ret;
}

void lp_faults_recheck(struct lp_ctx *ctx)
{
	struct lp_fault *f, *next;

	for (f = ctx->faults; f; f = next) {
		struct lp_proc *p = f->proc;
		int ret;

		next = f->next;
		if (p->gone)
			continue;
		ret = fetch(ctx, p, f->addr);
		if (ret == 1) {
			/* next may be freed too: start over, the list only shrinks */
			faults_done(ctx, p, f->addr, f->addr + LP_PAGE, false);
			next = ctx->faults;
		} else if (ret < 0) {
			ctx->fatal = ret;
			return;
		}
	}
}

/* Requests of p overlapping [start, end) will not be installed: their pages wait again. */
static void cancel_range(struct lp_ctx *ctx, struct lp_proc *p, uint64_t start, uint64_t end)
{
	for (struct lp_req *r = ctx->reqs.next; r != &ctx->reqs; r = r->next) {
		uint64_t rs = r->vaddr, re = r->vaddr + (uint64_t)r->nr * LP_PAGE;

		if (r->proc != p || r->cancelled || re <= start || rs >= end)
			continue;
		lp_req_cancel(ctx, r);
	}
}

/* A blocked thread in a moved or dropped range faults again where it now is. */
static void faults_forget(struct lp_ctx *ctx, struct lp_proc *p, uint64_t start, uint64_t end)
{
	faults_done(ctx, p, start, end, false);
	wake(p, start, end - start);
}

static int on_fork(struct lp_ctx *ctx, struct lp_proc *p, int ufd)
{
	struct lp_proc *c = calloc(1, sizeof(*c));
	int ret;

	if (!c) {
		close(ufd);
		return -ENOMEM;
	}
	ret = lp_mm_clone(&p->mm, &c->mm);
	if (ret) {
		free(c);
		close(ufd);
		return ret;
	}
	c->parent = p->pid ? p->pid : p->parent;
	c->src_pid = p->src_pid;
	c->uffd = ufd;
	c->pidfd = -1;
	c->handed = c->ready = true;
	c->next = ctx->procs;
	ctx->procs = c;
	lp_guard_fork(ctx, p, c);
	pr_info("pid %u forked: a child with %llu pending pages joins (uffd %d)\n", c->parent,
		(unsigned long long)c->mm.nr_missing, ufd);
	return lp_uffd_arm(ctx, c);
}

static void on_msg(struct lp_ctx *ctx, struct lp_proc *p, const struct uffd_msg *m, bool *events)
{
	uint64_t a, b, missing;
	int ret;

	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		fault(ctx, p, m->arg.pagefault.address & ~(LP_PAGE - 1));
		return;
	case UFFD_EVENT_FORK:
		*events = true;
		ret = on_fork(ctx, p, (int)m->arg.fork.ufd);
		if (ret) {
			pr_err("pid %u: cannot follow a fork: %s\n", p->src_pid, strerror(-ret));
			ctx->fatal = ret;
		}
		return;
	case UFFD_EVENT_REMAP:
		*events = true;
		a = m->arg.remap.from;
		b = m->arg.remap.to;
		cancel_range(ctx, p, a, a + m->arg.remap.len);
		cancel_range(ctx, p, b, b + m->arg.remap.len);
		ret = lp_mm_remap(&p->mm, a, b, m->arg.remap.len);
		if (ret) {
			pr_err("pid %u: cannot follow mremap %#llx -> %#llx (%llu bytes): %s\n",
			       p->src_pid, (unsigned long long)a, (unsigned long long)b,
			       (unsigned long long)m->arg.remap.len, strerror(-ret));
			ctx->fatal = ret;
			return;
		}
		faults_forget(ctx, p, a, a + m->arg.remap.len);
		return;
	case UFFD_EVENT_REMOVE:
	case UFFD_EVENT_UNMAP:
		*events = true;
		a = m->arg.remove.start;
		b = m->arg.remove.end;
		cancel_range(ctx, p, a, b);
		missing = p->mm.nr_missing;
		lp_mm_drop(&p->mm, a, b);
		ctx->st.pages_dropped += missing - p->mm.nr_missing;
		if (m->event == UFFD_EVENT_REMOVE)
			faults_forget(ctx, p, a, b);
		else
			faults_done(ctx, p, a, b, false);
		return;
	default:
		pr_warn("pid %u: unexpected userfaultfd event %u\n", p->src_pid, m->event);
	}
}

static void read_msgs(struct lp_ctx *ctx, struct lp_proc *p)
{
	struct uffd_msg msgs[NR_MSGS];
	bool events = false;

	while (!p->gone) {
		ssize_t n = read(p->uffd, msgs, sizeof(msgs));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				lp_proc_drop(ctx, p, false, strerror(errno));
			break;
		}
		if (n == 0 || n % sizeof(msgs[0])) {
			pr_err("pid %u: short read of %zd bytes from its uffd\n", p->src_pid, n);
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]) && !p->gone; i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT && msgs[i].event != UFFD_EVENT_FORK)
				p->reshaped = true;
			on_msg(ctx, p, &msgs[i], &events);
		}
		if ((size_t)n < sizeof(msgs))
			break;
	}
	if (events)
		lp_faults_recheck(ctx);
}

void lp_uffd_event(struct lp_ctx *ctx, struct lp_proc *p, const struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		p->poll_armed = false;
	if (p->gone)
		return;
	if (cqe->res < 0 && cqe->res != -ECANCELED) {
		pr_err("pid %u: poll on its uffd failed: %s\n", p->src_pid, strerror(-cqe->res));
		ctx->fatal = cqe->res;
		return;
	}
	if (!p->ready)
		return;
	read_msgs(ctx, p);
	if (!p->poll_armed && !p->gone && lp_uffd_arm(ctx, p))
		ctx->fatal = -EBUSY;
}

static void installed(struct lp_ctx *ctx, struct lp_req *r, uint64_t dst, uint64_t pages)
{
	struct lp_proc *p = r->proc;

	lp_mm_received(&p->mm, dst, (uint32_t)pages);
	if (r->urgent) {
		p->pages_fault += pages;
		ctx->st.pages_fault += pages;
	} else {
		p->pages_stream += pages;
		ctx->st.pages_stream += pages;
	}
	faults_done(ctx, p, dst, dst + pages * LP_PAGE, true);
}

bool lp_uffd_install(struct lp_ctx *ctx, struct lp_req *r, uint32_t budget)
{
	struct lp_proc *p = r->proc;
	unsigned int again = 0;
	bool single = false;

	while (r->done < r->nr && budget) {
		uint32_t n = single ? 1 : MIN(r->nr - r->done, budget);
		struct uffdio_copy c = {
			.dst = r->vaddr + (uint64_t)r->done * LP_PAGE,
			.src = (uint64_t)(uintptr_t)r->buf + (uint64_t)r->done * LP_PAGE,
			.len = (uint64_t)n * LP_PAGE,
		};
		uint64_t copied;
		int rc, err;

		if (r->cancelled || p->gone)
			return true;
		rc = ioctl(p->uffd, UFFDIO_COPY, &c);
		err = errno;
		copied = c.copy > 0 ? (uint64_t)c.copy / LP_PAGE : 0;
		if (copied)
			installed(ctx, r, c.dst, copied);
		r->done += (uint32_t)copied;
		budget -= MIN((uint32_t)copied, budget);
		if (!rc)
			continue;
		switch (err) {
		case EEXIST:
			/* the urgent copy of this page came first */
			lp_mm_received(&p->mm, c.dst + copied * LP_PAGE, 1);
			faults_done(ctx, p, c.dst + copied * LP_PAGE, c.dst + (copied + 1) * LP_PAGE,
				    true);
			r->done++;
			break;
		case EAGAIN:
			/* unread events (fork, remap, remove, unmap) first, then again */
			if (copied)
				break;
			if (++again > 2)
				return false;
			read_msgs(ctx, p);
			break;
		case ESRCH:
			lp_proc_drop(ctx, p, false, "exited");
			return true;
		case ENOENT:
		case EFAULT:
			/* the run spans VMAs now (mprotect split it), or one page lost its VMA */
			if (!single && n > 1 && !copied) {
				single = true;
				break;
			}
			if (copied)
				break;
			pr_debug("pid %u: page %#llx has no VMA any more; dropped\n", p->src_pid,
				 (unsigned long long)c.dst);
			lp_mm_drop(&p->mm, c.dst, c.dst + LP_PAGE);
			faults_done(ctx, p, c.dst, c.dst + LP_PAGE, false);
			r->done++;
			break;
		default:
			pr_err("pid %u: UFFDIO_COPY of %u pages at %#llx: %s\n", p->src_pid, n,
			       (unsigned long long)c.dst, strerror(err));
			ctx->fatal = -err;
			return true;
		}
	}
	return r->done == r->nr || r->cancelled || p->gone;
}

bool lp_install_pending(struct lp_ctx *ctx)
{
	struct lp_req *r, *pick = NULL;

	for (r = ctx->reqs.next; r != &ctx->reqs; r = r->next) {
		if (r->state != LP_REQ_INSTALL)
			continue;
		if (r->cancelled || r->proc->gone) {
			pick = r;
			break;
		}
		if (r->urgent) {
			pick = r;
			break;
		}
		if (!pick)
			pick = r;
	}
	if (!pick)
		return false;
	if (lp_uffd_install(ctx, pick, pick->urgent ? UINT32_MAX :
				  ctx->faults ? LP_INSTALL_CHUNK_FAULTS : LP_INSTALL_CHUNK))
		lp_req_free(ctx, pick);
	return true;
}
