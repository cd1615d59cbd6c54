"""Configuration: one pydantic-settings model, read from `PITSTOP_*` env vars and an optional YAML file.

Nested fields use `__` in env names, e.g. `PITSTOP_TEMPORAL__ADDRESS=temporal:7233`.
The YAML file is `$PITSTOP_CONFIG` (default `~/.config/pitstop/config.yaml`) when it exists.
Environment variables win over the file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pitstop import bounded_yaml

DEFAULT_TASK_QUEUE = "pitstop"
DEFAULT_REGIONS = ("eu-central", "us-east")
SHIPPED_RUNBOOKS_DIR = Path(__file__).resolve().parent.parent / "runbooks"


def default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "pitstop"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pitstop"


def regional_task_queue(base: str, region: str) -> str:
    """Task queue for activities that touch one region's cluster: `pitstop-<region>`."""
    return f"{base}-{region}"


class TemporalSettings(BaseModel):
    address: str = Field("127.0.0.1:7233", description="host:port of the Temporal frontend")
    namespace: str = "default"
    task_queue: str = Field(DEFAULT_TASK_QUEUE, description="queue for workflows and region-less activities")
    tls: bool = False
    tls_cert: Path | None = Field(None, description="client certificate (mTLS)")
    tls_key: Path | None = None
    api_key: SecretStr | None = Field(None, description="Temporal Cloud API key")
    ui_port: int = 8233
    embedded: bool = Field(True, description="`pitstop up` starts a local dev server at `address`")
    register_search_attributes: bool = Field(
        False, description="the worker, webhook and `pitstop up` register pitstop's missing search attributes at "
                           "start (as `pitstop setup` does) instead of refusing; needs operator rights")


class RegionCluster(BaseModel):
    """Where a region's Kubernetes API is: a kubeconfig file and a context in it."""

    kubeconfig: Path | None = Field(None, description="kubeconfig path; None = in-cluster or ~/.kube/config")
    context: str | None = Field(None, description="kubeconfig context; default = the region name")
    max_concurrent_calls: int = Field(8, description="activities running at once against this cluster")
    qps: float = Field(
        50.0, gt=0,
        description="client-side rate limit: API requests per second to this cluster, shared by every activity "
                    "of one worker process (N worker processes allow N times this)",
    )
    burst: int = Field(100, ge=1, description="requests allowed at once above `qps` before the limit applies")


class KubernetesSettings(BaseModel):
    regions: dict[str, RegionCluster] = Field(
        default_factory=dict,
        description="region name -> cluster; empty = the local sandbox's regions",
    )


class PrometheusSettings(BaseModel):
    url: str = Field("http://127.0.0.1:9090", description="Prometheus HTTP API base URL")
    timeout_seconds: float = 10.0


class TrafficAuthoritySettings(BaseModel):
    """The global traffic authority (GSLB) that holds per-region weights, outside every region (docs/failover.md)."""

    url: str = Field("http://127.0.0.1:8790", description="base URL; the local sandbox's authority listens here")
    token_file: Path | None = Field(
        None, description="file holding the bearer token; default <state_dir>/sandbox/gslb/token (the sandbox's)")
    timeout_seconds: float = Field(10.0, gt=0)


class TrafficSettings(BaseModel):
    """How traffic is shifted (flagger-style router choice): `istio` VirtualServices or `none` (no mesh), and the
    global traffic authority failovers use."""

    provider: Literal["istio", "none"] = Field("istio", description="default traffic router")
    services_without_mesh: list[str] = Field(
        default_factory=list, description="`namespace/name` of services that use the do-nothing router"
    )
    authority: TrafficAuthoritySettings = Field(default_factory=TrafficAuthoritySettings)


class AlertmanagerSettings(BaseModel):
    url: str = Field("http://127.0.0.1:9093", description="Alertmanager base URL")


class WebhookBasicAuth(BaseModel):
    """HTTP basic auth Alertmanager may send instead of a bearer token (its `http_config.basic_auth`)."""

    username: str = Field(min_length=1, description="the username Alertmanager sends")
    password: SecretStr = Field(description="set PITSTOP_WEBHOOK__BASIC_AUTH__PASSWORD, never in a file in git")


class WebhookRateLimit(BaseModel):
    """Per-client token bucket of the webhook (client: the authenticated identity, else the remote address).
    Generous by default: Alertmanager batches alerts into one request per group and interval."""

    per_second: float = Field(100.0, gt=0, description="requests per second a client may send on average")
    burst: int = Field(1000, ge=1, description="requests a client may send at once above `per_second`")


