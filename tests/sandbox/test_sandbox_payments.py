"""The Stripe-like payments sandbox: charges, refunds and their idempotency."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import charter.sandbox
from charter.sandbox import Charge, PaymentsSandbox, Refund, SandboxError

CHARGE_ID = "ch_test_0001"


@pytest.fixture
def charge(payments: PaymentsSandbox) -> Charge:
    return payments.create_charge(
        tenant_id="acme",
        customer_id="cus_1",
        customer_email="jane@example.com",
        amount_minor=5000,
        currency="USD",
        charge_id=CHARGE_ID,
    )


def refund(payments: PaymentsSandbox, amount: int, key: str, charge_id: str = CHARGE_ID) -> Refund:
    return payments.refund(
        charge_id=charge_id,
        amount_minor=amount,
        reason="requested_by_customer",
        idempotency_key=key,
    )


class TestCreateCharge:
    def test_returns_the_stored_charge(self, payments, charge):
        """The returned charge is what get_charge reads back."""
        assert payments.get_charge(CHARGE_ID) == charge

    def test_new_charge_has_nothing_refunded(self, charge):
        """A fresh charge is fully refundable."""
        assert (charge.refunded_minor, charge.refundable_minor) == (0, 5000)

    def test_generated_id_is_ch_and_24_hex(self, payments):
        """Without charge_id the id is `ch_` plus 24 random hex characters."""
        made = payments.create_charge(
            tenant_id="t", customer_id="c", customer_email="a@b.c", amount_minor=1, currency="eur"
        )
        assert re.fullmatch(r"ch_[0-9a-f]{24}", made.id)

    def test_currency_is_stored_lower_case(self, charge):
        """Currencies are lower-cased, as Stripe does."""
        assert charge.currency == "usd"

    def test_timestamp_comes_from_the_clock(self, charge):
        """created_at is the injected clock's time in ISO-8601 UTC."""
        assert charge.created_at == "2025-03-14T15:09:26.000000+00:00"

    def test_seeding_the_same_charge_again_returns_it(self, payments, charge):
        """Re-running a seed with the same charge_id is a no-op."""
        refund(payments, 100, "k1")
        again = payments.create_charge(
            tenant_id="acme",
            customer_id="cus_1",
            customer_email="jane@example.com",
            amount_minor=5000,
            currency="usd",
            charge_id=CHARGE_ID,
        )
        assert again == payments.get_charge(CHARGE_ID)

    def test_seeding_an_existing_id_with_other_details_conflicts(self, payments, charge):
        """The same charge_id with a different amount is a 409."""
        with pytest.raises(SandboxError) as caught:
            payments.create_charge(
                tenant_id="acme",
                customer_id="cus_1",
                customer_email="jane@example.com",
                amount_minor=9999,
                currency="usd",
                charge_id=CHARGE_ID,
            )
        assert (caught.value.status, caught.value.code) == (409, "resource_already_exists")

    @pytest.mark.parametrize("amount", [0, -5])
    def test_non_positive_amount_is_rejected(self, payments, amount):
        """A charge must be for a positive amount."""
        with pytest.raises(SandboxError, match="invalid_amount"):
            payments.create_charge(
                tenant_id="t",
                customer_id="c",
                customer_email="a@b.c",
                amount_minor=amount,
                currency="usd",
            )

    def test_blank_field_is_rejected(self, payments):
        """Blank required strings are a 400 parameter_missing."""
        with pytest.raises(SandboxError, match="parameter_missing"):
            payments.create_charge(
                tenant_id=" ",
                customer_id="c",
                customer_email="a@b.c",
                amount_minor=1,
                currency="usd",
            )


class TestGetCharge:
    def test_unknown_charge_is_404(self, payments):
        """An unknown id is 404 resource_missing."""
        with pytest.raises(SandboxError) as caught:
            payments.get_charge("ch_nope")
        assert (caught.value.status, caught.value.code) == (404, "resource_missing")

    def test_reflects_refunds(self, payments, charge):
        """refunded_minor and refundable_minor follow the refunds made."""
        refund(payments, 1200, "k1")
        current = payments.get_charge(CHARGE_ID)
        assert (current.refunded_minor, current.refundable_minor) == (1200, 3800)


