/*
 * uuid: random UUIDs (version 4), for the sys_id of records. Relies on
 * base/crypto's random generator. Does not parse UUIDs.
 */
#ifndef CG_UUID_H
#define CG_UUID_H

/** A fresh UUID v4 from GnuTLS's random generator, lower-case. */
void dtable_uuid(char out[37]);

#endif