class WebhookSettings(BaseModel):
    listen: str = Field("127.0.0.1:8787", description="host:port the alert webhook listens on")
    token: SecretStr | None = Field(None, description="bearer token Alertmanager must send (also the HMAC key)")
    basic_auth: WebhookBasicAuth | None = Field(None, description="also accept HTTP basic auth")
    signature_window_seconds: int = Field(
        300, ge=1, description="an HMAC-signed request's timestamp may be this far from now (either way); "
                               "a signature is accepted once within it")
    rate_limit: WebhookRateLimit = Field(default_factory=WebhookRateLimit)
    max_body_bytes: int = 1_048_576
    journal: Path | None = Field(
        None, description="the intake journal (SQLite) where alerts are durable before the 200; "
                          "default <state_dir>/webhook-journal.db; one per webhook process")
    metrics_listen: str = Field(
        "127.0.0.1:9465", description="host:port of the webhook's Prometheus endpoint (request latency, journal "
                                      "backlog; docs/observability.md); empty = off; 0.0.0.0:PORT in a container")


class WorkerSettings(BaseModel):
    metrics_port: int = Field(9464, description="Prometheus endpoint for the SDK's runtime metrics (0 = off)")
    metrics_host: str = Field("127.0.0.1", description="address the metrics endpoint binds (0.0.0.0 in a container)")
    max_concurrent_activities: int = 50
    max_concurrent_workflow_tasks: int = 50
    enable_debug_steps: bool = Field(
        False, description="register the test-only `debug.*` step types (test workers only; validation refuses "
                           "them when off)")
    debug_record_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()),
        description="`debug.wait`'s `record_to` must be a file under this directory")


class TracingSettings(BaseModel):
    """OpenTelemetry traces of runs (docs/observability.md): off unless an OTLP/HTTP endpoint is set."""

    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP base URL spans are sent to (`<endpoint>/v1/traces`), e.g. http://127.0.0.1:4318; "
                          "None = no tracing")
    service_name: str = Field("pitstop", description="the `service.name` of this process's spans")


class SecuritySettings(BaseModel):
    """What runbook authors can reach through the worker (docs/permissions.md, "What runbook authors can reach")."""

    env_allowlist: list[str] = Field(
        default_factory=lambda: ["PITSTOP_RUNBOOK_*", "PITSTOP_PAGER_*"],
        description="glob patterns of the worker env vars runbooks may name in `header_env`, `url_env`, "
                    "`token_env`; pitstop's own configuration variables are never readable",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="`host`, `*.domain` or `host:port` patterns that `http.call`, `notify.*` and escalations may "
                    "call; empty = any host",
    )
    chaos_provider_modules: list[str] = Field(
        default_factory=lambda: ["chaosk8s.*", "chaosprometheus.*", "chaosistio.*", "pitstop.chaos_toolkit.*"],
        description="glob patterns of the python modules a chaos experiment's `python` providers may name",
    )
    chaos_process_providers: list[str] = Field(
        default_factory=list,
        description="glob patterns of the executables a chaos experiment's `process` providers may run; empty = none",
    )
    payload_keys_file: Path | None = Field(
        None,
        description="AES-256-GCM key ring (YAML, 0600) that encrypts every Temporal payload of clients and workers; "
                    "None = payloads in plain text. `pitstop keys rotate --file F` creates/rotates it",
    )
    policy_file: Path | None = Field(
        None,
        description="the access policy (docs/policy.md) the workers' update validators re-check and the API enforces; "
                    "None = no policy (approval steps' `approvers` lists only). `pitstop up` uses runbooks/policy.yaml",
    )
    codec_allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins (the Temporal Web UI) allowed to call the codec endpoint `/codec/decode`; "
                    "empty = the embedded Web UI's. Requests are served to loopback clients only",
    )


class OidcSettings(BaseModel):
    """OIDC ID tokens accepted by the pitstop API (docs/security.md)."""

    issuer: str = Field(min_length=1, description="the `iss` every token must carry, e.g. https://login.example.com")
    audience: str = Field(min_length=1, description="the `aud` every token must carry (pitstop's client id)")
    jwks_url: str | None = Field(
        None, description="the issuer's JWKS; default: `jwks_uri` of <issuer>/.well-known/openid-configuration")
    subject_claim: str = Field("email", description="claim naming the user (falls back to `sub`)")
    groups_claim: str = Field("groups", description="claim listing the user's groups")
    jwks_cache_seconds: float = Field(300.0, gt=0, description="how long fetched keys are reused")
    fetch_timeout_seconds: float = Field(5.0, gt=0, le=60, description="bound on each JWKS/discovery request")


class IdentitySettings(BaseModel):
    """Who may call the pitstop API (served by the webhook process): OIDC ID tokens and/or the local token file."""

    oidc: OidcSettings | None = Field(None, description="accept OIDC ID tokens from this issuer; None = token file only")
    tokens_file: Path | None = Field(
        None, description="the local token file (`pitstop tokens add`); default <state_dir>/api-tokens.yaml")
    api_url: str | None = Field(
        None, description="where the CLI reaches the pitstop API; default http://<webhook.listen>")
    token: SecretStr | None = Field(
        None, description="the CLI's credential (PITSTOP_IDENTITY__TOKEN); or `--token-file`, or "
                          "<state_dir>/cli.token")
    start_claim_key_file: Path | None = Field(
        None, description="secret shared by the API (signs who started a run) and the workers (verify it when the "
                          "run starts); default <state_dir>/start-claims.key, created by the API")


