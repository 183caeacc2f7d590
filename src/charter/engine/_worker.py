"""Workers: processes that claim runnable runs from the store, resume them, and let them go.

A worker holds a run only while it executes: a run that suspends (approval, timer) is released
and costs nothing until an event makes it runnable again. Leases make it safe to run several
workers on one store; a worker that dies loses its leases (at expiry, or at once when another
worker on the same host sees its process is gone) and its runs resume elsewhere, exactly once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from charter.engine._result import RunResult
from charter.exceptions import CharterError, LeaseLost, StoreError
from charter.store._lease import new_owner

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from charter._plane import ControlPlane
    from charter.engine._workflow import Workflow

__all__ = ["Worker", "WorkerStats"]

_log = logging.getLogger("charter.worker")


@dataclass(kw_only=True)
class WorkerStats:
    """What a worker did."""

    resumed: int = 0
    completed: int = 0
    waiting: int = 0
    failed: int = 0
    cancelled: int = 0
    expired_approvals: int = 0
    lost: int = 0
    """Runs another worker claimed while this one ran them (a lease that ran out)."""
    errors: int = 0
    """Runs the store could not serve (logged with their run id)."""

    def count(self, result: RunResult) -> None:
        """Tally one resumption's result."""
        self.resumed += 1
        match result.status:
            case "completed":
                self.completed += 1
            case "waiting":
                self.waiting += 1
            case "cancelled":
                self.cancelled += 1
            case "failed":
                self.failed += 1
            case _:
                pass

    def to_dict(self) -> dict[str, int]:
        """The counts, JSON-ready."""
        return {
            "resumed": self.resumed,
            "completed": self.completed,
            "waiting": self.waiting,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "expired_approvals": self.expired_approvals,
            "lost": self.lost,
            "errors": self.errors,
        }


class Worker:
    """Claims and resumes the runs of the workflows it knows, one at a time."""

    def __init__(
        self,
        plane: ControlPlane,
        workflows: Sequence[Workflow],
        *,
        lease_s: float = 60.0,
        poll_s: float = 0.5,
        on_result: Callable[[RunResult], None] | None = None,
    ) -> None:
        """Create a worker.

        Args:
            plane: The control plane whose store and gate it uses.
            workflows: The workflows it can run; it claims only their runs.
            lease_s: How long a claim lasts without renewal; renewed every third of it.
            poll_s: How long to wait between polls when nothing is runnable.
            on_result: Called after each resumption (for progress output).
        """
        self.plane = plane
        self.workflows = {w.name: w for w in workflows}
        self.owner = new_owner()
        """This worker's lease-owner name: host/pid/nonce."""
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.stats = WorkerStats()
        self._on_result = on_result

    def expire_due(self) -> int:
        """Apply `on_expiry` to every overdue approval request of this worker's workflows."""
        store = self.plane.store
        done = 0
        for request in store.due_approvals(now=self.plane.clock(), workflows=list(self.workflows)):
            workflow = self.workflows[store.get_run(request.run_id).workflow]
            if self.plane.expire(request, workflow) is not None:
                done += 1
        self.stats.expired_approvals += done
        return done

    def step(self) -> RunResult | None:
        """Claim one runnable run and resume it until it rests; None if nothing was runnable."""
        lease = self.plane.store.claim_run(
            owner=self.owner,
            workflows=list(self.workflows),
            now=self.plane.clock(),
            lease_s=self.lease_s,
        )
        if lease is None:
            return None
        try:
            result = self.plane.resume(
                lease.run_id,
                self.workflows[lease.workflow],
                worker=self.owner,
                lease_owner=self.owner,
            )
        except LeaseLost as lost:
            # Our lease ran out and another worker holds the run: it carries the run on.
            _log.warning("%s: %s", lease.run_id, lost.message, extra={"run_id": lease.run_id})
            self.stats.lost += 1
            return self._as_found(lease.run_id, f"lease lost: {lost.message}")
        except CharterError as exc:
            # One run the store cannot serve must not stop the worker for every other run.
            _log.exception("%s: could not resume", lease.run_id, extra={"run_id": lease.run_id})
            self.stats.errors += 1
            return self._as_found(lease.run_id, f"{exc.code}: {exc.message}")
        finally:
            self.plane.store.release_run(lease.run_id, owner=self.owner)
        self.stats.count(result)
        if self._on_result is not None:
            self._on_result(result)
        return result

    def _as_found(self, run_id: str, reason: str) -> RunResult:
        record = self.plane.store.get_run(run_id)
        return RunResult(
            run_id=record.run_id, status=record.status, outcome=record.outcome or "", reason=reason
        )

    def run(self, *, until_idle: bool = False, stop: threading.Event | None = None) -> WorkerStats:
        """Work until `stop` is set, or (with `until_idle`) until nothing is runnable.

        "Idle" means no run is runnable now: runs waiting on approvals or future timers are
        left for a later worker.
        """
        stop = stop or threading.Event()
        heartbeat = threading.Thread(target=self._renew, args=(stop,), daemon=True)
        heartbeat.start()
        try:
            while not stop.is_set():
                try:
                    self.expire_due()
                    if self.step() is not None:
                        continue
                except StoreError as exc:
                    # The database went away (a restart, a failover): what was not committed
                    # is not done, and leases keep the runs safe. Back off and try again.
                    _log.warning("store unavailable: %s", exc.message)
                    self.stats.errors += 1
                    if until_idle:
                        break
                    stop.wait(self.poll_s)
                    continue
                if until_idle:
                    break
                # Woken at once when another process makes a run runnable (where the store
                # carries notifications); timers and missed notices wait for the next poll.
                self.plane.store.wait_for_work(self.poll_s)
        finally:
            stop.set()
            heartbeat.join()
        return self.stats

    def _renew(self, stop: threading.Event) -> None:
        """Keep this worker's leases alive while it runs long steps."""
        while not stop.wait(self.lease_s / 3):
            try:
                self.plane.store.renew_leases(owner=self.owner, lease_s=self.lease_s)
            except Exception:  # noqa: BLE001
                # A missed renewal only risks a second worker resuming the run, which the
                # idempotency keys make harmless; the worker itself must keep going.
                _log.exception("lease renewal failed")
