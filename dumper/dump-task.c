/*
 * Per-process and per-thread state that is not memory: task-<pid>.img
 * (identity, credentials, limits, cwd/root, signal handlers, timers) and
 * core-<tid>.img (registers, the xsave area, signal mask, rseq, name,
 * sigaltstack, clear_child_tid, queued signals). Handlers and timers come
 * from the parasite, which sees them from inside; per-thread state from each
 * thread; the signal queues were read at the freeze (dump-threads.c).
 */
#include "dump.h"

#include "log.h"
#include "psite.h"
#include "util.h"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/user.h>

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef PTRACE_GETSIGMASK
#define PTRACE_GETSIGMASK 0x420a
#endif

struct rseq_config {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

#define XSAVE_BUF_MAX (64U << 10)

/* Q as siginfo entries (raw, 128 bytes each); *RET is NULL for an empty queue. */
static int sigqueue_entries(const struct dmp_sigqueue *q, SiginfoEntry ***ret)
{
	SiginfoEntry **pp;
	SiginfoEntry *e;

	*ret = NULL;
	if (!q->nr)
		return 0;
	pp = calloc(q->nr, sizeof(*pp) + sizeof(*e));
	if (!pp)
		return -ENOMEM;
	e = (SiginfoEntry *)(pp + q->nr);
	for (size_t i = 0; i < q->nr; i++) {
		siginfo_entry__init(&e[i]);
		e[i].raw.data = (uint8_t *)&q->si[i];
		e[i].raw.len = sizeof(q->si[i]);
		pp[i] = &e[i];
	}
	*ret = pp;
	return 0;
}
#define NR_RLIMITS 16

static int dump_creds(pid_t pid, CredsEntry *c, uint32_t *groups)
{
	struct proc_status st;
	int r = proc_read_status(pid, pid, &st);

	if (r)
		return r;
	c->uid = st.uid[0];
	c->euid = st.uid[1];
	c->suid = st.uid[2];
	c->fsuid = st.uid[3];
	c->gid = st.gid[0];
	c->egid = st.gid[1];
	c->sgid = st.gid[2];
	c->fsgid = st.gid[3];
	c->cap_inh = st.cap_inh;
	c->cap_prm = st.cap_prm;
	c->cap_eff = st.cap_eff;
	c->cap_bnd = st.cap_bnd;
	c->has_cap_amb = true;
	c->cap_amb = st.cap_amb;
	memcpy(groups, st.groups, st.nr_groups * sizeof(*groups));
	c->n_groups = st.nr_groups;
	c->groups = groups;
	return st.has_umask ? (int)st.umask : 022;
}

static int read_personality(pid_t pid, uint32_t *ret)
{
	_cleanup_free_ char *buf = NULL;
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/%d/personality", (int)pid);
	r = util_read_file(AT_FDCWD, path, &buf, NULL);
	if (r) {
		pr_err("cannot read %s: %s\n", path, strerror(-r));
		return r;
	}
	*ret = (uint32_t)strtoul(buf, NULL, 16);
	return 0;
}

int dmp_task(struct dump_ctx *ctx)
{
	TaskEntry te = TASK_ENTRY__INIT;
	CredsEntry creds = CREDS_ENTRY__INIT;
	RlimitEntry rl[NR_RLIMITS], *rlp[NR_RLIMITS];
	SigactionEntry sa[64], *sap[64];
	ItimerEntry it[3], *itp[3];
	_cleanup_free_ SiginfoEntry **shared = NULL;
	struct psite_sigaction acts[PSITE_NSIG];
	struct psite_misc misc;
	uint32_t groups[64];
	char exe[4096], cwd[4096], root[4096];
	struct img img;
	int r, umask_v;
	size_t n = 0;

	te.pid = (uint32_t)ctx->pid;
	te.comm = ctx->stat.comm;
	r = read_personality(ctx->pid, &te.personality);
	if (r)
		return r;
	if (proc_readlink(ctx->pid, "exe", exe, sizeof(exe)) == 0)
		te.exe_path = exe;
	r = proc_readlink(ctx->pid, "cwd", cwd, sizeof(cwd));
	if (r)
		return r;
	r = proc_readlink(ctx->pid, "root", root, sizeof(root));
	if (r)
		return r;
	te.cwd = cwd;
	te.root = root;
	umask_v = dump_creds(ctx->pid, &creds, groups);
	if (umask_v < 0)
		return umask_v;
	te.umask = (uint32_t)umask_v;
	te.creds = &creds;

	for (int i = 0; i < NR_RLIMITS; i++) {
		struct rlimit lim;

		if (prlimit(ctx->pid, i, NULL, &lim)) {
			r = -errno;
			pr_perror("pid %d: cannot read rlimit %d", (int)ctx->pid, i);
			return r;
		}
		rlimit_entry__init(&rl[i]);
		rl[i].resource = (uint32_t)i;
		rl[i].cur = lim.rlim_cur;
		rl[i].max = lim.rlim_max;
		rlp[i] = &rl[i];
	}
	te.n_rlimits = NR_RLIMITS;
	te.rlimits = rlp;

	r = psite_get_sigactions(ctx->ctl, acts);
	if (r)
		return r;
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		sigaction_entry__init(&sa[n]);
		sa[n].signo = (uint32_t)sig;
		sa[n].handler = acts[sig - 1].handler;
		sa[n].flags = acts[sig - 1].flags;
		sa[n].restorer = acts[sig - 1].restorer;
		sa[n].mask = acts[sig - 1].mask;
		sap[n] = &sa[n];
		n++;
	}
	te.n_sigactions = n;
	te.sigactions = sap;

