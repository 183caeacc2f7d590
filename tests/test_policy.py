"""`CedarPolicy`: loading with errors that point at the policy, evaluation that fails closed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import charter
from charter import Facts
from charter.exceptions import PolicyLoadError, PolicyTestError
from charter.policy import CedarPolicy, build_request, load_cases, run_cases
from charter.policy._cedar import _locate_parse_error

EXAMPLES = Path(charter.__file__).parent / "examples"
BILLING = EXAMPLES / "billing"
SCHEMA = (BILLING / "schema.cedarschema").read_text()
CASE_TABLES = sorted(EXAMPLES.glob("*/cases.yaml"))

LOOKUP = 'permit (principal, action == Action::"lookup_charge", resource);\n'


@pytest.fixture(scope="module")
def billing() -> CedarPolicy:
    return CedarPolicy.from_files(
        policies=BILLING / "policies.cedar", schema=BILLING / "schema.cedarschema"
    )


def _load_error(policies: str) -> str:
    with pytest.raises(PolicyLoadError) as caught:
        CedarPolicy(policies=policies, schema=SCHEMA, source="test.cedar")
    return caught.value.message


def _refund(
    amount: int | None = None,
    *,
    action: str = "refund",
    owner: str = "acme",
    approvals: int = 0,
    **extra: str | int | bool,
):
    """A billing request by an acme agent on a charge owned by `owner`."""
    return build_request(
        principal_id="agt_1",
        agent="billing-dispute-agent",
        workflow="billing-dispute",
        tenant_id="acme",
        environment="prod",
        action=action,
        facts=Facts(
            resource_type="Charge",
            resource_id="ch_1",
            resource_tenant=owner,
            amount_minor=amount,
            currency="USD",
            extra=extra,
        ),
        approvals_granted=approvals,
        now=datetime(2026, 1, 6, 14, 0, tzinfo=UTC),
    )


class TestLoading:
    def test_billing_example_loads(self, billing):
        """The billing example loads with its ids and its one approval gate."""
        assert "tenant-isolation" in billing.policy_ids
        assert billing.approval_tiers == {"refund-above-50-needs-finance": "finance"}

    def test_digest_covers_schema_and_policies(self, billing):
        """Changing the policy text changes the digest."""
        other = CedarPolicy(policies=f'@id("x")\n{LOOKUP}', schema=SCHEMA)
        assert other.digest != billing.digest

    def test_policy_without_id(self):
        """A policy without @id is refused, naming its position."""
        message = _load_error(f'@id("a")\n{LOOKUP}\n{LOOKUP}')
        assert "test.cedar: policy #2 has no @id" in message

    def test_duplicate_ids(self):
        """Two policies with one @id are refused."""
        assert "duplicate policy @id ['a']" in _load_error(f'@id("a")\n{LOOKUP}@id("a")\n{LOOKUP}')

    def test_parse_error_names_the_line(self):
        """A parse error names the file and the line where the failing policy starts."""
        text = f'@id("a")\n{LOOKUP}\n@id("b")\npermit (principal, action, resource)\nwhen {{ }};\n'
        message = _load_error(text)
        assert message.startswith("test.cedar:4: policy starting '@id(\"b\")'")

    def test_attribute_not_in_schema_names_the_policy(self):
        """A policy using an attribute the schema lacks is refused, naming its @id."""
        text = (
            '@id("uses-missing")\npermit (principal, action == Action::"refund", resource)\n'
            "when { context.nonexistent == 1 };\n"
        )
        message = _load_error(text)
        assert "do not match the schema" in message
        assert "'uses-missing'" in message

    def test_approval_tier_on_permit(self):
        """@approval_tier is only for forbid policies."""
        message = _load_error(f'@id("p")\n@approval_tier("finance")\n{LOOKUP}')
        assert "policy 'p' has @approval_tier but is a permit" in message

    def test_bad_schema(self):
        """A schema that does not parse is a PolicyLoadError."""
        with pytest.raises(PolicyLoadError, match="schema does not parse"):
            CedarPolicy(policies=f'@id("a")\n{LOOKUP}', schema="entity {", source="s")

    def test_missing_file(self, tmp_path):
        """A missing policy file is a PolicyLoadError naming it."""
        with pytest.raises(PolicyLoadError, match=r"absent\.cedar"):
            CedarPolicy.from_files(
                policies=tmp_path / "absent.cedar", schema=BILLING / "schema.cedarschema"
            )


class TestFilesAreNeverEchoed:
    def _error(self, policies: Path, schema: Path = BILLING / "schema.cedarschema") -> str:
        with pytest.raises(PolicyLoadError) as caught:
            CedarPolicy.from_files(policies=policies, schema=schema)
        return caught.value.message

    def test_a_file_not_named_cedar_is_not_quoted(self, tmp_path):
        """A `.env` file given as policies fails naming its line, never quoting it."""
        path = tmp_path / ".env"
        path.write_text("# settings\nAPI_KEY=PLANTED-VALUE-77\n")
        message = self._error(path)
        assert message.startswith(f"{path}:1: the policy starting here does not parse")
        assert "PLANTED" not in message
        assert "API_KEY" not in message

    def test_a_link_named_cedar_is_judged_by_its_target(self, tmp_path):
        """A `.cedar` link to another file is not quoted: the name that counts is the target's."""
        target = tmp_path / "secret.txt"
        target.write_text("root:PLANTED-VALUE-77:0:0\n")
        (tmp_path / "p.cedar").symlink_to(target)
        assert "PLANTED" not in self._error(tmp_path / "p.cedar")

    def test_a_schema_not_named_cedarschema_is_not_quoted(self, tmp_path):
        """Cedar's schema message, which quotes the file, is withheld for other files."""
        schema = tmp_path / "id_rsa"
        schema.write_text("PLANTEDKEY ABCDEF\n")
        message = self._error(BILLING / "policies.cedar", schema)
        assert "schema does not parse" in message
        assert "PLANTED" not in message

    def test_binary_garbage_is_not_cedar(self, tmp_path):
        """A file that is not UTF-8 text is a PolicyLoadError, not a UnicodeDecodeError."""
        path = tmp_path / "p.cedar"
        path.write_bytes(bytes(range(128, 256)))
        assert "not UTF-8 text" in self._error(path)

    def test_a_folder_is_not_a_policy_file(self, tmp_path):
        """A folder named as the policies is refused as not a regular file."""
        assert "not a regular file" in self._error(tmp_path)

    def test_deep_brackets_are_refused_before_cedar_reads_them(self, tmp_path):
        """Brackets nested thousands deep, which would crash Cedar's parser, are refused."""
        path = tmp_path / "p.cedar"
        path.write_text(f'@id("a")\npermit (principal, action, resource) when {{ {"(" * 5000} }};')
        assert "deeper than 64 levels" in self._error(path)


