"""Inside each model replica: follow the registry's aliases and the rollout state, and run the guard.

A background thread polls every ``poll_interval_s`` (one alias query and one rollout row). A version that is not
loaded yet is loaded, SHA-256 verified and warmed up *before* the routing table is swapped, in one reference
assignment, so requests in flight keep the table they started with and none fails during a promote or rollback. A
version that fails to load is remembered as refused and never routed to; the current one keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlplatform._internal.retry import RetryPolicy, call_with_retry, is_retryable
from mlplatform.config.serve import RolloutConfig
from mlplatform.entities.rollouts import RolloutState
from mlplatform.errors import Conflict, IntegrityError, InvalidInput, NotFound
from mlplatform.rollouts import control
from mlplatform.rollouts.guard import (
    ADVANCE,
    ALARM,
    ROLLBACK,
    GuardPolicy,
    LabelStats,
    decide,
    decide_probation,
)
from mlplatform.rollouts.routing import CHALLENGER, CHAMPION, assign
from mlplatform.rollouts.window import VersionStats, WindowStats

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

logger = logging.getLogger(__name__)


def current_replica_id() -> str:
    try:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (unit use)
        return "local"


# a load is retried at once on a transient error: 3 attempts within ~1 s, then at later polls (see _get)
LOAD_POLICY = RetryPolicy(max_attempts=3, base_seconds=0.2, cap_seconds=1.0, deadline_seconds=30.0,
                          retryable=lambda exc: is_transient_load_error(exc))


LOAD_POLLS_MAX = 20  # polls with transient failures before a version is refused like a bad artifact


def is_transient_load_error(exc: BaseException) -> bool:
    """Worth another attempt: the store or the artifact storage could not be reached. A checksum mismatch, a
    wrong model name or an artifact that does not load stays refused."""
    # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, IntegrityError | InvalidInput | NotFound):
        return False
    return is_retryable(exc) or isinstance(exc, OSError | OperationalError)


@dataclass(frozen=True)
class PendingLoad:
    attempts: int
    next_at: float  # monotonic
    reason: str


@dataclass(frozen=True)
class Routes:
    """An immutable routing table; replaced whole, never edited."""

    champion: Any  # LoadedModel
    challenger: Any | None = None
    challenger_weight: float = 0.0
    salt: str = ""
    mirrors: tuple[Any, ...] = ()
    stage: str | None = None
    status: str | None = None

    def pick(self, key: str | None) -> tuple[str, Any]:
        if self.challenger is None or key is None or self.challenger_weight <= 0:
            return CHAMPION, self.champion
        if assign(key, self.salt, self.challenger_weight) == CHALLENGER:
            return CHALLENGER, self.challenger
        return CHAMPION, self.champion

    def mirror(self, version: int) -> Any | None:
        return next((m for m in self.mirrors if m.version == version), None)

    def versions(self) -> set[int]:
        found = {self.champion.version, *(m.version for m in self.mirrors)}
        if self.challenger is not None:
            found.add(self.challenger.version)
        return found

    def describe(self) -> dict[str, Any]:
        return {"champion": self.champion.version,
                "challenger": None if self.challenger is None else self.challenger.version,
                "challenger_weight": self.challenger_weight, "mirrors": [m.version for m in self.mirrors],
                "stage": self.stage, "status": self.status}


class RegistryFollower:
    def __init__(self, model_name: str, client: Client, load_version: Callable[[Any, str], Any], cfg: RolloutConfig,
                 stats: VersionStats, replica_id: str) -> None:
        self.model_name = model_name
        self.cfg = cfg
        self.stats = stats
        self.replica_id = replica_id
        self._client = client
        self._load_version = load_version  # (ModelVersion, ref) -> LoadedModel; raises on a bad artifact
        self._rollouts = control.rollout_store(client)
        self._loaded: dict[int, Any] = {}
        self.refused: dict[int, str] = {}
        self.retrying: dict[int, PendingLoad] = {}  # versions that failed transiently: attempts, next try, why
        self.desired_version: int | None = None
        self._mismatch_since: float | None = None
        self.routes: Routes | None = None
        self.rollout: RolloutState | None = None
        self.champion_ref: str | None = None
        self.last_error: str | None = None
        self.last_decision: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loading -----------------------------------------------------------------------------------------------
    def _get(self, version: int, ref: str) -> Any | None:
        """The loaded version, or None: refused for good (bad artifact), or failed transiently and waiting for its
        next attempt. A transient failure (store or network hiccup) is retried a few times at once, then again at
        later polls with full-jitter exponential backoff, so one hiccup never pins a replica to an old version."""
        if version in self._loaded:
            return self._loaded[version]
        if version in self.refused:
            return None
        pending = self.retrying.get(version)
        if pending is not None and time.monotonic() < pending.next_at:
            return None

        def load() -> Any:
            return self._load_version(self._client.registry.get_version(self.model_name, version=version), ref)

        try:
            loaded = call_with_retry(load, LOAD_POLICY, what=f"load of {self.model_name}:{version}")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            attempts = (pending.attempts if pending else 0) + 1
            if not is_transient_load_error(exc) or attempts > LOAD_POLLS_MAX:
                self.refused[version] = reason
                self.retrying.pop(version, None)
                logger.error("refusing %s:%s: %s", self.model_name, version, reason)
                return None
            wait = RetryPolicy(base_seconds=self.cfg.poll_interval_s, cap_seconds=self.cfg.load_retry_cap_s) \
                .backoff(attempts)
            self.retrying[version] = PendingLoad(attempts, time.monotonic() + wait, reason)
            logger.warning("loading %s:%s failed transiently (%d polls); next attempt in %.1f s: %s",
                           self.model_name, version, attempts, wait, reason)
            return None
        self.retrying.pop(version, None)
        self._loaded[version] = loaded
        return loaded

    def convergence(self) -> dict[str, Any]:
        """Whether this replica serves the champion the registry names, and if not, since when and why."""
        serving = self.routes.champion.version if self.routes else None
        desired = self.desired_version
        converged = desired is None or serving == desired
        reason = None
        if not converged and desired is not None:
            pending = self.retrying.get(desired)
            reason = self.refused.get(desired) or (pending.reason if pending else None) or self.last_error
        lag = 0.0 if converged or self._mismatch_since is None else time.monotonic() - self._mismatch_since
        return {"desired_version": desired, "serving_version": serving, "converged": converged,
                "lag_s": round(lag, 3), "reason": reason}

    def refresh(self, champion_ref: str | None = None, *, retry: bool = False) -> Routes | None:
        """Resolve aliases and rollout state, load what is missing, swap the table. Raises only when there is no
        champion at all (the replica cannot serve)."""
        # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
        from mlplatform.client import parse_model_ref

        with self._lock:
            if champion_ref is not None:
                self.champion_ref = champion_ref
            assert self.champion_ref is not None
            name, pinned, alias = parse_model_ref(self.champion_ref)
            if name != self.model_name:
                raise NotFound(f"ref {self.champion_ref!r} names model {name}, not {self.model_name}", field="ref")
            follow = self.cfg.follow_registry
            aliases = dict(self._client.registry.get_model(name).aliases) if follow or pinned is None else {}
            champion_version = pinned if pinned is not None else aliases.get(alias or "champion")
            if retry and champion_version is not None:
                self.refused.pop(champion_version, None)
                self.retrying.pop(champion_version, None)
            rollout = self._rollouts.get(name) if follow else None
            current = self.routes.champion if self.routes else None
            champion = None
            if champion_version is None:
                self.last_error = f"NotFound: model {name} has no alias {alias or 'champion'!r}"
            else:
                champion = self._get(champion_version, self.champion_ref)
                self.last_error = None if champion is not None else self.refused.get(champion_version)
            champion = champion or current
            self.desired_version = champion_version
            mismatch = champion_version is not None and (champion is None or champion.version != champion_version)
            if not mismatch:
                self._mismatch_since = None
            elif self._mismatch_since is None:
                self._mismatch_since = time.monotonic()
            if champion is None:
                raise NotFound(self.last_error or f"no version of {name} could be loaded", field="ref")
            routes = self._table(champion, aliases, rollout)
            self._loaded = {v: m for v, m in self._loaded.items() if v in routes.versions()}
            if self.routes is None or routes.describe() != self.routes.describe():
                logger.info("routing for %s: %s", name, routes.describe())
            self.routes, self.rollout = routes, rollout
            challenger = rollout.challenger_version if rollout else None
            self.stats.forget(routes.versions() | ({challenger} if challenger is not None else set()))
            return routes

    def _table(self, champion: Any, aliases: dict[str, int], rollout: RolloutState | None) -> Routes:
        challenger_version = aliases.get("challenger")
        challenger = None
        # the rollout applies only to the pair it was started for; any alias move makes it stale (weight 0)
        if (rollout is not None and rollout.active and challenger_version is not None
                and rollout.challenger_version == challenger_version
                and rollout.champion_version == champion.version and challenger_version != champion.version
                and (rollout.challenger_weight > 0 or rollout.mirror_challenger)):
            challenger = self._get(challenger_version, f"{self.model_name}@challenger")
        mirrors = [challenger] if challenger is not None and rollout and rollout.mirror_challenger else []
        shadow_version = aliases.get("shadow")
        if shadow_version is not None and shadow_version != champion.version \
                and shadow_version not in {m.version for m in mirrors}:
            shadow = self._get(shadow_version, f"{self.model_name}@shadow")
            if shadow is not None:
                mirrors.append(shadow)
        weight = rollout.challenger_weight if challenger is not None and rollout else 0.0
        return Routes(champion=champion, challenger=challenger if weight > 0 else None, challenger_weight=weight,
                      salt=rollout.salt if rollout else "", mirrors=tuple(mirrors),
                      stage=rollout.stage if rollout else None, status=rollout.status if rollout else None)

    # -- guard -------------------------------------------------------------------------------------------------
    def guard_once(self) -> str | None:
        rollout, routes = self.rollout, self.routes
        if rollout is None or routes is None:
            return None
        try:
            self._rollouts.report_metrics(self.model_name, self.replica_id, {
                "versions": self.stats.snapshot(), "routes": routes.describe()})
        except Exception:
            logger.warning("could not report rollout metrics for %s", self.model_name, exc_info=True)
        challenger_version = rollout.challenger_version
        if rollout.status == control.COMPLETED and rollout.details.get("probation"):
            return self._guard_probation(rollout, routes)
        if not rollout.active or routes.champion.version != rollout.champion_version \
                or challenger_version is None or challenger_version not in routes.versions():
            return None
        # decide from the fleet, not from this replica: the windows every replica reported in the store, merged
        # (a replica that alone saw too few requests, or none of the failures, would never act)
        rollout = self._rollouts.get(self.model_name) or rollout
        if not rollout.active or rollout.challenger_version != challenger_version:
            return None
        merged = control.merged_metrics(rollout)
        policy = GuardPolicy.model_validate(rollout.policy)
        now = datetime.now(UTC)
        champion_version = routes.champion.version
        labels = self._label_stats(routes.champion, [champion_version, challenger_version],
                                   start=max(rollout.created_at, now - timedelta(seconds=policy.label_window_s)))
        decision = decide(policy, _fleet_stats(merged, champion_version, self.stats),
                          _fleet_stats(merged, challenger_version, self.stats),
                          seconds_in_stage=(now - rollout.stage_started_at).total_seconds(),
                          in_cooldown=bool(rollout.cooldown_until and now < rollout.cooldown_until),
                          can_advance=control.next_stage(rollout) is not None,
                          labels=None if labels is None else (labels[champion_version], labels[challenger_version]))
        self.last_decision = decision.to_dict()
        try:
            if decision.action == ROLLBACK:
                control.rollback(self._client, rollout, decision)
            elif decision.action == ADVANCE:
                control.advance(self._client, self.model_name, actor="rollout-guard", reason=decision.reason,
                                expected_revision=rollout.revision)
            elif decision.action == ALARM:
                control.alert(self._client, rollout, decision)
        except Conflict:
            logger.info("rollout of %s changed under the guard (another replica acted)", self.model_name)
        if decision.action in (ROLLBACK, ADVANCE):
            self.refresh()  # apply at once instead of waiting for the next poll
        return decision.action

    def _guard_probation(self, rollout: RolloutState, routes: Routes) -> str | None:
        """After a promotion (SPEC S7.7): the new champion against the previous champion's last window, from the
        fleet's merged window; a trigger in probation moves the champion alias back."""
        probation = rollout.details["probation"]
        if routes.champion.version != probation.get("champion") or probation.get("ended"):
            return None  # the alias moved since (manual rollback or a new promotion): nothing to guard
        rollout = self._rollouts.get(self.model_name) or rollout
        if rollout.status != control.COMPLETED or rollout.details.get("probation") != probation:
            return None
        now = datetime.now(UTC)
        policy = GuardPolicy.model_validate(rollout.policy)
        probing = control.in_probation(rollout, now)
        previous = probation.get("previous_window") or {}
        previous_stats = WindowStats(int(previous.get("requests") or 0), int(previous.get("errors") or 0),
                                     previous.get("p50_ms"), previous.get("p99_ms"))
        champion = _fleet_stats(control.merged_metrics(rollout), probation["champion"], self.stats)
        labels = None
        if probing:
            promoted = datetime.fromisoformat(probation["promoted_at"])
            window = timedelta(seconds=policy.label_window_s)
            new = self._label_stats(routes.champion, [probation["champion"]], start=max(promoted, now - window))
            # the previous champion's labelled answers before the promotion: its last window
            old = self._label_stats(routes.champion, [probation["previous_champion"]], start=promoted - window,
                                    end=promoted)
            if new is not None and old is not None:
                labels = (old[probation["previous_champion"]], new[probation["champion"]])
        decision = decide_probation(policy, previous_stats, champion, in_probation=probing, labels=labels)
        self.last_decision = decision.to_dict()
        try:
            if decision.action == ROLLBACK:
                control.probation_rollback(self._client, rollout, decision)
            elif decision.action == ALARM:
                control.alert(self._client, rollout, decision, version=probation["champion"])
        except Conflict:
            logger.info("rollout of %s changed under the guard (another replica acted)", self.model_name)
        if decision.action == ROLLBACK:
            self.refresh()
        return decision.action

    def _label_stats(self, model: Any, versions: list[int], *, start: datetime,
                     end: datetime | None = None) -> dict[int, LabelStats] | None:
        """Correct answers among the labelled ones per version (prediction log joined to labels in the store);
        None for a model that is not a classifier (accuracy says nothing about a regressor) or when the store
        cannot answer (the other triggers still decide)."""
        if getattr(model.predictor.manifest, "task", None) != "classification":
            return None
        try:
            rows = self._client.monitoring.labelled_outcomes(self.model_name, versions, start=start, end=end)
        except Exception:
            logger.warning("could not read labelled answers of %s", self.model_name, exc_info=True)
            return None
        found = {v: [0, 0] for v in versions}
        for version, prediction, label in rows:
            found[version][0] += 1
            found[version][1] += int(prediction == label)  # the rule of monitoring's accuracy: equal values
        return {v: LabelStats(n, k) for v, (n, k) in found.items()}

    # -- background thread -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None and self.cfg.follow_registry:
            self._thread = threading.Thread(target=self._run, name=f"follow-{self.model_name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        next_poll = time.monotonic() + self.cfg.poll_interval_s
        next_guard = time.monotonic() + self.cfg.guard_interval_s
        while not self._stop.wait(max(0.01, min(next_poll, next_guard) - time.monotonic())):
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + self.cfg.poll_interval_s
                try:
                    self.refresh()
                except Exception:  # the store may be down: keep serving what is loaded
                    logger.warning("registry poll for %s failed", self.model_name, exc_info=True)
            if now >= next_guard:
                next_guard = now + self.cfg.guard_interval_s
                try:
                    self.guard_once()
                except Exception:
                    logger.warning("rollout guard for %s failed", self.model_name, exc_info=True)


def _fleet_stats(merged: dict[str, dict[str, Any]], version: int, own: VersionStats) -> WindowStats:
    """One version's window over every reporting replica (counts summed, p50/p99 the worst replica's); this
    replica's own window when the store has no report yet."""
    found = merged.get(str(version))
    if found is None:
        return own.stats(version)
    return WindowStats(int(found["requests"]), int(found["errors"]), found.get("p50_ms"), found.get("p99_ms"))
