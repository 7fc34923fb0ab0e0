/*
 * The request scheduler of the lazy-pages daemon: which pages of one address
 * space are still missing, which are on the wire, and which to ask for next.
 * Pure bookkeeping, no I/O and no logging, so every rule is unit-tested.
 *
 * An address space (struct lp_mm) is a sorted set of regions. A region is a
 * contiguous range of lazy pages at its current address `start`, whose data
 * the source knows at `src` (they differ only after mremap). Each page is
 * missing, in flight, or neither (installed, dropped, or never lazy): two
 * bitmaps per region. A fault takes its page out of the missing set at once,
 * so a second fault on it finds it in flight and is not fetched twice.
 */
#ifndef RELIVE_LAZY_PAGES_LP_SCHED_H
#define RELIVE_LAZY_PAGES_LP_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LP_PAGE 4096ULL
#define LP_NR_HINTS 16

struct lp_region {
	uint64_t start; /* current address of the first page */
	uint64_t src; /* the source's address of the first page */
	uint64_t nr; /* pages */
	uint64_t *missing; /* bit per page */
	uint64_t *inflight;
};

struct lp_mm {
	struct lp_region *regs; /* sorted by start, non-overlapping */
	size_t nr_regs, cap_regs;
	uint64_t nr_missing; /* pages */
	uint64_t nr_inflight;
	uint64_t nr_total; /* lazy pages at load */
	/* recent fault addresses, newest at hints[(hint_pos - 1) % LP_NR_HINTS] */
	uint64_t hints[LP_NR_HINTS];
	unsigned int nr_hints, hint_pos;
	/* address-order cursor of the background stream */
	uint64_t cursor;
};

/* A run to request: nr pages at current address vaddr, known to the source at src. */
struct lp_run {
	uint64_t vaddr;
	uint64_t src;
	uint32_t nr;
};

enum lp_fault_res {
	LP_FAULT_NONE = 0, /* not missing: never lazy, installed or dropped */
	LP_FAULT_FETCH = 1, /* ret holds a run to fetch urgently (now in flight) */
	LP_FAULT_INFLIGHT = 2, /* already on its way: wait for it */
};

void lp_mm_init(struct lp_mm *mm);
void lp_mm_fini(struct lp_mm *mm);
/*
 * Add nr pages of lazy memory at vaddr (the source's address too). Runs may
 * come in any order but must not overlap anything already added: -EEXIST.
 * -EINVAL for an unaligned, empty or wrapping run, -ENOMEM.
 */
int lp_mm_add(struct lp_mm *mm, uint64_t vaddr, uint64_t nr_pages);
/* The child of a fork: what is missing or in flight in FROM is missing in ret. */
int lp_mm_clone(const struct lp_mm *from, struct lp_mm *ret);

/*
 * A fault at addr: if its page is missing, take up to max_pages missing pages
 * starting there (same region, contiguous) into flight and describe them in
 * ret. The address is remembered as a hint for the stream.
 */
enum lp_fault_res lp_mm_fault(struct lp_mm *mm, uint64_t addr, uint32_t max_pages,
			      struct lp_run *ret);
/*
 * Next background batch of up to max_pages (at least 1) contiguous missing
 * pages: after a recent fault first (newest first), then in address order
 * from the cursor, wrapping once. Marks them in flight. False when nothing
 * is missing.
 */
bool lp_mm_next_batch(struct lp_mm *mm, uint32_t max_pages, struct lp_run *ret);
/* Pages of [vaddr, +nr) that are still in flight are now installed. */
void lp_mm_received(struct lp_mm *mm, uint64_t vaddr, uint32_t nr);
/* Pages of [vaddr, +nr) still in flight go back to missing (lost reply, bad checksum). */
void lp_mm_requeue(struct lp_mm *mm, uint64_t vaddr, uint32_t nr);
/* How many pages of [vaddr, +nr) are still in flight. */
uint32_t lp_mm_count_inflight(const struct lp_mm *mm, uint64_t vaddr, uint32_t nr);
/* UNMAP or REMOVE: pages of [start, end) are neither missing nor in flight any more. */
void lp_mm_drop(struct lp_mm *mm, uint64_t start, uint64_t end);
/*
 * mremap moved [from, from + len) to to: pending pages move along, keeping
 * their source address; pages in flight there become missing (the caller
 * discards those replies). Whatever was pending at the destination is
 * dropped first. -EINVAL for unaligned or wrapping ranges, -ENOMEM.
 */
int lp_mm_remap(struct lp_mm *mm, uint64_t from, uint64_t to, uint64_t len);
/* Nothing missing and nothing in flight. */
static inline bool lp_mm_done(const struct lp_mm *mm)
{
	return mm->nr_missing == 0 && mm->nr_inflight == 0;
}
/* The source's address of the lazy page at addr; false if addr is in no region. */
bool lp_mm_src(const struct lp_mm *mm, uint64_t addr, uint64_t *ret_src);
/* Is this page missing / in flight? (tests and sanity checks) */
bool lp_mm_is_missing(const struct lp_mm *mm, uint64_t addr);
bool lp_mm_is_inflight(const struct lp_mm *mm, uint64_t addr);

#endif
