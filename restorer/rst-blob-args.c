/*
 * The restorer area of one task, built by its helper: placed in a gap of
 * both the target layout and the helper's own, it holds the blob, its args
 * (VMAs, page runs, sigactions, mm fields, creds, per-thread state,
 * queued signals, the lazy ranges and the uffd in a lazy restore), a stack,
 * a scratch slot for moving the vdso, and the tail (two-syscall trampoline
 * and the rt_sigreturn frame). Then the helper unregisters glibc's rseq and
 * jumps in.
 */
#include "fault.h"
#include "rst.h"

#include "restorer-blob.h"
#include "util.h"

#include <asm/prctl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/rseq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(RESTORER_OFF_TAIL_END - RESTORER_OFF_TAIL_START <= RST_TAIL_CODE_SIZE, "tail code");

static bool is_special(uint32_t kind)
{
	return kind == VMA_KIND__VMA_VDSO || kind == VMA_KIND__VMA_VVAR ||
	       kind == VMA_KIND__VMA_VVAR_VCLOCK || kind == VMA_KIND__VMA_VSYSCALL;
}

static bool is_file(uint32_t kind)
{
	return kind == VMA_KIND__VMA_FILE_PRIVATE || kind == VMA_KIND__VMA_FILE_SHARED;
}

/* Bump allocator over the args region: 8-byte aligned offsets from the args struct. */
struct bump {
	uint64_t off;
};

static uint64_t take(struct bump *b, uint64_t len)
{
	uint64_t o = b->off;

	b->off = ALIGN_UP(b->off + len, 8);
	return o;
}

/* Raw siginfo (checked to be RST_SIGINFO_SIZE bytes by the plan) into the args. */
static uint64_t put_siginfo(struct rst_blob_args *a, struct bump *b, SiginfoEntry *const *e,
			    size_t n)
{
	uint64_t off = take(b, n * RST_SIGINFO_SIZE);

	for (size_t i = 0; i < n; i++)
		memcpy((uint8_t *)a + off + i * RST_SIGINFO_SIZE, e[i]->raw.data,
		       RST_SIGINFO_SIZE);
	return off;
}

/* Signals queued for the process and for each thread. */
static uint64_t nr_siginfo(const struct rst_task *t)
{
	uint64_t n = t->task->n_shared_pending;

	for (size_t i = 0; i < t->nr_threads; i++)
		n += t->threads[i].core->n_pending;
	return n;
}

static uint64_t args_size(const struct rst_task *t)
{
	return sizeof(struct rst_blob_args) + 8 * 8 + t->nr_vmas * sizeof(struct rst_blob_vma) +
	       t->nr_runs * sizeof(struct rst_blob_run) + t->nr_vmas * sizeof(struct rst_blob_range) +
	       t->task->n_sigactions * sizeof(struct rst_blob_sigaction) +
	       (t->nr_vmas + 2) * sizeof(int32_t) + t->mm->n_auxv * 8 +
	       t->task->creds->n_groups * sizeof(uint32_t) +
	       t->nr_threads * sizeof(struct rst_blob_thread) +
	       (t->nr_threads + 1) * 8 + nr_siginfo(t) * RST_SIGINFO_SIZE +
	       t->task->n_posix_timers * sizeof(struct rst_blob_ptimer);
}

/* Bytes of the tail given to one thread's frame, 64-byte aligned. */
static uint64_t frame_slot(const CoreEntry *core)
{
	return ALIGN_UP(rst_sigframe_size(core->xsave.len), 64);
}

