-- certgate schema version 5: on PostgreSQL, the transaction that changes
-- trust data or resources also announces the new version (NOTIFY), so that
-- every node reloads at once instead of at its next poll. SQLite has no
-- announcements (one machine's server polls its file): nothing changes
-- here, and the version number stays the same on both databases.
SELECT 1;
