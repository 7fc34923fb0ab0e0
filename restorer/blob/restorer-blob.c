/*
 * The restorer blob: freestanding code that turns the restore helper into
 * the dumped process. It runs on its own stack inside its own area, after
 * which it may not touch the helper's libc or memory: it moves the vdso
 * group to the dumped addresses, unmaps everything else of the helper, maps
 * every VMA, preads the page runs into place, applies protections and
 * madvise; in a lazy restore it then registers the lazy VMAs with the
 * userfaultfd (MISSING), tells the lazy-pages daemon on the handover socket
 * and closes both (the daemon holds its own copy of the uffd). Then it sets
 * the mm fields and sigactions, creates the other threads with their TIDs
 * (clone3 set_tid), each of which sets its own credentials, rseq, fs/gs,
 * name and clear_child_tid, queues its own pending signals again and waits
 * in the tail; the leader does the same plus itimers, waits for every
 * thread, queues the process's signals, reports success on the status pipe
 * and jumps to the tail: code copied into the last pages of the area, which
 * stay mapped in the restored process, that unmaps the rest of the area,
 * releases the threads and does the leader's rt_sigreturn.
 * Errors go to the status pipe as text, then exit_group(1).
 */
#include "blob-syscall.h"
#include "restorer-abi.h"

#include <asm/prctl.h>
#include <asm/unistd.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <linux/ioctl.h>
#include <linux/sched.h>
#include <linux/mman.h>
#include <linux/prctl.h>
#include <linux/securebits.h>
#include <linux/userfaultfd.h>

#define MAX_RW_CHUNK 0x7ffff000UL

__asm__(".section .head.text, \"ax\"\n"
	".globl __export_start\n"
	"__export_start:\n"
	"	and $-16, %rsp\n"
	"	call rst_blob_main\n"
	"	ud2\n"
	/*
	 * The tail, run from its copy in the tail pages. The leader: rdi =
	 * area, rsi = length to unmap, r12 = frame sp, r13 = &go; it unmaps,
	 * sets go, wakes the threads, and sigreturns.
	 */
	".globl __export_tail_start\n"
	"__export_tail_start:\n"
	"	mov $11, %eax\n"
	"	syscall\n"
	"	movl $1, (%r13)\n"
	"	mov %r13, %rdi\n"
	"	mov $129, %esi\n" /* FUTEX_WAKE_PRIVATE */
	"	mov $0x7fffffff, %edx\n"
	"	mov $202, %eax\n"
	"	syscall\n"
	"	mov %r12, %rsp\n"
	"	mov $15, %eax\n"
	"	syscall\n"
	"	ud2\n"
	/*
	 * A created thread, ready: r12 = frame sp, r13 = &go, r14 = &ready.
	 * Drop ready, wake the leader, wait for go (no stack used: the blob's
	 * stacks go away meanwhile), sigreturn.
	 */
	".globl __export_tail_thread\n"
	"__export_tail_thread:\n"
	"	lock decl (%r14)\n"
	"	mov %r14, %rdi\n"
	"	mov $129, %esi\n"
	"	mov $1, %edx\n"
	"	mov $202, %eax\n"
	"	syscall\n"
	"1:	cmpl $0, (%r13)\n"
	"	jne 2f\n"
	"	mov %r13, %rdi\n"
	"	mov $128, %esi\n" /* FUTEX_WAIT_PRIVATE */
	"	xor %edx, %edx\n"
	"	xor %r10d, %r10d\n"
	"	mov $202, %eax\n"
	"	syscall\n"
	"	jmp 1b\n"
	"2:	mov %r12, %rsp\n"
	"	mov $15, %eax\n"
	"	syscall\n"
	"	ud2\n"
	".globl __export_tail_end\n"
	"__export_tail_end:\n"
	".text\n");

extern const char __export_tail_start[], __export_tail_thread[], __export_tail_end[];

/*
 * clone3(args, size); the child calls fn(a, idx) on the stack of args and
 * never returns. rdi = args, rsi = size, rdx = fn, rcx = a, r8 = idx.
 */
__attribute__((visibility("hidden"))) long blob_clone3(void *args, unsigned long size,
						       void (*fn)(const void *, long),
						       const void *a, long idx);
