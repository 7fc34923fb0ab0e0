/*
 * /proc readers and parsers used by the dumper. The parse_* functions take
 * text and fill structs (no I/O, no logging); the read_* functions fetch the
 * text for a pid and log failures with the pid and file name.
 */
#include "proc.h"

#include "img.h"
#include "log.h"
#include "util.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <limits.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int proc_parse_stat(const char *buf, struct proc_stat *st)
{
	const char *open = strchr(buf, '('), *close = strrchr(buf, ')');
	unsigned long long f[64];
	const char *p;
	size_t clen;
	int n = 0;
	char *end;

	memset(st, 0, sizeof(*st));
	if (!open || !close || close < open || close[1] != ' ' || !close[2])
		return -EINVAL;
	st->pid = (pid_t)strtol(buf, &end, 10);
	if (end == buf || st->pid <= 0)
		return -EINVAL;
	clen = (size_t)(close - open - 1);
	if (clen >= sizeof(st->comm))
		clen = sizeof(st->comm) - 1;
	memcpy(st->comm, open + 1, clen);
	st->state = close[2];
	/* f[i] is stat field i + 4 (1-based as in proc(5)); field 3 is the state. */
	p = close + 3;
	while (*p && n < (int)ARRAY_SIZE(f)) {
		while (*p == ' ')
			p++;
		if (!*p || *p == '\n')
			break;
		f[n++] = strtoull(p, &end, 10);
		if (end == p)
			return -EINVAL;
		p = end;
	}
	if (n < 49)
		return -EINVAL;
#define F(i) (f[(i)-4])
	st->ppid = (pid_t)F(4);
	st->pgid = (pid_t)F(5);
	st->sid = (pid_t)F(6);
	st->flags = (unsigned long)F(9);
	st->start_code = F(26);
	st->end_code = F(27);
	st->start_stack = F(28);
	st->start_data = F(45);
	st->end_data = F(46);
	st->start_brk = F(47);
	st->arg_start = F(48);
	st->arg_end = F(49);
	st->env_start = F(50);
	st->env_end = F(51);
	st->exit_code = (int)F(52);
#undef F
	return 0;
}

static int parse_u32_list(const char *p, uint32_t *out, unsigned int max, unsigned int *ret_n)
{
	unsigned int n = 0;
	char *end;

	for (;;) {
		unsigned long v;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '\n')
			break;
		if (n >= max)
			return -E2BIG;
		v = strtoul(p, &end, 10);
		if (end == p)
			return -EINVAL;
		out[n++] = (uint32_t)v;
		p = end;
	}
	*ret_n = n;
	return 0;
}

static int parse_hex(const char *p, uint64_t *ret)
{
	char *end;

	while (*p == ' ' || *p == '\t')
		p++;
	*ret = strtoull(p, &end, 16);
	return end == p ? -EINVAL : 0;
}

