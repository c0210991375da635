/*
 * GET /api/certgate/v1/whoami: the caller as certgate sees it (user,
 * roles, how it authenticated, the certificate and the mapping that
 * matched), so an integrator can check a setup before pushing data.
 */
#include "config.h"
#include "http/http_int.h"

enum stage whoami_handle(struct request *r)
{
    return respond_json(r, 200,
                        json_pack("{s:o}", "result", identity_json(r->who, IDENTITY_JSON_WHOAMI)));
}