class TestRefund:
    def test_partial_refund_is_recorded(self, payments, charge):
        """A refund inserts a row and raises refunded_minor by its amount."""
        made = refund(payments, 700, "k1")
        assert payments.refunds(CHARGE_ID) == [made]
        assert payments.get_charge(CHARGE_ID).refunded_minor == 700

    def test_refund_id_is_re_and_24_hex(self, payments, charge):
        """Refund ids are `re_` plus 24 random hex characters."""
        assert re.fullmatch(r"re_[0-9a-f]{24}", refund(payments, 1, "k1").id)

    def test_full_refund_is_allowed(self, payments, charge):
        """The whole amount can be refunded at once."""
        refund(payments, 5000, "k1")
        assert payments.get_charge(CHARGE_ID).refundable_minor == 0

    def test_amount_above_the_charge_is_too_large(self, payments, charge):
        """Refunding more than was charged is 400 amount_too_large and changes nothing."""
        with pytest.raises(SandboxError) as caught:
            refund(payments, 5001, "k1")
        assert (caught.value.status, caught.value.code) == (400, "amount_too_large")
        assert payments.refund_count() == 0

    def test_amount_above_what_is_left_is_too_large(self, payments, charge):
        """After a partial refund only the remainder can be refunded."""
        refund(payments, 4000, "k1")
        with pytest.raises(SandboxError, match="amount_too_large"):
            refund(payments, 1001, "k2")
        assert payments.get_charge(CHARGE_ID).refunded_minor == 4000

    @pytest.mark.parametrize("amount", [0, -1, 1.5, True])
    def test_non_positive_or_non_integer_amount_is_invalid(self, payments, charge, amount):
        """Zero, negative, fractional and boolean amounts are 400 invalid_amount."""
        with pytest.raises(SandboxError) as caught:
            refund(payments, amount, "k1")
        assert (caught.value.status, caught.value.code) == (400, "invalid_amount")
        assert payments.refund_count() == 0

    def test_unknown_charge_is_404(self, payments):
        """Refunding an unknown charge is 404 resource_missing."""
        with pytest.raises(SandboxError) as caught:
            refund(payments, 100, "k1", charge_id="ch_nope")
        assert (caught.value.status, caught.value.code) == (404, "resource_missing")

    def test_refunds_are_listed_oldest_first(self, payments, charge):
        """refunds() returns a charge's refunds in creation order."""
        made = [refund(payments, amount, f"k{amount}") for amount in (3, 1, 2)]
        assert payments.refunds(CHARGE_ID) == made

    def test_refund_count_filters_by_charge(self, payments, charge):
        """refund_count(charge_id) counts one charge; refund_count() counts all."""
        other = payments.create_charge(
            tenant_id="t", customer_id="c", customer_email="a@b.c", amount_minor=10, currency="usd"
        )
        refund(payments, 1, "k1")
        refund(payments, 1, "k2", charge_id=other.id)
        refund(payments, 1, "k3", charge_id=other.id)
        assert (payments.refund_count(CHARGE_ID), payments.refund_count()) == (1, 3)

    def test_unknown_charge_has_no_refunds(self, payments):
        """refunds() of an unknown charge is empty."""
        assert payments.refunds("ch_nope") == []


