/*
 * cli: the `certgate` command line: argument parsing, the admin commands for
 * the CA chain table, CRLs, users and mappings, and their human and --json
 * output. Relies on store, pki, password and (for serve/check) daemon and
 * trust. Does not hold any state between invocations.
 */
#ifndef CG_CLI_H
#define CG_CLI_H

/**
 * Run one certgate command.
 * @param argc as given to main
 * @param argv as given to main
 * @return process exit status (0 success, 1 refused or failed, 2 usage error)
 */
int cli_main(int argc, char **argv);

#endif
