"""``ServeConfig``: the typed arguments of the serving application (the ``args`` of ``build_app`` and of the Serve
YAML), loaded through :func:`mlplatform.config.base.config_from_dict` like every other config.

Defaults follow SPEC S6 (batching 32 / 2 ms, queue 100, deadline 10 s, cache 10,000 x 300 s, breaker 5 / 30 s,
log queue 10,000 flushed every 1 s or 500 rows, 1 MiB / 1,000 instances). Every replica builds its own store
client from ``store_url`` / ``artifact_uri`` here, because Ray processes do not see the caller's environment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mlplatform.config.base import StrictModel, config_from_dict
from mlplatform.features.pit_join import FeatureView

# The custom resource serving nodes advertise (cluster.yaml's head and GPU types, the KubeRay serve groups).
SERVE_RESOURCE = "serve"


class BatchingConfig(StrictModel):
    enabled: bool = True
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    # SPEC S6.6 allows 1-5 ms; 0 is accepted so the benchmark can measure the bare cost.
    batch_wait_timeout_s: float = Field(default=0.002, ge=0.0, le=0.005)


class AutoscalingConfig(StrictModel):
    min_replicas: int = Field(default=2, ge=0)
    max_replicas: int = Field(default=10, ge=1)
    target_ongoing_requests: float = Field(default=16, gt=0)
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)
    look_back_period_s: float | None = Field(default=None, gt=0, description="Window of the averaged load; "
                                             "None keeps Ray's default (30 s).")
    metrics_interval_s: float | None = Field(default=None, gt=0, description="Load report interval; must stay "
                                             "below look_back_period_s. None keeps Ray's default (10 s).")

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        look_back, interval = self.look_back_period_s or 30.0, self.metrics_interval_s or 10.0
        if look_back <= interval:
            raise ValueError(f"look_back_period_s ({look_back:g}) must exceed metrics_interval_s ({interval:g})")
        return self


class CacheConfig(StrictModel):
    enabled: bool = True
    max_entries: int = Field(default=10_000, ge=1)
    ttl_s: float = Field(default=300.0, gt=0)


class BreakerConfig(StrictModel):
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout_s: float = Field(default=30.0, gt=0)


class PredictionLogConfig(StrictModel):
    enabled: bool = True
    queue_size: int = Field(default=10_000, ge=1)
    flush_rows: int = Field(default=500, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)
    write_timeout_s: float = Field(default=2.0, gt=0)
    writer: Literal["process", "thread"] = Field(
        default="process", description="process: a small Ray actor per ingress replica does the store writes, so "
        "their Python work never holds the replica's GIL (at 1,500 req/s an in-replica writer thread cost ~20% "
        "of the throughput and most of the p99); thread: write from a thread inside the replica.")


class AuthConfig(StrictModel):
    """Bearer-token authentication (SPEC S6.12; off by default) of the routes that read or write: predict, pinned
    predict and feedback, and the model metadata routes when ``metadata`` is set."""

    enabled: bool = False
    token_secret: str = Field(default="MLPLATFORM_SERVE_TOKEN", pattern=r"^[A-Z][A-Z0-9_]*$",
                              description="Secret name: read from the file in NAME_FILE, else env NAME.")
    metadata: bool = Field(default=False, description="Also require the token for GET /v1/models[/{name}].")


class RateLimitConfig(StrictModel):
    """Per-client request budget of predict and feedback (SPEC S6.12; off by default). The client is the
    authenticated principal (the bearer token), else the peer address. A client-supplied header (X-User-ID, else
    the first X-Forwarded-For address) names the client only when the peer is in ``trusted_proxies``: otherwise a
    client could rotate it to get a fresh budget per request. Per ingress replica: N replicas allow N x requests."""

    enabled: bool = False
    requests: int = Field(default=100, ge=1)
    window_s: float = Field(default=60.0, gt=0)
    max_clients: int = Field(default=100_000, ge=1, description="Keys tracked (an LRU); the least recent is "
                             "forgotten, so memory stays bounded whatever the number of clients.")
    trusted_proxies: list[str] = Field(default_factory=list, description="Peer addresses or CIDR networks whose "
                                       "X-User-ID / X-Forwarded-For headers are believed.")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value


class PinnedConfig(StrictModel):
    """Which registered versions ``POST /v1/models/{name}/versions/{v}:predict`` may load beside the routed ones:
    a version with an alias, or one of the last ``last_n`` registered. Loads are single-flight; a request that
    finds its version still loading after ``wait_s`` gets 503 with Retry-After."""

    last_n: int = Field(default=3, ge=0)
    max_loaded: int = Field(default=2, ge=0, description="Pinned-only versions kept loaded per replica (an LRU).")
    wait_s: float = Field(default=5.0, ge=0, description="How long a request waits for its version to load.")


class PiiConfig(StrictModel):
    """Features that are personal data (SPEC S6.12): dropped, or pseudonymised with HMAC-SHA256 keyed by a secret,
    before any write of the prediction log. The model still sees the real values."""

    fields: list[str] = Field(default_factory=list, description="Feature names (and/or 'entity_id').")
    action: Literal["pseudonymise", "drop"] = "pseudonymise"
    key_secret: str = Field(default="MLPLATFORM_PII_KEY", pattern=r"^[A-Z][A-Z0-9_]*$",
                            description="Secret name of the HMAC key: file in NAME_FILE, else env NAME.")


class RolloutConfig(StrictModel):
    """How replicas follow the registry and guard a rollout (SPEC S7); the rollout itself lives in the store."""

    follow_registry: bool = Field(default=True, description="Poll aliases and the rollout state.")
    poll_interval_s: float = Field(default=10.0, gt=0, description="Alias moves reach replicas within this.")
    guard_interval_s: float = Field(default=5.0, gt=0)
    window_s: float = Field(default=300.0, gt=0, description="Sliding window of the guard's statistics.")
    shadow_max_inflight: int = Field(default=1000, ge=0, description="Shadow copies queued or in flight per "
                                     "model; more are dropped and counted.")
    shadow_timeout_s: float = Field(default=5.0, gt=0)
    entity_field: str | None = Field(default=None, description="Instance field used as the sticky routing key "
                                     "when no X-User-ID / X-Request-Key header is sent.")
    fault_injection: dict[int, float] = Field(default_factory=dict, description="TEST ONLY: version -> fraction "
                                              "of its requests that fail deterministically.")
    fault_delay_s: dict[int, float] = Field(default_factory=dict, description="TEST ONLY: version -> seconds each "
                                            "of its batches waits before the model call (a slow model).")
    load_fault_injection: dict[int, int] = Field(default_factory=dict, description="TEST ONLY: version -> how "
                                                 "many of its first load attempts fail with a transient error.")
    load_retry_cap_s: float = Field(default=60.0, gt=0, description="Longest wait between two attempts to load a "
                                    "version that failed transiently (full-jitter exponential backoff).")

    @model_validator(mode="after")
    def _rates(self) -> RolloutConfig:
        if any(not 0 <= rate <= 1 for rate in self.fault_injection.values()):
            raise ValueError("fault_injection rates must be in [0, 1]")
        return self


class OnlineFeaturesConfig(StrictModel):
    """Where ``{"entity_ids": [...]}`` requests find their features: the online table that ``materialize``
    writes under ``home`` (default: the app's ``home``), one or more feature views merged per entity."""

    views: list[dict[str, Any] | str] = Field(min_length=1, description="FeatureView definitions (name, entity, "
                                              "features, ttl, ...), as in a feature views YAML, or names of "
                                              "views applied under home (features apply).")
    full_feature_names: bool = Field(default=False, description="Name features view__feature, as the training "
                                     "data's get_historical_features(full_feature_names=True) did.")
    home: str | None = Field(default=None, description="MLPLATFORM_HOME holding online/online_features.db.")
    timeout_s: float = Field(default=1.0, gt=0, description="Per attempt; 3 attempts with jittered backoff.")

    @model_validator(mode="after")
    def _views(self) -> OnlineFeaturesConfig:
        # raises on a bad view; applied views (names) are resolved, and checked, when the ingress starts
        entities = {FeatureView.model_validate(v).entity for v in self.views if isinstance(v, dict)}
        if len(entities) > 1:
            raise ValueError(f"all online feature views must share one entity key, got {sorted(entities)}")
        return self


class ModelEntry(StrictModel):
    name: str = Field(description="Registered model name; the URL segment in /v1/models/{name}.")
    ref: str | None = Field(default=None, description="name, name:version or name@alias; default name@champion.")
    fallback: str | None = Field(default=None, description="Model ref answering while the breaker is open.")
    num_replicas: int | None = Field(default=None, ge=1, description="Fixed replicas; None uses autoscaling.")
    online_features: OnlineFeaturesConfig | None = Field(default=None, description="Enables entity_ids requests.")

    def initial_ref(self) -> str:
        return self.ref or f"{self.name}@champion"


class EnsembleEntry(StrictModel):
    """An ensemble served at /v1/models/{name}: one deployment per member (scaling on its own), called
    concurrently through DeploymentHandles, answers combined by ``combine``."""

    name: str = Field(description="URL segment in /v1/models/{name}; must differ from every model name.")
    members: list[str] = Field(min_length=2, description="Model refs (name:version pins a member; name@alias "
                               "follows the registry like a served model).")
    combine: Literal["mean", "vote", "weighted"] = Field(default="mean", description="mean of probabilities, "
                                                         "majority vote of labels, or weighted mean.")
    weights: list[float] | None = Field(default=None, description="One positive weight per member (weighted).")
    on_member_failure: Literal["fail", "degrade"] = Field(default="fail", description="fail: 503 when a member "
                                                          "fails or times out; degrade: answer from the others, "
                                                          "marked degraded.")
    min_members: int = Field(default=1, ge=1, description="degrade needs at least this many answers.")
    member_timeout_s: float = Field(default=5.0, gt=0)
    num_replicas: int | None = Field(default=None, ge=1, description="Per member; None uses autoscaling.")
    online_features: OnlineFeaturesConfig | None = None

    @model_validator(mode="after")
    def _weights(self) -> EnsembleEntry:
        if self.combine == "weighted":
            if self.weights is None or len(self.weights) != len(self.members):
                raise ValueError("combine 'weighted' needs one weight per member")
            if any(w <= 0 for w in self.weights):
                raise ValueError("ensemble weights must be positive")
        elif self.weights is not None:
            raise ValueError("weights are only used with combine 'weighted'")
        if self.min_members > len(self.members):
            raise ValueError("min_members must not exceed the number of members")
        return self


class ServeConfig(StrictModel):
    models: list[ModelEntry] = Field(default_factory=list)
    ensembles: list[EnsembleEntry] = Field(default_factory=list)
    store_url: str | None = None
    artifact_uri: str | None = None
    home: str | None = Field(default=None, description="MLPLATFORM_HOME for replicas (artifact cache).")
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    max_ongoing_requests: int = Field(default=64, ge=1, description="Per model replica; >= max_batch_size.")
    max_queued_requests: int = Field(default=100, ge=1)
    ingress_max_ongoing_requests: int = Field(default=256, ge=1)
    ingress_replicas: int = Field(default=1, ge=1)
    colocate_models: bool = Field(
        default=False, description="Serve every plain model inside the ingress replica (no DeploymentHandle hop): "
        "the fastest path on a small node; models then scale with ingress_replicas instead of autoscaling on "
        "their own. Ensembles keep their member deployments.")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    model_num_cpus: float = Field(default=0.5, ge=0)
    ingress_num_cpus: float = Field(default=0.25, ge=0)
    replica_resources: dict[str, float] | None = Field(
        default=None, description="Custom Ray resources every replica requests. None (auto): {serve: 1} and no "
        "CPU when the cluster advertises a 'serve' resource (cluster.yaml, deploy/kuberay), so serving slots are "
        "reserved and training, which never requests 'serve', cannot take them; nothing on a laptop. {} opts out.")
    request_timeout_s: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=1 << 20, ge=1)
    max_instances: int = Field(default=1000, ge=1)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    prediction_log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    pinned: PinnedConfig = Field(default_factory=PinnedConfig)
    graceful_shutdown_timeout_s: float = Field(default=20.0, ge=0)
    health_check_period_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> ServeConfig:
        # With max_ongoing_requests below the batch size, batches can never fill (ray issue #43288).
        if self.batching.enabled and self.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be at least "
                             f"batching.max_batch_size ({self.batching.max_batch_size})")
        names = [m.name for m in self.models] + [e.name for e in self.ensembles]
        if not names:
            raise ValueError("serve at least one model or ensemble")
        if len(set(names)) != len(names):
            raise ValueError(f"model and ensemble names must be unique, got {names}")
        return self

    def for_cluster(self, available: Mapping[str, float]) -> ServeConfig:
        """Resolve ``replica_resources: None`` against the cluster's resources (the app builder runs on it)."""
        if self.replica_resources is not None:
            return self
        if available.get(SERVE_RESOURCE, 0) > 0:
            return self.model_copy(update={"replica_resources": {SERVE_RESOURCE: 1.0}, "model_num_cpus": 0.0,
                                           "ingress_num_cpus": 0.0})
        return self.model_copy(update={"replica_resources": {}})

    def actor_options(self, num_cpus: float) -> dict[str, Any]:
        """``ray_actor_options`` for every replica of this app."""
        options: dict[str, Any] = {"num_cpus": num_cpus}
        if self.replica_resources:
            options["resources"] = dict(self.replica_resources)
        return options

    def online_features(self, name: str) -> OnlineFeaturesConfig | None:
        entries: list[ModelEntry | EnsembleEntry] = [*self.models, *self.ensembles]
        entry = next((e for e in entries if e.name == name), None)
        return None if entry is None else entry.online_features

    @classmethod
    def parse(cls, args: dict[str, Any] | None, source: str = "serve app args") -> ServeConfig:
        """The app's ``args`` (a Serve YAML's ``applications[].args`` or ``build_app``'s) through the one loader."""
        return config_from_dict(args or {}, cls, source)