class TestCaseTablePaths:
    def _table(self, tmp_path: Path, **names: str) -> Path:
        case = {
            "name": "n",
            "principal": {"agent": "a", "workflow": "w", "tenant": "t"},
            "action": "x",
            "resource": {"type": "T", "id": "i"},
            "expect": "deny",
        }
        path = tmp_path / "cases.yaml"
        path.write_text(yaml.safe_dump({**names, "cases": [case]}))
        return path

    def test_policies_outside_the_tables_folder_are_refused(self, tmp_path):
        """A table naming policy files elsewhere is refused, naming the key."""
        table = self._table(
            tmp_path,
            policies=str(BILLING / "policies.cedar"),
            schema=str(BILLING / "schema.cedarschema"),
        )
        with pytest.raises(PolicyTestError, match=r"policies .* leads outside"):
            load_cases(table)

    def test_a_contract_outside_the_tables_folder_is_refused(self, tmp_path):
        """A table naming a contract elsewhere is refused, naming the key."""
        table = self._table(tmp_path, contract=str(BILLING / "contract.yaml"))
        with pytest.raises(PolicyTestError, match=r"contract .* leads outside"):
            load_cases(table)


class TestEvaluation:
    def test_allow_names_the_determining_policy(self, billing):
        """A permitted request is allowed, with the permitting policy's id."""
        decision = billing.evaluate(_refund(1999))
        assert (decision.effect, decision.policy_ids) == ("allow", ("refund-within-cap",))

    def test_default_deny(self, billing):
        """With no permit matching (no amount resolved), the request is denied by default."""
        decision = billing.evaluate(_refund(None))
        assert (decision.effect, decision.policy_ids) == ("deny", ())
        assert "default deny" in decision.reason

    def test_forbid_names_the_policy(self, billing):
        """A forbid on another tenant's charge denies with its id."""
        decision = billing.evaluate(_refund(100, owner="globex"))
        assert (decision.effect, decision.policy_ids) == ("deny", ("tenant-isolation",))

    def test_approval_gate_asks_for_its_tier(self, billing):
        """An approval-gate forbid over an allowed request becomes approval with the tier."""
        decision = billing.evaluate(_refund(24000))
        assert (decision.effect, decision.tier) == ("approval", "finance")
        assert decision.policy_ids == ("refund-above-50-needs-finance",)

    def test_granted_approval_releases_the_gate(self, billing):
        """With one approval granted, the gated request is allowed."""
        assert billing.evaluate(_refund(24000, approvals=1)).effect == "allow"

    def test_gate_without_a_matching_permit_denies(self, billing):
        """When no permit would match, an approval gate denies: approving cannot help."""
        decision = billing.evaluate(_refund(500000))
        assert (decision.effect, decision.tier) == ("deny", None)

    def test_context_outside_the_schema_fails_closed(self, billing):
        """An extra context attribute the schema forbids denies instead of raising."""
        decision = billing.evaluate(_refund(1999, bogus=1))
        assert decision.effect == "deny"
        assert "fail closed" in decision.reason
        assert decision.errors

    def test_wrong_context_type_fails_closed(self, billing):
        """A context attribute of the wrong type denies instead of raising."""
        decision = billing.evaluate(_refund(1999, data_class=3))
        assert decision.effect == "deny"


