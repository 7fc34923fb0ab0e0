/*
 * One fully populated sample image of every kind, in static storage, and
 * the code that writes them with img.c. Values are distinct per field (and
 * include the extremes of each integer type) so that a field swapped or
 * truncated on the way through the image shows up in the comparison.
 */
#include "sample.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct sample_img samples[IMG_KIND_MAX];

static void build_inventory(void)
{
	static InventoryEntry inv = INVENTORY_ENTRY__INIT;
	static uint8_t token[IMG_SESSION_TOKEN_LEN];

	for (unsigned i = 0; i < sizeof(token); i++)
		token[i] = (uint8_t)(0xa0 + i);
	inv.format_version = IMG_FORMAT_VERSION;
	inv.kernel_release = "6.18.0-relive-test";
	inv.page_size = 4096;
	inv.flags = INV_FLAG_LAZY | INV_FLAG_PIDNS;
	inv.session_token.len = sizeof(token);
	inv.session_token.data = token;
	inv.root_pid = 4242;
	inv.has_dump_time_us = true;
	inv.dump_time_us = 1763771015123456ULL;
	inv.hostname = SAMPLE_HOSTNAME;
	samples[IMG_INVENTORY] = (struct sample_img){ IMG_INVENTORY, 0, 1, { &inv.base } };
}

static void build_pstree(void)
{
	static PstreeEntry e[3] = { PSTREE_ENTRY__INIT, PSTREE_ENTRY__INIT, PSTREE_ENTRY__INIT };
	static uint32_t threads0[] = { 4242, 4243, 4244 };
	static uint32_t threads1[] = { 4250 };

	e[0].pid = 4242;
	e[0].ppid = 1;
	e[0].pgid = 4242;
	e[0].sid = 4200;
	e[0].n_threads = 3;
	e[0].threads = threads0;
	e[1].pid = 4250;
	e[1].ppid = 4242;
	e[1].pgid = 4242;
	e[1].sid = 4200;
	e[1].n_threads = 1;
	e[1].threads = threads1;
	e[1].has_zombie = true;
	e[1].zombie = false;
	e[2].pid = 4251;
	e[2].ppid = 4242;
	e[2].pgid = 4251;
	e[2].sid = 4200;
	e[2].has_zombie = true;
	e[2].zombie = true;
	e[2].has_exit_status = true;
	e[2].exit_status = INT32_MIN;
	samples[IMG_PSTREE] = (struct sample_img){ IMG_PSTREE, 0, 3,
						   { &e[0].base, &e[1].base, &e[2].base } };
}

static void build_core(void)
{
	static CoreEntry core = CORE_ENTRY__INIT;
	static UserRegsEntry regs = USER_REGS_ENTRY__INIT;
	static RseqEntry rseq = RSEQ_ENTRY__INIT;
	static SigaltstackEntry ss = SIGALTSTACK_ENTRY__INIT;
	static SiginfoEntry si[2] = { SIGINFO_ENTRY__INIT, SIGINFO_ENTRY__INIT };
	static SiginfoEntry *pending[2] = { &si[0], &si[1] };
	static uint8_t raw[2][128], xsave[576];
	const ProtobufCMessageDescriptor *rd = &user_regs_entry__descriptor;

	/* Every register gets its own value, found through the descriptor. */
	for (unsigned i = 0; i < rd->n_fields; i++)
		*(uint64_t *)((char *)&regs + rd->fields[i].offset) =
			0x1000000000000000ULL * (i % 15 + 1) + i;
	regs.rip = UINT64_MAX;
	for (unsigned i = 0; i < sizeof(xsave); i++)
		xsave[i] = (uint8_t)(i * 13);
	for (unsigned s = 0; s < 2; s++) {
		for (unsigned i = 0; i < sizeof(raw[s]); i++)
			raw[s][i] = (uint8_t)(s * 100 + i);
		si[s].raw.len = sizeof(raw[s]);
		si[s].raw.data = raw[s];
	}
	rseq.rseq_abi_pointer = 0x7f0000001000ULL;
	rseq.rseq_abi_size = 32;
	rseq.signature = 0x53053053;
	rseq.flags = 0;
	ss.ss_sp = 0x7f0000200000ULL;
	ss.ss_size = 65536;
	ss.ss_flags = 2;
	core.tid = 4243;
	core.regs = &regs;
	core.has_xsave = true;
	core.xsave.len = sizeof(xsave);
	core.xsave.data = xsave;
	core.blocked = 0x8000000000000001ULL;
	core.rseq = &rseq;
	core.sigaltstack = &ss;
	core.name = "worker/1";
	core.n_pending = 2;
	core.pending = pending;
	core.has_clear_tid_addr = true;
	core.clear_tid_addr = 0x7f00000029d0ULL;
	samples[IMG_CORE] = (struct sample_img){ IMG_CORE, 4243, 1, { &core.base } };
}

