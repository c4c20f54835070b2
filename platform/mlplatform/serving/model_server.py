"""The per-model Serve deployment: one registry version (SHA-256 verified), batched inference, cache, breaker.

The version arrives through ``user_config`` (``{"ref": "churn:3"}``), so ``serve deploy`` with a new ref calls
:meth:`ModelServer.reconfigure` on live replicas: load, verify, warm up, then swap one reference atomically. A
version that fails (bad checksum, unloadable) is refused and the current one keeps serving (SPEC S6.5).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from ray import serve

from mlplatform.config.serve import ModelEntry
from mlplatform.config.serve import ServeConfig as ServingConfig
from mlplatform.errors import InvalidInput, MLPlatformError, NotFound, Unavailable
from mlplatform.features.rows import CheckedRows
from mlplatform.features.schema import FeatureSpec, schema_from_json
from mlplatform.predictor import Predictor
from mlplatform.rollouts.routing import SHADOW
from mlplatform.rollouts.window import VersionStats
from mlplatform.serving.answer import ModelAnswer, RowResult
from mlplatform.serving.breaker import CircuitBreaker, CircuitOpenError
from mlplatform.serving.cache import MISS, PredictionCache, cache_key
from mlplatform.serving.online_features import check_feature_views
from mlplatform.serving.rollout.faults import FaultInjector
from mlplatform.serving.rollout.follower import RegistryFollower, Routes, current_replica_id
from mlplatform.settings import Settings, get_settings

logger = logging.getLogger(__name__)
PINNED = "pinned"


@dataclass(frozen=True)
class LoadedModel:
    predictor: Predictor
    name: str
    version: int
    schema: list[FeatureSpec]
    schema_version: str
    ref: str
    loaded_at: float
    load_seconds: float

    def metadata(self) -> dict[str, Any]:
        manifest = self.predictor.manifest
        return {"name": self.name, "version": self.version, "ref": self.ref, "task": manifest.task,
                "framework": manifest.framework, "family": manifest.family, "classes": _plain(manifest.classes),
                "threshold": manifest.threshold, "input_schema": manifest.input_schema,
                "load_seconds": round(self.load_seconds, 4)}


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def build_client(cfg: ServingConfig) -> Any:
    # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
    from mlplatform.client import Client

    settings = Settings(home=cfg.home) if cfg.home else get_settings()
    return Client(settings, store_url=cfg.store_url, artifact_uri=cfg.artifact_uri)


def predict_rows(predictor: Predictor, rows: list[tuple[Any, ...]], schema: list[FeatureSpec]) -> list[RowResult]:
    """Plain-data results per row: label (type kept), probabilities in class order (classifiers). ``rows`` passed
    the row validator in :meth:`ModelServer._predict_with` (as :meth:`CheckedRows.tuples`): not checked again."""
    result = predictor.predict_checked(CheckedRows.of_tuples(rows, schema))
    probabilities = result.probabilities
    out: list[RowResult] = []
    for i, label in enumerate(result.predictions):
        proba = None if probabilities is None else [float(p) for p in probabilities[i]]
        out.append({"prediction": _plain(label), "probabilities": proba,
                    "confidence": None if proba is None else max(proba)})
    return out


def _warmup_row(schema: list[FeatureSpec]) -> tuple[Any, ...]:
    return tuple((spec.min if spec.min is not None else 0.0) if spec.is_numeric
                 else (spec.categories[0] if spec.categories else None) for spec in schema)


class ModelServer:
    """Serve deployment body; :func:`mlplatform.serving.app.build_app` wraps it with ``serve.deployment``."""

    def __init__(self, model_name: str, config: dict[str, Any], member_ref: str | None = None) -> None:
        self.cfg = ServingConfig.parse(config)
        self.model_name = model_name
        # an ensemble member is not a served model entry: it serves exactly its ref, without a fallback
        self.entry = (ModelEntry(name=model_name, ref=member_ref) if member_ref is not None
                      else next(m for m in self.cfg.models if m.name == model_name))
        self._client = build_client(self.cfg)
        self._fallback: LoadedModel | None = None
        self.requested_ref: str | None = None
        # champion, challenger and mirrors live in the follower's routing table (one atomic reference)
        self._version_stats = VersionStats(self.cfg.rollout.window_s)
        self._follower = RegistryFollower(model_name, self._client, self._load_version, self.cfg.rollout,
                                          self._version_stats, current_replica_id())
        rollout = self.cfg.rollout
        self._faults = FaultInjector(rollout.fault_injection, rollout.load_fault_injection, rollout.fault_delay_s)
        self._cache = PredictionCache(self.cfg.cache.max_entries, self.cfg.cache.ttl_s)
        # one lane (batch queue + breaker) per served version: a broken shadow or challenger fails only itself
        self._lanes: dict[int, _Lane] = {}
        self._lanes_routes: Routes | None = None  # the routing table the lanes were last pruned against
        self._batch_sizes: deque[int] = deque(maxlen=2000)
        self._pinned: OrderedDict[int, LoadedModel] = OrderedDict()  # versions loaded for pinned requests
        self._pinned_loading: dict[int, asyncio.Future[LoadedModel]] = {}
        self._pinned_allowed_set: set[int] = set()
        self._pinned_allowed_at = -math.inf
        self.pinned_loads = 0
        self._metrics = _Metrics(model_name)

    @property
    def _model(self) -> LoadedModel | None:
        routes = self._follower.routes
        return None if routes is None else routes.champion

    @property
    def last_error(self) -> str | None:
        return self._follower.last_error

    def __del__(self) -> None:
        follower = getattr(self, "_follower", None)
        if follower is not None:
            follower.stop()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        await asyncio.to_thread(self.apply_ref, (user_config or {}).get("ref"))

    def apply_ref(self, ref: str | None = None) -> None:
        """Serve ``ref`` (default: the entry's initial ref). Synchronous, so a model served inside the ingress
        replica can load in its constructor; :meth:`reconfigure` runs it off the event loop."""
        ref = ref or self.entry.initial_ref()
        self.requested_ref = ref
        try:
            # load, verify and warm up whatever is new, then swap the routing table in one assignment:
            # in-flight batches keep the objects they already hold
            self._follower.refresh(ref, retry=True)
        except Exception as exc:
            self._follower.last_error = f"{type(exc).__name__}: {exc}"
            if self._model is None:
                raise  # nothing to keep serving: fail the replica so Serve reports and retries it
        model = self._model
        assert model is not None
        if self.last_error:
            logger.error("refusing %s for %s; still serving version %s: %s", ref, self.model_name,
                         model.version, self.last_error)
        else:
            logger.info("serving %s version %s (loaded in %.2fs)", model.name, model.version, model.load_seconds)
        self._follower.start()  # alias moves and rollout changes from now on arrive through the poll
        if self.entry.fallback and self._fallback is None:
            try:
                self._fallback = self._load(self.entry.fallback)
            except Exception:
                logger.warning("fallback %s could not be loaded; serving without one", self.entry.fallback,
                               exc_info=True)

    def _load(self, ref: str) -> LoadedModel:
        return self._load_version(self._client.registry.resolve(ref), ref)

    def _load_version(self, version: Any, ref: str) -> LoadedModel:
        started = time.perf_counter()
        self._faults.check_load(version.version)
        if version.model_name != self.model_name:
            raise InvalidInput(f"ref {ref!r} names model {version.model_name}, not {self.model_name}", field="ref")
        predictor = self._client.registry.load(version)  # raises IntegrityError on any sha256 mismatch
        schema = schema_from_json(predictor.input_schema)
        predict_rows(predictor, [_warmup_row(schema)], schema)  # warm up before taking traffic
        return LoadedModel(predictor=predictor, name=version.model_name, version=version.version, schema=schema,
                           schema_version=version.artifact_sha256[:16], ref=ref, loaded_at=time.time(),
                           load_seconds=time.perf_counter() - started)

    def check_health(self) -> None:
        self._convergence()  # Serve calls this every health_check_period_s: keeps the lag gauge current
        if self._model is None:
            raise Unavailable(f"model {self.model_name} is not loaded")

    # -- reads -------------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        model = self._model
        routes = self._follower.routes
        base = {"name": self.model_name, "ready": model is not None, "requested_ref": self.requested_ref,
                "last_error": self.last_error, "routing": None if routes is None else routes.describe(),
                "convergence": self._convergence()}
        return {**base, **model.metadata()} if model else base

    async def version_metadata(self, version: int) -> dict[str, Any]:
        """One version's metadata (V2 ``/versions/{v}``): a routed version, or one a pinned request may load (it is
        loaded as a pinned request would load it; NotFound for any other)."""
        routes = self._follower.routes
        if routes is None:
            raise Unavailable(f"model {self.model_name} is not ready", retry_after_s=5)
        return {"ready": True, **(await self._pinned_model(routes, version)).metadata()}

    def stats(self) -> dict[str, Any]:
        routes = self._follower.routes
        return {"version": None if self._model is None else self._model.version,
                "batch_sizes": list(self._batch_sizes), "cache": self._cache.stats(),
                "breaker": None if self._model is None else self._lane(self._model.version).breaker.state,
                "breakers": {str(v): lane.breaker.state for v, lane in sorted(self._lanes.items())},
                "last_error": self.last_error,
                "routing": None if routes is None else routes.describe(),
                "versions": self._version_stats.snapshot(), "refused": dict(self._follower.refused),
                "convergence": self._convergence(), "pinned_loads": self.pinned_loads,
                "pinned_loaded": sorted(self._pinned),
                "last_decision": self._follower.last_decision,
                "throughput_optimized": os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1"}

    def _convergence(self) -> dict[str, Any]:
        found = self._follower.convergence()
        self._metrics.lag(found["lag_s"])
        return found

    def inject_faults(self, rates: dict[int, float] | None = None, delays: dict[int, float] | None = None) -> str:
        """TEST ONLY (through a DeploymentHandle, never HTTP): change the injected faults of this replica;
        refused unless the app was deployed with fault injection configured. Returns the replica's id."""
        self._faults.change(rates, delays)
        return self._follower.replica_id

    async def guard_now(self) -> str | None:
        """Run one guard check at once (operators; the background thread does it every guard interval)."""
        return await asyncio.to_thread(self._follower.guard_once)

    # -- predict -----------------------------------------------------------------------------------------------
    async def _pinned_model(self, routes: Routes, version: int) -> LoadedModel:
        """The version a pinned request names: a routed one as it is; else, if config allows it (an aliased
        version or one of the last ``pinned.last_n``), loaded once (single-flight, SHA-256 verified like every
        load) and kept in a small LRU beside the routing table. While it loads, requests that cannot wait
        ``pinned.wait_s`` get 503 with Retry-After: a stream of pinned requests costs one load, never one each."""
        for model in (routes.champion, routes.challenger, *routes.mirrors):
            if model is not None and model.version == version:
                return model
        if version in self._pinned:
            self._pinned.move_to_end(version)
            return self._pinned[version]
        allowed = await self._pinned_allowed()
        if version not in allowed:
            raise NotFound(f"version {version} of {self.model_name} is not available for pinned requests (an "
                           f"aliased version or one of the last {self.cfg.pinned.last_n} registered)",
                           field="version")
        task = self._pinned_loading.get(version)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._load, f"{self.model_name}:{version}"))
            self._pinned_loading[version] = task
            self.pinned_loads += 1
            task.add_done_callback(functools.partial(self._pinned_loaded, version))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.cfg.pinned.wait_s)
        except TimeoutError:
            raise Unavailable(f"version {version} of {self.model_name} is loading; retry shortly",
                              retry_after_s=2, field="version") from None

    def _pinned_loaded(self, version: int, task: asyncio.Future[LoadedModel]) -> None:
        self._pinned_loading.pop(version, None)
        if task.cancelled() or task.exception() is not None:
            logger.warning("pinned load of %s:%s failed: %s", self.model_name, version,
                           "cancelled" if task.cancelled() else task.exception())
            return
        self._pinned[version] = task.result()
        while len(self._pinned) > self.cfg.pinned.max_loaded:
            self._pinned.popitem(last=False)

    async def _pinned_allowed(self) -> set[int]:
        """Aliased versions and the last N, from one registry read at most every poll interval."""
        now = time.monotonic()
        if now - self._pinned_allowed_at > self.cfg.rollout.poll_interval_s:
            model = await asyncio.to_thread(self._client.registry.get_model, self.model_name)
            latest = model.latest_version or 0
            self._pinned_allowed_set = {*model.aliases.values(),
                                        *range(max(1, latest - self.cfg.pinned.last_n + 1), latest + 1)}
            self._pinned_allowed_at = now
        return self._pinned_allowed_set

    async def predict(self, instances: list[dict[str, Any]], routing_key: str | None = None,
                      shadow_version: int | None = None, pinned_version: int | None = None,
                      feature_views: dict[str, Any] | None = None) -> ModelAnswer:
        """Answer from the version the routing table picks for ``routing_key`` (sticky), or, for a shadow copy,
        from the mirrored ``shadow_version``. The answer names the version and the variant; a primary answer also
        lists the versions the ingress should mirror the request to. ``feature_views``: the online views that
        built ``instances`` (entity_ids requests), refused unless the answering version was trained on them."""
        routes: Routes | None = self._follower.routes
        if routes is None:
            raise Unavailable(f"model {self.model_name} is not ready", retry_after_s=5)
        if shadow_version is not None:
            variant, model = SHADOW, routes.mirror(shadow_version)
            if model is None:
                raise NotFound(f"version {shadow_version} of {self.model_name} is not mirrored here",
                               field="version")
        elif pinned_version is not None:  # the client chose the version: no split, no mirrors
            variant, model = PINNED, await self._pinned_model(routes, pinned_version)
        else:
            variant, model = routes.pick(routing_key)
        if feature_views is not None:
            check_feature_views(model.predictor.manifest.lineage.get("feature_views"), feature_views,
                                f"{model.name}:{model.version}")
        # a primary (routed) answer names the shadows the ingress mirrors the request to
        mirrors = (tuple(m.version for m in routes.mirrors) if shadow_version is None and pinned_version is None
                   else ())
        started = time.perf_counter()
        ok: bool | None = False
        try:
            answer = await self._predict_with(model, instances, variant, mirrors)
            # an answer from the fallback is a failure of the version that should have answered (SPEC S7.5)
            ok = not answer.fallback
        except InvalidInput:
            ok = None  # the client's mistake says nothing about the version
            raise
        finally:
            if ok is not None:  # one event per request, not per row (SPEC S7.5); cancelled and timed out count
                self._version_stats.record(model.version, variant, (time.perf_counter() - started) * 1000, ok)
        return answer

    async def predict_shadow(self, version: int,
                             batch: list[list[dict[str, Any]]]) -> list[ModelAnswer | dict[str, str]]:
        """Many queued shadow copies in one call, each in the shadow version's own lane and under its own deadline
        (``rollout.shadow_timeout_s``). A failed copy becomes ``{"error": message}`` so one bad copy cannot fail
        the others, and nothing of it reaches the champion's lane or breaker."""
        timeout_s = self.cfg.rollout.shadow_timeout_s

        async def one(instances: list[dict[str, Any]]) -> ModelAnswer:
            return await asyncio.wait_for(self.predict(instances, shadow_version=version), timeout_s)

        answers = await asyncio.gather(*[one(instances) for instances in batch], return_exceptions=True)
        return [a if isinstance(a, ModelAnswer) else {"error": f"{type(a).__name__}: {a}"} for a in answers]

    async def _predict_with(self, model: LoadedModel, instances: list[dict[str, Any]], variant: str,
                            mirrors: tuple[int, ...] = ()) -> ModelAnswer:
        rows = model.predictor.check(instances).raise_for_issues("instances").tuples()
        cache_on = self.cfg.cache.enabled
        keys = [cache_key(model.name, model.version, model.schema_version, r) for r in rows] if cache_on else []
        results: list[Any] = [self._cache.get(k) for k in keys] if cache_on else [MISS] * len(rows)
        cached = [r is not MISS for r in results]
        self._metrics.cache(sum(cached), len(rows) - sum(cached))
        misses = [i for i, hit in enumerate(cached) if not hit]
        fallback: LoadedModel | None = None
        if misses:
            # a shadow answers only for itself: the fallback would make a broken shadow look healthy
            fresh, fallback = await self._call_model(model, [rows[i] for i in misses], variant != SHADOW)
            for i, row_result in zip(misses, fresh, strict=True):
                results[i] = row_result
                if cache_on and fallback is None:
                    self._cache.put(keys[i], row_result)
        return ModelAnswer(model_name=model.name, model_version=model.version,
                           results=cast(list[RowResult], results), cached=cached, variant=variant,
                           fallback_version=None if fallback is None else fallback.version,
                           fallback_model=None if fallback is None else fallback.name, mirror_versions=mirrors)

    def _lane(self, version: int) -> _Lane:
        """The batch queue and breaker of one version, made on first use. Lanes of versions no longer served are
        forgotten (a returning version starts with a closed breaker, as a fresh load should)."""
        routes = self._follower.routes
        if routes is not self._lanes_routes:  # the table changed: drop the lanes of versions that left it
            self._lanes_routes = routes
            keep = {version, *self._pinned, *(routes.versions() if routes else ())}
            for stale in [v for v in self._lanes if v not in keep]:
                del self._lanes[stale]
        lane = self._lanes.get(version)
        if lane is None:
            batching = self.cfg.batching

            async def run(requests: list[tuple[LoadedModel, list[tuple[Any, ...]]]]) -> list[Any]:
                delay = self._faults.delays.get(version)
                if delay:  # TEST-ONLY: a slow model (the callers wait, the loop does not)
                    await asyncio.sleep(delay)
                return self._run_batch(requests)

            lane = self._lanes[version] = _Lane(
                CircuitBreaker(f"model {self.model_name} version {version}", self.cfg.breaker.failure_threshold,
                               self.cfg.breaker.reset_timeout_s),
                serve.batch(max_batch_size=batching.max_batch_size,
                            batch_wait_timeout_s=batching.batch_wait_timeout_s)(run))
        return lane

    async def _fallback_answer(self, rows: list[tuple[Any, ...]]) -> tuple[list[RowResult], LoadedModel]:
        assert self._fallback is not None
        return await asyncio.to_thread(predict_rows, self._fallback.predictor, rows,
                                       self._fallback.schema), self._fallback

    async def _call_model(self, model: LoadedModel, rows: list[tuple[Any, ...]],
                          allow_fallback: bool = True) -> tuple[list[RowResult], LoadedModel | None]:
        lane = self._lane(model.version)
        fallback = self._fallback is not None and allow_fallback
        try:
            lane.breaker.before_call()
        except CircuitOpenError:
            if not fallback:
                raise
            return await self._fallback_answer(rows)
        try:
            if self.cfg.batching.enabled:
                out = await lane.batched((model, rows))
            else:  # inline for the same reason as in _run_batch: one replica is one unit of model parallelism
                out = self._run_batch([(model, rows)])[0]
            if isinstance(out, BaseException):
                raise out
        except InvalidInput:
            lane.breaker.release()
            raise
        except MLPlatformError:
            lane.breaker.record_failure()
            raise
        except Exception:
            lane.breaker.record_failure()
            if not fallback:
                raise
            logger.warning("model %s version %s failed; answering from fallback", self.model_name, model.version,
                           exc_info=True)
            return await self._fallback_answer(rows)
        except BaseException:  # cancelled (deadline, client gone): no verdict, but never keep a probe slot
            lane.breaker.release()
            raise
        lane.breaker.record_success()
        return out, None

    def _run_batch(self, requests: list[tuple[LoadedModel, list[tuple[Any, ...]]]]) -> list[Any]:
        """One model call per loaded model in the batch (a lane holds one version; a reload may add a second
        object); each caller gets exactly its own rows back, or the exception of its own model's call."""
        self._batch_sizes.append(len(requests))
        self._metrics.batch(len(requests))
        outputs: list[Any] = [None] * len(requests)
        by_model: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(requests):
            by_model.setdefault(id(model), []).append(i)
        for indices in by_model.values():
            model = requests[indices[0]][0]
            rows = [row for i in indices for row in requests[i][1]]
            # On the event loop, not in a worker thread: a model that holds the GIL (sklearn forests call Python per
            # tree) starved the loop from a thread, so requests trickled in and batches stayed at ~2 rows (forest at
            # c=32: 56 req/s from a thread, 150 inline with batches of ~10). Requests that arrive meanwhile wait in
            # the replica's queue and form the next batch. A batch holds the loop for one model call (ms).
            try:
                for _ in indices:  # TEST-ONLY faults fire inside the model call, where a real model's would
                    self._faults.check(model.version)
                flat = predict_rows(model.predictor, rows, model.schema)
            except Exception as exc:  # this model's callers get its error; the batch itself never fails
                for i in indices:
                    outputs[i] = exc
                continue
            start = 0
            for i in indices:
                n = len(requests[i][1])
                outputs[i] = flat[start:start + n]
                start += n
        return outputs