class TestCaseTables:
    @pytest.mark.parametrize("path", CASE_TABLES, ids=lambda p: p.parent.name)
    def test_example_cases_pass(self, path):
        """Every case in the shipped example tables passes."""
        table, engine = load_cases(path)
        failed = [r for r in run_cases(table, engine) if not r.ok]
        assert failed == []

    def test_wrong_expectation_is_reported(self, tmp_path):
        """A case whose expectation is wrong comes back ok=False with what it got."""
        table_path = tmp_path / "cases.yaml"
        case = {
            "name": "cross-tenant lookup is not allowed",
            "principal": {"agent": "a", "workflow": "w", "tenant": "acme"},
            "action": "lookup_charge",
            "resource": {"type": "Charge", "id": "ch_9", "tenant": "globex"},
            "expect": "allow",
        }
        table_path.write_text(
            yaml.safe_dump(
                {
                    "policies": str(BILLING / "policies.cedar"),
                    "schema": str(BILLING / "schema.cedarschema"),
                    "defaults": {"approvals_granted": 0, "hour_utc": 9, "weekday": 1},
                    "cases": [case],
                }
            )
        )
        (result,) = run_cases(*load_cases(table_path, roots=[BILLING]))
        assert (result.ok, result.expected, result.got) == (False, "allow", "deny")
        assert result.policy_ids == ("tenant-isolation",)

    def test_wrong_policy_ids_are_reported(self, tmp_path):
        """A case naming the wrong determining policy fails even if the effect matches."""
        table_path = tmp_path / "cases.yaml"
        table = yaml.safe_load((BILLING / "cases.yaml").read_text())
        table["contract"] = str(BILLING / "contract.yaml")
        table["cases"] = [{**table["cases"][0], "policies": ["billing-read-charges"]}]
        table_path.write_text(yaml.safe_dump(table))
        (result,) = run_cases(*load_cases(table_path, roots=[BILLING]))
        assert not result.ok

    def test_malformed_table(self, tmp_path):
        """A table with an unknown key is a PolicyTestError."""
        table_path = tmp_path / "cases.yaml"
        table_path.write_text("contract: c.yaml\ncases: []\nextra: 1\n")
        with pytest.raises(PolicyTestError, match="not a policy test table"):
            load_cases(table_path)

    def test_table_must_name_a_policy_set(self, tmp_path):
        """A table with neither contract nor policies+schema is a PolicyTestError."""
        table_path = tmp_path / "cases.yaml"
        case = {
            "name": "n",
            "principal": {"agent": "a", "workflow": "w", "tenant": "t"},
            "action": "x",
            "resource": {"type": "Charge", "id": "c"},
            "expect": "deny",
        }
        table_path.write_text(yaml.safe_dump({"cases": [case]}))
        with pytest.raises(PolicyTestError, match="name the policy set"):
            load_cases(table_path)


