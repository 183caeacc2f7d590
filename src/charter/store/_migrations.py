"""Schema migrations, per backend: append-only and numbered.

Never edit one that has shipped; add the next. Each store records the versions it applied in
its `schema_version` table.

The backends number their migrations apart: PostgreSQL arrived when SQLite was at version 5,
and its version 1 is SQLite's version 5 in PostgreSQL's own types.
"""

from __future__ import annotations

__all__ = ["POSTGRES_MIGRATIONS", "SQLITE_MIGRATIONS"]

# The one change to a stored event the database allows: a format-2 event's payload replaced by
# a retention marker, every other column as it was. `IS NOT DISTINCT FROM` (not `=`, which is
# NULL against a NULL and so lets a NULL through) and `substr` (not `LIKE`, which SQLite
# matches without regard to case) keep it exactly that.
_PURGE_ONLY = """(OLD.digest IS NOT NULL AND substr(NEW.payload, 1, 12) = '{"purged":"2'
    AND NEW.run_id IS NOT DISTINCT FROM OLD.run_id AND NEW.seq IS NOT DISTINCT FROM OLD.seq
    AND NEW.ts IS NOT DISTINCT FROM OLD.ts AND NEW.kind IS NOT DISTINCT FROM OLD.kind
    AND NEW.prev_hash IS NOT DISTINCT FROM OLD.prev_hash
    AND NEW.hash IS NOT DISTINCT FROM OLD.hash AND NEW.digest IS NOT DISTINCT FROM OLD.digest
    AND NEW.step IS NOT DISTINCT FROM OLD.step)"""

# The store's ledger: every run's milestones and the control log's head, in one hash chain.
_LEDGER = """CREATE TABLE ledger (
    seq {seq} PRIMARY KEY,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    head_seq {seq} NOT NULL,
    head_hash TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)"""

# Votes cast before subjects existed name their voter by identity; the subject is its name.
_VOTERS = """UPDATE approval_votes SET subject = (
    SELECT lower(trim(i.name)) FROM identities i WHERE i.id = approval_votes.approver_id)"""

# OIDC issuers whose tokens stand for principals: registered by an admin, sealed like identities.
_PROVIDERS = """CREATE TABLE identity_providers (
    issuer TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    log_seq INTEGER NOT NULL,
    mac TEXT NOT NULL
)"""

