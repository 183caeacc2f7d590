"""The GitHub-Deployments-like sandbox: deploys, rollbacks and the live deployment."""

from __future__ import annotations

import pytest

from charter.sandbox import Deployment, DeploysSandbox, SandboxError

REPO = "acme/shop"


def deploy(deploys: DeploysSandbox, ref: str, key: str, environment: str = "production"):
    return deploys.trigger_deploy(
        repo=REPO, ref=ref, environment=environment, description=f"ship {ref}", idempotency_key=key
    )


def roll_back(deploys: DeploysSandbox, key: str, environment: str = "production") -> Deployment:
    return deploys.rollback(repo=REPO, environment=environment, idempotency_key=key)


class TestTriggerDeploy:
    def test_deploy_goes_live_at_once(self, deploys):
        """A new deployment is "success" and is the current one."""
        made = deploy(deploys, "v1", "d1")
        assert made.status == "success"
        assert deploys.current(REPO, "production") == made

    def test_previous_live_deployment_becomes_inactive(self, deploys):
        """Deploying again retires the previous live deployment."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        listed = deploys.deployments(REPO, "production")
        assert [(d.ref, d.status) for d in listed] == [("v1", "inactive"), ("v2", "success")]

    def test_other_environments_are_unaffected(self, deploys):
        """Staging and production each have their own live deployment."""
        production = deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2", environment="staging")
        assert deploys.current(REPO, "production") == production

    def test_same_key_twice_deploys_once_with_identical_result(self, deploys):
        """A replay returns the first deployment and creates no other."""
        first = deploy(deploys, "v1", "d1")
        assert deploy(deploys, "v1", "d1") == first
        assert deploys.deployment_count() == 1

    def test_same_key_with_other_ref_is_reused_and_does_nothing(self, deploys):
        """Another ref under a used key is idempotency_key_reused; v1 stays live."""
        first = deploy(deploys, "v1", "d1")
        with pytest.raises(SandboxError) as caught:
            deploy(deploys, "v2", "d1")
        assert (caught.value.status, caught.value.code) == (400, "idempotency_key_reused")
        assert deploys.current(REPO, "production") == first
        assert deploys.deployment_count() == 1

    def test_injected_500_leaves_nothing_and_the_retry_deploys_once(self, deploys):
        """A faulted deploy creates no row; the retry with the same key deploys once."""
        deploys.inject_fault("trigger_deploy", status=502, code="bad_gateway")
        with pytest.raises(SandboxError, match="bad_gateway"):
            deploy(deploys, "v1", "d1")
        assert deploys.deployment_count() == 0
        first = deploy(deploys, "v1", "d1")
        assert deploy(deploys, "v1", "d1") == first
        assert deploys.deployment_count() == 1

    def test_blank_ref_is_rejected(self, deploys):
        """A blank ref is 400 parameter_missing and deploys nothing."""
        with pytest.raises(SandboxError, match="parameter_missing"):
            deploy(deploys, " ", "d1")
        assert deploys.deployment_count() == 0

    def test_deployment_count_filters_by_repo(self, deploys):
        """deployment_count(repo) counts one repository; deployment_count() counts all."""
        deploy(deploys, "v1", "d1")
        deploys.trigger_deploy(
            repo="acme/api", ref="v1", environment="production", description="", idempotency_key="x"
        )
        assert (deploys.deployment_count(REPO), deploys.deployment_count()) == (1, 2)

    def test_concurrent_distinct_deploys_leave_one_live(self, deploys, run_together):
        """Racing deploys of different refs all land; exactly the last one is live."""
        results = run_together(6, lambda i: deploy(deploys, f"v{i}", f"d{i}"))
        live = deploys.current(REPO, "production")
        assert deploys.deployment_count() == 6
        assert live is not None
        assert live.id == max(result.id for result in results)


class TestRollback:
    def test_redeploys_the_previous_ref_as_a_new_deployment(self, deploys):
        """Rolling back v2 creates a new, live deployment of v1."""
        first = deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        back = roll_back(deploys, "r1")
        assert (back.ref, back.status) == ("v1", "success")
        assert back.id != first.id
        assert deploys.current(REPO, "production") == back
        assert deploys.deployment_count() == 3

    def test_describes_what_it_rolled_back(self, deploys):
        """The rollback's description names both refs."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        assert roll_back(deploys, "r1").description == "Roll back production from v2 to v1"

    def test_two_rollbacks_toggle_between_the_last_two_refs(self, deploys):
        """A rollback of a rollback goes back to the newer ref."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        assert roll_back(deploys, "r1").ref == "v1"
        assert roll_back(deploys, "r2").ref == "v2"

    def test_skips_earlier_deployments_of_the_live_ref(self, deploys):
        """Re-deploys of the live ref are not a rollback target."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        deploy(deploys, "v2", "d3")
        assert roll_back(deploys, "r1").ref == "v1"

    def test_nothing_deployed_is_409(self, deploys):
        """With nothing live there is nothing to roll back."""
        with pytest.raises(SandboxError) as caught:
            roll_back(deploys, "r1")
        assert (caught.value.status, caught.value.code) == (409, "nothing_to_roll_back")

    def test_single_deployment_is_409(self, deploys):
        """With no earlier ref the rollback is refused and nothing changes."""
        only = deploy(deploys, "v1", "d1")
        with pytest.raises(SandboxError, match="nothing_to_roll_back"):
            roll_back(deploys, "r1")
        assert deploys.current(REPO, "production") == only
        assert deploys.deployment_count() == 1

    def test_same_key_twice_rolls_back_once_with_identical_result(self, deploys):
        """A replay returns the first rollback instead of toggling again."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        first = roll_back(deploys, "r1")
        assert roll_back(deploys, "r1") == first
        assert deploys.deployment_count() == 3
        assert deploys.current(REPO, "production") == first

    def test_same_key_for_another_environment_is_reused(self, deploys):
        """The same key for staging is idempotency_key_reused and does nothing."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        deploy(deploys, "v1", "s1", environment="staging")
        deploy(deploys, "v2", "s2", environment="staging")
        roll_back(deploys, "r1")
        with pytest.raises(SandboxError, match="idempotency_key_reused"):
            roll_back(deploys, "r1", environment="staging")
        assert deploys.current(REPO, "staging").ref == "v2"

    def test_stored_409_replays_after_a_second_deploy(self, deploys):
        """The 409 is stored with its key: the replay is refused even once v2 exists."""
        deploy(deploys, "v1", "d1")
        with pytest.raises(SandboxError, match="nothing_to_roll_back"):
            roll_back(deploys, "r1")
        deploy(deploys, "v2", "d2")
        with pytest.raises(SandboxError, match="nothing_to_roll_back"):
            roll_back(deploys, "r1")
        assert deploys.current(REPO, "production").ref == "v2"

    def test_injected_500_is_not_stored_so_the_retry_rolls_back_once(self, deploys):
        """After a 500 the same key rolls back, exactly once."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        deploys.inject_fault("rollback", status=500, code="server_error")
        with pytest.raises(SandboxError, match="server_error"):
            roll_back(deploys, "r1")
        assert deploys.current(REPO, "production").ref == "v2"
        first = roll_back(deploys, "r1")
        assert roll_back(deploys, "r1") == first
        assert deploys.current(REPO, "production").ref == "v1"
        assert deploys.deployment_count() == 3

    def test_concurrent_same_key_rolls_back_once(self, deploys, run_together):
        """Racing replays of one rollback key roll back a single time."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v2", "d2")
        results = run_together(6, lambda _: roll_back(deploys, "r1"))
        assert all(isinstance(result, Deployment) and result == results[0] for result in results)
        assert deploys.deployment_count() == 3


class TestDeployments:
    def test_lists_oldest_first_across_environments(self, deploys):
        """deployments(repo) lists every environment's deployments in creation order."""
        deploy(deploys, "v1", "d1")
        deploy(deploys, "v1", "s1", environment="staging")
        listed = deploys.deployments(REPO)
        assert [(d.environment, d.id) for d in listed] == [("production", 1), ("staging", 2)]

    def test_unknown_repo_has_none(self, deploys):
        """An unknown repository has no deployments."""
        assert deploys.deployments("acme/nope") == []


class TestCurrent:
    def test_none_before_any_deploy(self, deploys):
        """A target never deployed has no current deployment."""
        assert deploys.current(REPO, "production") is None

    def test_injected_fault_fails_the_read_once(self, deploys):
        """current is faultable; the fault is consumed by one call."""
        made = deploy(deploys, "v1", "d1")
        deploys.inject_fault("current", status=503, code="unavailable")
        with pytest.raises(SandboxError, match="unavailable"):
            deploys.current(REPO, "production")
        assert deploys.current(REPO, "production") == made