static void fill_vmas(struct rst_child *c, struct rst_blob_args *a, struct bump *b)
{
	const struct rst_task *t = c->task;
	_cleanup_free_ bool *filled = calloc(t->nr_vmas ? t->nr_vmas : 1, sizeof(bool));
	struct rst_blob_vma *bv;
	struct rst_blob_run *br;
	int32_t *cl;

	a->runs_off = take(b, t->nr_runs * sizeof(*br));
	br = (struct rst_blob_run *)((uint8_t *)a + a->runs_off);
	a->nr_runs = (uint32_t)rst_build_runs(t->vmas, t->nr_vmas, t->runs, t->nr_runs, br,
					      filled ? filled : (bool[1]){ 0 });
	a->vmas_off = take(b, t->nr_vmas * sizeof(*bv));
	bv = (struct rst_blob_vma *)((uint8_t *)a + a->vmas_off);
	a->close_fds_off = take(b, (t->nr_vmas + 2) * sizeof(int32_t));
	cl = (int32_t *)((uint8_t *)a + a->close_fds_off);
	for (size_t i = 0; i < t->nr_vmas; i++) {
		const struct rst_vma *v = &t->vmas[i];
		struct rst_blob_vma *o = &bv[a->nr_vmas];
		bool shared = v->flags & MAP_SHARED;

		if (is_special(v->kind))
			continue;
		o->start = v->start;
		o->end = v->end;
		o->madv = rst_madv_bits(v->madv);
		o->prot = v->prot;
		o->map_prot = v->prot | (filled && filled[i] ? PROT_WRITE : 0);
		o->flags = (shared ? MAP_SHARED : MAP_PRIVATE) | (v->flags & MAP_GROWSDOWN);
		o->fd = -1;
		if (is_file(v->kind) || c->map_fds[i] >= 0) {
			/* a file, or shared memory of the tree (rst-shm.c) */
			o->fd = c->map_fds[i];
			o->pgoff = v->pgoff;
		} else {
			o->flags |= MAP_ANONYMOUS;
		}
		a->nr_vmas++;
		/* Each distinct map fd is closed once. */
		if (o->fd >= 0) {
			bool seen = false;

			for (uint32_t k = 0; k < a->nr_close_fds; k++)
				seen |= cl[k] == o->fd;
			if (!seen)
				cl[a->nr_close_fds++] = o->fd;
		}
	}
	a->lazy_off = take(b, t->nr_vmas * sizeof(struct rst_blob_range));
	a->uffd = c->uffd;
	a->lazy_sock = c->lazy_sock;
	if (c->uffd >= 0)
		a->nr_lazy = (uint32_t)rst_lazy_ranges(
			t->vmas, t->nr_vmas, t->runs, t->nr_runs,
			(struct rst_blob_range *)((uint8_t *)a + a->lazy_off));
	cl[a->nr_close_fds++] = c->pages_fd;
	if (c->exe_fd >= 0)
		cl[a->nr_close_fds++] = c->exe_fd;
}

static void fill_task(struct rst_child *c, struct rst_blob_args *a, struct bump *b)
{
	const TaskEntry *te = c->task->task;
	const MmEntry *mm = c->task->mm;
	struct rst_blob_sigaction *sa;

	a->sigacts_off = take(b, te->n_sigactions * sizeof(*sa));
	sa = (struct rst_blob_sigaction *)((uint8_t *)a + a->sigacts_off);
	for (size_t i = 0; i < te->n_sigactions; i++) {
		sa[i].signo = te->sigactions[i]->signo;
		sa[i].handler = te->sigactions[i]->handler;
		sa[i].flags = te->sigactions[i]->flags;
		sa[i].restorer = te->sigactions[i]->restorer;
		sa[i].mask = te->sigactions[i]->mask;
	}
	a->nr_sigacts = (uint32_t)te->n_sigactions;
	a->nr_shared_pending = (uint32_t)te->n_shared_pending;
	a->shared_pending_off = put_siginfo(a, b, te->shared_pending, te->n_shared_pending);
	for (size_t i = 0; i < te->n_itimers; i++) {
		a->itimers[i].which = te->itimers[i]->which;
		a->itimers[i].interval_us = te->itimers[i]->interval_us;
		a->itimers[i].value_us = te->itimers[i]->value_us;
		/* Armed but due right now: a zero value would disarm it, fire it at once. */
		if (!a->itimers[i].value_us && a->itimers[i].interval_us)
			a->itimers[i].value_us = 1;
	}
	a->nr_itimers = (uint32_t)te->n_itimers;
	rst_ptimers_fill(te, a, take(b, te->n_posix_timers * sizeof(struct rst_blob_ptimer)));

	a->mm = (struct rst_blob_mm){
		.start_code = mm->start_code,
		.end_code = mm->end_code,
		.start_data = mm->start_data,
		.end_data = mm->end_data,
		.start_brk = mm->start_brk,
		.brk = mm->brk,
		.start_stack = mm->start_stack,
		.arg_start = mm->arg_start,
		.arg_end = mm->arg_end,
		.env_start = mm->env_start,
		.env_end = mm->env_end,
		.auxv_size = (uint32_t)(mm->n_auxv * 8),
		.exe_fd = c->exe_fd,
	};
	a->mm.auxv_off = take(b, mm->n_auxv * 8);
	memcpy((uint8_t *)a + a->mm.auxv_off, mm->auxv, mm->n_auxv * 8);

	rst_creds_fill(te->creds, &a->creds);
	a->creds.groups_off = take(b, te->creds->n_groups * sizeof(uint32_t));
	memcpy((uint8_t *)a + a->creds.groups_off, te->creds->groups,
	       te->creds->n_groups * sizeof(uint32_t));
	if (te->has_dumpable) {
		a->creds.flags |= RST_CREDS_DUMPABLE;
		a->creds.dumpable = te->dumpable;
	}
}