@dataclass
class _Lane:
    breaker: CircuitBreaker
    batched: Any  # serve.batch-wrapped coroutine function: (model, rows) -> rows' results or the model's error


class _Metrics:
    """Prometheus metrics through ``ray.util.metrics`` (exported by Ray's metrics agent when it runs)."""

    def __init__(self, model_name: str) -> None:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        from ray.util import metrics

        self._tags = {"model": model_name}
        self._batch = metrics.Histogram("mlplatform_serve_batch_size", "Requests per model batch.",
                                        boundaries=[1, 2, 4, 8, 16, 32, 64], tag_keys=("model",))
        self._hits = metrics.Counter("mlplatform_serve_cache_hits", "Prediction cache hits.", tag_keys=("model",))
        self._lag = metrics.Gauge("mlplatform_serve_version_lag_s", "Seconds this replica has served another "
                                  "champion than the registry names (0 when converged).", tag_keys=("model",))
        self._misses = metrics.Counter("mlplatform_serve_cache_misses", "Prediction cache misses.",
                                       tag_keys=("model",))

    def lag(self, seconds: float) -> None:
        self._lag.set(seconds, tags=self._tags)

    def batch(self, size: int) -> None:
        self._batch.observe(size, tags=self._tags)

    def cache(self, hits: int, misses: int) -> None:
        if hits:
            self._hits.inc(hits, tags=self._tags)
        if misses:
            self._misses.inc(misses, tags=self._tags)
