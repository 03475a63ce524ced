"""Settings: one class, read from the environment (prefix ``AGRIMARKET_``)."""

from __future__ import annotations

import base64
import json
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class OversoldPolicy(StrEnum):
    """What a paid storefront checkout gets when its stock sold meanwhile on another channel."""

    refund = "refund"  # the payment is refunded through Stripe and the order cancelled
    keep = "keep"  # the order is kept, flagged oversold: the farmer finds the goods or refunds by hand


class ConfigurationError(RuntimeError):
    """The service cannot start with the settings it was given."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGRIMARKET_", extra="ignore")

    env: Environment = Environment.development
    data_dir: Path = Path("./data")
    database_url: str = ""
    secret_key: SecretStr | None = None
    # Fernet keys (url-safe base64, 32 bytes), newest first; older keys still decrypt (rotation).
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    # Unset: migrate at start-up on SQLite (the embedded default), not on PostgreSQL (run `agrimarket db upgrade`).
    auto_migrate: bool | None = None
    run_worker_in_process: bool = True
    # The job runner (agrimarket.worker), in the server process or standalone (`agrimarket worker`).
    worker_concurrency: int = Field(default=4, ge=1)  # jobs one worker runs at once
    worker_poll_interval_seconds: float = Field(default=1.5, gt=0)  # the safety net; wake-ups come at once
    worker_lease_seconds: float = Field(default=60.0, gt=0)  # a dead worker's job is retried after this
    worker_backoff_base_seconds: float = Field(default=2.0, ge=0)
    worker_backoff_cap_seconds: float = Field(default=900.0, ge=0)
    worker_shutdown_timeout_seconds: float = Field(default=20.0, ge=0)
    worker_listen: bool = True  # PostgreSQL: LISTEN for new jobs, so other processes' enqueues wake us at once
    worker_scheduler: bool = True  # run the periodic schedules (safe in every worker: one job per period)
    worker_metrics_interval_seconds: float = Field(default=15.0, gt=0)
    job_retention_days: int = Field(default=14, ge=1)  # finished jobs are purged after this; dead ones stay
    # The sync engine (agrimarket.sync): catalogue and stock changes pushed to every connected channel.
    sync_coalesce_seconds: float = Field(default=0.05, ge=0)  # changes within this fold into one push
    sync_lease_seconds: float = Field(default=30.0, gt=0)  # one worker per shop; a dead one's lease lapses
    sync_circuit_threshold: int = Field(default=5, ge=1)  # failed runs in a row that open a shop's circuit
    sync_circuit_cooldown_seconds: float = Field(default=60.0, ge=0)  # a shop with an open circuit rests this long
    # A listing the platform reviews before it goes on sale (Tiki) is looked at again this long after the last look.
    sync_review_check_seconds: float = Field(default=300.0, gt=0)
    # Reconciliation: each shop's listings compared with what its channel shows (read when the worker starts).
    sync_drift_check_seconds: float = Field(default=3600.0, gt=0)
    # Order polling (agrimarket.orders.reconcile): catches what webhooks missed. The period is read when the worker
    # starts; each poll re-reads ``overlap`` before its cursor; a shop's first poll looks back ``first_lookback``.
    orders_poll_seconds: float = Field(default=300.0, gt=0)
    orders_poll_overlap_seconds: float = Field(default=600.0, ge=0)
    orders_poll_first_lookback_hours: float = Field(default=72.0, gt=0)
    # Channels whose events are pulled from a queue (Tiki): each shop's queue is pulled this often (read when the
    # worker starts), at most ``batch`` events a pull.
    event_queue_pull_seconds: float = Field(default=15.0, gt=0)
    event_queue_pull_batch: int = Field(default=100, ge=1, le=1000)
    log_level: str = "INFO"
    log_json: bool | None = None
    session_cookie_name: str = "agrimarket_session"
    session_ttl_hours: int = 24 * 30
    cookie_secure: bool | None = None
    sqlite_busy_timeout_ms: int = 15_000
    db_pool_size: int = 10
    migrations_dir: Path | None = None
    # When set, /metrics answers only to `Authorization: Bearer <token>` (for a scraper outside a private network).
    metrics_token: SecretStr | None = None
    # Photos: empty means files under <data dir>/media; else an object-store URL (s3://bucket/prefix, gs://, az://).
    media_storage_url: str = ""
    # Where browsers fetch photos directly (a CDN or public bucket in front of the storage); empty: through /media.
    media_public_base_url: str = ""
    media_max_upload_mb: int = Field(default=25, ge=1)
    media_max_megapixels: int = Field(default=64, ge=1)
    # Bulk import (agrimarket.imports): the largest file taken, and up to what size a file is checked and applied
    # while the request waits; a larger one goes to the worker, with progress on GET /api/v1/imports/{id}.
    import_max_upload_mb: int = Field(default=50, ge=1)
    import_inline_max_kb: int = Field(default=256, ge=0)
    # Where browsers and marketplaces reach this server (https://agrimarket.example.vn): marketplaces send sellers
    # back to <this>/api/v1/connections/callback/<channel> after they authorise a shop. Unset: http://<host>:<port>
    # in development; in production, connecting a shop by authorisation is refused until it is set.
    public_base_url: str = ""
    # Where the seller's browser is sent (303) once a shop is connected by authorisation, with `connection_id`
    # (or `error` and `message`) in the query. Unset: the callback answers JSON.
    connect_done_url: str = ""
    # The Shopee and Lazada sandboxes mounted under /sandbox/…, with a demo cooperative published to them.
    # Unset: on in development, off otherwise. Never on in production.
    demo: bool | None = None
    # Direct sales (agrimarket.payments): the storefront's card payments through Stripe Checkout, in VND. With no
    # secret key, the demo's storefront runs against a local fake of the Stripe API (/sandbox/stripe, TEST MODE);
    # without the demo, storefront pages show no checkout.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None  # the whsec_… of the endpoint <public URL>/webhooks/stripe
    stripe_api_base: str = ""  # empty: https://api.stripe.com
    stripe_timeout_seconds: float = Field(default=20.0, gt=0)
    # How long a checkout holds its stock (Stripe allows 30 minutes to 24 hours).
    storefront_checkout_minutes: int = Field(default=31, ge=30, le=1440)
    storefront_oversold_policy: OversoldPolicy = OversoldPolicy.refund

    @field_validator("public_base_url", "connect_done_url", "stripe_api_base")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http:// or https:// address")
        return value

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{(self.data_dir / 'agrimarket.db').as_posix()}"
        return self

    @property
    def is_development(self) -> bool:
        return self.env is not Environment.production

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.auto_migrate if self.auto_migrate is not None else self.is_sqlite

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else not self.is_development

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else not self.is_development

    @property
    def demo_enabled(self) -> bool:
        if self.env is Environment.production:
            return False
        return self.demo if self.demo is not None else self.env is Environment.development

    @property
    def public_url(self) -> str | None:
        """This server's public address without a trailing slash; None in production when it is not set."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        if not self.is_development:
            return None
        # Listening everywhere: this machine is still reachable on loopback.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def resolve_migrations_dir(self) -> Path:
        candidates = [
            self.migrations_dir,
            Path(__file__).resolve().parents[2] / "migrations",
            Path.cwd() / "migrations",
        ]
        for candidate in candidates:
            if candidate is not None and (candidate / "env.py").is_file():
                return candidate
        raise ConfigurationError(
            "Cannot find the migrations folder; set AGRIMARKET_MIGRATIONS_DIR to the folder holding env.py."
        )

    def check_secrets(self) -> None:
        """Fill development secrets from the data dir; refuse to start production without real ones."""
        if self.secret_key is not None and self.encryption_keys:
            return
        if not self.is_development:
            missing = [
                name
                for name, present in (
                    ("AGRIMARKET_SECRET_KEY", self.secret_key is not None),
                    ("AGRIMARKET_ENCRYPTION_KEYS", bool(self.encryption_keys)),
                )
                if not present
            ]
            raise ConfigurationError(
                f"Missing required secret(s) in production: {', '.join(missing)}. "
                "Generate them with `agrimarket generate-keys` and set them in the environment."
            )
        dev = _load_dev_secrets(self.data_dir)
        if self.secret_key is None:
            self.secret_key = SecretStr(dev["secret_key"])
        if not self.encryption_keys:
            self.encryption_keys = [SecretStr(dev["encryption_key"])]


def new_fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _load_dev_secrets(data_dir: Path) -> dict[str, str]:
    """Development keys live in the data dir, made once, so a restart can still decrypt what it stored."""
    path = data_dir / "dev-secrets.json"
    if path.is_file():
        loaded: dict[str, str] = json.loads(path.read_text())
        return loaded
    data_dir.mkdir(parents=True, exist_ok=True)
    values = {"secret_key": secrets.token_urlsafe(48), "encryption_key": new_fernet_key()}
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