__asm__(".text\n"
	".type blob_clone3, @function\n"
	"blob_clone3:\n"
	"	mov %rdx, %r9\n"
	"	mov %rcx, %r10\n"
	"	mov $435, %eax\n"
	"	syscall\n"
	"	test %rax, %rax\n"
	"	jnz 1f\n"
	"	xor %ebp, %ebp\n"
	"	mov %r10, %rdi\n"
	"	mov %r8, %rsi\n"
	"	call *%r9\n"
	"	ud2\n"
	"1:	ret\n"
	".size blob_clone3, .-blob_clone3\n");

#define sys1(nr, a) blob_syscall6(nr, (long)(a), 0, 0, 0, 0, 0)
#define sys2(nr, a, b) blob_syscall6(nr, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(nr, a, b, c) blob_syscall6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(nr, a, b, c, d) blob_syscall6(nr, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(nr, a, b, c, d, e) blob_syscall6(nr, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* The compiler may emit calls to these even with -fno-builtin. */
void *memcpy(void *dst, const void *src, unsigned long n)
{
	char *d = dst;
	const char *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, unsigned long n)
{
	char *d = dst;

	while (n--)
		*d++ = (char)c;
	return dst;
}

struct msg {
	char buf[256];
	unsigned int len;
};

static void msg_str(struct msg *m, const char *s)
{
	while (*s && m->len < sizeof(m->buf) - 1)
		m->buf[m->len++] = *s++;
}

static void msg_hex(struct msg *m, unsigned long v)
{
	char tmp[16];
	int n = 0;

	msg_str(m, "0x");
	do {
		tmp[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	while (n && m->len < sizeof(m->buf) - 1)
		m->buf[m->len++] = tmp[--n];
}

static void msg_dec(struct msg *m, long v)
{
	char tmp[24];
	int n = 0;

	if (v < 0) {
		msg_str(m, "-");
		v = -v;
	}
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && m->len < sizeof(m->buf) - 1)
		m->buf[m->len++] = tmp[--n];
}

/* Report "what ADDR: errno N" on the status pipe and end the process. */
static __attribute__((noreturn)) void fail(const struct rst_blob_args *a, const char *what,
					   unsigned long addr, long err)
{
	struct msg m = { .len = 0 };

	m.buf[m.len++] = RST_STATUS_ERR;
	msg_str(&m, "restorer blob: ");
	msg_str(&m, what);
	msg_str(&m, " ");
	msg_hex(&m, addr);
	msg_str(&m, " failed: errno ");
	msg_dec(&m, -err);
	msg_str(&m, "\n");
	sys3(__NR_write, a->status_fd, m.buf, m.len);
	for (;;)
		sys1(__NR_exit_group, 1);
}

static const void *at(const struct rst_blob_args *a, uint64_t off)
{
	return (const char *)a + off;
}

/*
 * Move [vvar]/[vvar_vclock]/[vdso] to the dumped addresses through a slot in
 * our own area, so that a current place overlapping a dumped one is no problem.
 */
static void move_vdso(const struct rst_blob_args *a)
{
	uint64_t slot = a->area_start + a->vdso_slot_off, base = ~0ULL;
	long r;

	for (uint32_t i = 0; i < a->nr_moves; i++)
		if (a->moves[i].cur < base)
			base = a->moves[i].cur;
	for (uint32_t i = 0; i < a->nr_moves; i++) {
		const struct rst_blob_move *mv = &a->moves[i];

		r = sys5(__NR_mremap, mv->cur, mv->len, mv->len, MREMAP_MAYMOVE | MREMAP_FIXED,
			 slot + (mv->cur - base));
		if (r < 0)
			fail(a, "mremap of the vdso part at", mv->cur, r);
	}
	for (uint32_t i = 0; i < a->nr_moves; i++) {
		const struct rst_blob_move *mv = &a->moves[i];

		r = sys5(__NR_mremap, slot + (mv->cur - base), mv->len, mv->len,
			 MREMAP_MAYMOVE | MREMAP_FIXED, mv->dst);
		if (r < 0)
			fail(a, "mremap of the vdso part to", mv->dst, r);
	}
}

static void unmap_range(const struct rst_blob_args *a, uint64_t start, uint64_t end)
{
	long r;

	if (start >= end)
		return;
	r = sys2(__NR_munmap, start, end - start);
	if (r < 0)
		fail(a, "munmap of the helper's memory at", start, r);
}

/* Unmap everything but our area and the (moved) vdso parts. */
static void unmap_helper(const struct rst_blob_args *a)
{
	uint64_t keep[RST_MAX_VDSO + 1][2], cur = 0;
	uint32_t n = 0;

	keep[n][0] = a->area_start;
	keep[n++][1] = a->area_start + a->area_len;
	for (uint32_t i = 0; i < a->nr_moves; i++) {
		keep[n][0] = a->moves[i].dst;
		keep[n++][1] = a->moves[i].dst + a->moves[i].len;
	}
	/* Insertion sort by start: at most four ranges. */
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && keep[j][0] < keep[j - 1][0]; j--) {
			uint64_t s = keep[j][0], e = keep[j][1];

			keep[j][0] = keep[j - 1][0];
			keep[j][1] = keep[j - 1][1];
			keep[j - 1][0] = s;
			keep[j - 1][1] = e;
		}
	for (uint32_t i = 0; i < n; i++) {
		unmap_range(a, cur, keep[i][0]);
		cur = keep[i][1];
	}
	unmap_range(a, cur, RST_TASK_SIZE);
}

