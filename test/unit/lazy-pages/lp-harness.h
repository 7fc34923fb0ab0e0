/*
 * Shared definitions of the lazy-pages test harness: the synthetic memory
 * layout (VMAs and pagemap runs), the deterministic page contents, the image
 * writer and the fake page server (lp-fake.c) and its misbehaviours.
 */
#ifndef RELIVE_TEST_LP_HARNESS_H
#define RELIVE_TEST_LP_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define H_PAGE 4096ULL
#define H_MAX_VMAS 4
#define H_MAX_RUNS 8

struct h_run {
	uint64_t vaddr;
	uint64_t nr;
	uint32_t flags; /* PE_LAZY / PE_ZERO */
};

struct h_vma {
	uint64_t start, end;
};

struct h_layout {
	uint32_t pid;
	struct h_vma vmas[H_MAX_VMAS];
	int nr_vmas;
	struct h_run runs[H_MAX_RUNS];
	int nr_runs;
	uint64_t lazy_pages;
	uint8_t token[32];
};

enum h_server_mode {
	HS_GOOD,
	HS_BAD_TOKEN, /* answers -EACCES */
	HS_GARBAGE, /* garbage instead of a reply header */
	HS_OUT_OF_RANGE, /* replies for a run that was not asked */
	HS_BAD_CSUM,
	HS_STALL, /* never answers a GET */
	HS_VANISH, /* serves a few replies, then exits for good */
	HS_DROP_ONCE, /* closes the stream connection once, then behaves */
};

/* The word at addr of process pid, as the source serves it. */
static inline uint64_t h_word(uint64_t addr, uint32_t pid)
{
	return addr ^ ((uint64_t)pid * 0x9E3779B97F4A7C15ULL);
}

void h_layout_make(struct h_layout *l, uint32_t pid, uint64_t lazy_mb);
/* The run holding addr, or NULL. */
const struct h_run *h_layout_run(const struct h_layout *l, uint64_t addr);
int h_write_images(const char *dir, const struct h_layout *l);

/* Start the fake server in a forked process; returns its pid, the port in *ret_port. */
pid_t h_server_start(const struct h_layout *l, enum h_server_mode mode, uint16_t *ret_port);

#endif
