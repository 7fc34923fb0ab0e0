/*
 * The body of the image fuzzer, shared with the unit test that replays the
 * inputs the fuzzer once crashed on (test/unit/images/regress/).
 */
#ifndef RELIVE_FUZZ_IMG_FEED_H
#define RELIVE_FUZZ_IMG_FEED_H

#include <stddef.h>
#include <stdint.h>

/*
 * Feed DATA to the image reader as a file of every kind (a valid header of
 * that kind, then DATA) and once as it is, reading every entry and rendering
 * it as JSON into /dev/null. Aborts if a failure comes without an error
 * line naming the file and offset. Returns 0, or -errno if the harness
 * itself could not run (memfd, /dev/null).
 */
int img_feed(const uint8_t *data, size_t size);

#endif
