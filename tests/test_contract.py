"""`load_contract`: strict validation whose errors name the file, the key path and the value."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import charter
from charter import Autonomy, Effect, load_contract
from charter.exceptions import ContractError

BILLING = Path(charter.__file__).parent / "examples" / "billing" / "contract.yaml"


def _error(path: Path) -> str:
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    return caught.value.message


class TestBillingExample:
    def test_loads(self):
        """The billing example contract loads with its tools and tiers."""
        contract = load_contract(BILLING)
        assert contract.agent == "billing-dispute-agent"
        assert set(contract.tools) == {"lookup_charge", "refund", "create_ticket", "send_macro"}
        assert contract.tools["refund"].effect is Effect.WRITE
        assert contract.approval_tiers["finance"].escalate_to == "finance_lead"

    def test_durations_become_seconds(self):
        """Duration strings like '72h' and '10s' are read as seconds."""
        contract = load_contract(BILLING)
        assert contract.approval_tiers["finance"].expires_after == 72 * 3600
        assert (contract.timeouts.tool, contract.timeouts.run) == (10, 15 * 60)

    def test_paths_resolve_against_the_contract_folder(self):
        """Policy files named in the contract resolve next to the contract."""
        contract = load_contract(BILLING)
        assert contract.resolve(contract.policy.policies) == BILLING.parent / "policies.cedar"

    def test_autonomy_override_per_tool(self, make_contract, contract_data):
        """A tool's own autonomy overrides the contract default."""
        contract_data["tools"]["purge"]["autonomy"] = "draft"
        contract = load_contract(make_contract(contract_data))
        assert contract.autonomy_for("purge") is Autonomy.DRAFT
        assert contract.autonomy_for("flaky") is Autonomy.AUTONOMOUS


class TestInvalidContracts:
    def test_error_code(self, make_contract):
        """Contract errors carry the stable code contract_invalid."""
        with pytest.raises(ContractError) as caught:
            load_contract(make_contract(colour="blue"))
        assert caught.value.code == "contract_invalid"

    def test_unknown_nested_key_names_file_and_path(self, make_contract, contract_data):
        """A misspelt key inside a tool names the file and the full key path."""
        contract_data["tools"]["record_write"]["efect"] = "write"
        message = _error(make_contract(contract_data))
        assert "contract.yaml" in message
        assert "tools.record_write.efect: unknown key" in message

    def test_escalation_to_a_tier_with_fewer_approvers_is_refused(
        self, make_contract, contract_data
    ):
        """An expiry must never make an action easier to approve."""
        contract_data["approval_tiers"] = {
            "ops": {
                "approvers": 2,
                "expires_after": "1h",
                "on_expiry": "escalate",
                "escalate_to": "lead",
            },
            "lead": {"approvers": 1, "expires_after": "1h"},
        }
        message = _error(make_contract(contract_data))
        assert "escalates to 'lead', which needs fewer approvers" in message

    def test_unknown_top_level_key(self, make_contract):
        """An unknown top-level key is named."""
        message = _error(make_contract(colour="blue"))
        assert "colour: unknown key" in message

    def test_wrong_type_names_path_and_value(self, make_contract):
        """A wrong type names the key path and shows the bad value."""
        message = _error(make_contract(max_turns="many"))
        assert "max_turns" in message
        assert "'many'" in message

    def test_bad_enum_value(self, make_contract, contract_data):
        """An effect outside read/write/irreversible names the path and value."""
        contract_data["tools"]["purge"]["effect"] = "delete"
        message = _error(make_contract(contract_data))
        assert "tools.purge.effect" in message
        assert "'delete'" in message

    def test_missing_required_key(self, make_contract, contract_data):
        """A missing required key is reported as missing."""
        del contract_data["workflow"]
        assert "workflow: required key is missing" in _error(make_contract(contract_data))

    def test_every_problem_is_reported(self, make_contract, contract_data):
        """Several problems are all listed in one error."""
        del contract_data["workflow"]
        contract_data["colour"] = "blue"
        message = _error(make_contract(contract_data))
        assert "2 problem(s)" in message
        assert "workflow" in message
        assert "colour" in message

    def test_bad_duration(self, make_contract):
        """A duration that is not like '30s' names the key and the value."""
        message = _error(make_contract(timeouts={"tool": "10 minutes"}))
        assert "timeouts.tool" in message
        assert "'10 minutes'" in message

    def test_irreversible_tool_needs_an_approval_tier(self, make_contract, contract_data):
        """An irreversible tool without `approval` is refused."""
        del contract_data["tools"]["launch"]["approval"]
        message = _error(make_contract(contract_data))
        assert "tools.launch is irreversible and needs an approval tier" in message

    def test_approval_naming_unknown_tier(self, make_contract, contract_data):
        """A tool whose approval names an undefined tier is refused."""
        contract_data["tools"]["record_write"]["approval"] = "board"
        message = _error(make_contract(contract_data))
        assert "tools.record_write.approval names unknown tier 'board'" in message

    def test_escalation_to_unknown_tier(self, make_contract, contract_data):
        """A tier that escalates to an undefined tier is refused."""
        contract_data["approval_tiers"]["ops"].update(on_expiry="escalate", escalate_to="cto")
        assert "escalate_to names unknown tier 'cto'" in _error(make_contract(contract_data))

    def test_agent_name_pattern(self, make_contract):
        """An agent name that is not lower-case is refused."""
        assert "agent" in _error(make_contract(agent="Billing Agent"))

    def test_non_mapping_yaml(self, tmp_path):
        """A YAML list is not a contract."""
        path = tmp_path / "contract.yaml"
        path.write_text("- charter\n- 1\n")
        assert "a contract is a YAML mapping, got list" in _error(path)

    def test_invalid_yaml(self, tmp_path):
        """Text that is not YAML is reported as such, with the file name."""
        path = tmp_path / "contract.yaml"
        path.write_text("charter: [1\nagent: x\n")
        message = _error(path)
        assert str(path) in message
        assert "not valid YAML" in message

    def test_missing_file(self, tmp_path):
        """A file that does not exist is a ContractError, not an OSError."""
        assert "cannot read contract" in _error(tmp_path / "absent.yaml")

    def test_unknown_format_version(self, make_contract):
        """`charter: 2` is a format this version does not read."""
        message = _error(make_contract(charter=2))
        assert "expected contract format 1, got 2" in message


class TestDigest:
    def test_stable_across_loads(self, make_contract):
        """Loading the same file twice gives the same digest."""
        path = make_contract()
        assert load_contract(path).digest == load_contract(path).digest

    def test_independent_of_location(self, make_contract, tmp_path):
        """The same contract in another folder has the same digest."""
        path = make_contract()
        copy = tmp_path / "elsewhere" / "contract.yaml"
        copy.parent.mkdir()
        shutil.copy(path, copy)
        assert load_contract(copy).digest == load_contract(path).digest

    def test_changes_when_a_value_changes(self, make_contract):
        """Changing one value changes the digest."""
        before = load_contract(make_contract()).digest
        after = load_contract(make_contract(max_turns=7)).digest
        assert before != after

    def test_is_sha256_hex(self, make_contract):
        """The digest is 64 hex characters."""
        digest = load_contract(make_contract()).digest
        assert len(digest) == 64
        assert set(digest) <= set("0123456789abcdef")
