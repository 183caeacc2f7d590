"""What the sandboxes share: errors, connections, idempotency keys, faults and the clock."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest

from charter.sandbox import (
    DeploysSandbox,
    PaymentsSandbox,
    SandboxError,
    SupportSandbox,
)
from charter.sandbox._base import SCHEMA, connect, run_idempotent

WRITES = {
    "refund": lambda sandboxes, key: sandboxes["payments"].refund(
        charge_id="ch_1", amount_minor=1, reason="r", idempotency_key=key
    ),
    "create_ticket": lambda sandboxes, key: sandboxes["support"].create_ticket(
        tenant_id="t", requester_email="a@b.c", subject="s", body="b", tags=[], idempotency_key=key
    ),
    "send_macro": lambda sandboxes, key: sandboxes["support"].send_macro(
        ticket_id=1, macro_id="refund_issued", idempotency_key=key
    ),
    "trigger_deploy": lambda sandboxes, key: sandboxes["deploys"].trigger_deploy(
        repo="o/r", ref="v1", environment="prod", description="", idempotency_key=key
    ),
    "rollback": lambda sandboxes, key: sandboxes["deploys"].rollback(
        repo="o/r", environment="prod", idempotency_key=key
    ),
}


@pytest.fixture
def sandboxes(payments, support, deploys):
    return {"payments": payments, "support": support, "deploys": deploys}


class TestSandboxError:
    @pytest.mark.parametrize(
        ("status", "retryable"),
        [(400, False), (404, False), (409, False), (429, True), (503, True)],
    )
    def test_retryable_defaults_to_429_and_5xx(self, status, retryable):
        """Without an override only 429 and 5xx are retryable."""
        assert SandboxError(code="c", status=status, message="m").retryable is retryable

    def test_retryable_can_be_overridden(self):
        """An explicit retryable wins over the status default."""
        assert SandboxError(code="c", status=500, message="m", retryable=False).retryable is False

    def test_str_names_status_code_and_message(self):
        """The exception text carries status, code and message."""
        assert str(SandboxError(code="oops", status=418, message="teapot")) == "418 oops: teapot"

    def test_dict_round_trip(self):
        """from_dict(to_dict()) rebuilds an equal error."""
        error = SandboxError(code="c", status=409, message="m", retryable=True)
        assert SandboxError.from_dict(error.to_dict()).to_dict() == error.to_dict()

    def test_pickles_despite_keyword_only_constructor(self):
        """Errors survive pickling, e.g. across a process pool."""
        error = SandboxError(code="c", status=429, message="m")
        assert pickle.loads(pickle.dumps(error)).to_dict() == error.to_dict()  # noqa: S301


class TestConnect:
    @pytest.mark.parametrize(
        ("pragma", "expected"),
        [("journal_mode", "wal"), ("synchronous", 2), ("foreign_keys", 1), ("busy_timeout", 10000)],
    )
    def test_sets_pragma(self, tmp_path, pragma, expected):
        """Connections use WAL, synchronous=FULL, foreign keys and a busy timeout."""
        db = connect(tmp_path / "x.db")
        try:
            assert db.execute(f"PRAGMA {pragma}").fetchone()[0] == expected
        finally:
            db.close()

    def test_is_in_autocommit_mode(self, tmp_path):
        """isolation_level is None, so every transaction is an explicit one."""
        db = connect(tmp_path / "x.db")
        try:
            assert db.isolation_level is None
        finally:
            db.close()

    def test_creates_parent_directories(self, tmp_path):
        """A path in a missing directory is created."""
        with PaymentsSandbox(tmp_path / "a" / "b" / "p.db"):
            assert (tmp_path / "a" / "b" / "p.db").exists()

    def test_memory_database_works(self):
        """':memory:' gives a throwaway sandbox."""
        with SupportSandbox(":memory:") as support:
            assert support.ticket_count() == 0


class TestIdempotencyKey:
    @pytest.mark.parametrize("write", sorted(WRITES))
    @pytest.mark.parametrize("key", ["", "   ", None])
    def test_every_write_requires_a_key(self, sandboxes, write, key):
        """A missing or blank key is 400 idempotency_key_required."""
        with pytest.raises(SandboxError) as caught:
            WRITES[write](sandboxes, key)
        assert (caught.value.status, caught.value.code) == (400, "idempotency_key_required")

    def test_key_used_on_another_endpoint_is_reused(self, support):
        """A key is bound to its endpoint as well as its parameters."""
        ticket = support.create_ticket(
            tenant_id="t",
            requester_email="a@b.c",
            subject="s",
            body="b",
            tags=[],
            idempotency_key="k",
        )
        with pytest.raises(SandboxError, match="idempotency_key_reused"):
            support.send_macro(ticket_id=ticket.id, macro_id="refund_issued", idempotency_key="k")
        assert support.message_count() == 0


@pytest.fixture
def scratch(tmp_path):
    db = connect(tmp_path / "scratch.db")
    for statement in (*SCHEMA, "CREATE TABLE effects (n INTEGER)"):
        db.execute(statement)
    yield db
    db.close()


def run_once(db, key, effect):
    """One write the way SandboxService runs it: a BEGIN IMMEDIATE committed either way."""
    db.execute("BEGIN IMMEDIATE")
    outcome = run_idempotent(
        db, endpoint="e", key=key, params={"p": 1}, effect=effect, created_at="now"
    )
    db.execute("COMMIT")
    return outcome


def insert_then(result):
    def effect(db):
        db.execute("INSERT INTO effects VALUES (1)")
        if isinstance(result, SandboxError):
            raise result
        return result

    return effect


def effect_rows(db):
    return db.execute("SELECT count(*) FROM effects").fetchone()[0]


class TestRunIdempotent:
    def test_effect_5xx_is_not_stored_so_the_retry_runs(self, scratch):
        """An effect's own 500 binds nothing; the same key then runs the effect."""
        failed = run_once(scratch, "k", insert_then(SandboxError(code="x", status=500, message="")))
        assert isinstance(failed, SandboxError)
        assert run_once(scratch, "k", insert_then({"ok": True})) == {"ok": True}
        assert effect_rows(scratch) == 1

    def test_effect_4xx_is_stored_and_its_writes_undone(self, scratch):
        """An effect that writes then raises a 400 leaves only the stored error."""
        first = run_once(scratch, "k", insert_then(SandboxError(code="x", status=400, message="")))
        replay = run_once(scratch, "k", insert_then({"ok": True}))
        assert replay.to_dict() == first.to_dict()
        assert effect_rows(scratch) == 0

    def test_first_answer_is_what_a_replay_returns(self, scratch):
        """The first response is JSON round-tripped, so it equals every replay exactly."""
        first = run_once(scratch, "k", insert_then({"tags": ("a", "b")}))
        assert first == {"tags": ["a", "b"]}
        assert run_once(scratch, "k", insert_then({"other": 1})) == first


