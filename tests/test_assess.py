"""Autonomy assessment: the rule table, the file loader, contract lint and both commands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pytest
import yaml
from click.testing import CliRunner

from charter import Autonomy, Effect, load_contract
from charter._assess import (
    _MONEY,
    _RULES,
    _SCORE_BANDS,
    Detectability,
    Maturity,
    Reversibility,
    Rung,
    Sensitivity,
    ToolRisk,
    granted_rung,
    lint_contract,
    load_assessment,
    recommend,
)
from charter.cli._assess import assess_command, lint_command
from charter.examples import BILLING
from charter.exceptions import AssessmentError

if TYPE_CHECKING:
    from enum import StrEnum

EXAMPLES = BILLING.parent
BILLING_CONTRACT = BILLING / "contract.yaml"
BILLING_ASSESSMENT = BILLING / "assessment.yaml"
DOCS = Path(__file__).parent.parent / "docs" / "autonomy.md"

LOW = {  # zero points on every rating: what each test then raises
    "financial_impact_usd": 0,
    "reversibility": "reversible",
    "data_sensitivity": "public",
    "error_detectability": "immediate",
    "maturity": "proven",
}


def rate(**changes: Any) -> ToolRisk:
    return ToolRisk.model_validate({**LOW, **changes})


def contract_file(tmp_path: Path, tools: dict[str, Any], **top: Any) -> Path:
    data = {
        "charter": 1,
        "agent": "lint-agent",
        "version": "1",
        "workflow": "lint-flow",
        "tenants": ["acme"],
        "budget": {"per_run_usd": 1.0},
        "policy": {"policies": "p.cedar", "schema": "s.cedarschema"},
        "approval_tiers": {"ops": {"approvers": 1}},
        "tools": tools,
        **top,
    }
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assessment_file(tmp_path: Path, tools: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "assessment.yaml"
    path.write_text(yaml.safe_dump({**top, "tools": tools}))
    return path


def invoke(*args: str) -> tuple[int, str]:
    group = click.Group("charter", commands=[assess_command, lint_command])
    result = CliRunner().invoke(group, [str(a) for a in args])
    return result.exit_code, result.output


class TestRuleTable:
    @pytest.mark.parametrize(
        ("usd", "score", "rung"),
        [
            (0, 0, Rung.AUTONOMOUS),
            (0.01, 1, Rung.AUTONOMOUS),
            (99.99, 1, Rung.AUTONOMOUS),
            (100, 2, Rung.AUTONOMOUS),
            (999.99, 2, Rung.AUTONOMOUS),
            (1000, 3, Rung.GATED),
            (9999.99, 3, Rung.GATED),
            (10_000, 4, Rung.SUGGEST),
            (1_000_000, 4, Rung.SUGGEST),
        ],
    )
    def test_financial_bands(self, usd: float, score: int, rung: Rung) -> None:
        """Each financial band adds its points; $1,000 and $10,000 cap the rung."""
        found = recommend("t", rate(financial_impact_usd=usd))
        assert (found.risk_score, found.rung) == (score, rung)

    @pytest.mark.parametrize(
        ("key", "value", "score", "rung"),
        [
            ("reversibility", "compensable", 1, Rung.AUTONOMOUS),
            ("reversibility", "irreversible", 3, Rung.SUGGEST),
            ("data_sensitivity", "internal", 1, Rung.AUTONOMOUS),
            ("data_sensitivity", "confidential", 2, Rung.GATED),
            ("data_sensitivity", "restricted", 3, Rung.SUGGEST),
            ("error_detectability", "delayed", 1, Rung.AUTONOMOUS),
            ("error_detectability", "silent", 2, Rung.GATED),
            ("maturity", "piloted", 1, Rung.AUTONOMOUS),
            ("maturity", "new", 2, Rung.AUTONOMOUS),
        ],
    )
    def test_one_rating(self, key: str, value: str, score: int, rung: Rung) -> None:
        """One raised rating alone gives its points and, where the table says, its cap."""
        found = recommend("t", rate(**{key: value}))
        assert (found.risk_score, found.rung) == (score, rung)

    @pytest.mark.parametrize(
        ("changes", "score", "rung"),
        [
            ({"error_detectability": "delayed", "maturity": "piloted"}, 2, Rung.AUTONOMOUS),
            (
                {
                    "data_sensitivity": "internal",
                    "error_detectability": "delayed",
                    "maturity": "piloted",
                },
                3,
                Rung.GATED,
            ),
            (
                {
                    "financial_impact_usd": 500,
                    "reversibility": "compensable",
                    "data_sensitivity": "internal",
                    "error_detectability": "delayed",
                    "maturity": "piloted",
                },
                6,
                Rung.GATED,
            ),
            (
                {
                    "financial_impact_usd": 500,
                    "reversibility": "compensable",
                    "data_sensitivity": "internal",
                    "error_detectability": "delayed",
                    "maturity": "new",
                },
                7,
                Rung.SUGGEST,
            ),
            (
                {
                    "financial_impact_usd": 10_000,
                    "reversibility": "irreversible",
                    "data_sensitivity": "confidential",
                },
                9,
                Rung.SUGGEST,
            ),
            (
                {
                    "financial_impact_usd": 10_000,
                    "reversibility": "irreversible",
                    "data_sensitivity": "restricted",
                },
                10,
                Rung.DRAFT,
            ),
        ],
    )
    def test_score_band_boundaries(self, changes: dict[str, Any], score: int, rung: Rung) -> None:
        """Scores 0-2 are autonomous, 3-6 need an approval tier, 7-9 suggest, 10+ draft."""
        found = recommend("t", rate(**changes))
        assert (found.risk_score, found.rung) == (score, rung)

    def test_silent_errors_from_a_new_tool_are_draft(self) -> None:
        """Silent errors plus a new tool cap at draft, and the reason says so."""
        found = recommend("t", rate(error_detectability="silent", maturity="new"))
        assert found.rung is Rung.DRAFT
        assert found.reasons[0].startswith("capped at draft by silent errors from a new tool")

    def test_a_combination_that_agrees_with_the_band_is_still_named(self) -> None:
        """When the score alone gives draft, the silent-and-new cap is named beside it."""
        found = recommend(
            "t",
            rate(
                financial_impact_usd=10_000,
                reversibility="irreversible",
                error_detectability="silent",
                maturity="new",
            ),
        )
        assert (found.rung, found.risk_score) == (Rung.DRAFT, 11)
        assert found.reasons[0].endswith("also capped there by silent errors from a new tool")
        assert "silent errors from a new tool: at most draft" in found.reasons

    def test_silent_errors_from_a_piloted_tool_are_gated(self) -> None:
        """The draft combination needs both ratings; silent alone caps at an approval tier."""
        found = recommend("t", rate(error_detectability="silent", maturity="piloted"))
        assert found.rung is Rung.GATED

    def test_a_cap_below_the_band_names_the_ratings_that_bind(self) -> None:
        """When caps decide, the first reason names every rating capping at that rung."""
        found = recommend("t", rate(reversibility="irreversible", data_sensitivity="restricted"))
        assert found.rung is Rung.SUGGEST
        assert found.reasons[0] == (
            "capped at suggest by reversibility irreversible, data_sensitivity restricted "
            "(risk score 6 alone: autonomous + approval)"
        )

    def test_reasons_list_every_rating_that_counted(self) -> None:
        """After the deciding reason comes one line per rating that added points or a cap."""
        found = recommend("t", rate(financial_impact_usd=2500, maturity="piloted"))
        assert found.reasons == (
            (
                "risk score 4 is in the 3-6 band: autonomous + approval; "
                "also capped there by financial_impact_usd $2,500 (>= $1,000)"
            ),
            "financial_impact_usd $2,500 (>= $1,000): +3, at most autonomous + approval",
            "maturity piloted: +1",
        )

    def test_reads_are_autonomous_whatever_their_ratings(self) -> None:
        """A read tool is autonomous even on restricted data, and its reason says why."""
        found = recommend("lookup", ToolRisk(effect=Effect.READ, data_sensitivity="restricted"))
        assert (found.rung, found.risk_score) == (Rung.AUTONOMOUS, 3)
        assert found.reasons[0].startswith("effect read")

    def test_irreversible_effect_implies_irreversible_reversibility(self) -> None:
        """`effect: irreversible` needs no reversibility rating and scores as irreversible."""
        ratings = {k: v for k, v in LOW.items() if k != "reversibility"}
        found = recommend("t", ToolRisk.model_validate({"effect": "irreversible", **ratings}))
        assert (found.rung, found.risk_score) == (Rung.SUGGEST, 3)

    @pytest.mark.parametrize(
        ("rung", "expected"),
        [
            (Rung.DRAFT, (Autonomy.DRAFT, False)),
            (Rung.SUGGEST, (Autonomy.SUGGEST, True)),
            (Rung.GATED, (Autonomy.AUTONOMOUS, True)),
            (Rung.AUTONOMOUS, (Autonomy.AUTONOMOUS, False)),
        ],
    )
    def test_rungs_map_onto_contract_keys(
        self, rung: Rung, expected: tuple[Autonomy, bool]
    ) -> None:
        """Every rung is a contract's autonomy value plus whether an approval tier is needed."""
        assert (rung.autonomy, rung.approval_required) == expected

    @pytest.mark.parametrize(
        ("rating", "values"),
        [
            ("reversibility", Reversibility),
            ("data_sensitivity", Sensitivity),
            ("error_detectability", Detectability),
            ("maturity", Maturity),
        ],
    )
    def test_every_value_has_a_rule(self, rating: str, values: type[StrEnum]) -> None:
        """The rule table covers every value a rating can take."""
        assert set(_RULES[rating]) == set(values)

    def test_docs_carry_the_rule_table(self) -> None:
        """docs/autonomy.md lists every rule with the points and cap the code applies."""
        text = " ".join(DOCS.read_text().split())
        for rating, table in _RULES.items():
            for value, rule in table.items():
                cap = rule.cap.label if rule.cap else "-"
                assert f"| {rating} | `{value}` | {rule.points} | {cap} |" in text, value
        for floor, rule in _MONEY:
            cap = rule.cap.label if rule.cap else "-"
            assert f"| >= {floor:,} | {rule.points} | {cap} |" in text, floor
        for floor, rung in _SCORE_BANDS:
            assert re.search(rf"\| {floor}(-\d+|\+) \| {re.escape(rung.label)} \|", text), floor