PERMIT_REFUNDS = '@id("refunds")\npermit (principal, action == Action::"refund", resource);\n'


def _gate(policy_id: str, tier: str, above: int) -> str:
    return (
        f'@id("{policy_id}")\n@approval_tier("{tier}")\n'
        'forbid (principal, action == Action::"refund", resource)\n'
        f"when {{ context has amount_minor && context.amount_minor > {above} }}\n"
        "unless { context.approvals_granted >= 1 };\n"
    )


class TestFailingClosed:
    def test_an_engine_that_raises_denies(self, billing, monkeypatch):
        """Whatever cedarpy raises becomes a deny, never an allow or an exception."""

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("engine down")

        monkeypatch.setattr("charter.policy._cedar.cedarpy.is_authorized", broken)
        decision = billing.evaluate(_refund(1999))
        assert (decision.effect, decision.policy_ids) == ("deny", ())
        assert decision.reason == "policy engine failed: engine down"

    def test_an_error_inside_a_forbid_denies_what_a_permit_allows(self):
        """Cedar skips a forbid whose condition errors (here: an overflow) and would allow;
        Charter denies and says why."""
        overflow = (
            '@id("overflowing")\nforbid (principal, action == Action::"refund", resource)\n'
            "when { context has amount_minor && context.amount_minor + 9223372036854775807 > 0 };\n"
        )
        engine = CedarPolicy(policies=PERMIT_REFUNDS + overflow, schema=SCHEMA)
        decision = engine.evaluate(_refund(1))
        assert decision.effect == "deny"
        assert decision.reason.startswith("policy evaluation error (fail closed):")
        assert len(decision.errors) == 1


class TestSeveralGates:
    """Two approval gates holding one request: the strictest tier applies, whichever Cedar
    names first, so no ordering lets a two-person refund through on one signature."""

    POLICIES = PERMIT_REFUNDS + _gate("a-finance", "finance", 100) + _gate("b-board", "board", 1000)

    def test_the_tier_most_approvers_sign_applies(self):
        for approvers in ({"finance": 1, "board": 3}, {"board": 3, "finance": 1}):
            engine = CedarPolicy(policies=self.POLICIES, schema=SCHEMA, approvers=approvers)
            decision = engine.evaluate(_refund(5000))
            assert (decision.effect, decision.tier) == ("approval", "board")
            assert decision.tiers == ("finance", "board")
            assert sorted(decision.policy_ids) == ["a-finance", "b-board"]
        stricter_finance = CedarPolicy(
            policies=self.POLICIES, schema=SCHEMA, approvers={"finance": 4, "board": 3}
        )
        assert stricter_finance.evaluate(_refund(5000)).tier == "finance"

    def test_a_tier_the_contract_does_not_rank_ranks_below_every_ranked_one(self):
        engine = CedarPolicy(policies=self.POLICIES, schema=SCHEMA, approvers={"board": 1})
        assert engine.evaluate(_refund(5000)).tier == "board"

    def test_without_the_contracts_tiers_the_first_gate_by_id_applies(self):
        engine = CedarPolicy(policies=self.POLICIES, schema=SCHEMA)
        decision = engine.evaluate(_refund(5000))
        assert (decision.tier, decision.tiers) == ("finance", ("finance", "board"))

    def test_one_gate_alone_asks_for_its_own_tier(self):
        engine = CedarPolicy(
            policies=self.POLICIES, schema=SCHEMA, approvers={"finance": 1, "board": 3}
        )
        decision = engine.evaluate(_refund(500))
        assert (decision.effect, decision.tier, decision.tiers) == (
            "approval",
            "finance",
            ("finance",),
        )
        assert engine.evaluate(_refund(50)).effect == "allow"

    def test_a_gate_beside_a_plain_forbid_is_a_deny(self):
        plain = (
            '@id("no-big-refunds")\nforbid (principal, action == Action::"refund", resource)\n'
            "when { context has amount_minor && context.amount_minor > 2000 };\n"
        )
        engine = CedarPolicy(policies=self.POLICIES + plain, schema=SCHEMA)
        decision = engine.evaluate(_refund(5000))
        assert (decision.effect, decision.tier, decision.tiers) == ("deny", None, ())
        assert "no-big-refunds" in decision.policy_ids


