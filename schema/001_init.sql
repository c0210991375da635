-- certgate schema version 1: the CA certificate chain table, CRLs, users,
-- roles and user-to-certificate mappings. Applied by `certgate init` in one
-- transaction; PRAGMA user_version records the version.

CREATE TABLE sys_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- trust_version grows on every change to trust data (triggers below), so a
-- running server notices changes made by the CLI from another process.
INSERT INTO sys_meta (key, value) VALUES ('trust_version', 1);

CREATE TABLE sys_ca_certificate (
    id          INTEGER PRIMARY KEY,
    name        TEXT,
    subject     TEXT    NOT NULL,            -- RFC 4514
    issuer      TEXT    NOT NULL,            -- RFC 4514
    serial      TEXT    NOT NULL,            -- hex
    fingerprint TEXT    NOT NULL UNIQUE,     -- SHA-256 of the DER, hex
    spki_sha256 TEXT    NOT NULL,
    ski         TEXT    NOT NULL DEFAULT '',
    aki         TEXT    NOT NULL DEFAULT '',
    not_before  INTEGER NOT NULL,            -- seconds since the epoch, UTC
    not_after   INTEGER NOT NULL,
    is_root     INTEGER NOT NULL CHECK (is_root IN (0, 1)),   -- self-signed
    path_len    INTEGER NOT NULL DEFAULT -1,
    der         BLOB    NOT NULL,
    pem         TEXT    NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_on  TEXT    NOT NULL,            -- ISO 8601 UTC
    updated_on  TEXT    NOT NULL
);
CREATE INDEX sys_ca_certificate_subject ON sys_ca_certificate (subject);

CREATE TABLE sys_crl (
    id            INTEGER PRIMARY KEY,
    ca_id         INTEGER NOT NULL REFERENCES sys_ca_certificate (id) ON DELETE CASCADE,
    issuer        TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL UNIQUE,
    this_update   INTEGER NOT NULL,
    next_update   INTEGER NOT NULL DEFAULT 0,  -- 0: none given
    revoked_count INTEGER NOT NULL,
    der           BLOB    NOT NULL,
    created_on    TEXT    NOT NULL
);
CREATE INDEX sys_crl_ca ON sys_crl (ca_id);

CREATE TABLE sys_user (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    locked        INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
    password_hash TEXT,                      -- "pbkdf2-sha256$iter$salt$hash", NULL: no password
    created_on    TEXT    NOT NULL,
    updated_on    TEXT    NOT NULL
);

CREATE TABLE sys_user_role (
    user_id INTEGER NOT NULL REFERENCES sys_user (id) ON DELETE CASCADE,
    role    TEXT    NOT NULL,
    PRIMARY KEY (user_id, role)
);

-- kind 'cert': the exact leaf (by fingerprint); 'pinned': an exact
-- self-signed leaf; 'rule': a subject field or SPKI bound to one issuing CA.
CREATE TABLE sys_user_certificate (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES sys_user (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('cert', 'pinned', 'rule')),
    name        TEXT,
    fingerprint TEXT UNIQUE,
    subject     TEXT,
    issuer      TEXT,
    serial      TEXT,
    not_before  INTEGER,
    not_after   INTEGER,
    der         BLOB,
    ca_id       INTEGER REFERENCES sys_ca_certificate (id) ON DELETE CASCADE,
    match_field TEXT CHECK (match_field IN ('cn', 'dn', 'email', 'dns', 'uri', 'spki')),
    match_value TEXT,
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_on  TEXT    NOT NULL,
    CHECK ((kind = 'rule') = (ca_id IS NOT NULL AND match_field IS NOT NULL
                              AND match_value IS NOT NULL AND fingerprint IS NULL)),
    CHECK ((kind <> 'rule') = (fingerprint IS NOT NULL AND der IS NOT NULL))
);
CREATE INDEX sys_user_certificate_user ON sys_user_certificate (user_id);
CREATE UNIQUE INDEX sys_user_certificate_rule
    ON sys_user_certificate (ca_id, match_field, match_value) WHERE kind = 'rule';

CREATE TRIGGER sys_ca_certificate_ai AFTER INSERT ON sys_ca_certificate
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_ca_certificate_au AFTER UPDATE ON sys_ca_certificate
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_ca_certificate_ad AFTER DELETE ON sys_ca_certificate
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_crl_ai AFTER INSERT ON sys_crl
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_crl_ad AFTER DELETE ON sys_crl
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_user_ai AFTER INSERT ON sys_user
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_user_au AFTER UPDATE ON sys_user
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_user_ad AFTER DELETE ON sys_user
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_user_role_ai AFTER INSERT ON sys_user_role
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_user_role_ad AFTER DELETE ON sys_user_role
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_user_certificate_ai AFTER INSERT ON sys_user_certificate
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_user_certificate_au AFTER UPDATE ON sys_user_certificate
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_user_certificate_ad AFTER DELETE ON sys_user_certificate
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
