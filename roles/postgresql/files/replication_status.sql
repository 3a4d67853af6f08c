-- One row per connected replica (pg_stat_replication), readable by the application user, with
-- the lag in bytes between the WAL this server has and what the replica has replayed.
DROP VIEW IF EXISTS public.replication_status;
CREATE VIEW public.replication_status AS
SELECT
    r.pid,
    r.usename,
    r.client_addr,
    r.application_name,
    r.state,
    r.sync_state,
    r.sync_priority,
    r.sent_lsn,
    r.write_lsn,
    r.flush_lsn,
    r.replay_lsn,
    r.write_lag,
    r.flush_lag,
    r.replay_lag,
    pg_wal_lsn_diff(
        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
        r.replay_lsn
    ) AS lag_bytes,
    r.backend_start,
    r.reply_time
FROM pg_stat_replication AS r;