	r = psite_get_misc(ctx->ctl, &misc);
	if (r)
		return r;
	r = dmp_thread_states(ctx, &misc);
	if (r)
		return r;
	for (int i = 0; i < 3; i++) {
		itimer_entry__init(&it[i]);
		it[i].which = (uint32_t)i;
		it[i].interval_us = misc.itimers[i].interval_us;
		it[i].value_us = misc.itimers[i].value_us;
		itp[i] = &it[i];
	}
	te.n_itimers = 3;
	te.itimers = itp;
	r = sigqueue_entries(&ctx->shared_pending, &shared);
	if (r)
		return r;
	te.n_shared_pending = ctx->shared_pending.nr;
	te.shared_pending = shared;
	te.n_posix_timers = ctx->nr_ptimers;
	te.posix_timers = ctx->ptimers;

	r = img_open(&img, ctx->dirfd, IMG_TASK, (uint32_t)ctx->pid, IMG_WRITE);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	r = img_write(&img, &te.base);
	if (img_close(&img) && !r)
		r = -EIO;
	if (r)
		pr_err("%s\n", img.err);
	return r;
}

static int dump_one_core(struct dump_ctx *ctx, pid_t tid, const struct dmp_thread_state *ts,
			 const struct dmp_sigqueue *pending)
{
	CoreEntry ce = CORE_ENTRY__INIT;
	UserRegsEntry ure = USER_REGS_ENTRY__INIT;
	RseqEntry rse = RSEQ_ENTRY__INIT;
	SigaltstackEntry sse = SIGALTSTACK_ENTRY__INIT;
	_cleanup_free_ uint8_t *xsave = NULL;
	_cleanup_free_ char *name = NULL;
	_cleanup_free_ SiginfoEntry **pend = NULL;
	struct user_regs_struct regs;
	struct rseq_config rseq;
	struct iovec iov;
	uint64_t mask;
	char path[64];
	struct img img;
	size_t nlen;
	int r;

	iov.iov_base = &regs;
	iov.iov_len = sizeof(regs);
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRSTATUS, &iov)) {
		r = -errno;
		pr_perror("tid %d: cannot read registers", (int)tid);
		return r;
	}
	xsave = malloc(XSAVE_BUF_MAX);
	if (!xsave)
		return -ENOMEM;
	iov.iov_base = xsave;
	iov.iov_len = XSAVE_BUF_MAX;
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov)) {
		r = -errno;
		pr_perror("tid %d: cannot read the xsave area", (int)tid);
		return r;
	}
	ce.has_xsave = true;
	ce.xsave.data = xsave;
	ce.xsave.len = iov.iov_len;
	if (ptrace(PTRACE_GETSIGMASK, tid, (void *)sizeof(mask), &mask)) {
		r = -errno;
		pr_perror("tid %d: cannot read the signal mask", (int)tid);
		return r;
	}
	ce.blocked = mask;
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, (void *)sizeof(rseq), &rseq) ==
		    sizeof(rseq) &&
	    rseq.rseq_abi_pointer) {
		rse.rseq_abi_pointer = rseq.rseq_abi_pointer;
		rse.rseq_abi_size = rseq.rseq_abi_size;
		rse.signature = rseq.signature;
		rse.flags = rseq.flags;
		ce.rseq = &rse;
	}
	sse.ss_sp = ts->altstack_sp;
	sse.ss_size = ts->altstack_size;
	sse.ss_flags = ts->altstack_flags;
	ce.sigaltstack = &sse;
	if (ts->clear_tid) {
		ce.has_clear_tid_addr = true;
		ce.clear_tid_addr = ts->clear_tid;
	}
	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)ctx->pid, (int)tid);
	if (util_read_file(AT_FDCWD, path, &name, &nlen) == 0) {
		if (nlen && name[nlen - 1] == '\n')
			name[nlen - 1] = '\0';
		ce.name = name;
	}
	r = sigqueue_entries(pending, &pend);
	if (r)
		return r;
	ce.n_pending = pending->nr;
	ce.pending = pend;
	ce.tid = (uint32_t)tid;
#define R(f) ure.f = regs.f
	R(r15); R(r14); R(r13); R(r12); R(rbp); R(rbx); R(r11); R(r10); R(r9); R(r8);
	R(rax); R(rcx); R(rdx); R(rsi); R(rdi); R(orig_rax); R(rip); R(cs); ure.flags = regs.eflags;
	R(rsp); R(ss); R(fs_base); R(gs_base); R(ds); R(es); R(fs); R(gs);
#undef R
	ce.regs = &ure;

	r = img_open(&img, ctx->dirfd, IMG_CORE, (uint32_t)tid, IMG_WRITE);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	r = img_write(&img, &ce.base);
	if (img_close(&img) && !r)
		r = -EIO;
	if (r)
		pr_err("%s\n", img.err);
	return r;
}

int dmp_cores(struct dump_ctx *ctx)
{
	const pid_t *tids;
	size_t nr;
	int r;

	tids = psite_frozen_tids(ctx->frozen, &nr);
	for (size_t i = 0; i < nr; i++) {
		r = dump_one_core(ctx, tids[i], &ctx->thread_states[i], &ctx->pending[i]);
		if (r)
			return r;
	}
	return 0;
}
