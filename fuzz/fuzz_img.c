/*
 * libFuzzer target for the image reader and `relive show`'s JSON writer.
 * Build and run: docs/testing.md. Inputs that once crashed it are kept in
 * test/unit/images/regress/ and replayed by the unit suite.
 */
#include "img_feed.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A harness failure (no memfd) is not a finding: stop loudly instead. */
	if (img_feed(data, size))
		abort();
	return 0;
}
