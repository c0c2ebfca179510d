"""One typed configuration for the whole miner: defaults < YAML file < environment < command line.

Everything below the entry point receives a `Settings` object; nothing else reads the environment.
Environment variables use the prefix ``GODMINER_`` and ``__`` between nested keys, e.g.
``GODMINER_NODE__PORT=8000`` or ``GODMINER_HUB__TOKEN=hf_...``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

# Offer kinds the policy distinguishes. Image offers are split by base model (SDXL or Flux).
OFFER_KINDS = ("instruct", "chat", "dpo", "grpo", "sdxl", "flux")


class NodeSettings(BaseModel):
    """How the miner listens and whom it trusts."""

    host: str = Field("0.0.0.0", description="Address the HTTP server binds to.")
    port: int = Field(7999, ge=1, le=65535, description="Port published on chain with fiber-post-ip.")
    netuid: int = Field(56, description="Subnet id: 56 on mainnet, 241 on testnet.")
    min_stake: float = Field(1000.0, ge=0, description="Validators with less stake (TAO) are refused with 403.")
    nonce_window_s: float = Field(120.0, gt=0, description="Accepted clock skew of a request nonce, seconds.")
    metagraph_source: Literal["chain", "snapshot"] = Field(
        "chain", description="Read validators' stake from the chain (refreshed) or from a snapshot file only."
    )
    metagraph_snapshot: Path | None = Field(
        None, description="Snapshot file (fiber's nodes.json layout). Default: <data_dir>/nodes.json."
    )
    metagraph_refresh_s: float = Field(300.0, gt=0, description="Seconds between metagraph refreshes.")
    subtensor_network: str = Field("finney", description="finney, test, or local.")
    subtensor_address: str | None = Field(None, description="Explicit websocket address; wins over the network.")
    wallets_dir: Path = Field(Path("~/.bittensor/wallets"), description="Bittensor wallets directory.")
    wallet_name: str = Field("default", description="Wallet (coldkey) directory name.")
    hotkey_name: str = Field("default", description="Hotkey file name under <wallet>/hotkeys/.")


class HubSettings(BaseModel):
    """Where finished models are published."""

    publisher: Literal["hub", "local"] = Field("hub", description="Hugging Face Hub, or a local directory (demo).")
    namespace: str = Field("", description="Hugging Face user or organisation that owns published repos.")
    token: SecretStr | None = Field(None, description="Hugging Face write token.")
    local_dir: Path | None = Field(None, description="Root of the local publisher. Default: <data_dir>/published.")
    upload_retries: int = Field(5, ge=1, description="Attempts per upload before the job fails.")


class PolicySettings(BaseModel):
    """How offers are accepted or declined."""

    name: Literal["seed", "godminer", "reference"] = Field(
        "godminer", description="Offer policy: godminer (expected gain), seed (the plan's table), reference."
    )
    max_hours: dict[str, float] = Field(
        default_factory=lambda: {
            "instruct": 8.0, "dpo": 10.0, "grpo": 10.0, "chat": 7.0, "sdxl": 4.0, "flux": 4.0,
        },
        description="Longest hours_to_complete accepted per offer kind.",
    )
    priority: dict[str, int] = Field(
        default_factory=lambda: {"dpo": 3, "grpo": 3, "instruct": 2, "chat": 1, "sdxl": 2, "flux": 2},
        description="Priority per offer kind; higher wins capacity.",
    )
    headroom_gpus: dict[int, int] = Field(
        default_factory=lambda: {3: 0, 2: 0, 1: 1},
        description="GPUs that must stay free after accepting an offer of a given priority (room for better work).",
    )
    model_families: list[str] = Field(
        default_factory=lambda: ["*"], description="Accepted model families (substrings of the model id); '*' = all."
    )
    deny_models: list[str] = Field(default_factory=list, description="Model ids (or substrings) always declined.")
    min_params_b: float = Field(0.0, ge=0, description="Smallest model accepted, billions of parameters.")
    max_params_b: float | None = Field(None, description="Largest model accepted, billions (None = no limit).")
    min_train_fraction: float = Field(
        0.5, gt=0, le=1, description="Share of the budget a job must be able to train for, or it is declined."
    )
    accepted_ttl_s: float = Field(
        1800.0, gt=0, description="An accepted offer without a start-training request expires after this."
    )
    prior_win: float = Field(0.25, ge=0, le=1, description="godminer policy: prior P(win) of a delivered task.")
    prior_fail: float = Field(0.03, ge=0, le=1, description="godminer policy: prior P(fail) of an accepted task.")
    prior_strength: float = Field(8.0, gt=0, description="godminer policy: pseudo-count of the priors.")
    leader_q_per_day: dict[str, float] = Field(
        default_factory=lambda: {"instruct": 150.0, "dpo": 60.0, "grpo": 100.0, "image": 80.0},
        description="godminer policy: a group leader's q (Σ score·work × mean score) gathered per day.",
    )
    gpu_hour_value: float = Field(
        0.002, ge=0, description="godminer policy: value of one GPU-hour on a fully busy box (emission-days)."
    )
    eligibility_guard_days: float = Field(
        4.0, gt=0, le=7, description="godminer policy: take every feasible offer once our last win is this old."
    )

    @field_validator("max_hours", "priority")
    @classmethod
    def _known_kinds(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - set(OFFER_KINDS)
        if unknown:
            raise ValueError(f"unknown offer kinds {sorted(unknown)}; use {', '.join(OFFER_KINDS)}")
        return value


class GpuSpec(BaseModel):
    """One GPU declared in the configuration."""

    index: int = Field(ge=0)
    memory_gb: float = Field(80.0, gt=0)
    name: str = "declared"


class GpuSettings(BaseModel):
    """The GPUs of this box."""

    inventory: Literal["nvml", "config"] = Field("nvml", description="Discover GPUs with NVML or declare them.")
    count: int = Field(0, ge=0, description="With inventory=config: number of identical GPUs.")
    memory_gb: float = Field(80.0, gt=0, description="With inventory=config and count: memory of each GPU.")
    devices: list[GpuSpec] = Field(default_factory=list, description="With inventory=config: an explicit list.")
    max_jobs_per_gpu: int = Field(1, ge=1, description="Jobs that may share one GPU when memory allows.")
    tflops: float = Field(400.0, gt=0, description="Usable dense bf16 TFLOP/s per GPU for time estimates.")
    mfu: float = Field(0.35, gt=0, le=1, description="Model FLOPs utilisation assumed for time estimates.")


class EstimateSettings(BaseModel):
    """Knobs of the duration and memory estimates (see engine/estimates.py)."""

    download_mb_s: float = Field(400.0, gt=0, description="Model download bandwidth, MB/s.")
    upload_mb_s: float = Field(100.0, gt=0, description="Hub upload bandwidth, MB/s.")
    tokens_per_row: float = Field(350.0, gt=0, description="Average tokens in a training row.")
    safety_margin_s: float = Field(300.0, ge=0, description="Kept free before the deadline beyond save+publish.")


class ExecutorSettings(BaseModel):
    """How training processes are started."""

    kind: Literal["local", "docker", "ray"] = Field("local", description="local child process, docker, or ray.")
    docker_image: str = Field("godminer/trainer:latest", description="Image with godminer[train] installed.")
    docker_shm_size: str = Field("32g", description="Shared memory of training containers.")
    ray_address: str | None = Field(
        None, description="Ray cluster to join (None: this box's cluster, started beforehand with `ray start`)."
    )
    stall_timeout_s: float = Field(1200.0, gt=0, description="No progress line for this long: kill and retry.")
    max_attempts: int = Field(3, ge=1, description="Training attempts per job (OOM, stall, crash).")
    lease_s: float = Field(60.0, gt=0, description="Lease on a job held by a lifecycle worker.")
    tick_s: float = Field(2.0, gt=0, description="Seconds between lifecycle passes over the active jobs.")


class MonitorSettings(BaseModel):
    """Alert thresholds and delivery."""

    webhook_url: str | None = Field(None, description="Discord- or Slack-compatible webhook for alerts.")
    check_interval_s: float = Field(60.0, gt=0, description="Seconds between alert evaluations.")
    failure_ratio: float = Field(0.05, ge=0, le=1, description="Alert when the job failure ratio exceeds this.")
    failure_window_jobs: int = Field(20, ge=1, description="Recent finished jobs the failure ratio looks at.")
    gpu_util_min: float = Field(0.5, ge=0, le=1, description="Alert when mean GPU utilisation stays below this.")
    gpu_util_window_s: float = Field(1800.0, gt=0, description="Window of the GPU utilisation alert.")
    rank_drop: int = Field(10, ge=1, description="Alert when the rank drops by more than this many positions.")
    training_hours_max: float = Field(8.0, gt=0, description="Alert when a job has been training longer.")
    disk_free_gb_min: float = Field(50.0, ge=0, description="Alert when free disk falls below this.")
    public_url: str | None = Field(None, description="URL the validator uses to reach us; probed for reachability.")
    operator_token: SecretStr | None = Field(
        None, description="Bearer token for /api, /metrics and /dashboard; without it only loopback clients may read."
    )


class TrainingRepo(BaseModel):
    github_repo: str = "https://github.com/godminer/godminer"
    commit_hash: str = "0000000000000000000000000000000000000000"


class TournamentSettings(BaseModel):
    """Answer of GET /training_repo/{task_type} (tournament protocol)."""

    text: TrainingRepo = Field(default_factory=TrainingRepo)
    image: TrainingRepo = Field(default_factory=TrainingRepo)


_PLACEHOLDER = re.compile(r"^(|changeme|change-me|hf_x+|<.*>|your[-_ ].*|xxx+|todo|placeholder)$", re.IGNORECASE)


class Settings(BaseSettings):
    """The miner's whole configuration."""

    model_config = SettingsConfigDict(env_prefix="GODMINER_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(Path("./var"), description="Store, job folders, logs and local publications.")
    dev: bool = Field(False, description="Offline development mode (//Bob miner, //Alice validator).")
    node: NodeSettings = Field(default_factory=NodeSettings)
    hub: HubSettings = Field(default_factory=HubSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    gpus: GpuSettings = Field(default_factory=GpuSettings)
    estimates: EstimateSettings = Field(default_factory=EstimateSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    tournament: TournamentSettings = Field(default_factory=TournamentSettings)
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/godminer.db.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, YamlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        self.node.wallets_dir = self.node.wallets_dir.expanduser()
        if self.node.metagraph_snapshot is None:
            self.node.metagraph_snapshot = self.data_dir / "nodes.json"
        if self.hub.local_dir is None:
            self.hub.local_dir = self.data_dir / "published"
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'godminer.db'}"

    def check_for_production(self) -> list[str]:
        """Problems that must stop `serve` from starting (placeholder secrets, missing namespace)."""
        problems = []
        if self.hub.publisher == "hub":
            token = self.hub.token.get_secret_value() if self.hub.token else ""
            if _PLACEHOLDER.match(token.strip()):
                problems.append("hub.token is missing or a placeholder (set GODMINER_HUB__TOKEN)")
            if not self.hub.namespace or _PLACEHOLDER.match(self.hub.namespace):
                problems.append("hub.namespace is missing or a placeholder (your Hugging Face user or org)")
        return problems

    def redacted(self) -> dict[str, Any]:
        """The resolved configuration as plain data, secrets replaced by '***'."""
        data = self.model_dump(mode="json")
        data["hub"]["token"] = "***" if self.hub.token else None
        if self.monitor.webhook_url:
            data["monitor"]["webhook_url"] = "***"
        data["monitor"]["operator_token"] = "***" if self.monitor.operator_token else None
        return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, an optional YAML file, the environment and explicit overrides."""
    if config_file is not None and not Path(config_file).is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})

    return FileSettings(**_drop_none(overrides))


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)
