-- PostgreSQL twin of schema/005_notify.sql: the version counters' triggers
-- also announce the new value on the channels certgate_trust and
-- certgate_resource (LISTEN/NOTIFY). PostgreSQL delivers announcements at
-- COMMIT, to every session listening, and drops them at ROLLBACK; the
-- payload is the version, so a node can tell a stale announcement from a
-- new one. A node that missed some (its connection was down) reads the
-- version again when it reconnects.

CREATE OR REPLACE FUNCTION sys_bump_trust() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v BIGINT;
BEGIN
    UPDATE sys_meta SET value = value + 1 WHERE key = 'trust_version' RETURNING value INTO v;
    PERFORM pg_notify('certgate_trust', v::text);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sys_bump_resource() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v BIGINT;
BEGIN
    UPDATE sys_meta SET value = value + 1 WHERE key = 'resource_version' RETURNING value INTO v;
    PERFORM pg_notify('certgate_resource', v::text);
    RETURN NULL;
END $$;
