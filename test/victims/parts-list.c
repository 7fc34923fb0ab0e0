/*
 * The list of parts of one victim program, chosen at build time by
 * test/victims/meson.build (-DWITH_MEM, -DWITH_FILES, ...). Files come
 * last: it records the stdout offset, so no part may print after it.
 */
#include "victim.h"

extern const struct victim_part victim_part_mem, victim_part_signals, victim_part_regs,
	victim_part_files, victim_part_pipes, victim_part_fdkinds, victim_part_unsup, victim_part_unix,
	victim_part_epoll, victim_part_inotify, victim_part_ptimers;

const struct victim_part *const victim_parts[] = {
#ifdef WITH_MEM
	&victim_part_mem,
#endif
#ifdef WITH_SIGNALS
	&victim_part_signals,
#endif
#ifdef WITH_REGS
	&victim_part_regs,
#endif
#ifdef WITH_PIPES
	&victim_part_pipes,
#endif
#ifdef WITH_FDKINDS
	&victim_part_fdkinds,
#endif
#ifdef WITH_EPOLL
	&victim_part_epoll,
#endif
#ifdef WITH_INOTIFY
	&victim_part_inotify,
#endif
#ifdef WITH_PTIMERS
	&victim_part_ptimers,
#endif
#if defined(UNSUP_UFFD) || defined(UNSUP_SOCKET)
	&victim_part_unsup,
#endif
#ifdef WITH_UNIX
	&victim_part_unix,
#endif
#ifdef WITH_FILES
	&victim_part_files,
#endif
	NULL,
};