SQLITE_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs, the hash-chained event log, identities, kill switches, approvals.
    (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            workflow TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            principal_id TEXT NOT NULL,
            model TEXT NOT NULL,
            model_kind TEXT NOT NULL,
            contract_version TEXT NOT NULL,
            contract_hash TEXT NOT NULL,
            policy_hash TEXT NOT NULL,
            budget_usd REAL,
            status TEXT NOT NULL,
            outcome TEXT,
            reason TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            event_count INTEGER NOT NULL DEFAULT 0,
            head_seq INTEGER NOT NULL,
            head_hash TEXT NOT NULL,
            head_mac TEXT NOT NULL
        )""",
        "CREATE INDEX runs_by_start ON runs (started_at)",
        """CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            seq INTEGER NOT NULL,
            ts TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID""",
        # The log is append-only at the database level too; a tamperer must drop these first,
        # and the hash chain still catches what they do next.
        """CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
        """CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
        """CREATE TABLE identities (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('agent', 'human')),
            name TEXT NOT NULL,
            agent TEXT,
            workflow TEXT,
            tenant_id TEXT,
            roles TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
        # One active agent identity per (agent, workflow, tenant): least privilege per tenant.
        """CREATE UNIQUE INDEX one_active_agent_identity
           ON identities (agent, workflow, tenant_id)
           WHERE kind = 'agent' AND revoked_at IS NULL""",
        """CREATE TABLE kill_switches (
            key TEXT PRIMARY KEY,
            agent TEXT,
            workflow TEXT,
            tenant_id TEXT,
            tool TEXT,
            reason TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE TABLE control_version (version INTEGER NOT NULL)",
        "INSERT INTO control_version VALUES (0)",
        """CREATE TABLE approvals (
            request_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            step INTEGER NOT NULL,
            tool TEXT NOT NULL,
            tier TEXT NOT NULL,
            role TEXT NOT NULL,
            approvers INTEGER NOT NULL,
            status TEXT NOT NULL,
            requested_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            summary TEXT NOT NULL,
            diff TEXT NOT NULL
        )""",
    ),
    # 2: durable runs: scheduling and leases on runs, encrypted raw payloads for replay,
    # approval votes (one per person per request), cancellation requests.
    (
        "ALTER TABLE runs ADD COLUMN initiator TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE runs ADD COLUMN runnable INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN wake_at TEXT",
        "ALTER TABLE runs ADD COLUMN lease_owner TEXT",
        "ALTER TABLE runs ADD COLUMN lease_expires REAL",
        "ALTER TABLE runs ADD COLUMN cancel_requested TEXT",
        "CREATE INDEX runs_runnable ON runs (workflow, wake_at) WHERE runnable = 1",
        """CREATE TABLE payloads (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            name TEXT NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run_id, name)
        ) WITHOUT ROWID""",
        "ALTER TABLE approvals ADD COLUMN excluded TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE approvals ADD COLUMN granted INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE approvals ADD COLUMN decided_at TEXT",
        "CREATE INDEX approvals_by_status ON approvals (status, expires_at)",
        """CREATE TABLE approval_votes (
            request_id TEXT NOT NULL REFERENCES approvals (request_id),
            approver_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (request_id, approver_id)
        ) WITHOUT ROWID""",
    ),
    # 3: the step of each event as a column, so a resume can place events without parsing them.
    ("ALTER TABLE events ADD COLUMN step INTEGER",),
    # 4: events as a rowid table with a unique (run, seq) index. In a WITHOUT ROWID table a
    # row over about 1 KB spills into a 4 KB overflow page, and a step's `gate.decided` is
    # larger than that: a step's commit wrote 11 pages to the WAL, 7 of them events, and a
    # store of 10,000 waiting runs took 85 MB. Rows appended in rowid order share their page:
    # 8 or 9 pages a commit, 59 MB.
    (
        """CREATE TABLE events_v4 (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            seq INTEGER NOT NULL,
            ts TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            step INTEGER
        )""",
        """INSERT INTO events_v4 (run_id, seq, ts, kind, payload, prev_hash, hash, step)
           SELECT run_id, seq, ts, kind, payload, prev_hash, hash, step FROM events
           ORDER BY run_id, seq""",
        "DROP TABLE events",
        "ALTER TABLE events_v4 RENAME TO events",
        "CREATE UNIQUE INDEX events_by_run ON events (run_id, seq)",
        """CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
        """CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
    ),
    # 5: store settings; the first is a check value of the seal key, so a node holding another
    # key is refused instead of sealing runs no other node can verify.
    ("CREATE TABLE store_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",),
    # 6: shared limits (spend per cap and day, reservations in flight, token buckets), the
    # control log (a sealed hash chain of kill switch changes), runs paused by a kill switch,
    # and the environment a credential may act in.
    (
        """CREATE TABLE spend (
            scope TEXT NOT NULL,
            day TEXT NOT NULL,
            spent INTEGER NOT NULL,
            reserved INTEGER NOT NULL,
            cap INTEGER NOT NULL,
            PRIMARY KEY (scope, day)
        ) WITHOUT ROWID""",
        """CREATE TABLE reservations (
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            scopes TEXT NOT NULL,
            amount INTEGER NOT NULL,
            PRIMARY KEY (run_id, step)
        ) WITHOUT ROWID""",
        """CREATE TABLE rate_buckets (
            key TEXT PRIMARY KEY,
            tokens REAL NOT NULL,
            updated REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE control_log (
            seq INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        """CREATE TRIGGER control_log_append_only_update BEFORE UPDATE ON control_log
           BEGIN SELECT RAISE(ABORT, 'the control log is append-only'); END""",
        """CREATE TRIGGER control_log_append_only_delete BEFORE DELETE ON control_log
           BEGIN SELECT RAISE(ABORT, 'the control log is append-only'); END""",
        "ALTER TABLE runs ADD COLUMN paused_by TEXT",
        "ALTER TABLE identities ADD COLUMN environment TEXT",
        # One active agent identity per (agent, workflow, tenant) and environment now.
        "DROP INDEX one_active_agent_identity",
        """CREATE UNIQUE INDEX one_active_agent_identity
           ON identities (agent, workflow, tenant_id, COALESCE(environment, 'dev'))
           WHERE kind = 'agent' AND revoked_at IS NULL""",
    ),
    # 7: the artifact cache: reusable answers of model steps and read tools, sealed per tenant.
    (
        """CREATE TABLE artifact_cache (
            key TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            workflow TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            value BLOB NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX artifact_cache_by_scope ON artifact_cache (workflow, tenant_id)",
        "CREATE INDEX artifact_cache_by_expiry ON artifact_cache (expires_at)",
    ),
    # 8: retention. Each event's digest (the SHA-256 of its payload), which format-2 hashes
    # cover instead of the payload, so a redacted payload past its tier can be dropped and the
    # chain still verifies; the append-only trigger lets exactly that change through, and only
    # for format-2 events. Each raw payload's data key, so a purge knows what a key sealed.
    (
        "ALTER TABLE events ADD COLUMN digest TEXT",
        "DROP TRIGGER events_append_only_update",
        f"""CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
           WHEN NOT ({_PURGE_ONLY})
           BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
        "ALTER TABLE payloads ADD COLUMN key_id TEXT",
        "CREATE INDEX payloads_by_key ON payloads (key_id)",
    ),
    # 9: trust around the gate. Identities get a canonical subject, an expiry, an issuer (Charter
    # or an OIDC issuer) and a seal binding each row to its control-log entry; the control log
    # names the identity an entry changes; a vote names the person who cast it; the ledger, one
    # hash chain over every run's milestones and the control log, makes a deleted or rolled
    # back run detectable; identity providers are registered like identities.
    (
        "ALTER TABLE identities ADD COLUMN subject TEXT",
        "ALTER TABLE identities ADD COLUMN expires_at TEXT",
        "ALTER TABLE identities ADD COLUMN issuer TEXT NOT NULL DEFAULT 'charter'",
        "ALTER TABLE identities ADD COLUMN log_seq INTEGER",
        "ALTER TABLE identities ADD COLUMN mac TEXT",
        "ALTER TABLE control_log ADD COLUMN subject_id TEXT",
        "CREATE INDEX control_log_by_subject ON control_log (subject_id, seq)",
        "ALTER TABLE approval_votes ADD COLUMN subject TEXT",
        _VOTERS,
        "CREATE UNIQUE INDEX one_vote_per_person ON approval_votes (request_id, subject)",
        _LEDGER.format(seq="INTEGER"),
        "CREATE INDEX ledger_by_subject ON ledger (subject, head_seq)",
        """CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger
           BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
        """CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger
           BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
        _PROVIDERS,
    ),
)

POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the schema of SQLite's version 5.
    (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            workflow TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            principal_id TEXT NOT NULL,
            model TEXT NOT NULL,
            model_kind TEXT NOT NULL,
            contract_version TEXT NOT NULL,
            contract_hash TEXT NOT NULL,
            policy_hash TEXT NOT NULL,
            budget_usd DOUBLE PRECISION,
            status TEXT NOT NULL,
            outcome TEXT,
            reason TEXT,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            prompt_tokens BIGINT NOT NULL DEFAULT 0,
            completion_tokens BIGINT NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            event_count BIGINT NOT NULL DEFAULT 0,
            head_seq BIGINT NOT NULL,
            head_hash TEXT NOT NULL,
            head_mac TEXT NOT NULL,
            initiator TEXT NOT NULL DEFAULT '',
            runnable INTEGER NOT NULL DEFAULT 0,
            wake_at TEXT,
            lease_owner TEXT,
            lease_expires DOUBLE PRECISION,
            cancel_requested TEXT
        )""",
        "CREATE INDEX runs_by_start ON runs (started_at)",
        "CREATE INDEX runs_runnable ON runs (workflow, wake_at) WHERE runnable = 1",
        """CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            seq BIGINT NOT NULL,
            ts TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            step INTEGER,
            PRIMARY KEY (run_id, seq)
        )""",
        # Append-only at the database level, TRUNCATE included; the chain catches the rest.
        """CREATE FUNCTION charter_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'events are append-only'; END $$""",
        """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
           FOR EACH ROW EXECUTE FUNCTION charter_events_append_only()""",
        """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
           FOR EACH STATEMENT EXECUTE FUNCTION charter_events_append_only()""",
        """CREATE TABLE payloads (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            name TEXT NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (run_id, name)
        )""",
        """CREATE TABLE identities (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('agent', 'human')),
            name TEXT NOT NULL,
            agent TEXT,
            workflow TEXT,
            tenant_id TEXT,
            roles TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
        """CREATE UNIQUE INDEX one_active_agent_identity
           ON identities (agent, workflow, tenant_id)
           WHERE kind = 'agent' AND revoked_at IS NULL""",
        """CREATE TABLE kill_switches (
            key TEXT PRIMARY KEY,
            agent TEXT,
            workflow TEXT,
            tenant_id TEXT,
            tool TEXT,
            reason TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE TABLE control_version (version BIGINT NOT NULL)",
        "INSERT INTO control_version VALUES (0)",
        """CREATE TABLE approvals (
            request_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            step INTEGER NOT NULL,
            tool TEXT NOT NULL,
            tier TEXT NOT NULL,
            role TEXT NOT NULL,
            approvers INTEGER NOT NULL,
            status TEXT NOT NULL,
            requested_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            summary TEXT NOT NULL,
            diff TEXT NOT NULL,
            excluded TEXT NOT NULL DEFAULT '[]',
            granted INTEGER NOT NULL DEFAULT 0,
            decided_at TEXT
        )""",
        "CREATE INDEX approvals_by_status ON approvals (status, expires_at)",
        """CREATE TABLE approval_votes (
            request_id TEXT NOT NULL REFERENCES approvals (request_id),
            approver_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (request_id, approver_id)
        )""",
        "CREATE TABLE store_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    # 2: SQLite's version 6.
    (
        """CREATE TABLE spend (
            scope TEXT NOT NULL,
            day TEXT NOT NULL,
            spent BIGINT NOT NULL,
            reserved BIGINT NOT NULL,
            cap BIGINT NOT NULL,
            PRIMARY KEY (scope, day)
        )""",
        """CREATE TABLE reservations (
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            scopes TEXT NOT NULL,
            amount BIGINT NOT NULL,
            PRIMARY KEY (run_id, step)
        )""",
        """CREATE TABLE rate_buckets (
            key TEXT PRIMARY KEY,
            tokens DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE control_log (
            seq BIGINT PRIMARY KEY,
            ts TEXT NOT NULL,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        """CREATE TRIGGER control_log_append_only BEFORE UPDATE OR DELETE ON control_log
           FOR EACH ROW EXECUTE FUNCTION charter_events_append_only()""",
        """CREATE TRIGGER control_log_no_truncate BEFORE TRUNCATE ON control_log
           FOR EACH STATEMENT EXECUTE FUNCTION charter_events_append_only()""",
        "ALTER TABLE runs ADD COLUMN paused_by TEXT",
        "ALTER TABLE identities ADD COLUMN environment TEXT",
        # One active agent identity per (agent, workflow, tenant) and environment now.
        "DROP INDEX one_active_agent_identity",
        """CREATE UNIQUE INDEX one_active_agent_identity
           ON identities (agent, workflow, tenant_id, COALESCE(environment, 'dev'))
           WHERE kind = 'agent' AND revoked_at IS NULL""",
    ),
    # 3: SQLite's version 7.
    (
        """CREATE TABLE artifact_cache (
            key TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            workflow TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            value BYTEA NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX artifact_cache_by_scope ON artifact_cache (workflow, tenant_id)",
        "CREATE INDEX artifact_cache_by_expiry ON artifact_cache (expires_at)",
    ),
    # 4: SQLite's version 8.
    (
        "ALTER TABLE events ADD COLUMN digest TEXT",
        f"""CREATE FUNCTION charter_events_purge_only() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF TG_OP = 'UPDATE' AND {_PURGE_ONLY} THEN RETURN NEW; END IF;
             RAISE EXCEPTION 'events are append-only';
           END $$""",
        "DROP TRIGGER events_append_only ON events",
        """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
           FOR EACH ROW EXECUTE FUNCTION charter_events_purge_only()""",
        "ALTER TABLE payloads ADD COLUMN key_id TEXT",
        "CREATE INDEX payloads_by_key ON payloads (key_id)",
    ),
    # 5: SQLite's version 9.
    (
        "ALTER TABLE identities ADD COLUMN subject TEXT",
        "ALTER TABLE identities ADD COLUMN expires_at TEXT",
        "ALTER TABLE identities ADD COLUMN issuer TEXT NOT NULL DEFAULT 'charter'",
        "ALTER TABLE identities ADD COLUMN log_seq BIGINT",
        "ALTER TABLE identities ADD COLUMN mac TEXT",
        "ALTER TABLE control_log ADD COLUMN subject_id TEXT",
        "CREATE INDEX control_log_by_subject ON control_log (subject_id, seq)",
        "ALTER TABLE approval_votes ADD COLUMN subject TEXT",
        _VOTERS,
        "CREATE UNIQUE INDEX one_vote_per_person ON approval_votes (request_id, subject)",
        _LEDGER.format(seq="BIGINT"),
        "CREATE INDEX ledger_by_subject ON ledger (subject, head_seq)",
        """CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
           FOR EACH ROW EXECUTE FUNCTION charter_events_append_only()""",
        """CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
           FOR EACH STATEMENT EXECUTE FUNCTION charter_events_append_only()""",
        _PROVIDERS,
    ),
)
