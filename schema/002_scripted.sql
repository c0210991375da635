-- certgate schema version 2: data tables, scripted resources and idempotency
-- keys. A resource_version counter, bumped by triggers, tells a running
-- server to reload its routes and scripts.

INSERT INTO sys_meta (key, value) VALUES ('resource_version', 1);

-- Registry of the data tables admins create with `certgate table create`.
CREATE TABLE sys_db_table (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    columns    TEXT NOT NULL,            -- JSON: [{"name":..,"type":..}]
    roles      TEXT NOT NULL DEFAULT '', -- comma list; '' = not exposed by the Table API
    created_on TEXT NOT NULL,
    updated_on TEXT NOT NULL
);

-- Scripted REST resources (ServiceNow's sys_ws_operation).
CREATE TABLE sys_ws_operation (
    id          INTEGER PRIMARY KEY,
    namespace   TEXT NOT NULL,
    api         TEXT NOT NULL,
    version     TEXT NOT NULL DEFAULT '',   -- '' = unversioned
    method      TEXT NOT NULL CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    path        TEXT NOT NULL,              -- template: /orders/{id}
    script_name TEXT NOT NULL,
    script      TEXT NOT NULL,
    roles       TEXT NOT NULL DEFAULT '',
    auth        TEXT NOT NULL DEFAULT 'any' CHECK (auth IN ('any', 'cert', 'basic', 'none')),
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_on  TEXT NOT NULL,
    updated_on  TEXT NOT NULL,
    UNIQUE (namespace, api, version, method, path)
);

-- Responses of requests sent with an Idempotency-Key, written in the same
-- transaction as the request's rows.
CREATE TABLE sys_idempotency (
    user_name  TEXT NOT NULL,
    idem_key   TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,            -- seconds since the epoch
    PRIMARY KEY (user_name, idem_key)
);
CREATE INDEX sys_idempotency_created ON sys_idempotency (created_at);

CREATE TRIGGER sys_ws_operation_ai AFTER INSERT ON sys_ws_operation
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'resource_version'; END;
CREATE TRIGGER sys_ws_operation_au AFTER UPDATE ON sys_ws_operation
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'resource_version'; END;
CREATE TRIGGER sys_ws_operation_ad AFTER DELETE ON sys_ws_operation
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'resource_version'; END;
CREATE TRIGGER sys_db_table_ai AFTER INSERT ON sys_db_table
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'resource_version'; END;
CREATE TRIGGER sys_db_table_au AFTER UPDATE ON sys_db_table
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'resource_version'; END;
CREATE TRIGGER sys_db_table_ad AFTER DELETE ON sys_db_table
BEGIN UPDATE sys_meta SET value = value + 1 WHERE key = 'resource_version'; END;
