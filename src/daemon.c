#include "config.h"
#include "daemon.h"

#include <stdio.h>

int daemon_main(const char *db_path, int argc, char **argv)
{
    (void)db_path;
    (void)argc;
    (void)argv;
    fprintf(stderr, "certgate serve: not built yet\n");
    return 2;
}
