/*
 * What the parasite test victim reports about itself once set up (written in
 * binary to its ready pipe), and the pattern its memory holds: shared by the
 * victim and the test drivers.
 */
#ifndef RELIVE_TEST_PARASITE_VICTIM_H
#define RELIVE_TEST_PARASITE_VICTIM_H

#include <stdint.h>

#define VICTIM_MAGIC 0x56494354494d3031ULL

/* Interval and first value of each itimer the victim arms (microseconds). */
#define VICTIM_ITIMER_REAL_INTERVAL_US 1000250000ULL
#define VICTIM_ITIMER_REAL_VALUE_US 900000000ULL
#define VICTIM_ITIMER_VIRT_INTERVAL_US 500000000ULL
#define VICTIM_ITIMER_VIRT_VALUE_US 400000000ULL
#define VICTIM_ITIMER_PROF_INTERVAL_US 700125000ULL
#define VICTIM_ITIMER_PROF_VALUE_US 600000000ULL

#define VICTIM_ALTSTACK_SIZE (64 * 1024)

struct victim_ksigaction {
	uint64_t handler, flags, restorer, mask;
};

struct victim_report {
	uint64_t magic;
	uint64_t region, region_len;
	uint64_t altstack_sp, altstack_size;
	uint64_t counter_addr; /* the main loop's counter, for process_vm_readv */
	uint64_t handler_usr1;
	int32_t reader_tid;
	int32_t pad;
	struct victim_ksigaction act[64]; /* raw rt_sigaction, index signo - 1 */
};

static inline uint64_t victim_pattern(uint64_t word_index)
{
	return word_index * 0x9E3779B97F4A7C15ULL + 0x0123456789ULL;
}

/* The byte at OFF of the victim's region. */
static inline uint8_t victim_byte(uint64_t off)
{
	return (uint8_t)(victim_pattern(off / 8) >> (8 * (off % 8)));
}

#endif