class TestNesting:
    """Brackets are counted before Cedar parses (its parser recurses natively); those in
    comments count too, which is how these tests reach the limit without a policy that deep."""

    ALLOW = '@id("lookup")\n' + LOOKUP

    def _loads(self, brackets: str) -> bool:
        return bool(CedarPolicy(policies=f"{self.ALLOW}// {brackets}\n", schema=SCHEMA).text)

    @pytest.mark.parametrize(
        ("brackets", "loads"),
        [
            ("(" * 64, True),
            ("(" * 65, False),
            ("[" * 30 + "{" * 35, False),
            ("()" * 200, True),
            ("((" + ")" + "(" * 63, True),
            ("((" + ")" + "(" * 64, False),
            ("))" + "(" * 64, True),
            ("))" + "(" * 65, False),
        ],
    )
    def test_depth_is_counted_as_brackets_open_and_close(self, brackets, loads):
        if loads:
            assert self._loads(brackets)
        else:
            with pytest.raises(PolicyLoadError, match="nest deeper than 64 levels"):
                CedarPolicy(policies=f"{self.ALLOW}// {brackets}\n", schema=SCHEMA)


class TestParseErrorLines:
    """A parse error names the line its failing statement starts on, counted from line 1."""

    def test_a_leading_blank_line_counts(self):
        message = _load_error(f'\n@id("a")\n{LOOKUP}bad(\n')
        assert message.startswith("test.cedar:4: policy starting 'bad(' does not parse")

    def test_the_statement_is_found_after_the_ones_before_it(self):
        """The failing text also stands in a comment above: the line is the statement's."""
        padding = "// " + "x" * 200 + "\n"
        text = f'// bad(\n@id("a")\n{LOOKUP}{padding}@id("b")\n{LOOKUP}bad(\n'
        assert _load_error(text).startswith("test.cedar:7:")


class TestCaseResults:
    """What `charter policy test` reports for each row, on policies of the test's own."""

    def _run(self, tmp_path: Path, **case: Any) -> Any:
        (tmp_path / "p.cedar").write_text(TestSeveralGates.POLICIES)
        (tmp_path / "s.cedarschema").write_text(SCHEMA)
        row = {
            "name": "a refund",
            "principal": {"agent": "a", "workflow": "w", "tenant": "acme"},
            "action": "refund",
            "resource": {"type": "Charge", "id": "ch_1", "tenant": "acme"},
            "context": {"amount_minor": 500},
            **case,
        }
        table = {
            "policies": "p.cedar",
            "schema": "s.cedarschema",
            "defaults": {"approvals_granted": 0, "hour_utc": 9, "weekday": 1, "amount_minor": 1},
            "cases": [row],
        }
        (tmp_path / "cases.yaml").write_text(yaml.safe_dump(table))
        (result,) = run_cases(*load_cases(tmp_path / "cases.yaml"))
        return result

    def test_the_tier_asked_for_must_be_the_one_expected(self, tmp_path):
        held = self._run(tmp_path, expect="approval", tier="finance")
        assert (held.ok, held.expected, held.got) == (
            True,
            "approval (finance)",
            "approval (finance)",
        )
        assert held.policy_ids == ("a-finance",)
        assert held.reason == "held by a-finance: needs approval (finance)"
        wrong = self._run(tmp_path, expect="approval", tier="board")
        assert (wrong.ok, wrong.expected, wrong.got) == (
            False,
            "approval (board)",
            "approval (finance)",
        )

    def test_an_approval_expected_without_a_tier_matches_any(self, tmp_path):
        assert self._run(tmp_path, expect="approval").ok

    def test_a_case_context_overrides_the_defaults(self, tmp_path):
        """The defaults say amount 1 (allowed); the row's 500 is what is judged."""
        assert not self._run(tmp_path, expect="allow").ok
        allowed = self._run(tmp_path, expect="allow", context={})
        assert (allowed.ok, allowed.got, allowed.policy_ids) == (True, "allow", ("refunds",))

    def test_the_determining_policies_must_be_exactly_those_named(self, tmp_path):
        assert self._run(tmp_path, expect="approval", policies=["a-finance"]).ok
        assert not self._run(tmp_path, expect="approval", policies=["a-finance", "b-board"]).ok
        assert not self._run(tmp_path, expect="approval", policies=[]).ok

    def test_a_table_naming_a_contract_asks_for_the_gates_tier(self, tmp_path):
        """Through a contract, the strictest tier applies, as at the gate."""
        (tmp_path / "p.cedar").write_text(TestSeveralGates.POLICIES)
        (tmp_path / "s.cedarschema").write_text(SCHEMA)
        contract = yaml.safe_load((BILLING / "contract.yaml").read_text())
        contract["policy"] = {"policies": "p.cedar", "schema": "s.cedarschema"}
        contract["approval_tiers"] = {
            "finance": {"approvers": 1, "expires_after": "1h"},
            "board": {"approvers": 3, "expires_after": "1h"},
        }
        (tmp_path / "contract.yaml").write_text(yaml.safe_dump(contract))
        row = {
            "name": "a big refund",
            "principal": {"agent": "a", "workflow": "w", "tenant": "acme"},
            "action": "refund",
            "resource": {"type": "Charge", "id": "ch_1", "tenant": "acme"},
            "context": {"amount_minor": 5000, "approvals_granted": 0, "hour_utc": 9, "weekday": 1},
            "expect": "approval",
            "tier": "board",
        }
        table = {"contract": "contract.yaml", "cases": [row]}
        (tmp_path / "cases.yaml").write_text(yaml.safe_dump(table))
        (result,) = run_cases(*load_cases(tmp_path / "cases.yaml"))
        assert (result.ok, result.got) == (True, "approval (board)")


