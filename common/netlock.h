/*
 * The network lock of established TCP connections: an nftables table
 * (family inet) whose rules drop every packet of the locked 4-tuples, in
 * both directions, from the moment the dump reads a connection until the
 * restore has its socket back in place. Without it the peer's packets would
 * meet a closed port and the kernel would answer with a RST. The rules are
 * applied with the `nft` command (package nftables), one script per call.
 */
#ifndef RELIVE_COMMON_NETLOCK_H
#define RELIVE_COMMON_NETLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NETLOCK_TABLE_PREFIX "relive_lock_"
#define NETLOCK_TABLE_MAX 48

/* One connection: addresses are network-order bytes (4 or 16), ports host order. */
struct netlock_conn {
	int family; /* AF_INET or AF_INET6 */
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
};

/* The table name of the lock of the dump of ROOT_PID, in RET (NETLOCK_TABLE_MAX). */
void netlock_table_name(int root_pid, char *ret, size_t len);
/* Create TABLE if needed and drop every packet of C from now on. */
int netlock_add(const char *table, const struct netlock_conn *c);
/* Remove TABLE and its rules; 0 if it did not exist. */
int netlock_remove(const char *table);

#endif