class TestRefundIdempotency:
    def test_same_key_twice_refunds_once_with_identical_result(self, payments, charge):
        """A replay returns the first refund and moves no more money."""
        first = refund(payments, 500, "k1")
        second = refund(payments, 500, "k1")
        assert second == first
        assert payments.refund_count() == 1
        assert payments.get_charge(CHARGE_ID).refunded_minor == 500

    def test_same_key_with_other_amount_is_reused_and_does_nothing(self, payments, charge):
        """The same key with different params is 400 idempotency_key_reused, no effect."""
        refund(payments, 500, "k1")
        with pytest.raises(SandboxError) as caught:
            refund(payments, 600, "k1")
        assert (caught.value.status, caught.value.code) == (400, "idempotency_key_reused")
        assert payments.get_charge(CHARGE_ID).refunded_minor == 500

    def test_same_key_with_other_reason_is_reused(self, payments, charge):
        """Every parameter counts, not just the amount."""
        refund(payments, 500, "k1")
        with pytest.raises(SandboxError, match="idempotency_key_reused"):
            payments.refund(
                charge_id=CHARGE_ID, amount_minor=500, reason="duplicate", idempotency_key="k1"
            )
        assert payments.refund_count() == 1

    def test_stored_error_replays_after_the_world_changes(self, payments):
        """A 404 is stored with its key: the replay is 404 even once the charge exists."""
        with pytest.raises(SandboxError, match="resource_missing"):
            refund(payments, 100, "k1")
        payments.create_charge(
            tenant_id="acme",
            customer_id="c",
            customer_email="a@b.c",
            amount_minor=5000,
            currency="usd",
            charge_id=CHARGE_ID,
        )
        with pytest.raises(SandboxError, match="resource_missing"):
            refund(payments, 100, "k1")
        assert payments.refund_count() == 0

    def test_replayed_error_is_identical(self, payments, charge):
        """The replayed error has the same code, status, message and retryable flag."""
        with pytest.raises(SandboxError) as first:
            refund(payments, 9999, "k1")
        with pytest.raises(SandboxError) as second:
            refund(payments, 9999, "k1")
        assert second.value.to_dict() == first.value.to_dict()

    def test_different_keys_refund_twice(self, payments, charge):
        """Two keys are two refunds, even for identical params."""
        refund(payments, 500, "k1")
        refund(payments, 500, "k2")
        assert payments.refund_count() == 2

    def test_replay_works_from_a_new_connection(self, tmp_path, clock, payments, charge):
        """Keys live in the database, so another process's replay is recognised."""
        first = refund(payments, 500, "k1")
        with PaymentsSandbox(tmp_path / "payments.db", clock=clock) as other:
            assert refund(other, 500, "k1") == first
        assert payments.refund_count() == 1


class TestRefundFaults:
    @pytest.mark.parametrize(("status", "code"), [(500, "api_error"), (429, "rate_limit")])
    def test_injected_error_is_not_stored_so_the_retry_succeeds(
        self, payments, charge, status, code
    ):
        """A 500 or 429 leaves the key unused; the retry refunds exactly once."""
        payments.inject_fault("refund", status=status, code=code)
        with pytest.raises(SandboxError) as caught:
            refund(payments, 500, "k1")
        assert (caught.value.status, caught.value.code, caught.value.retryable) == (
            status,
            code,
            True,
        )
        assert payments.refund_count() == 0
        made = refund(payments, 500, "k1")
        assert refund(payments, 500, "k1") == made
        assert payments.get_charge(CHARGE_ID).refunded_minor == 500

    def test_fault_comes_before_a_replay(self, payments, charge):
        """A fault fails even a replay; the next replay still returns the stored refund."""
        first = refund(payments, 500, "k1")
        payments.inject_fault("refund", status=503, code="unavailable")
        with pytest.raises(SandboxError, match="unavailable"):
            refund(payments, 500, "k1")
        assert refund(payments, 500, "k1") == first

    def test_read_endpoint_can_fault(self, payments, charge):
        """get_charge is faultable too, for adapters that read before writing."""
        payments.inject_fault("get_charge", status=500, code="api_error")
        with pytest.raises(SandboxError, match="api_error"):
            payments.get_charge(CHARGE_ID)
        assert payments.get_charge(CHARGE_ID) == charge


_WORKER = """
import json, sys
from charter.sandbox import PaymentsSandbox
path, charge_id, keys = sys.argv[1], sys.argv[2], int(sys.argv[3])
with PaymentsSandbox(path) as pay:
    ids = [pay.refund(charge_id=charge_id, amount_minor=10, reason="dup",
                      idempotency_key=f"key-{i}").id for i in range(keys)]
print(json.dumps(ids))
"""


