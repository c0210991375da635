#include "config.h"
#include "base/uuid.h"
#include "base/crypto.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>
void dtable_uuid(char out[37])
{
    unsigned char b[16];
    char hex[33];

    if (crypto_random(b, sizeof(b), false))
        memset(b, 0, sizeof(b));                  /* never reached with a working GnuTLS */
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    cg_hex(b, sizeof(b), hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}