static void build_task(void)
{
	static TaskEntry t = TASK_ENTRY__INIT;
	static CredsEntry c = CREDS_ENTRY__INIT;
	static uint32_t groups[] = { 0, 27, 1000 };
	static RlimitEntry rl[2] = { RLIMIT_ENTRY__INIT, RLIMIT_ENTRY__INIT };
	static RlimitEntry *rlp[2] = { &rl[0], &rl[1] };
	static SigactionEntry sa[2] = { SIGACTION_ENTRY__INIT, SIGACTION_ENTRY__INIT };
	static SigactionEntry *sap[2] = { &sa[0], &sa[1] };
	static ItimerEntry it = ITIMER_ENTRY__INIT;
	static ItimerEntry *itp[1] = { &it };
	static PosixTimerEntry pt = POSIX_TIMER_ENTRY__INIT;
	static PosixTimerEntry *ptp[1] = { &pt };

	c.uid = 1000, c.gid = 1001, c.euid = 1002, c.egid = 1003;
	c.suid = 1004, c.sgid = 1005, c.fsuid = 1006, c.fsgid = 1007;
	c.cap_inh = 1, c.cap_prm = 0x1ffffffffffULL, c.cap_eff = 0x3ff, c.cap_bnd = UINT64_MAX;
	c.has_cap_amb = true, c.cap_amb = 4;
	c.n_groups = 3, c.groups = groups;
	c.has_secbits = true, c.secbits = 0x2f;
	rl[0].resource = 7, rl[0].cur = 1024, rl[0].max = 4096;
	rl[1].resource = 3, rl[1].cur = 8 << 20, rl[1].max = UINT64_MAX;
	sa[0].signo = 10, sa[0].handler = 0x401000, sa[0].flags = 0x14000000;
	sa[0].restorer = 0x401800, sa[0].mask = 1ULL << 9;
	sa[1].signo = 64, sa[1].handler = 1, sa[1].flags = 0, sa[1].restorer = 0, sa[1].mask = 0;
	it.which = 0, it.interval_us = 250000, it.value_us = 125000;
	pt.id = 0, pt.clock_id = -6, pt.notify = 0, pt.signo = 34, pt.sival = 0xdeadbeef;
	pt.interval_ns = 1000000, pt.value_ns = 999999999, pt.overrun = INT32_MAX;
	t.pid = 4242;
	t.comm = "victim";
	t.personality = 0x0400000;
	t.exe_path = "/usr/bin/victim (deleted)";
	t.creds = &c;
	t.n_rlimits = 2, t.rlimits = rlp;
	t.cwd = "/tmp/dir with spaces";
	t.root = "/";
	t.n_sigactions = 2, t.sigactions = sap;
	t.n_itimers = 1, t.itimers = itp;
	t.n_posix_timers = 1, t.posix_timers = ptp;
	t.umask = 022;
	t.has_dumpable = true, t.dumpable = 1;
	samples[IMG_TASK] = (struct sample_img){ IMG_TASK, 4242, 1, { &t.base } };
}