class ChaosSettings(BaseModel):
    """Chaos experiments (docs/chaos.md)."""

    experiments_dir: Path = Field(
        default_factory=lambda: SHIPPED_RUNBOOKS_DIR.parent / "chaos" / "experiments",
        description="where the `chaos.experiment` step's `experiment_file` is read from",
    )
    heartbeat_seconds: float = Field(
        2.0, gt=0, description="a phase's activity heartbeats this often (keep it well under the run's "
                               "`heartbeat_timeout_seconds`)")


class BackupSettings(BaseModel):
    """Where the backup drill may restore (`backup.restore`/`backup.verify`): scratch clusters, never fleet regions."""

    restore_targets: dict[str, RegionCluster] = Field(
        default_factory=dict,
        description="name -> kubeconfig/context of a scratch cluster; empty = the sandbox's scratch cluster "
                    "(`pitstop sandbox scratch-cluster create`) as target `scratch`, when it exists",
    )


class FluxEngineSettings(BaseModel):
    """Where the Flux Kustomization applying a repository lives, so pitstop can wait until a commit is applied."""

    region: str = Field(description="the fleet region whose cluster holds the Kustomization object")
    namespace: str = Field("flux-system", description="the Kustomization's namespace")
    kustomization: str = Field(description="the Kustomization's name")
    apply_timeout_seconds: float = Field(300.0, gt=0, le=3000, description="how long to wait for a commit to be applied")


class GitRepositorySettings(BaseModel):
    """One git repository a GitOps engine applies (named by `pitstop.dev/gitops-repository` on its objects)."""

    url: str = Field(description="HTTP(S) URL or local path of the repository")
    branch: str = Field("main", description="the branch the engine applies")
    token_env: str | None = Field(None, description="environment variable of the worker holding the HTTP token")
    engine: FluxEngineSettings | None = Field(
        None, description="the Flux Kustomization applying this repository; set, pitstop waits for each of its commits "
                          "to be applied before it verifies (unset: it does not wait)")


class GitReleaseSettings(BaseModel):
    """Releases from git (docs/gitops.md): how the `GitReleaseWatch` workflow starts them and how a rollback reverts."""

    poll_seconds: float = Field(10.0, gt=0, le=3600, description="how often the watcher lists opted-in Deployments")
    revert: Literal["direct", "branch"] = Field(
        "direct", description="a rollback's revert: committed to the engine's branch (`direct`), or pushed to a branch "
                              "`pitstop/revert-<deployment>-<template>` for a human to merge (`branch`)")
    release: dict[str, Any] = Field(
        default_factory=dict, description="`ReleaseSpec` fields of every git-started release (steps, analysis, "
                                          "progress_deadline, warm_window, ...); service, image and version come "
                                          "from the commit")


class GitopsSettings(BaseModel):
    """Git-managed services (docs/gitops.md): promotions of their Deployments are committed to git first."""

    repositories: dict[str, GitRepositorySettings] = Field(default_factory=dict, description="name -> repository")
    work_dir: Path | None = Field(None, description="where the worker keeps its clones; default <state_dir>/gitops")
    releases: GitReleaseSettings = Field(default_factory=GitReleaseSettings)


class SandboxSettings(BaseModel):
    regions: list[str] = Field(default_factory=lambda: list(DEFAULT_REGIONS))
    services: int = 40
    seed: int = 7


class Settings(BaseSettings):
    """Effective pitstop configuration."""

    model_config = SettingsConfigDict(env_prefix="PITSTOP_", env_nested_delimiter="__", extra="forbid")

    state_dir: Path = Field(default_factory=default_state_dir, description="Temporal DB, sandbox state")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="built binaries")
    runbooks_dir: Path = Field(default_factory=lambda: SHIPPED_RUNBOOKS_DIR, description="where runbook YAML files are read from")
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    traffic: TrafficSettings = Field(default_factory=TrafficSettings)
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    chaos: ChaosSettings = Field(default_factory=ChaosSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    gitops: GitopsSettings = Field(default_factory=GitopsSettings)

    @field_validator("state_dir", "cache_dir", "runbooks_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))

    def region_names(self) -> list[str]:
        return list(self.kubernetes.regions) or list(self.sandbox.regions)

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, every secret replaced by `********`."""
        return self.model_dump(mode="json")  # SecretStr dumps as '**********'


def config_file_path() -> Path:
    return Path(os.environ.get("PITSTOP_CONFIG", Path.home() / ".config" / "pitstop" / "config.yaml")).expanduser()


class ConfigFileError(ValueError):
    """The YAML config file exists but cannot be used."""


class _YamlFileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if not path.exists():
            return {}
        try:
            data = bounded_yaml.load_file(path) or {}
        except bounded_yaml.YamlRefused as exc:
            raise ConfigFileError(f"{path}: {exc.reason} (line {exc.line})") from exc
        if not isinstance(data, dict):
            raise ConfigFileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        return data


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