class TestLoad:
    def test_billing_example_loads(self) -> None:
        """The shipped billing assessment validates and keeps its tools in file order."""
        loaded = load_assessment(BILLING_ASSESSMENT)
        assert list(loaded.tools) == ["lookup_charge", "refund", "create_ticket", "send_macro"]
        assert loaded.workflow == "billing-dispute"

    def test_unknown_key_names_the_path(self, tmp_path: Path) -> None:
        """A misspelt key is an error naming the file and the full key path."""
        path = assessment_file(tmp_path, {"refund": {**LOW, "reversability": "reversible"}})
        with pytest.raises(AssessmentError) as caught:
            load_assessment(path)
        assert str(path) in caught.value.message
        assert "tools.refund.reversability: unknown key" in caught.value.message
        assert caught.value.code == "assessment_invalid"

    def test_wrong_enum_value_names_the_path_and_the_choices(self, tmp_path: Path) -> None:
        """A value outside an enum names the key path, the allowed values and what was given."""
        path = assessment_file(tmp_path, {"refund": {**LOW, "reversibility": "undoable"}})
        with pytest.raises(AssessmentError) as caught:
            load_assessment(path)
        message = caught.value.message
        assert "tools.refund.reversibility:" in message
        assert "'compensable'" in message
        assert "(got 'undoable')" in message

    @pytest.mark.parametrize("value", ["lots", True, -1, float("inf")])
    def test_financial_impact_is_a_finite_non_negative_number(
        self, tmp_path: Path, value: object
    ) -> None:
        """Strings, booleans, negatives and infinity are refused for financial_impact_usd."""
        path = assessment_file(tmp_path, {"refund": {**LOW, "financial_impact_usd": value}})
        with pytest.raises(AssessmentError, match=r"tools\.refund\.financial_impact_usd"):
            load_assessment(path)

    def test_write_tools_must_rate_everything(self, tmp_path: Path) -> None:
        """A write tool with a missing rating is an error listing what is missing."""
        path = assessment_file(tmp_path, {"refund": {"effect": "write", "maturity": "new"}})
        with pytest.raises(AssessmentError) as caught:
            load_assessment(path)
        assert "tools.refund: a write tool must rate financial_impact_usd, reversibility" in (
            caught.value.message
        )

    def test_irreversible_effect_contradicting_reversibility(self, tmp_path: Path) -> None:
        """`effect: irreversible` with `reversibility: reversible` is refused."""
        path = assessment_file(tmp_path, {"t": {**LOW, "effect": "irreversible"}})
        with pytest.raises(AssessmentError, match="contradicts reversibility reversible"):
            load_assessment(path)

    def test_pii_means_restricted(self, tmp_path: Path) -> None:
        """`data_sensitivity: pii` is read as restricted."""
        path = assessment_file(tmp_path, {"t": {**LOW, "data_sensitivity": "PII"}})
        assert load_assessment(path).tools["t"].data_sensitivity == "restricted"

    def test_json_files_load(self, tmp_path: Path) -> None:
        """A `.json` assessment is read as JSON."""
        path = tmp_path / "assessment.json"
        path.write_text(json.dumps({"tools": {"t": LOW}}))
        assert list(load_assessment(path).tools) == ["t"]

    @pytest.mark.parametrize(
        ("name", "text", "expected"),
        [
            ("a.yaml", "tools: [unclosed", "not valid YAML"),
            ("a.json", "{", "not valid JSON"),
            ("a.yaml", "- a list", "an assessment is a mapping"),
            ("a.yaml", "workflow: x", "tools: required key is missing"),
        ],
    )
    def test_unusable_files(self, tmp_path: Path, name: str, text: str, expected: str) -> None:
        """Files that do not parse or hold no tools are assessment errors."""
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(AssessmentError, match=expected):
            load_assessment(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is an assessment error, not an OSError."""
        with pytest.raises(AssessmentError, match="cannot read assessment"):
            load_assessment(tmp_path / "nope.yaml")


class TestLint:
    @pytest.mark.parametrize(
        ("grant", "rung"),
        [
            ({"effect": "read", "autonomy": "draft"}, Rung.AUTONOMOUS),
            ({"effect": "write", "autonomy": "draft"}, Rung.DRAFT),
            ({"effect": "write", "autonomy": "suggest", "approval": "ops"}, Rung.SUGGEST),
            ({"effect": "irreversible", "approval": "ops"}, Rung.SUGGEST),
            ({"effect": "write", "approval": "ops"}, Rung.GATED),
            ({"effect": "write"}, Rung.AUTONOMOUS),
        ],
    )
    def test_granted_rung(self, tmp_path: Path, grant: dict[str, str], rung: Rung) -> None:
        """The rung a grant gives is what the gate enforces (reads run, irreversible waits)."""
        contract = load_contract(contract_file(tmp_path, {"t": grant}))
        assert granted_rung(contract, "t") is rung

    @pytest.mark.parametrize("example", ["billing", "deploys", "support"])
    def test_examples_have_no_warnings(self, example: str) -> None:
        """The shipped example contracts pass the contract-only checks."""
        found = lint_contract(load_contract(EXAMPLES / example / "contract.yaml"))
        assert [f for f in found if f.severity == "warning"] == []

    def test_billing_matches_its_assessment(self) -> None:
        """The billing contract grants no more than its assessment recommends."""
        found = lint_contract(load_contract(BILLING_CONTRACT), load_assessment(BILLING_ASSESSMENT))
        assert found == []

    def test_over_granted_autonomy_warns(self, tmp_path: Path) -> None:
        """An autonomous grant for a tool rated to suggest is a warning with the reason."""
        contract = load_contract(contract_file(tmp_path, {"pay": {"effect": "write"}}))
        path = assessment_file(tmp_path, {"pay": {**LOW, "financial_impact_usd": 50_000}})
        [finding] = lint_contract(contract, load_assessment(path))
        assert (finding.tool, finding.code) == ("pay", "autonomy_above_assessment")
        assert "recommends suggest" in finding.message
        assert "financial_impact_usd" in finding.message

    def test_missing_approval_tier_warns(self, tmp_path: Path) -> None:
        """An autonomous write without a tier, rated to need one, is `approval_tier_missing`."""
        contract = load_contract(contract_file(tmp_path, {"note": {"effect": "write"}}))
        path = assessment_file(tmp_path, {"note": {**LOW, "data_sensitivity": "confidential"}})
        assert [f.code for f in lint_contract(contract, load_assessment(path))] == [
            "approval_tier_missing"
        ]

    def test_a_stricter_contract_is_clean(self, tmp_path: Path) -> None:
        """A contract holding a tool lower than recommended raises nothing."""
        grants = {"note": {"effect": "write", "autonomy": "draft"}}
        contract = load_contract(contract_file(tmp_path, grants))
        path = assessment_file(tmp_path, {"note": LOW})
        assert lint_contract(contract, load_assessment(path)) == []

    def test_irreversible_rating_on_a_write_grant_is_an_effect_mismatch(
        self, tmp_path: Path
    ) -> None:
        """A tool the contract calls a write but the assessment finds irreversible is flagged."""
        grants = {"wipe": {"effect": "write", "approval": "ops"}}
        contract = load_contract(contract_file(tmp_path, grants))
        path = assessment_file(tmp_path, {"wipe": {**LOW, "reversibility": "irreversible"}})
        codes = [f.code for f in lint_contract(contract, load_assessment(path))]
        assert codes == ["effect_mismatch", "autonomy_above_assessment"]

    def test_unassessed_and_ungranted_tools(self, tmp_path: Path) -> None:
        """A granted tool not assessed warns; an assessed tool not granted is info."""
        contract = load_contract(contract_file(tmp_path, {"a": {"effect": "read"}}))
        found = lint_contract(contract, load_assessment(assessment_file(tmp_path, {"b": LOW})))
        assert [(f.tool, f.code, f.severity) for f in found] == [
            ("a", "not_assessed", "warning"),
            ("b", "not_granted", "info"),
        ]

    def test_assessment_for_another_workflow_warns(self, tmp_path: Path) -> None:
        """An assessment naming another workflow or environment is a contract-level warning."""
        contract = load_contract(contract_file(tmp_path, {"a": {"effect": "read"}}))
        path = assessment_file(
            tmp_path, {"a": {"effect": "read"}}, workflow="other", environment="prod"
        )
        found = lint_contract(contract, load_assessment(path))
        assert [(f.tool, f.code) for f in found] == [
            (None, "workflow_mismatch"),
            (None, "environment_mismatch"),
        ]

    def test_suggest_without_a_tier_warns(self, tmp_path: Path) -> None:
        """A suggest-stage write with no approval tier can never run, so lint warns."""
        grants = {"note": {"effect": "write", "autonomy": "suggest"}}
        found = lint_contract(load_contract(contract_file(tmp_path, grants)))
        assert [(f.tool, f.code) for f in found] == [("note", "suggest_without_tier")]

    def test_prod_without_budget_warns(self, tmp_path: Path) -> None:
        """A prod contract with no per-run budget warns."""
        path = contract_file(tmp_path, {"a": {"effect": "read"}}, environment="prod", budget={})
        assert [f.code for f in lint_contract(load_contract(path))] == ["prod_without_budget"]

    def test_ungated_write_is_info_without_an_assessment(self, tmp_path: Path) -> None:
        """Without an assessment, an autonomous write with no tier is info, not a warning."""
        found = lint_contract(load_contract(contract_file(tmp_path, {"w": {"effect": "write"}})))
        assert [(f.code, f.severity) for f in found] == [("ungated_write", "info")]


class TestCli:
    def test_assess_json_shape(self) -> None:
        """`assess --json` prints one object per tool with stable keys, and exits 0."""
        code, output = invoke("assess", BILLING_ASSESSMENT, "--json")
        assert code == 0, output
        rows = json.loads(output)
        assert [r["tool"] for r in rows] == [
            "lookup_charge",
            "refund",
            "create_ticket",
            "send_macro",
        ]
        assert set(rows[1]) == {
            "tool",
            "effect",
            "autonomy",
            "approval_required",
            "level",
            "risk_score",
            "reasons",
        }
        assert (rows[1]["autonomy"], rows[1]["approval_required"]) == ("autonomous", True)
        assert rows[1]["level"] == "autonomous_with_approval"

    def test_assess_table(self) -> None:
        """`assess` prints a table naming each tool and its recommendation."""
        code, output = invoke("assess", BILLING_ASSESSMENT)
        assert code == 0, output
        assert "refund" in output
        assert "autonomous +" in output
        assert "risk score 6" in output

    def test_assess_invalid_file_exits_2_with_the_envelope(self, tmp_path: Path) -> None:
        """An invalid assessment exits 2 and prints the JSON error envelope under --json."""
        path = assessment_file(tmp_path, {"t": {**LOW, "maturity": "ancient"}})
        code, output = invoke("assess", path, "--json")
        assert code == 2
        error = json.loads(output)["error"]
        assert error["code"] == "assessment_invalid"
        assert "tools.t.maturity" in error["message"]

    def test_lint_clean_exits_0(self) -> None:
        """`contract lint --assessment` on the matching billing pair exits 0 with no warnings."""
        code, output = invoke(
            "lint", BILLING_CONTRACT, "--assessment", BILLING_ASSESSMENT, "--json"
        )
        assert code == 0, output
        assert json.loads(output) == {
            "file": str(BILLING_CONTRACT),
            "assessment": str(BILLING_ASSESSMENT),
            "warnings": [],
            "info": [],
        }

    def test_lint_warnings_exit_1(self, tmp_path: Path) -> None:
        """Over-granted autonomy makes lint exit 1 and list the warning."""
        data = yaml.safe_load(BILLING_ASSESSMENT.read_text())
        data["tools"]["refund"]["reversibility"] = "irreversible"
        path = tmp_path / "assessment.yaml"
        path.write_text(yaml.safe_dump(data))
        code, output = invoke("lint", BILLING_CONTRACT, "--assessment", path, "--json")
        assert code == 1
        warnings = json.loads(output)["warnings"]
        assert {(w["tool"], w["code"]) for w in warnings} == {
            ("refund", "effect_mismatch"),
            ("refund", "autonomy_above_assessment"),
        }
        assert set(warnings[0]) == {"tool", "code", "message"}

    def test_lint_table_without_assessment(self) -> None:
        """Plain `contract lint` prints info rows and says there are no warnings."""
        code, output = invoke("lint", BILLING_CONTRACT)
        assert code == 0, output
        assert "ungated_write" in output
        assert "no warnings in" in output

    @pytest.mark.parametrize("which", ["contract", "assessment"])
    def test_lint_invalid_input_exits_2(self, tmp_path: Path, which: str) -> None:
        """A contract or assessment that does not load exits 2."""
        broken = tmp_path / "broken.yaml"
        broken.write_text("nope: [")
        args = (broken,) if which == "contract" else (BILLING_CONTRACT, "--assessment", broken)
        code, _ = invoke("lint", *args)
        assert code == 2