def test_a_loaded_case_cannot_be_changed(tmp_path):
    """Rows are values: a runner cannot alter what a case expects or asks about."""
    table = yaml.safe_load((BILLING / "cases.yaml").read_text())
    table["contract"] = str(BILLING / "contract.yaml")
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(table))
    loaded, _ = load_cases(tmp_path / "cases.yaml", roots=[BILLING])
    case = loaded.cases[0]
    targets = (
        (loaded, "defaults"),
        (case, "expect"),
        (case.principal, "tenant"),
        (case.resource, "tenant"),
    )
    for target, field in targets:
        with pytest.raises(ValidationError, match="frozen"):
            setattr(target, field, "x")


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ({"policies": "p.cedar", "schema": "s.cedarschema", "cases": []}, "cases"),
        ({"policies": "p.cedar", "cases": [{}]}, "cases.0"),
    ],
)
def test_a_table_without_cases_is_not_one(tmp_path, table, said):
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(table))
    with pytest.raises(PolicyTestError, match=f"not a policy test table: {said}"):
        load_cases(tmp_path / "cases.yaml")


@pytest.mark.parametrize("key", ["policies", "schema"])
def test_a_table_naming_half_a_policy_set_is_refused(tmp_path, key):
    row = {
        "name": "n",
        "principal": {"agent": "a", "workflow": "w", "tenant": "t"},
        "action": "x",
        "resource": {"type": "Charge", "id": "c"},
        "expect": "deny",
    }
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump({key: "p.cedar", "cases": [row]}))
    with pytest.raises(PolicyTestError, match="with both 'policies:' and 'schema:'"):
        load_cases(tmp_path / "cases.yaml")


def test_a_path_that_is_no_path_is_refused(tmp_path):
    row = {
        "name": "n",
        "principal": {"agent": "a", "workflow": "w", "tenant": "t"},
        "action": "x",
        "resource": {"type": "Charge", "id": "c"},
        "expect": "deny",
    }
    table = {"policies": "p\x00.cedar", "schema": "s.cedarschema", "cases": [row]}
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(table))
    with pytest.raises(PolicyTestError, match="is not a usable path"):
        load_cases(tmp_path / "cases.yaml")


def test_a_set_whose_statements_each_parse_still_gets_an_error_naming_the_file():
    """Cedar refused the whole, yet no statement fails alone: the file is named, no line."""
    message = _locate_parse_error(
        '@id("a")\n' + LOOKUP, "test.cedar", ValueError("unexpected end"), quote=True
    )
    assert message == "test.cedar: policies do not parse: unexpected end"
    withheld = _locate_parse_error(LOOKUP, "key.pem", ValueError("quoted text"), quote=False)
    assert withheld.startswith("key.pem: policies do not parse (Cedar's message quotes")
    assert "quoted text" not in withheld