int proc_parse_status(const char *buf, struct proc_status *st)
{
	unsigned int seen = 0, n;
	const char *line = buf;

	memset(st, 0, sizeof(*st));
	while (line && *line) {
		const char *v = strchr(line, ':');

		if (!v)
			break;
		v++;
		if (!strncmp(line, "Uid:", 4)) {
			if (parse_u32_list(v, st->uid, 4, &n) || n != 4)
				return -EINVAL;
			seen |= 1;
		} else if (!strncmp(line, "Gid:", 4)) {
			if (parse_u32_list(v, st->gid, 4, &n) || n != 4)
				return -EINVAL;
			seen |= 2;
		} else if (!strncmp(line, "Groups:", 7)) {
			if (parse_u32_list(v, st->groups, ARRAY_SIZE(st->groups), &st->nr_groups))
				return -EINVAL;
		} else if (!strncmp(line, "CapInh:", 7)) {
			if (parse_hex(v, &st->cap_inh))
				return -EINVAL;
			seen |= 4;
		} else if (!strncmp(line, "CapPrm:", 7)) {
			if (parse_hex(v, &st->cap_prm))
				return -EINVAL;
		} else if (!strncmp(line, "CapEff:", 7)) {
			if (parse_hex(v, &st->cap_eff))
				return -EINVAL;
		} else if (!strncmp(line, "CapBnd:", 7)) {
			if (parse_hex(v, &st->cap_bnd))
				return -EINVAL;
		} else if (!strncmp(line, "CapAmb:", 7)) {
			if (parse_hex(v, &st->cap_amb))
				return -EINVAL;
		} else if (!strncmp(line, "SigBlk:", 7)) {
			if (parse_hex(v, &st->sig_blk))
				return -EINVAL;
			seen |= 8;
		} else if (!strncmp(line, "Umask:", 6)) {
			uint64_t u;
			char *end;

			u = strtoull(v, &end, 8);
			if (end == v)
				return -EINVAL;
			st->umask = (uint32_t)u;
			st->has_umask = true;
		} else if (!strncmp(line, "NSpid:", 6)) {
			uint32_t ids[32];

			if (parse_u32_list(v, ids, ARRAY_SIZE(ids), &n))
				return -EINVAL;
			st->nspid_levels = (int)n;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return seen == 15 ? 0 : -EINVAL;
}

int proc_parse_maps_line(const char *line, struct proc_vma *v)
{
	unsigned long long start, end, pgoff, ino;
	unsigned int maj, min;
	char perms[5];
	int off = 0;

	memset(v, 0, sizeof(*v));
	if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu%n", &start, &end, perms, &pgoff, &maj,
		   &min, &ino, &off) != 7)
		return -EINVAL;
	if (strlen(perms) != 4 || start >= end)
		return -EINVAL;
	v->start = start;
	v->end = end;
	v->pgoff = pgoff;
	v->dev_major = maj;
	v->dev_minor = min;
	v->ino = ino;
	v->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	if (perms[3] != 's' && perms[3] != 'p')
		return -EINVAL;
	v->shared = perms[3] == 's';
	line += off;
	while (*line == ' ')
		line++;
	snprintf(v->path, sizeof(v->path), "%s", line);
	return 0;
}

uint64_t proc_parse_vmflags(const char *line)
{
	static const struct {
		char name[3];
		uint64_t bit;
	} flags[] = {
		{ "dc", VMA_MADV_DONTFORK },   { "dd", VMA_MADV_DONTDUMP },
		{ "hg", VMA_MADV_HUGEPAGE },   { "nh", VMA_MADV_NOHUGEPAGE },
		{ "mg", VMA_MADV_MERGEABLE },  { "wf", VMA_MADV_WIPEONFORK },
		{ "sr", VMA_MADV_SEQUENTIAL }, { "rr", VMA_MADV_RANDOM },
		{ "lo", VMA_LOCKED },	       { "gd", VMA_GROWSDOWN },
	};
	const char *p = strchr(line, ':');
	uint64_t bits = 0;

	if (!p)
		return 0;
	for (p++; *p;) {
		while (*p == ' ')
			p++;
		if (!p[0] || !p[1])
			break;
		for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
			if (p[0] == flags[i].name[0] && p[1] == flags[i].name[1] &&
			    (p[2] == ' ' || p[2] == '\n' || p[2] == '\0'))
				bits |= flags[i].bit;
		while (*p && *p != ' ')
			p++;
	}
	return bits;
}

int proc_parse_fdinfo(const char *buf, struct proc_fdinfo *fi)
{
	const char *pos = strstr(buf, "pos:"), *flags = strstr(buf, "flags:");
	const char *mnt = strstr(buf, "mnt_id:");
	char *end;

	memset(fi, 0, sizeof(*fi));
	if (!pos || !flags)
		return -EINVAL;
	fi->pos = strtoull(pos + 4, &end, 10);
	if (end == pos + 4)
		return -EINVAL;
	fi->flags = (uint32_t)strtoul(flags + 6, &end, 8);
	if (end == flags + 6)
		return -EINVAL;
	if (mnt)
		fi->mnt_id = strtoull(mnt + 7, NULL, 10);
	return 0;
}