static void build_mm(void)
{
	static MmEntry mm = MM_ENTRY__INIT;
	static uint64_t auxv[] = { 33, 0x7ffd00001000ULL, 6, 4096, 0, 0 };
	static VmaEntry v[3] = { VMA_ENTRY__INIT, VMA_ENTRY__INIT, VMA_ENTRY__INIT };
	static VmaEntry *vp[3] = { &v[0], &v[1], &v[2] };

	mm.start_code = 0x400000, mm.end_code = 0x401000;
	mm.start_data = 0x402000, mm.end_data = 0x403000;
	mm.start_stack = 0x7ffd00000000ULL, mm.start_brk = 0x404000, mm.brk = 0x425000;
	mm.arg_start = 0x7ffd00000100ULL, mm.arg_end = 0x7ffd00000180ULL;
	mm.env_start = 0x7ffd00000180ULL, mm.env_end = 0x7ffd00000ff0ULL;
	mm.n_auxv = 6, mm.auxv = auxv;
	mm.n_vmas = 3, mm.vmas = vp;
	mm.has_exe_file_id = true, mm.exe_file_id = 1;
	v[0].start = 0x400000, v[0].end = 0x401000, v[0].pgoff = 0;
	v[0].prot = 5, v[0].flags = 2, v[0].kind = VMA_KIND__VMA_FILE_PRIVATE;
	v[0].has_file_id = true, v[0].file_id = 1;
	v[1].start = 0x7f0000000000ULL, v[1].end = 0x7f0000100000ULL, v[1].pgoff = 0;
	v[1].prot = 3, v[1].flags = 0x22, v[1].kind = VMA_KIND__VMA_ANON_PRIVATE;
	v[1].has_madv = true, v[1].madv = VMA_MADV_HUGEPAGE | VMA_LOCKED;
	v[2].start = 0x7f0000200000ULL, v[2].end = 0x7f0000210000ULL, v[2].pgoff = 7;
	v[2].prot = 3, v[2].flags = 0x21, v[2].kind = VMA_KIND__VMA_ANON_SHARED;
	v[2].has_shmid = true, v[2].shmid = 123456789;
	samples[IMG_MM] = (struct sample_img){ IMG_MM, 4242, 1, { &mm.base } };
}

static void build_pagemap(void)
{
	static PagemapHead head = PAGEMAP_HEAD__INIT;
	static PagemapEntry pe[3] = { PAGEMAP_ENTRY__INIT, PAGEMAP_ENTRY__INIT,
				      PAGEMAP_ENTRY__INIT };

	head.pages_id = 7;
	pe[0].vaddr = 0x7f0000000000ULL, pe[0].nr_pages = 2, pe[0].flags = PE_PRESENT;
	pe[1].vaddr = 0x7f0000002000ULL, pe[1].nr_pages = 254, pe[1].flags = PE_LAZY;
	pe[2].vaddr = 0x7f0000200000ULL, pe[2].nr_pages = 1, pe[2].flags = PE_PRESENT | PE_ZERO;
	samples[IMG_PAGEMAP] = (struct sample_img){
		IMG_PAGEMAP, 4242, 4, { &head.base, &pe[0].base, &pe[1].base, &pe[2].base }
	};
}

static void build_files(void)
{
	static FileEntry f[2] = { FILE_ENTRY__INIT, FILE_ENTRY__INIT };
	static RegFileEntry reg = REG_FILE_ENTRY__INIT;
	static FdinfoEntry fd[3] = { FDINFO_ENTRY__INIT, FDINFO_ENTRY__INIT, FDINFO_ENTRY__INIT };

	reg.path = "/var/log/\xe2\x82\xac-log.txt";
	reg.flags = 02002, reg.pos = 1ULL << 40, reg.mode = 0100644;
	reg.size = (1ULL << 40) + 17, reg.dev = 0x803, reg.ino = 9876543210ULL;
	reg.has_mtime_ns = true, reg.mtime_ns = 1763771015000000001ULL;
	f[0].id = 1, f[0].type = FILE_TYPE__FILE_REG, f[0].reg = &reg;
	f[1].id = 2, f[1].type = FILE_TYPE__FILE_PIPE;
	samples[IMG_FILES] = (struct sample_img){ IMG_FILES, 0, 2, { &f[0].base, &f[1].base } };

	fd[0].fd = 0, fd[0].file_id = 2, fd[0].cloexec = false;
	fd[1].fd = 1, fd[1].file_id = 1, fd[1].cloexec = true;
	fd[2].fd = 1023, fd[2].file_id = 2, fd[2].cloexec = true;
	samples[IMG_FDINFO] = (struct sample_img){ IMG_FDINFO, 4242, 3,
						   { &fd[0].base, &fd[1].base, &fd[2].base } };
}

