/*
 * GET /healthz: liveness, public. Says the server answers; it does not
 * look at the database or the trust data.
 */
#include "config.h"
#include "http/http_int.h"

enum stage healthz_handle(struct request *r)
{
    return respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}
