/*
 * GET /api/certgate/v1/admin/trust (role certgate_admin): what the trust
 * snapshot in force holds, by count, with its version, so an operator can
 * see that a change made with the CLI has reached the server.
 */
#include "config.h"
#include "http/http_int.h"

enum stage admin_trust_handle(struct request *r)
{
    struct trust_snapshot *snap = trust_holder_acquire(r->conn->srv->trust);
    json_t *o = json_pack("{s:{s:I, s:I, s:I, s:I, s:I}}", "result", "trust_version",
                          (json_int_t)snap->version, "cas", (json_int_t)snap->pki.n_cas, "crls",
                          (json_int_t)snap->pki.n_crls, "users", (json_int_t)snap->n_users,
                          "mappings", (json_int_t)snap->n_maps);

    trust_release(snap);
    return respond_json(r, 200, o);
}