static void build_stats(void)
{
	static StatsEntry sd = STATS_ENTRY__INIT, sr = STATS_ENTRY__INIT;
	static DumpStatsEntry d = DUMP_STATS_ENTRY__INIT;
	static RestoreStatsEntry r = RESTORE_STATS_ENTRY__INIT;

	d.freezing_time_us = 1200, d.frozen_time_us = 45000, d.memdump_time_us = 30000;
	d.pages_written = 12, d.has_pages_lazy = true, d.pages_lazy = 262144;
	d.has_pages_zero = true, d.pages_zero = 3;
	d.has_freeze_start_realtime_us = true, d.freeze_start_realtime_us = 1763771015000000ULL;
	sd.dump = &d;
	r.restore_time_us = 8000, r.pages_read = 12;
	r.has_frozen_window_us = true, r.frozen_window_us = 61000;
	r.has_resume_realtime_us = true, r.resume_realtime_us = 1763771015061000ULL;
	sr.restore = &r;
	samples[IMG_STATS_DUMP] = (struct sample_img){ IMG_STATS_DUMP, 0, 1, { &sd.base } };
	samples[IMG_STATS_RESTORE] = (struct sample_img){ IMG_STATS_RESTORE, 0, 1, { &sr.base } };
}

static void build_locks(void)
{
	static FileLockEntry l[2] = { FILE_LOCK_ENTRY__INIT, FILE_LOCK_ENTRY__INIT };

	l[0].pid = 4242, l[0].fd = 40, l[0].file_id = 1, l[0].kind = FILE_LOCK_KIND__LOCK_FLOCK;
	l[0].type = 1;
	l[1].pid = 4250, l[1].fd = 1023, l[1].file_id = 2, l[1].kind = FILE_LOCK_KIND__LOCK_OFD;
	l[1].type = 0, l[1].start = 1ULL << 40, l[1].len = INT64_MAX - (1ULL << 40);
	samples[IMG_FILE_LOCKS] = (struct sample_img){ IMG_FILE_LOCKS, 0, 2,
						       { &l[0].base, &l[1].base } };
}

const struct sample_img *sample_get(enum img_kind kind)
{
	static bool built;

	if (!built) {
		build_inventory();
		build_pstree();
		build_core();
		build_task();
		build_mm();
		build_pagemap();
		build_files();
		build_stats();
		build_locks();
		samples[IMG_PAGES] = (struct sample_img){ IMG_PAGES, 7, 0, { NULL } };
		built = true;
	}
	if ((unsigned)kind >= IMG_KIND_MAX)
		return NULL;
	return &samples[kind];
}

static int write_pages(struct img *img)
{
	uint8_t page[IMG_PAGE_SIZE];
	int r;

	for (unsigned p = 0; p < SAMPLE_NR_PAGES; p++) {
		for (unsigned i = 0; i < sizeof(page); i++)
			page[i] = sample_page_byte(p, i);
		r = img_pages_write(img, page, sizeof(page));
		if (r)
			return r;
	}
	return 0;
}

int sample_write(int dirfd, enum img_kind kind, char *err, size_t errlen)
{
	const struct sample_img *s = sample_get(kind);
	struct img img;
	int r;

	if (!s) {
		snprintf(err, errlen, "no sample of kind %d", (int)kind);
		return -EINVAL;
	}
	r = img_open(&img, dirfd, kind, s->id, IMG_WRITE);
	if (r) {
		snprintf(err, errlen, "%s", img.err);
		return r;
	}
	if (kind == IMG_PAGES)
		r = write_pages(&img);
	for (size_t i = 0; i < s->nr_entries && !r; i++)
		r = img_write(&img, s->entries[i]);
	if (r) {
		snprintf(err, errlen, "%s", img.err);
		img_close(&img);
		return r;
	}
	r = img_close(&img);
	if (r)
		snprintf(err, errlen, "%s", img.err);
	return r;
}
