/*
 * Readers of /proc for the dumper: stat, status, maps + smaps VmFlags,
 * fdinfo. Parsing is split from reading so that the parsers can be fed
 * arbitrary text by unit tests and fuzzers. Parsers return 0 / -EINVAL and
 * never log; the readers log what failed, naming the pid and file.
 */
#ifndef RELIVE_DUMPER_PROC_H
#define RELIVE_DUMPER_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_stat {
	pid_t pid;
	char comm[64];
	char state;
	pid_t ppid, pgid, sid;
	unsigned long flags;
	uint64_t start_code, end_code, start_stack;
	uint64_t start_data, end_data, start_brk;
	uint64_t arg_start, arg_end, env_start, env_end;
	int exit_code;
};

struct proc_status {
	uint32_t uid[4], gid[4]; /* real, effective, saved, fs */
	uint32_t groups[64];
	unsigned int nr_groups;
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	uint64_t sig_blk;
	uint32_t umask;
	bool has_umask;
	int nspid_levels;
};

#define PF_KTHREAD 0x00200000

struct proc_vma {
	uint64_t start, end, pgoff;
	uint32_t prot; /* PROT_* */
	bool shared;
	uint32_t dev_major, dev_minor;
	uint64_t ino;
	char path[4096];
	uint64_t madv; /* VMA_MADV_* from smaps VmFlags */
};

struct proc_fdinfo {
	uint64_t pos;
	uint32_t flags;
	uint64_t mnt_id;
};

int proc_parse_stat(const char *buf, struct proc_stat *ret);
int proc_parse_status(const char *buf, struct proc_status *ret);
/* One maps line (without the trailing newline) into vma (madv cleared). */
int proc_parse_maps_line(const char *line, struct proc_vma *ret);
/* A "VmFlags: rd wr ..." line into VMA_MADV_* bits. */
uint64_t proc_parse_vmflags(const char *line);
int proc_parse_fdinfo(const char *buf, struct proc_fdinfo *ret);

int proc_read_stat(pid_t pid, struct proc_stat *ret);
int proc_read_status(pid_t pid, pid_t tid, struct proc_status *ret);
/*
 * All VMAs of pid; *ret_vmas is malloc'ed. With_flags reads /proc/PID/smaps
 * for VmFlags (madv), which costs time in proportion to resident memory;
 * without, the cheap /proc/PID/maps (madv left 0).
 */
int proc_read_vmas(pid_t pid, bool with_flags, struct proc_vma **ret_vmas, size_t *ret_nr);
int proc_read_fdinfo(pid_t pid, int fd, struct proc_fdinfo *ret);
/* The whole of /proc/PID/<file> (fdinfo/N, timers, mountinfo, ...), malloc'ed. */
int proc_read_text(pid_t pid, const char *file, char **ret);
/* readlink of /proc/PID/<what> (exe, cwd, root, fd/N) into buf. */
int proc_readlink(pid_t pid, const char *what, char *buf, size_t len);

/*
 * A copy of descriptor FD of PID in this process (pidfd_getfd: the same open
 * file description, so offsets and queues are the victim's), or -errno
 * after a log line naming pid and fd.
 */
int proc_fd_copy(pid_t pid, int fd);

#endif
