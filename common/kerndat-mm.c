/*
 * Address-space and environment probes: PR_SET_MM_MAP (size query, then a
 * real set in a forked child with its own current values from /proc/self/stat
 * and the auxv), the [vvar]/[vvar_vclock]/[vdso] layout from /proc/self/maps,
 * network namespaces (unshare in a child), the pipe size limit, and the
 * NT_X86_XSTATE size from CPUID leaf 0xD (cross-checked against the ptrace
 * regset size kerndat-task.c measured, so it must run after it).
 */
#include "kerndat-internal.h"
#include "util.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A child writes why it failed here: a shared page, so the parent sees it. */
struct child_why {
	char text[KERNDAT_WHY_LEN];
};

/* Fields 26.. of /proc/PID/stat, 1-based as in proc(5); 0 if absent. */
static int stat_fields(uint64_t *f, unsigned int nr, char *why, size_t len)
{
	_cleanup_free_ char *buf = NULL;
	unsigned int i;
	char *p, *tok, *save;
	int r;

	r = util_read_file(AT_FDCWD, "/proc/self/stat", &buf, NULL);
	if (r) {
		snprintf(why, len, "read /proc/self/stat: %s", strerror(-r));
		return r;
	}
	/* the comm field may hold spaces and parens: fields restart after the last ')' */
	p = strrchr(buf, ')');
	if (!p) {
		snprintf(why, len, "/proc/self/stat has no ')'");
		return -EINVAL;
	}
	memset(f, 0, nr * sizeof(*f));
	for (i = 3, tok = strtok_r(p + 1, " \n", &save); tok && i < nr;
	     i++, tok = strtok_r(NULL, " \n", &save))
		f[i] = strtoull(tok, NULL, 10);
	if (i < 52) {
		snprintf(why, len, "/proc/self/stat has only %u fields", i - 1);
		return -EINVAL;
	}
	return 0;
}

static int mm_map_child(void *arg)
{
	struct child_why *cw = arg;
	_cleanup_free_ char *auxv = NULL;
	struct prctl_mm_map map;
	uint64_t f[53];
	size_t auxv_len;
	int r;

	if (stat_fields(f, ARRAY_SIZE(f), cw->text, sizeof(cw->text)))
		return EINVAL;
	r = util_read_file(AT_FDCWD, "/proc/self/auxv", &auxv, &auxv_len);
	if (r) {
		snprintf(cw->text, sizeof(cw->text), "read /proc/self/auxv: %s", strerror(-r));
		return -r;
	}
	memset(&map, 0, sizeof(map));
	map.start_code = f[26];
	map.end_code = f[27];
	map.start_stack = f[28];
	map.start_data = f[45];
	map.end_data = f[46];
	map.start_brk = f[47];
	map.arg_start = f[48];
	map.arg_end = f[49];
	map.env_start = f[50];
	map.env_end = f[51];
	map.brk = syscall(SYS_brk, 0);
	map.auxv = (__u64 *)auxv;
	map.auxv_size = auxv_len;
	map.exe_fd = -1;
	if (prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof(map), 0)) {
		r = errno;
		snprintf(cw->text, sizeof(cw->text),
			 "prctl(PR_SET_MM, PR_SET_MM_MAP) with the child's own values: %s",
			 strerror(r));
		return r;
	}
	return 0;
}

static int netns_child(void *arg)
{
	struct child_why *cw = arg;
	struct stat before, after;

	if (stat("/proc/self/ns/net", &before)) {
		snprintf(cw->text, sizeof(cw->text), "stat /proc/self/ns/net: %s", strerror(errno));
		return errno;
	}
	if (unshare(CLONE_NEWNET)) {
		snprintf(cw->text, sizeof(cw->text), "unshare(CLONE_NEWNET): %s", strerror(errno));
		return errno;
	}
	if (stat("/proc/self/ns/net", &after) || after.st_ino == before.st_ino) {
		snprintf(cw->text, sizeof(cw->text), "still in the old netns after unshare");
		return EIO;
	}
	if (!if_nametoindex("lo")) {
		snprintf(cw->text, sizeof(cw->text), "no 'lo' in the new netns: %s", strerror(errno));
		return errno;
	}
	return 0;
}

/* Run fn in a child; on failure record its reason (or how it died). */
static void run_probe_child(struct kerndat *kd, enum kerndat_feature f, int (*fn)(void *),
			    const char *ok_text)
{
	struct child_why *cw;
	int r;

	cw = mmap(NULL, sizeof(*cw), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (cw == MAP_FAILED) {
		kd_set(kd, f, false, "mmap of a shared page: %s", strerror(errno));
		return;
	}
	cw->text[0] = '\0';
	r = kd_run_child(fn, cw, 5);
	if (r == 0)
		kd_set(kd, f, true, "%s", ok_text);
	else if (r < 0)
		kd_set(kd, f, false, "probe child: %s",
		       r == -EFAULT ? "killed by a signal" : strerror(-r));
	else
		kd_set(kd, f, false, "%s", cw->text[0] ? cw->text : strerror(r));
	munmap(cw, sizeof(*cw));
}

static void probe_mm_map(struct kerndat *kd)
{
	unsigned int size = 0;

	if (prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0)) {
		kd_set(kd, KD_PRCTL_MM_MAP, false, "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE): %s",
		       strerror(errno));
		return;
	}
	kd->mm_map_size = size;
	if (size != sizeof(struct prctl_mm_map)) {
		kd_set(kd, KD_PRCTL_MM_MAP, false,
		       "kernel's struct prctl_mm_map is %u bytes, ours is %zu", size,
		       sizeof(struct prctl_mm_map));
		return;
	}
	run_probe_child(kd, KD_PRCTL_MM_MAP, mm_map_child, "set in a child with its own values");
}

