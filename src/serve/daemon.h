/*
 * daemon: `certgate serve`, the HTTPS gateway. Relies on every module before
 * it. Does not parse the global command line beyond its own flags.
 */
#ifndef CG_DAEMON_H
#define CG_DAEMON_H

/**
 * Run `certgate serve` until SIGTERM/SIGINT.
 * @param db_flag the database --db named, or NULL: then the config file's db
 *        key, $CERTGATE_DB or ./certgate.db (settings_database)
 * @param argc arguments after "serve"
 * @param argv their values
 * @return process exit status
 */
int daemon_main(const char *db_flag, int argc, char **argv);

#endif
