/*
 * cidr: lists of IPv4 and IPv6 address blocks ("10.0.0.0/8,::1/128"), as
 * --trusted-proxy names them, and whether an address is in one. Relies on
 * libc only. Does not look host names up and does not know sockets beyond
 * struct sockaddr.
 */
#ifndef CG_CIDR_H
#define CG_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/util.h"

/** One address block. */
struct cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network address (4 bytes used for AF_INET), host bits zero */
    unsigned bits;          /* prefix length: 0..32 or 0..128 */
};

/** A list of blocks. */
struct cidr_list {
    struct cidr *items; /* the blocks, in the order given */
    size_t count;       /* how many */
};

/**
 * Parse a comma-separated list of blocks: "ADDR/BITS" or a bare address
 * (/32 or /128). An IPv4 address never matches inside ::ffff:0:0/96 unless
 * that block is named; host bits must be zero ("10.0.0.1/8" is refused: it
 * is probably a mistake).
 * @param text the list (spaces around the commas are allowed)
 * @param out the list (free with cidr_list_free); left empty on error
 * @param err which entry is wrong and why
 * @return CG_OK, CG_EINVAL or CG_ENOMEM
 */
int cidr_list_parse(const char *text, struct cidr_list *out, struct cg_err *err);

/**
 * Whether an address is in one of the blocks. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is matched as the IPv4 address it carries.
 * @param l the list
 * @param sa an AF_INET or AF_INET6 address (other families never match)
 * @return true when some block holds it
 */
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);

/** Free the blocks of a list (the struct itself is the caller's). */
void cidr_list_free(struct cidr_list *l);

#endif
