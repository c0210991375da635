/*
 * check: `certgate check CLIENT.pem`, which explains what the server would
 * decide for a certificate, using the very functions the server uses
 * (pki_verify through identity_from_cert). Relies on store, trust, identity.
 */
#ifndef CG_CLI_CHECK_H
#define CG_CLI_CHECK_H

#include <stdbool.h>

/**
 * Run `certgate check`.
 * @param db_path database file
 * @param json print one JSON object instead of text
 * @param argc arguments, argv[0] is "check"
 * @param argv their values
 * @return 0 accepted, 1 refused, 2 usage or file error
 */
int check_main(const char *db_path, bool json, int argc, char **argv);

#endif
