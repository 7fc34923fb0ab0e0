/*
 * Counters of the lazy-pages daemon: fault service latencies (from reading
 * the fault message to the UFFDIO_COPY that served it), pages by fault and by
 * stream, bytes and time; the summary printed at the end, the same in JSON
 * for --stats-json, and the progress line on a TTY.
 */
#include "lp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void lp_stats_fault(struct lp_stats *st, uint64_t lat_us, uint64_t now_us)
{
	if (lat_us > st->max_lat_us) {
		st->max_lat_us = lat_us;
		st->max_lat_at_us = now_us;
	}
	if (st->nr_lat == st->cap_lat) {
		size_t cap = st->cap_lat ? st->cap_lat * 2 : 4096;
		uint32_t *n = realloc(st->lat, cap * sizeof(*n));

		if (!n)
			return; /* a lost sample is not worth failing a migration */
		st->lat = n;
		st->cap_lat = cap;
	}
	st->lat[st->nr_lat++] = lat_us > UINT32_MAX ? UINT32_MAX : (uint32_t)lat_us;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

struct lp_summary {
	double secs, mib_s;
	double max_at_s; /* when the slowest fault was served, from the first process ready */
	uint64_t pages, bytes;
	uint32_t p50, p90, p99, p999, max;
	size_t over_1ms;
};

static void summarize(struct lp_ctx *ctx, struct lp_summary *s)
{
	struct lp_stats *st = &ctx->st;
	uint64_t end = st->t_end_us ? st->t_end_us : util_now_us();
	uint64_t start = st->t_first_ready_us ? st->t_first_ready_us : st->t_start_us;

	memset(s, 0, sizeof(*s));
	s->pages = st->pages_fault + st->pages_stream;
	s->bytes = st->bytes_rx;
	s->secs = (double)(end - start) / 1e6;
	if (s->secs > 0)
		s->mib_s = (double)s->bytes / (1 << 20) / s->secs;
	if (st->nr_lat) {
		qsort(st->lat, st->nr_lat, sizeof(*st->lat), cmp_u32);
		s->p50 = st->lat[(st->nr_lat - 1) / 2];
		s->p90 = st->lat[(st->nr_lat - 1) * 90 / 100];
		s->p99 = st->lat[(st->nr_lat - 1) * 99 / 100];
		s->p999 = st->lat[(st->nr_lat - 1) * 999 / 1000];
		s->max = st->lat[st->nr_lat - 1];
		for (size_t i = st->nr_lat; i > 0 && st->lat[i - 1] > 1000; i--)
			s->over_1ms++;
		if (st->max_lat_at_us > start)
			s->max_at_s = (double)(st->max_lat_at_us - start) / 1e6;
	}
}

void lp_stats_progress(struct lp_ctx *ctx, uint64_t now, bool final)
{
	struct lp_stats *st = &ctx->st;
	uint64_t pages = st->pages_fault + st->pages_stream;
	double mib_s;

	if (!st->tty || (!final && now - st->last_progress_us < 250000))
		return;
	mib_s = st->last_progress_us ?
			(double)(pages - st->last_progress_pages) * 4096 / (1 << 20) /
				((double)(now - st->last_progress_us) / 1e6) :
			0;
	fprintf(stderr, "\rlazy-pages: %llu / %llu pages in, %.1f MiB/s   %s",
		(unsigned long long)pages, (unsigned long long)ctx->total_pages, mib_s,
		final ? "\n" : "");
	st->last_progress_us = now;
	st->last_progress_pages = pages;
}

void lp_stats_report(struct lp_ctx *ctx)
{
	struct lp_summary s;

	summarize(ctx, &s);
	pr_msg("lazy-pages: %llu pages in (%llu by fault, %llu by stream, %llu zero-filled, %llu dropped), %.1f MiB in %.3f s (%.1f MiB/s); %llu faults served, latency p50 %u us, p99 %u us, max %u us\n",
	       (unsigned long long)s.pages, (unsigned long long)ctx->st.pages_fault,
	       (unsigned long long)ctx->st.pages_stream, (unsigned long long)ctx->st.pages_zero,
	       (unsigned long long)ctx->st.pages_dropped, (double)s.bytes / (1 << 20), s.secs,
	       s.mib_s, (unsigned long long)ctx->st.nr_lat, s.p50, s.p99, s.max);
}

int lp_stats_json(struct lp_ctx *ctx, const char *path)
{
	struct lp_summary s;
	FILE *f;
	int ret = 0;

	summarize(ctx, &s);
	f = fopen(path, "we");
	if (!f) {
		pr_perror("cannot write the stats to %s", path);
		return -errno;
	}
	fprintf(f,
		"{\n  \"pages\": %llu,\n  \"pages_fault\": %llu,\n  \"pages_stream\": %llu,\n"
		"  \"pages_zero\": %llu,\n  \"pages_dropped\": %llu,\n  \"pages_total\": %llu,\n"
		"  \"bytes\": %llu,\n  \"seconds\": %.6f,\n  \"mib_per_s\": %.1f,\n"
		"  \"faults\": %llu,\n  \"faults_fetched\": %zu,\n"
		"  \"fault_latency_us\": { \"p50\": %u, \"p90\": %u, \"p99\": %u, \"p999\": %u, "
		"\"max\": %u },\n"
		"  \"faults_over_1ms\": %zu,\n  \"slowest_fault_at_s\": %.6f\n}\n",
		(unsigned long long)s.pages, (unsigned long long)ctx->st.pages_fault,
		(unsigned long long)ctx->st.pages_stream, (unsigned long long)ctx->st.pages_zero,
		(unsigned long long)ctx->st.pages_dropped, (unsigned long long)ctx->total_pages,
		(unsigned long long)s.bytes, s.secs, s.mib_s, (unsigned long long)ctx->st.faults,
		ctx->st.nr_lat, s.p50, s.p90, s.p99, s.p999, s.max, s.over_1ms, s.max_at_s);
	if (fclose(f)) {
		ret = -errno;
		pr_perror("cannot write the stats to %s", path);
	}
	return ret;
}