static void regs_from_image(const UserRegsEntry *e, struct user_regs_struct *r)
{
	*r = (struct user_regs_struct){
		.r15 = e->r15, .r14 = e->r14, .r13 = e->r13, .r12 = e->r12, .rbp = e->rbp,
		.rbx = e->rbx, .r11 = e->r11, .r10 = e->r10, .r9 = e->r9, .r8 = e->r8,
		.rax = e->rax, .rcx = e->rcx, .rdx = e->rdx, .rsi = e->rsi, .rdi = e->rdi,
		.orig_rax = e->orig_rax, .rip = e->rip, .cs = e->cs, .eflags = e->flags,
		.rsp = e->rsp, .ss = e->ss, .fs_base = e->fs_base, .gs_base = e->gs_base,
		.ds = e->ds, .es = e->es, .fs = e->fs, .gs = e->gs,
	};
}

/* Thread I's frame at FRAME (FRAME_LEN bytes in the tail) and its block T. */
static int fill_thread(struct rst_child *c, size_t i, uint8_t *frame, uint64_t frame_len,
		       const uint32_t *xcomp_end, struct rst_blob_thread *t)
{
	const CoreEntry *core = c->task->threads[i].core;
	struct rst_frame_in in = { 0 };
	char err[256];
	int r;

	regs_from_image(core->regs, &in.regs);
	rst_restart_fixup(&in.regs);
	in.xsave = core->xsave.data;
	in.xsave_len = core->xsave.len;
	in.blocked = core->blocked;
	in.xcomp_end = xcomp_end;
	in.ss_flags = SS_DISABLE;
	if (core->sigaltstack) {
		in.ss_sp = core->sigaltstack->ss_sp;
		in.ss_size = core->sigaltstack->ss_size;
		in.ss_flags = (int32_t)core->sigaltstack->ss_flags;
	}
	r = rst_sigframe_build(frame, (uint64_t)(uintptr_t)frame, frame_len, &in, &t->frame_sp,
			       err, sizeof(err));
	if (r) {
		rst_child_fail(c, "core-%u.img: %s", core->tid, err);
		return r;
	}
	t->tid = (int32_t)core->tid;
	t->fs_base = core->regs->fs_base;
	t->gs_base = core->regs->gs_base;
	if (core->rseq && core->rseq->rseq_abi_pointer) {
		t->rseq_ptr = core->rseq->rseq_abi_pointer;
		t->rseq_len = core->rseq->rseq_abi_size;
		t->rseq_sig = core->rseq->signature;
	}
	if (core->has_clear_tid_addr)
		t->clear_tid = core->clear_tid_addr;
	/* The leader's name is set by the helper already; the others' by themselves. */
	if (i && core->name)
		snprintf(t->name, sizeof(t->name), "%s", core->name);
	return 0;
}