class TestRefundConcurrency:
    def test_threads_sharing_one_sandbox_refund_once(self, payments, charge, run_together):
        """N threads replaying one key on one object produce one refund, seen by all."""
        results = run_together(8, lambda _: refund(payments, 500, "same"))
        assert all(result == results[0] for result in results)
        assert payments.refund_count() == 1

    def test_threads_with_their_own_connections_refund_once(
        self, tmp_path, payments, charge, run_together
    ):
        """N connections to one file racing on one key produce one refund."""
        sandboxes = [PaymentsSandbox(tmp_path / "payments.db") for _ in range(8)]
        try:
            results = run_together(8, lambda i: refund(sandboxes[i], 500, "same"))
        finally:
            for sandbox in sandboxes:
                sandbox.close()
        assert all(isinstance(result, Refund) and result == results[0] for result in results)
        assert payments.refund_count() == 1

    def test_distinct_keys_racing_never_over_refund(self, payments, charge, run_together):
        """Eight racing 1000-refunds on a 5000 charge: five succeed, three are too large."""
        results = run_together(8, lambda i: refund(payments, 1000, f"k{i}"))
        errors = [result.code for result in results if isinstance(result, SandboxError)]
        assert errors == ["amount_too_large"] * 3
        assert payments.get_charge(CHARGE_ID).refunded_minor == 5000

    def test_processes_replaying_the_same_keys_refund_once_per_key(self, tmp_path, charge):
        """Four processes doing the same 20 keyed refunds make 20 refunds and agree on ids."""
        src = Path(charter.sandbox.__file__).parents[2]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        command = [sys.executable, "-c", _WORKER, str(tmp_path / "payments.db"), CHARGE_ID, "20"]
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)
        ]
        outputs = [worker.communicate(timeout=120)[0] for worker in workers]
        assert [worker.returncode for worker in workers] == [0] * 4
        ids = [json.loads(output) for output in outputs]
        assert all(worker_ids == ids[0] for worker_ids in ids)
        with PaymentsSandbox(tmp_path / "payments.db") as payments:
            assert payments.refund_count(CHARGE_ID) == 20
            assert payments.get_charge(CHARGE_ID).refunded_minor == 200


@pytest.fixture(scope="module")
def shared_payments(tmp_path_factory):
    # Module-scoped so hypothesis can reuse it across examples; each example makes its own charge.
    path = tmp_path_factory.mktemp("payments-property") / "payments.db"
    with PaymentsSandbox(path) as sandbox:
        yield sandbox


refund_steps = st.lists(
    st.tuples(st.sampled_from("abcde"), st.integers(min_value=-20, max_value=120)), max_size=15
)


class TestRefundProperties:
    @settings(max_examples=75, deadline=None, database=None)
    @given(charged=st.integers(min_value=1, max_value=100), steps=refund_steps)
    def test_refunded_never_exceeds_charge_and_equals_refund_rows(
        self, shared_payments, charged, steps
    ):
        """Any refund sequence keeps refunded_minor <= amount_minor and equal to the rows' sum."""
        made = shared_payments.create_charge(
            tenant_id="t",
            customer_id="c",
            customer_email="a@b.c",
            amount_minor=charged,
            currency="usd",
        )
        for key, amount in steps:
            with contextlib.suppress(SandboxError):
                refund(shared_payments, amount, f"{made.id}-{key}", charge_id=made.id)
            refunded = shared_payments.get_charge(made.id).refunded_minor
            assert 0 <= refunded <= charged
        rows = shared_payments.refunds(made.id)
        assert shared_payments.get_charge(made.id).refunded_minor == sum(
            row.amount_minor for row in rows
        )

    @settings(max_examples=75, deadline=None, database=None)
    @given(charged=st.integers(min_value=1, max_value=100), steps=refund_steps)
    def test_outcomes_match_a_simple_model(self, shared_payments, charged, steps):
        """Each call answers as Stripe's rules predict: first use runs, replays repeat it."""
        made = shared_payments.create_charge(
            tenant_id="t",
            customer_id="c",
            customer_email="a@b.c",
            amount_minor=charged,
            currency="usd",
        )
        first_use: dict[str, tuple[int, object]] = {}
        left = charged
        for key, amount in steps:
            try:
                outcome: object = refund(shared_payments, amount, f"{made.id}-{key}", made.id)
            except SandboxError as error:
                outcome = error.code
            if key not in first_use:
                if amount <= 0:
                    assert outcome == "invalid_amount"
                elif amount > left:
                    assert outcome == "amount_too_large"
                else:
                    assert isinstance(outcome, Refund)
                    left -= amount
                first_use[key] = (amount, outcome)
            elif first_use[key][0] == amount:
                assert outcome == first_use[key][1]
            else:
                assert outcome == "idempotency_key_reused"
        assert shared_payments.get_charge(made.id).refundable_minor == left