static void probe_vdso(struct kerndat *kd)
{
	struct {
		const char *name;
		struct kerndat_vma *vma;
	} want[] = {
		{ "[vvar]", &kd->vvar },
		{ "[vvar_vclock]", &kd->vvar_vclock },
		{ "[vdso]", &kd->vdso },
	};
	_cleanup_free_ char *maps = NULL;
	struct kerndat_vma *run[3];
	char *line, *save, detail[KERNDAT_WHY_LEN] = "";
	unsigned int i, j, n = 0;
	int r;

	r = util_read_file(AT_FDCWD, "/proc/self/maps", &maps, NULL);
	if (r) {
		kd_set(kd, KD_VDSO_LAYOUT, false, "read /proc/self/maps: %s", strerror(-r));
		return;
	}
	for (line = strtok_r(maps, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long s, e;
		char *name = strrchr(line, ' ');

		if (!name || sscanf(line, "%llx-%llx", &s, &e) != 2)
			continue;
		for (i = 0; i < ARRAY_SIZE(want); i++) {
			if (strcmp(name + 1, want[i].name))
				continue;
			want[i].vma->present = true;
			want[i].vma->start = s;
			want[i].vma->end = e;
		}
	}
	/* the present ones, by address; adjacent when each ends where the next starts */
	for (i = 0; i < ARRAY_SIZE(want); i++) {
		if (!want[i].vma->present)
			continue;
		for (j = n; j > 0 && run[j - 1]->start > want[i].vma->start; j--)
			run[j] = run[j - 1];
		run[j] = want[i].vma;
		n++;
		snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), "%s %llu KiB, ",
			 want[i].name,
			 (unsigned long long)(want[i].vma->end - want[i].vma->start) / 1024);
	}
	kd->vdso_adjacent = n > 0;
	for (j = 1; j < n; j++)
		if (run[j - 1]->end != run[j]->start)
			kd->vdso_adjacent = false;

	if (!kd->vdso.present || !kd->vvar.present)
		kd_set(kd, KD_VDSO_LAYOUT, false, "no %s in /proc/self/maps",
		       kd->vdso.present ? "[vvar]" : "[vdso]");
	else if (!kd->vdso_adjacent)
		kd_set(kd, KD_VDSO_LAYOUT, false, "%snot adjacent", detail);
	else
		kd_set(kd, KD_VDSO_LAYOUT, true, "%sadjacent", detail);
}

static void probe_pipe_size(struct kerndat *kd)
{
	_cleanup_close_ int rfd = -1, wfd = -1;
	uint64_t max;
	int p[2], r;

	r = kd_read_u64("/proc/sys/fs/pipe-max-size", &max);
	if (!r && (max < 4096 || max > INT32_MAX))
		r = -ERANGE;
	if (r) {
		kd_set(kd, KD_PIPE_MAX_SIZE, false, "read /proc/sys/fs/pipe-max-size: %s",
		       strerror(-r));
		return;
	}
	kd->pipe_max_size = max;
	if (pipe2(p, O_CLOEXEC)) {
		kd_set(kd, KD_PIPE_MAX_SIZE, false, "pipe: %s", strerror(errno));
		return;
	}
	rfd = p[0];
	wfd = p[1];
	r = fcntl(wfd, F_SETPIPE_SZ, (int)max);
	if (r < 0 || (uint64_t)fcntl(wfd, F_GETPIPE_SZ) < max)
		kd_set(kd, KD_PIPE_MAX_SIZE, false, "F_SETPIPE_SZ to pipe-max-size %llu: %s",
		       (unsigned long long)max, r < 0 ? strerror(errno) : "size not taken");
	else
		kd_set(kd, KD_PIPE_MAX_SIZE, true, "%llu bytes", (unsigned long long)max);
}

static void probe_xstate(struct kerndat *kd)
{
	unsigned int a, b, c, d;

	if (__get_cpuid_max(0, NULL) < 0xd) {
		kd_set(kd, KD_XSTATE_SIZE, false, "CPUID has no leaf 0xD");
		return;
	}
	__cpuid(1, a, b, c, d);
	if (!(c & bit_OSXSAVE)) {
		kd_set(kd, KD_XSTATE_SIZE, false, "XSAVE is not enabled by the OS (CPUID.1:ECX)");
		return;
	}
	__cpuid_count(0xd, 0, a, b, c, d);
	kd->xsave_size_cpuid = b;
	kd->xsave_size_cpuid_max = c;
	kd->xsave_size = MAX(b, kd->xsave_size_ptrace);
	/* 512 bytes of legacy area and a 64-byte header at least */
	if (b < 576) {
		kd_set(kd, KD_XSTATE_SIZE, false, "CPUID 0xD.0 gives an xsave size of %u bytes", b);
		return;
	}
	if (kd->xsave_size_ptrace)
		kd_set(kd, KD_XSTATE_SIZE, true, "%u bytes: CPUID 0xD %u, all features %u, ptrace regset %u",
		       kd->xsave_size, b, c, kd->xsave_size_ptrace);
	else
		kd_set(kd, KD_XSTATE_SIZE, true, "%u bytes: CPUID 0xD %u, all features %u",
		       kd->xsave_size, b, c);
}

void kd_probe_mm(struct kerndat *kd)
{
	probe_mm_map(kd);
	probe_vdso(kd);
	run_probe_child(kd, KD_NETNS, netns_child, "");
	probe_pipe_size(kd);
	probe_xstate(kd);
}
