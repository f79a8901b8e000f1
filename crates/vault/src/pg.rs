//! PostgreSQL: logical dumps (pg_dump, streamed), physical base backups (pg_basebackup,
//! streamed) with continuous WAL archiving for point-in-time restore, and warm standbys.