class TestInjectFault:
    def test_unknown_endpoint_is_rejected(self, payments):
        """A typo in the endpoint name fails loudly instead of never firing."""
        with pytest.raises(ValueError, match="unknown endpoint"):
            payments.inject_fault("refunds", status=500, code="x")

    @pytest.mark.parametrize(
        ("status", "code", "times"), [(200, "x", 1), (500, " ", 1), (500, "x", 0)]
    )
    def test_malformed_fault_is_rejected(self, payments, status, code, times):
        """A fault needs an error status, a code and a positive count."""
        with pytest.raises(ValueError, match="a fault needs"):
            payments.inject_fault("refund", status=status, code=code, times=times)

    def test_fault_fires_the_given_number_of_times(self, deploys):
        """times=2 fails two calls, then the endpoint works again."""
        deploys.inject_fault("trigger_deploy", status=500, code="boom", times=2)
        for _ in range(2):
            with pytest.raises(SandboxError, match="boom"):
                WRITES["trigger_deploy"]({"deploys": deploys}, "k")
        assert WRITES["trigger_deploy"]({"deploys": deploys}, "k").status == "success"
        assert deploys.deployment_count() == 1

    def test_faults_fire_in_the_order_injected(self, deploys):
        """Queued faults are consumed oldest first."""
        deploys.inject_fault("trigger_deploy", status=500, code="first")
        deploys.inject_fault("trigger_deploy", status=429, code="second")
        codes = []
        for _ in range(2):
            with pytest.raises(SandboxError) as caught:
                WRITES["trigger_deploy"]({"deploys": deploys}, "k")
            codes.append(caught.value.code)
        assert codes == ["first", "second"]

    def test_fault_hits_only_its_endpoint(self, deploys):
        """A fault on rollback leaves trigger_deploy alone."""
        deploys.inject_fault("rollback", status=500, code="boom")
        assert WRITES["trigger_deploy"]({"deploys": deploys}, "k").status == "success"

    def test_fault_reaches_another_connection(self, tmp_path, clock, deploys):
        """Faults live in the file, so a second connection (or process) sees them."""
        with DeploysSandbox(tmp_path / "deploys.db", clock=clock) as other:
            other.inject_fault("trigger_deploy", status=500, code="boom")
        with pytest.raises(SandboxError, match="boom"):
            WRITES["trigger_deploy"]({"deploys": deploys}, "k")

    def test_injected_4xx_is_not_stored_either(self, deploys):
        """Injected faults never bind the key, whatever their status."""
        deploys.inject_fault("trigger_deploy", status=409, code="conflict")
        with pytest.raises(SandboxError, match="conflict"):
            WRITES["trigger_deploy"]({"deploys": deploys}, "k")
        assert WRITES["trigger_deploy"]({"deploys": deploys}, "k").status == "success"