/*
 * The tail: code, the go/ready words, one frame per thread. The created
 * threads' blob stacks sit below the leader's: STACKS_OFF is the first.
 */
static int fill_threads(struct rst_child *c, struct rst_blob_args *a, struct bump *b,
			uint64_t tail_off, uint64_t stacks_off)
{
	const struct rst_task *task = c->task;
	uint8_t *tail = c->area + tail_off;
	uint64_t off = RST_TAIL_HDR_SIZE;
	struct rst_blob_thread *bt;
	uint32_t xcomp_end[64];
	int r;

	memcpy(tail, restorer_blob + RESTORER_OFF_TAIL_START,
	       RESTORER_OFF_TAIL_END - RESTORER_OFF_TAIL_START);
	rst_xstate_layout(xcomp_end);
	a->threads_off = take(b, task->nr_threads * sizeof(*bt));
	bt = (struct rst_blob_thread *)((uint8_t *)a + a->threads_off);
	a->nr_threads = (uint32_t)task->nr_threads;
	for (size_t i = 0; i < task->nr_threads; i++) {
		uint64_t len = frame_slot(task->threads[i].core);

		r = fill_thread(c, i, tail + off, len, xcomp_end, &bt[i]);
		if (r)
			return r;
		bt[i].nr_pending = (uint32_t)task->threads[i].core->n_pending;
		bt[i].pending_off = put_siginfo(a, b, task->threads[i].core->pending,
						task->threads[i].core->n_pending);
		off += len;
		if (i)
			bt[i].stack_top = (uint64_t)(uintptr_t)c->area + stacks_off +
					  i * RST_THREAD_STACK_SIZE;
	}
	return 0;
}