static void map_vmas(const struct rst_blob_args *a)
{
	const struct rst_blob_vma *v = at(a, a->vmas_off);
	long r;

	for (uint32_t i = 0; i < a->nr_vmas; i++) {
		r = blob_syscall6(__NR_mmap, v[i].start, v[i].end - v[i].start, v[i].map_prot,
			 v[i].flags | MAP_FIXED, v[i].fd, v[i].pgoff);
		if (r < 0)
			fail(a, "mmap of the vma at", v[i].start, r);
		if ((uint64_t)r != v[i].start)
			fail(a, "mmap landed elsewhere for the vma at", v[i].start, -14);
	}
}

static void fill_runs(const struct rst_blob_args *a)
{
	const struct rst_blob_run *run = at(a, a->runs_off);

	for (uint32_t i = 0; i < a->nr_runs; i++) {
		uint64_t done = 0;

		while (done < run[i].len) {
			uint64_t len = run[i].len - done;
			long r;

			if (len > MAX_RW_CHUNK)
				len = MAX_RW_CHUNK;
			r = sys4(__NR_pread64, a->pages_fd, run[i].vaddr + done, len,
				 run[i].off + done);
			if (r == 0)
				fail(a, "pages image ended while reading the pages of", run[i].vaddr,
				     -5);
			if (r < 0)
				fail(a, "pread of the pages of", run[i].vaddr + done, r);
			done += (uint64_t)r;
		}
	}
}

/* A lazy VMA must not be populated by mlock: its pages come from the daemon. */
static int is_lazy(const struct rst_blob_args *a, const struct rst_blob_vma *v)
{
	const struct rst_blob_range *l = at(a, a->lazy_off);

	for (uint32_t i = 0; i < a->nr_lazy; i++)
		if (l[i].start < v->end && v->start < l[i].end)
			return 1;
	return 0;
}

static void finish_vmas(const struct rst_blob_args *a)
{
	const struct rst_blob_vma *v = at(a, a->vmas_off);
	long r;

	for (uint32_t i = 0; i < a->nr_vmas; i++) {
		uint64_t len = v[i].end - v[i].start;

		if (v[i].map_prot != v[i].prot) {
			r = sys3(__NR_mprotect, v[i].start, len, v[i].prot);
			if (r < 0)
				fail(a, "mprotect of the vma at", v[i].start, r);
		}
		for (int advice = 0; advice < 63; advice++) {
			if (!(v[i].madv & (1ULL << advice)))
				continue;
			r = sys3(__NR_madvise, v[i].start, len, advice);
			if (r < 0)
				fail(a, "madvise of the vma at", v[i].start, r);
		}
		if (v[i].madv & RST_VMA_MLOCK) {
			if (is_lazy(a, &v[i]))
				r = sys3(__NR_mlock2, v[i].start, len, MLOCK_ONFAULT);
			else
				r = sys2(__NR_mlock, v[i].start, len);
			if (r < 0)
				fail(a, "mlock of the vma at", v[i].start, r);
		}
	}
}

/*
 * Register every lazy range (MISSING) now that it is mapped, filled with its
 * PRESENT pages and protected, and before the process can touch it; then
 * hand it to the daemon. Nothing of the restored memory may be touched by
 * the blob before the 'R' is written: the daemon installs nothing before it.
 */