class TestClock:
    def test_timestamps_are_normalised_to_utc(self, tmp_path):
        """An aware time in another zone is stored as its UTC equivalent."""
        plus_two = timezone(timedelta(hours=2))
        clock = lambda: datetime(2025, 1, 1, 12, 0, tzinfo=plus_two)  # noqa: E731
        with DeploysSandbox(tmp_path / "d.db", clock=clock) as deploys:
            made = WRITES["trigger_deploy"]({"deploys": deploys}, "k")
        assert made.created_at == "2025-01-01T10:00:00.000000+00:00"

    def test_naive_clock_is_rejected(self, tmp_path):
        """A naive datetime has no zone, so using it is an error rather than a guess."""
        with SupportSandbox(tmp_path / "s.db", clock=lambda: datetime(2025, 1, 1)) as support:  # noqa: DTZ001
            with pytest.raises(ValueError, match="timezone-aware"):
                WRITES["create_ticket"]({"support": support}, "k")
            assert support.ticket_count() == 0

    def test_default_clock_is_the_system_clock(self, tmp_path):
        """Without a clock, timestamps are the current UTC time."""
        before = datetime.now(UTC)
        with SupportSandbox(tmp_path / "s.db") as support:
            made = WRITES["create_ticket"]({"support": support}, "k")
        assert before <= datetime.fromisoformat(made.created_at) <= datetime.now(UTC)


class TestLifecycle:
    def test_state_survives_reopening(self, tmp_path, clock):
        """Closing and reopening the file keeps every effect and key."""
        with DeploysSandbox(tmp_path / "d.db", clock=clock) as deploys:
            first = WRITES["trigger_deploy"]({"deploys": deploys}, "k")
        with DeploysSandbox(tmp_path / "d.db", clock=clock) as deploys:
            assert WRITES["trigger_deploy"]({"deploys": deploys}, "k") == first
            assert deploys.deployment_count() == 1

    def test_services_can_share_one_file(self, tmp_path):
        """Each service's tables are distinct, so one file can hold all three."""
        path = tmp_path / "all.db"
        with PaymentsSandbox(path) as payments, SupportSandbox(path) as support:
            assert (payments.refund_count(), len(support.list_macros())) == (0, 3)