/* Busy ranges: the target's VMAs and everything the helper has mapped now. */
static int place_area(struct rst_child *c, uint64_t len, uint64_t *ret)
{
	const struct rst_task *t = c->task;
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ struct rst_range *busy = NULL;
	struct rst_maps m;
	size_t tlen, n = 0;
	int r;

	r = util_read_file(AT_FDCWD, "/proc/self/maps", &text, &tlen);
	if (r || rst_parse_maps(text, &m)) {
		rst_child_fail(c, "cannot read or parse /proc/self/maps: %s", strerror(-r));
		return r ? r : -EINVAL;
	}
	busy = malloc((m.nr + t->nr_vmas + 1) * sizeof(*busy));
	if (!busy) {
		rst_maps_fini(&m);
		rst_child_fail(c, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < m.nr; i++)
		busy[n++] = m.ranges[i];
	rst_maps_fini(&m);
	for (size_t i = 0; i < t->nr_vmas; i++) {
		if (t->vmas[i].kind == VMA_KIND__VMA_VSYSCALL)
			continue;
		busy[n].start = t->vmas[i].start;
		busy[n++].end = t->vmas[i].end;
	}
	r = rst_find_gap(busy, n, len, RST_AREA_GUARD, RST_AREA_LOW, RST_TASK_SIZE, ret);
	if (r)
		rst_child_fail(c, "no gap of %" PRIu64 " bytes for the restorer area", len);
	return r;
}

int rst_blob_prepare(struct rst_child *c)
{
	const struct rst_task *task = c->task;
	uint64_t args_off, stacks_off, stack_off, slot_off, slot_len = 0, tail_off, tail_len, addr;
	uint64_t lo = ~0ULL, frames = 0;
	struct rst_blob_args *a;
	struct bump b;
	void *m;
	int r;

	for (uint32_t i = 0; i < c->task->nr_moves; i++) {
		lo = MIN(lo, c->task->moves[i].cur);
		slot_len = MAX(slot_len, c->task->moves[i].cur + c->task->moves[i].len - lo);
	}
	args_off = ALIGN_UP((uint64_t)RESTORER_OFF_BLOB_END, PAGE_SIZE_4K);
	for (size_t i = 0; i < task->nr_threads; i++)
		frames += frame_slot(task->threads[i].core);
	/* [args][stacks of the created threads][the leader's stack][vdso slot][tail] */
	stacks_off = ALIGN_UP(args_off + args_size(task), PAGE_SIZE_4K);
	stack_off = stacks_off + (task->nr_threads - 1) * RST_THREAD_STACK_SIZE;
	slot_off = stack_off + RST_STACK_SIZE;
	tail_off = slot_off + ALIGN_UP(slot_len, PAGE_SIZE_4K);
	tail_len = ALIGN_UP(RST_TAIL_HDR_SIZE + frames, PAGE_SIZE_4K);
	c->area_len = tail_off + tail_len;
	r = place_area(c, c->area_len, &addr);
	if (r)
		return r;
	m = mmap((void *)(uintptr_t)addr, c->area_len, PROT_READ | PROT_WRITE | PROT_EXEC,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (m == MAP_FAILED || (uint64_t)(uintptr_t)m != addr) {
		rst_child_fail(c, "cannot map the restorer area at 0x%" PRIx64 ": %s", addr,
			       m == MAP_FAILED ? strerror(errno) : "placed elsewhere");
		return -ENOMEM;
	}
	c->area = m;
	memcpy(c->area, restorer_blob, RESTORER_SIZE);
	a = (struct rst_blob_args *)(c->area + args_off);
	c->args = a;
	a->magic = RST_BLOB_MAGIC;
	a->version = RST_BLOB_VERSION;
	a->area_start = addr;
	a->area_len = c->area_len;
	a->tail_off = tail_off;
	a->vdso_slot_off = slot_off;
	a->pages_fd = c->pages_fd;
	a->status_fd = c->status_fd;
	a->go_fd = c->go_fd;
	/* test hook (common/fault.h): the blob fails there on purpose */
	if (fault_armed("restore-after-mm"))
		a->fault = RST_FAULT_AFTER_MM;
	else if (fault_armed("restore-before-sigreturn"))
		a->fault = RST_FAULT_BEFORE_SIGRETURN;
	memcpy(a->moves, c->task->moves, sizeof(a->moves));
	a->nr_moves = c->task->nr_moves;
	b.off = sizeof(*a);
	fill_vmas(c, a, &b);
	fill_task(c, a, &b);
	if (b.off > args_size(c->task)) {
		rst_child_fail(c, "restorer args overflow: %" PRIu64 " bytes", b.off);
		return -EOVERFLOW;
	}
	r = fill_threads(c, a, &b, tail_off, stacks_off);
	if (!r && b.off > args_size(c->task)) {
		rst_child_fail(c, "restorer args overflow: %" PRIu64 " bytes", b.off);
		r = -EOVERFLOW;
	}
	return r;
}

/* glibc registered rseq for this thread in memory the blob unmaps: take it back. */
static int unregister_rseq(struct rst_child *c)
{
	unsigned long fs;
	long r;

	if (__rseq_size == 0)
		return 0;
	if (syscall(SYS_arch_prctl, ARCH_GET_FS, &fs)) {
		rst_child_fail(c, "ARCH_GET_FS: %s", strerror(errno));
		return -errno;
	}
	/* glibc 2.35/2.36 register 32 bytes; later ones __rseq_size. */
	r = syscall(SYS_rseq, fs + __rseq_offset, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
	if (r && errno == EINVAL)
		r = syscall(SYS_rseq, fs + __rseq_offset, __rseq_size, RSEQ_FLAG_UNREGISTER,
			    RSEQ_SIG);
	if (r) {
		rst_child_fail(c, "cannot unregister the helper's rseq: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int rst_blob_enter(struct rst_child *c)
{
	uint64_t stack_top = (uint64_t)(uintptr_t)c->area + c->args->vdso_slot_off;
	int r = unregister_rseq(c);

	if (r)
		return r;
	__asm__ volatile("mov %0, %%rsp\n\t"
			 "jmp *%1\n\t"
			 :
			 : "r"(stack_top), "r"(c->area + RESTORER_OFF_START), "D"(c->args)
			 : "memory");
	__builtin_unreachable();
}
