#include "config.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/utf8.h"

/* ---- handlers ---- */

enum stage h_healthz(struct request *r)
{
    return respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

enum stage h_whoami(struct request *r)
{
    const struct identity *id = r->who;
    json_t *roles = json_array(), *result;

    for (size_t i = 0; i < id->n_roles; i++)
        json_array_append_new(roles, json_string(id->roles[i]));
    result = json_pack("{s:s, s:o, s:s}", "user", id->user, "roles", roles, "auth",
                       auth_method_name(id->method));
    if (result && id->has_cert) {
        char nb[21], na[21];

        cg_time_iso(id->cert.not_before, nb);
        cg_time_iso(id->cert.not_after, na);
        json_object_set_new(result, "certificate",
                            json_pack("{s:o, s:o, s:s, s:s, s:s, s:s, s:I, s:s?}", "subject",
                                      utf8_json(id->cert.subject), "issuer",
                                      utf8_json(id->cert.issuer), "serial", id->cert.serial,
                                      "fingerprint", id->cert.fingerprint, "not_before", nb,
                                      "not_after", na, "mapping_id", (json_int_t)id->mapping_id,
                                      "mapping_kind", id->mapping_kind));
    } else if (result) {
        json_object_set_new(result, "certificate", json_null());
    }
    return respond_json(r, 200, json_pack("{s:o}", "result", result));
}

enum stage h_admin_trust(struct request *r)
{
    struct trust_snapshot *snap = trust_holder_acquire(r->conn->srv->trust);
    json_t *o = json_pack("{s:{s:I, s:I, s:I, s:I, s:I}}", "result", "trust_version",
                          (json_int_t)snap->version, "cas", (json_int_t)snap->pki.n_cas, "crls",
                          (json_int_t)snap->pki.n_crls, "users", (json_int_t)snap->n_users,
                          "mappings", (json_int_t)snap->n_maps);

    trust_release(snap);
    return respond_json(r, 200, o);
}
