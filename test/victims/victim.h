/*
 * The shared frame of the test victims: a victim is a list of parts (memory,
 * files, signals, registers), each with a setup that builds its state and a
 * check that verifies it after a dump/restore. victim.c owns the protocol
 * with the integration drivers (arguments, READY file, SIGUSR2 trigger,
 * verdict file) and the main loop; the parts own nothing of that.
 */
#ifndef RELIVE_TEST_VICTIM_H
#define RELIVE_TEST_VICTIM_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct victim_ctx {
	const char *workdir;	/* --workdir: absolute path, parts create their files here */
	unsigned long mib;	/* --mib: memory to spread over the mappings */
	void *stack_area;	/* a buffer in main()'s frame, live until exit */
	size_t stack_size;
};

/* Returned by a part's setup when the machine lacks what it needs. */
#define VICTIM_UNSUPPORTED 1

struct victim_part {
	const char *name;
	/* Build the state. 0, VICTIM_UNSUPPORTED or -1, with the reason in err. */
	int (*setup)(struct victim_ctx *ctx, char *err, size_t len);
	/* Verify the state after the trigger. 0, or -1 with the reason in err. */
	int (*check)(struct victim_ctx *ctx, char *err, size_t len);
	/*
	 * Optional: the part's own main loop, run until victim_stop is set.
	 * It must advance victim_counter. 0, or -1 with the reason in err.
	 */
	int (*run)(struct victim_ctx *ctx, char *err, size_t len);
};

/* Each victim program defines this NULL-terminated list. */
extern const struct victim_part *const victim_parts[];

/* Set by the SIGUSR2 handler: leave the main loop and run the checks. */
extern volatile int victim_stop;
/* Advanced by the main loop; the driver reads it through /proc/PID/mem. */
extern volatile uint64_t victim_counter;

/* Format a failure reason into err; returns -1. */
int victim_fail(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Find the /proc/self/maps line that contains [addr, addr + len): its
 * permissions ("rw-p") and path ("" for none) are copied out. 0 or -1.
 */
int victim_find_vma(const void *addr, size_t len, char ret_perms[5], char *ret_path,
		    size_t path_len);

/* A 64-bit mix of x and seed (splitmix64): the page patterns. */
static inline uint64_t victim_mix(uint64_t x, uint64_t seed)
{
	uint64_t z = x ^ seed;

	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#endif