static void register_lazy(const struct rst_blob_args *a)
{
	const struct rst_blob_range *l = at(a, a->lazy_off);
	char ready = RST_LAZY_READY;
	long r;

	if (a->uffd < 0)
		return;
	for (uint32_t i = 0; i < a->nr_lazy; i++) {
		struct uffdio_register reg = {
			.range = { .start = l[i].start, .len = l[i].end - l[i].start },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		r = sys3(__NR_ioctl, a->uffd, UFFDIO_REGISTER, &reg);
		if (r < 0)
			fail(a, "UFFDIO_REGISTER of the lazy vma at", l[i].start, r);
		if (!(reg.ioctls & (1ULL << _UFFDIO_COPY)))
			fail(a, "UFFDIO_COPY is not available for the lazy vma at", l[i].start, -95);
	}
	r = sys3(__NR_write, a->lazy_sock, &ready, 1);
	if (r != 1)
		fail(a, "telling the lazy-pages daemon on fd", (unsigned long)a->lazy_sock,
		     r < 0 ? r : -5);
	sys1(__NR_close, a->lazy_sock);
	sys1(__NR_close, a->uffd);
}

static void set_mm(const struct rst_blob_args *a)
{
	struct prctl_mm_map map = {
		.start_code = a->mm.start_code,
		.end_code = a->mm.end_code,
		.start_data = a->mm.start_data,
		.end_data = a->mm.end_data,
		.start_brk = a->mm.start_brk,
		.brk = a->mm.brk,
		.start_stack = a->mm.start_stack,
		.arg_start = a->mm.arg_start,
		.arg_end = a->mm.arg_end,
		.env_start = a->mm.env_start,
		.env_end = a->mm.env_end,
		.auxv = (__u64 *)at(a, a->mm.auxv_off),
		.auxv_size = a->mm.auxv_size,
		.exe_fd = (__u32)a->mm.exe_fd,
	};
	long r = sys5(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &map, sizeof(map), 0);

	if (r < 0)
		fail(a, "PR_SET_MM_MAP with start_code", a->mm.start_code, r);
}

static void set_sigactions(const struct rst_blob_args *a)
{
	const struct rst_blob_sigaction *s = at(a, a->sigacts_off);

	for (uint32_t i = 0; i < a->nr_sigacts; i++) {
		uint64_t act[4] = { s[i].handler, s[i].flags, s[i].restorer, s[i].mask };
		long r = sys4(__NR_rt_sigaction, s[i].signo, act, 0, 8);

		if (r < 0)
			fail(a, "rt_sigaction of signal", s[i].signo, r);
	}
}

static void set_creds(const struct rst_blob_args *a)
{
	const struct rst_blob_creds *c = &a->creds;
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	long r;

	for (uint32_t cap = 0; cap <= c->cap_last && cap < 64; cap++) {
		if (c->cap_bnd & (1ULL << cap))
			continue;
		r = sys2(__NR_prctl, PR_CAPBSET_DROP, cap);
		if (r < 0)
			fail(a, "dropping from the bounding set the capability", cap, r);
	}
	if (c->secbits) {
		r = sys2(__NR_prctl, PR_SET_SECUREBITS, c->secbits);
		if (r < 0)
			fail(a, "PR_SET_SECUREBITS", c->secbits, r);
	}
	/* Keep the permitted set across the uid change; capset sets it below. */
	r = sys2(__NR_prctl, PR_SET_KEEPCAPS, 1);
	if (r < 0)
		fail(a, "PR_SET_KEEPCAPS", 1, r);
	r = sys2(__NR_setgroups, c->nr_groups, at(a, c->groups_off));
	if (r < 0)
		fail(a, "setgroups of groups", c->nr_groups, r);
	r = sys3(__NR_setresgid, c->gid, c->egid, c->sgid);
	if (r < 0)
		fail(a, "setresgid to", c->gid, r);
	sys1(__NR_setfsgid, c->fsgid); /* returns the previous fsgid, never fails */
	r = sys3(__NR_setresuid, c->uid, c->euid, c->suid);
	if (r < 0)
		fail(a, "setresuid to", c->uid, r);
	sys1(__NR_setfsuid, c->fsuid); /* returns the previous fsuid, never fails */
	data[0].effective = (uint32_t)c->cap_eff;
	data[1].effective = (uint32_t)(c->cap_eff >> 32);
	data[0].permitted = (uint32_t)c->cap_prm;
	data[1].permitted = (uint32_t)(c->cap_prm >> 32);
	data[0].inheritable = (uint32_t)c->cap_inh;
	data[1].inheritable = (uint32_t)(c->cap_inh >> 32);
	r = sys2(__NR_capset, &hdr, data);
	if (r < 0)
		fail(a, "capset with permitted", c->cap_prm, r);
	if (!(c->secbits & SECBIT_KEEP_CAPS)) {
		r = sys2(__NR_prctl, PR_SET_KEEPCAPS, 0);
		if (r < 0)
			fail(a, "PR_SET_KEEPCAPS", 0, r);
	}
	for (uint32_t cap = 0; (c->flags & RST_CREDS_AMBIENT) && cap <= c->cap_last && cap < 64;
	     cap++) {
		if (!(c->cap_amb & (1ULL << cap)))
			continue;
		r = sys5(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
		if (r < 0)
			fail(a, "raising the ambient capability", cap, r);
	}
	if (c->flags & RST_CREDS_DUMPABLE) {
		r = sys2(__NR_prctl, PR_SET_DUMPABLE, c->dumpable);
		if (r < 0)
			fail(a, "PR_SET_DUMPABLE", c->dumpable, r);
	}
}

static void set_timers(const struct rst_blob_args *a)
{
	for (uint32_t i = 0; i < a->nr_itimers; i++) {
		const struct rst_blob_itimer *t = &a->itimers[i];
		long val[4] = { (long)(t->interval_us / 1000000), (long)(t->interval_us % 1000000),
				(long)(t->value_us / 1000000), (long)(t->value_us % 1000000) };
		long r = sys3(__NR_setitimer, t->which, val, 0);

		if (r < 0)
			fail(a, "setitimer of timer", t->which, r);
	}
}

#define PR_TIMER_CREATE_RESTORE_IDS_ 77 /* linux/prctl.h of 6.15+ */
#define SIGEV_THREAD_ID_ 4

/* The kernel's struct sigevent (64 bytes), and struct itimerspec. */
struct blob_sigevent {
	uint64_t value;
	int32_t signo;
	int32_t notify;
	int32_t tid;
	int32_t pad[11];
};

/*
 * Each POSIX timer with its dumped id, by increasing id: with
 * PR_TIMER_CREATE_RESTORE_IDS timer_create takes the id from *timerid;
 * without it (older kernels) ids come in increasing order, so placeholders
 * are created and deleted until the wanted id comes. Then armed with the
 * time that was left. After create_threads: a signal may go to any thread.
 */
static void create_ptimers(const struct rst_blob_args *a)
{
	const struct rst_blob_ptimer *p = at(a, a->ptimers_off);
	long by_id = a->nr_ptimers ? sys2(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS_, 1) : -1;

	for (uint32_t i = 0; i < a->nr_ptimers; i++, p++) {
		struct blob_sigevent se = { .value = p->sival, .signo = p->signo,
					    .notify = p->notify, .tid = p->tid };
		long its[4] = { (long)(p->interval_ns / 1000000000ULL),
				(long)(p->interval_ns % 1000000000ULL),
				(long)(p->value_ns / 1000000000ULL),
				(long)(p->value_ns % 1000000000ULL) };
		int32_t id = p->id;
		long r;

		for (;;) {
			r = sys3(__NR_timer_create, p->clock_id, &se, &id);
			if (r < 0)
				fail(a, "timer_create of POSIX timer", (unsigned long)p->id, r);
			if (id >= p->id)
				break;
			sys1(__NR_timer_delete, id); /* a placeholder below the wanted id */
			id = p->id;
		}
		if (id != p->id)
			fail(a, "timer_create gave another id to POSIX timer", (unsigned long)p->id,
			     -17);
		r = p->value_ns ? sys4(__NR_timer_settime, id, 0, its, 0) : 0;
		if (r < 0)
			fail(a, "timer_settime of POSIX timer", (unsigned long)p->id, r);
	}
	if (by_id == 0)
		sys2(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS_, 0);
}

static void set_thread(const struct rst_blob_args *a, const struct rst_blob_thread *t)
{
	long r;

	if (t->rseq_ptr) {
		r = sys4(__NR_rseq, t->rseq_ptr, t->rseq_len, 0, t->rseq_sig);
		if (r < 0)
			fail(a, "rseq registration at", t->rseq_ptr, r);
	}
	r = sys2(__NR_arch_prctl, ARCH_SET_FS, t->fs_base);
	if (r < 0)
		fail(a, "ARCH_SET_FS to", t->fs_base, r);
	r = sys2(__NR_arch_prctl, ARCH_SET_GS, t->gs_base);
	if (r < 0)
		fail(a, "ARCH_SET_GS to", t->gs_base, r);
	if (t->name[0]) {
		r = sys2(__NR_prctl, PR_SET_NAME, t->name);
		if (r < 0)
			fail(a, "PR_SET_NAME of thread", (unsigned long)t->tid, r);
	}
	/* Returns the caller's tid, never fails. */
	sys1(__NR_set_tid_address, t->clear_tid);
}

static const struct rst_blob_thread *thread_at(const struct rst_blob_args *a, long idx)
{
	return (const struct rst_blob_thread *)at(a, a->threads_off) + idx;
}

/*
 * Queue again the signals of thread T, from T itself, or with T NULL the
 * process's, from the leader: the kernel lets a task forge any siginfo
 * (kill(), tkill(), the kernel's own codes) only for itself. Every thread
 * blocks everything until its rt_sigreturn, so none is delivered, nor
 * dropped as ignored, before the dumped mask is back; then the blocked ones
 * stay pending, as dumped. Order and multiplicity of realtime signals are
 * kept; standard ones were queued at most once each.
 */
static void requeue_signals(const struct rst_blob_args *a, const struct rst_blob_thread *t)
{
	const int32_t pid = thread_at(a, 0)->tid;
	const uint8_t *si = at(a, t ? t->pending_off : a->shared_pending_off);
	uint32_t nr = t ? t->nr_pending : a->nr_shared_pending;

	for (uint32_t i = 0; i < nr; i++, si += RST_SIGINFO_SIZE) {
		int32_t signo = *(const int32_t *)si;
		long r;

		if (t)
			r = sys4(__NR_rt_tgsigqueueinfo, pid, t->tid, signo, si);
		else
			r = sys3(__NR_rt_sigqueueinfo, pid, signo, si);
		if (r < 0)
			fail(a, t ? "rt_tgsigqueueinfo of the thread's signal" :
				    "rt_sigqueueinfo of the process's signal",
			     (unsigned long)signo, r);
	}
}

static volatile int32_t *tail_word(const struct rst_blob_args *a, uint32_t off)
{
	return (volatile int32_t *)(a->area_start + a->tail_off + off);
}

/*
 * A created thread: its own credentials (they are per thread), rseq, fs/gs,
 * name and clear_child_tid, then the tail, where it waits for the others.
 */
static __attribute__((noreturn)) void thread_main(const void *arg, long idx)
{
	const struct rst_blob_args *a = arg;
	const struct rst_blob_thread *t = thread_at(a, idx);
	uint64_t entry = a->area_start + a->tail_off +
			 (uint64_t)(__export_tail_thread - __export_tail_start);

	set_creds(a);
	set_thread(a, t);
	requeue_signals(a, t);
	{
		register uint64_t frame __asm__("r12") = t->frame_sp;
		register volatile int32_t *go __asm__("r13") = tail_word(a, RST_TAIL_GO_OFF);
		register volatile int32_t *ready __asm__("r14") =
			tail_word(a, RST_TAIL_READY_OFF);

		__asm__ volatile("jmp *%0"
				 :
				 : "r"(entry), "r"(frame), "r"(go), "r"(ready)
				 : "memory");
	}
	__builtin_unreachable();
}

/*
 * Create every other thread with its TID, sharing everything a thread
 * shares; fs/gs are set by the thread itself. Before set_creds: clone3 with
 * set_tid needs the privileges the dumped credentials may lack.
 */
static void create_threads(const struct rst_blob_args *a)
{
	const unsigned long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
				    CLONE_THREAD | CLONE_SYSVSEM;

	*tail_word(a, RST_TAIL_GO_OFF) = 0;
	*tail_word(a, RST_TAIL_READY_OFF) = (int32_t)(a->nr_threads - 1);
	for (uint32_t i = 1; i < a->nr_threads; i++) {
		const struct rst_blob_thread *t = thread_at(a, i);
		int32_t tid = t->tid;
		struct clone_args ca;
		long r;

		memset(&ca, 0, sizeof(ca));
		ca.flags = flags;
		ca.stack = t->stack_top - RST_THREAD_STACK_SIZE;
		ca.stack_size = RST_THREAD_STACK_SIZE;
		ca.set_tid = (uint64_t)&tid;
		ca.set_tid_size = 1;
		r = blob_clone3(&ca, sizeof(ca), thread_main, a, (long)i);
		if (r < 0)
			fail(a, "clone3 of thread", (unsigned long)t->tid, r);
		if (r != t->tid)
			fail(a, "clone3 gave another tid to thread", (unsigned long)t->tid, -17);
	}
}

/* Until every created thread sits in the tail; one that fails ends the process. */
static void wait_threads(const struct rst_blob_args *a)
{
	volatile int32_t *ready = tail_word(a, RST_TAIL_READY_OFF);

	for (;;) {
		int32_t v = __atomic_load_n(ready, __ATOMIC_ACQUIRE);

		if (v <= 0)
			break;
		sys4(__NR_futex, ready, FUTEX_WAIT_PRIVATE, v, 0);
	}
}

/*
 * The SIGCHLD of each zombie child recreated for this process (rst-helper.c)
 * is pending, blocked: the dumped process had been told already. Dropped
 * before the dumped queue (which may hold a SIGCHLD of its own) comes back.
 */
static void drop_sigchld(void)
{
	uint64_t set = 1ULL << (17 - 1); /* SIGCHLD */
	long zero[2] = { 0, 0 };

	while (sys4(__NR_rt_sigtimedwait, &set, 0, zero, 8) == 17)
		;
}

__attribute__((used, noreturn, visibility("hidden"))) void rst_blob_main(struct rst_blob_args *a)
{
	const int32_t *fds;
	char ok = RST_STATUS_OK;
	long r;

	if (a->magic != RST_BLOB_MAGIC || a->version != RST_BLOB_VERSION)
		fail(a, "args check: bad magic or version", a->magic, -22);
	move_vdso(a);
	unmap_helper(a);
	map_vmas(a);
	fill_runs(a);
	finish_vmas(a);
	register_lazy(a);
	set_mm(a);
	if (a->fault == RST_FAULT_AFTER_MM)
		fail(a, "fault injected at restore-after-mm (RELIVE_FAULT), step", 0, -5);
	fds = at(a, a->close_fds_off);
	for (uint32_t i = 0; i < a->nr_close_fds; i++)
		sys1(__NR_close, fds[i]);
	set_sigactions(a);
	create_threads(a);
	create_ptimers(a);
	set_creds(a);
	r = sys2(__NR_prctl, PR_SET_PDEATHSIG, 0);
	if (r < 0)
		fail(a, "PR_SET_PDEATHSIG", 0, r);
	set_thread(a, thread_at(a, 0));
	set_timers(a);
	wait_threads(a);
	drop_sigchld();
	requeue_signals(a, thread_at(a, 0));
	requeue_signals(a, NULL);
	if (a->fault == RST_FAULT_BEFORE_SIGRETURN)
		fail(a, "fault injected at restore-before-sigreturn (RELIVE_FAULT), step", 0, -5);
	r = sys3(__NR_write, a->status_fd, &ok, 1);
	if (r != 1)
		fail(a, "writing the status byte to fd", (unsigned long)a->status_fd, r < 0 ? r : -5);
	sys1(__NR_close, a->status_fd);
	/*
	 * Every process of the tree resumes together, or none: end of file
	 * means relive gave up (or died).
	 */
	if (a->go_fd >= 0) {
		char go = 0;

		r = sys3(__NR_read, a->go_fd, &go, 1);
		if (r != 1 || go != RST_GO)
			sys1(__NR_exit_group, 1);
		sys1(__NR_close, a->go_fd);
	}
	{
		register uint64_t frame __asm__("r12") = thread_at(a, 0)->frame_sp;
		register volatile int32_t *go __asm__("r13") = tail_word(a, RST_TAIL_GO_OFF);

		__asm__ volatile("jmp *%2"
				 :
				 : "D"(a->area_start), "S"(a->tail_off),
				   "r"(a->area_start + a->tail_off), "r"(frame), "r"(go)
				 : "memory");
	}
	__builtin_unreachable();
}
