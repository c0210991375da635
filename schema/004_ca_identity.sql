-- certgate schema version 4: a CA is its name and key, not one certificate
-- of it. A CRL belongs to the key that signed it (issuer name and
-- signer_spki), not to one record of the CA table: it applies whichever
-- copy of the CA (renewed, cross-signed, sent by the client) a chain runs
-- through, and it outlives the deletion of a record. A deleted CA leaves its
-- key in sys_ca_deleted, so that every copy of it stays refused until an
-- admin adds it again.

CREATE TABLE sys_crl_v4 (
    id            INTEGER PRIMARY KEY,
    issuer        TEXT    NOT NULL,            -- RFC 4514
    signer_spki   TEXT    NOT NULL,            -- SHA-256 of the public key that signed it, hex
    fingerprint   TEXT    NOT NULL UNIQUE,
    this_update   INTEGER NOT NULL,
    next_update   INTEGER NOT NULL DEFAULT 0,  -- 0: none given
    revoked_count INTEGER NOT NULL,
    der           BLOB    NOT NULL,
    created_on    TEXT    NOT NULL
);
INSERT INTO sys_crl_v4 (id, issuer, signer_spki, fingerprint, this_update, next_update,
                        revoked_count, der, created_on)
    SELECT c.id, c.issuer, a.spki_sha256, c.fingerprint, c.this_update, c.next_update,
           c.revoked_count, c.der, c.created_on
    FROM sys_crl c JOIN sys_ca_certificate a ON a.id = c.ca_id;
DROP TABLE sys_crl;
ALTER TABLE sys_crl_v4 RENAME TO sys_crl;
CREATE INDEX sys_crl_scope ON sys_crl (issuer, signer_spki);
CREATE TRIGGER sys_crl_ai AFTER INSERT ON sys_crl
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_crl_ad AFTER DELETE ON sys_crl
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;

CREATE TABLE sys_ca_deleted (
    spki_sha256 TEXT    PRIMARY KEY,         -- the deleted CA's public key, SHA-256 hex
    subject     TEXT    NOT NULL,            -- its subject, for messages
    fingerprint TEXT    NOT NULL,            -- the last record of it that was deleted
    deleted_at  INTEGER NOT NULL,            -- seconds since the epoch, UTC
    deleted_on  TEXT    NOT NULL             -- ISO 8601 UTC
);
CREATE TRIGGER sys_ca_deleted_ai AFTER INSERT ON sys_ca_deleted
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;
CREATE TRIGGER sys_ca_deleted_ad AFTER DELETE ON sys_ca_deleted
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version'; END;

-- Copies of one CA share its state: a disabled copy disables the CA (the
-- verifier refuses a key any disabled record carries), so make the copies
-- agree now, as `ca disable` and `ca enable` keep them from here on.
UPDATE sys_ca_certificate SET active = 0
    WHERE active = 1 AND EXISTS (SELECT 1 FROM sys_ca_certificate o
        WHERE o.spki_sha256 = sys_ca_certificate.spki_sha256 AND o.active = 0);
