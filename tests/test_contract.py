"""`load_contract`: strict validation whose errors name the file, the key path and the value."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import charter
from charter import Autonomy, Config, Effect, load_contract
from charter.cli import cli
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


class TestMaxArgumentBytes:
    def test_defaults_to_one_mebibyte(self, make_contract):
        """Unless the contract says otherwise, a call's arguments may weigh 1 MiB."""
        assert load_contract(make_contract()).max_argument_bytes == 1_048_576

    def test_must_be_at_least_one(self, make_contract):
        """`max_argument_bytes: 0` is refused, naming the key."""
        assert "max_argument_bytes" in _error(make_contract(max_argument_bytes=0))


class TestConfinedPaths:
    def _policy(self, make_contract, policies: str) -> Path:
        return make_contract(policy={"policies": policies, "schema": "schema.cedarschema"})

    def test_a_path_up_and_out_is_refused_naming_key_and_folder(self, make_contract):
        """`../` out of the contract's folder is a ContractError naming the key and the folder."""
        path = self._policy(make_contract, "../elsewhere/policies.cedar")
        message = _error(path)
        assert "policy.policies" in message
        assert str(path.parent) in message

    def test_an_absolute_path_elsewhere_is_refused(self, make_contract, tmp_path):
        """An absolute path outside the folder is refused like a relative one."""
        assert "policy.policies" in _error(self._policy(make_contract, str(tmp_path / "p.cedar")))

    def test_a_symlink_out_of_the_folder_is_refused(self, make_contract, tmp_path):
        """A link inside the folder that leads outside it is judged by where it leads."""
        path = self._policy(make_contract, "linked.cedar")
        (tmp_path / "outside.cedar").write_text("")
        (path.parent / "linked.cedar").symlink_to(tmp_path / "outside.cedar")
        assert "policy.policies" in _error(path)

    def test_prices_are_confined_too(self, make_contract):
        """A price table outside the folder is refused, naming `prices`."""
        assert "prices" in _error(make_contract(prices="../prices.yaml"))

    def test_an_allowed_root_admits_its_files(self, make_contract, tmp_path):
        """With the folder among `roots`, the same path loads and resolves into it."""
        shared = tmp_path / "shared"
        shared.mkdir()
        path = self._policy(make_contract, "../shared/policies.cedar")
        contract = load_contract(path, roots=[shared])
        resolved = contract.resolve(contract.policy.policies)
        assert resolved == shared.resolve() / "policies.cedar"
        assert contract.for_environment("prod").roots == contract.roots

    def test_policy_roots_come_from_the_environment(self, tmp_path):
        """`CHARTER_POLICY_ROOTS` lists folders separated by the OS's path separator."""
        first, second = tmp_path / "a", tmp_path / "b"
        environ = {"CHARTER_POLICY_ROOTS": f"{first}{os.pathsep}{second}{os.pathsep}"}
        config = Config.from_env(environ, home=tmp_path / "home")
        assert config.policy_roots == (first.resolve(), second.resolve())


class TestUnreadableFiles:
    def test_binary_garbage_is_not_utf8(self, tmp_path):
        """Bytes that are not UTF-8 text are a ContractError, not a UnicodeDecodeError."""
        path = tmp_path / "contract.yaml"
        path.write_bytes(bytes(range(128, 256)))
        assert "not UTF-8 text" in _error(path)

    def test_deep_nesting_is_refused(self, tmp_path):
        """5,000 nested brackets are a ContractError, not a RecursionError."""
        path = tmp_path / "contract.yaml"
        path.write_text("[" * 5000)
        assert "nests too deeply" in _error(path)

    @pytest.mark.parametrize(
        "value", ["2020-13-45", "!!float not-a-number", "!!python/name:os.system"]
    )
    def test_a_value_yaml_cannot_build_is_refused(self, tmp_path, value):
        """A date, a tagged value or a Python tag YAML cannot build is a ContractError."""
        path = tmp_path / "contract.yaml"
        path.write_text(f"charter: 1\nagent: {value}\n")
        assert str(path) in _error(path)

    def test_a_yaml_error_names_line_and_column_but_quotes_no_line(self, tmp_path):
        """The position of a syntax error is given; the offending line's text is not."""
        path = tmp_path / "contract.yaml"
        path.write_text("charter: 1\nagent: SECRET-LINE: [\n")
        message = _error(path)
        assert "line 2, column" in message
        assert "SECRET-LINE" not in message


class TestValidateCommand:
    def test_json_lists_the_policies_it_loaded(self, tmp_path):
        """`contract validate --json` loads the Cedar policies and lists their ids."""
        result = CliRunner().invoke(
            cli,
            ["--home", str(tmp_path / "home"), "contract", "validate", str(BILLING), "--json"],
            env={"CHARTER_DATABASE_URL": f"sqlite://{tmp_path / 'charter.db'}"},
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert "tenant-isolation" in report["policy_ids"]
        assert len(report["policy_hash"]) == 64

    def test_a_policy_root_admits_files_outside_the_folder(self, make_contract, tmp_path):
        """With the shared folder in CHARTER_POLICY_ROOTS, a contract may name its files."""
        shared = tmp_path / "shared"
        shared.mkdir()
        path = make_contract(
            policy={"policies": "../shared/p.cedar", "schema": "schema.cedarschema"}
        )
        (shared / "p.cedar").write_text((path.parent / "policies.cedar").read_text())
        env = {"CHARTER_DATABASE_URL": f"sqlite://{tmp_path / 'charter.db'}"}
        args = ["--home", str(tmp_path / "home"), "contract", "validate", str(path), "--json"]
        refused = CliRunner().invoke(cli, args, env=env)
        allowed = CliRunner().invoke(cli, args, env={**env, "CHARTER_POLICY_ROOTS": str(shared)})
        assert (refused.exit_code, allowed.exit_code) == (2, 0), allowed.output