static int read_proc_text(pid_t pid, const char *file, char **ret)
{
	char path[PATH_MAX];
	int r;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	r = util_read_file(AT_FDCWD, path, ret, NULL);
	if (r)
		pr_err("cannot read %s: %s\n", path, strerror(-r));
	return r;
}

int proc_read_text(pid_t pid, const char *file, char **ret)
{
	return read_proc_text(pid, file, ret);
}

int proc_read_stat(pid_t pid, struct proc_stat *st)
{
	_cleanup_free_ char *buf = NULL;
	int r = read_proc_text(pid, "stat", &buf);

	if (r)
		return r;
	if (proc_parse_stat(buf, st)) {
		pr_err("cannot parse /proc/%d/stat\n", (int)pid);
		return -EINVAL;
	}
	return 0;
}

int proc_read_status(pid_t pid, pid_t tid, struct proc_status *st)
{
	_cleanup_free_ char *buf = NULL;
	char file[64];
	int r;

	snprintf(file, sizeof(file), "task/%d/status", (int)tid);
	r = read_proc_text(pid, file, &buf);
	if (r)
		return r;
	if (proc_parse_status(buf, st)) {
		pr_err("cannot parse /proc/%d/%s\n", (int)pid, file);
		return -EINVAL;
	}
	return 0;
}

int proc_read_vmas(pid_t pid, bool with_flags, struct proc_vma **ret_vmas, size_t *ret_nr)
{
	_cleanup_free_ char *buf = NULL;
	_cleanup_free_ struct proc_vma *vmas = NULL;
	size_t nr = 0, cap = 0;
	char *line, *save = NULL;
	int r = read_proc_text(pid, with_flags ? "smaps" : "maps", &buf);

	if (r)
		return r;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct proc_vma v;

		if (!strncmp(line, "VmFlags:", 8)) {
			if (nr)
				vmas[nr - 1].madv = proc_parse_vmflags(line);
			continue;
		}
		/* smaps field lines start with a capital letter and a colon. */
		if (strchr(line, ':') && !strchr(line, '-'))
			continue;
		if (proc_parse_maps_line(line, &v))
			continue;
		if (nr == cap) {
			struct proc_vma *nv;

			cap = cap ? cap * 2 : 64;
			nv = realloc(vmas, cap * sizeof(*vmas));
			if (!nv)
				return -ENOMEM;
			vmas = nv;
		}
		vmas[nr++] = v;
	}
	*ret_nr = nr;
	*ret_vmas = TAKE_PTR(vmas);
	return 0;
}

int proc_read_fdinfo(pid_t pid, int fd, struct proc_fdinfo *fi)
{
	_cleanup_free_ char *buf = NULL;
	char file[64];
	int r;

	snprintf(file, sizeof(file), "fdinfo/%d", fd);
	r = read_proc_text(pid, file, &buf);
	if (r)
		return r;
	if (proc_parse_fdinfo(buf, fi)) {
		pr_err("cannot parse /proc/%d/%s\n", (int)pid, file);
		return -EINVAL;
	}
	return 0;
}

int proc_readlink(pid_t pid, const char *what, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	n = readlink(path, buf, len - 1);
	if (n < 0) {
		int r = -errno;

		pr_perror("cannot read link %s", path);
		return r;
	}
	buf[n] = '\0';
	return 0;
}

int proc_fd_copy(pid_t pid, int fd)
{
	_cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int copy, r;

	if (pidfd < 0) {
		r = -errno;
		pr_perror("pid %d: pidfd_open", (int)pid);
		return r;
	}
	copy = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (copy < 0) {
		r = -errno;
		pr_perror("pid %d: fd %d: pidfd_getfd", (int)pid, fd);
		return r;
	}
	return copy;
}
