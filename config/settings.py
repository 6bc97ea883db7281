"""Conveyor settings: one module, every deploy-time value read from the environment.

The embedded default (no variables set) is SQLite in WAL mode plus django-q2's ORM
broker; `DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and the Redis broker.
Each variable is documented in the README's configuration table.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.private_files import private_dir, private_sqlite, write_private

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_prices(name: str) -> dict[str, dict[str, float]]:
    """`{"model": {"input": USD, "output": USD}}` (per million tokens) from a JSON
    variable; a malformed value stops start-up with a message rather than mis-pricing."""
    value = os.environ.get(name, "").strip()
    if not value:
        return {}
    problem = f'{name} must be JSON like {{"gpt-4o-mini": {{"input": 0.15, "output": 0.6}}}}'
    try:
        prices = json.loads(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{problem}: {exc}") from None
    if not isinstance(prices, dict):
        raise ImproperlyConfigured(problem)
    for model, price in prices.items():
        ok = isinstance(price, dict) and set(price) == {"input", "output"}
        if not ok or not all(_is_price(price[side]) for side in ("input", "output")):
            raise ImproperlyConfigured(f"{problem}; the price of {model!r} is not.")
    return {model: {side: float(v) for side, v in price.items()} for model, price in prices.items()}


def env_kind_caps(name: str) -> dict[str, int]:
    """`{"llm": 4}` from "llm=4,sheets.process=8": default concurrency caps of kinds or
    processors (1-10000 each); a malformed value stops start-up with a message."""
    caps: dict[str, int] = {}
    for item in env_list(name, []):
        kind, _, number = item.partition("=")
        try:
            cap = int(number)
        except ValueError:
            cap = 0
        if not kind.strip() or not 1 <= cap <= 10_000:
            raise ImproperlyConfigured(
                f"{name} must be like llm=4,sheets.process=8 (caps from 1 to 10000); "
                f"{item!r} is not."
            )
        caps[kind.strip()] = cap
    return caps


def env_per_endpoint(name: str) -> dict[str, int]:
    """`{"base_url": n}` from "url=n,url=n" ("" for a bare n: any endpoint); a malformed
    value stops start-up with a message."""
    caps: dict[str, int] = {}
    for item in env_list(name, []):
        url, _, number = item.rpartition("=")
        try:
            caps[url.strip().rstrip("/")] = int(number)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be like https://api.openai.com/v1=3000 (comma-separated); "
                f"{item!r} is not."
            ) from None
    return caps


def env_task_queues(name: str, default: list[str]) -> dict[str, dict[str, float | int]]:
    """Django Tasks queues from a comma-separated variable: each a name, then options
    after colons: a bare number is its cap (most of its tasks running at once),
    `time_limit=SECONDS` its tasks' time limit, `retries=N` its automatic retries.
    E.g. `default,serial:1,long:time_limit=3600,flaky:retries=3`."""
    queues: dict[str, dict[str, float | int]] = {}
    for item in env_list(name, default):
        queue, *options = [part.strip() for part in item.split(":")]
        found: dict[str, float | int] = {}
        for option in filter(None, options):
            key, _, value = option.rpartition("=")
            key = key or "cap"
            try:
                number = float(value) if key == "time_limit" else int(value)
            except ValueError:
                number = -1
            if key not in ("cap", "time_limit", "retries") or number < (key != "retries"):
                raise ImproperlyConfigured(
                    f"{name}: {option!r} of queue {queue!r} is not a cap (a number from 1), "
                    f"time_limit=SECONDS or retries=N"
                )
            found[key] = number
        queues[queue] = found
    return queues


def _is_price(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e6


# Private: 0700, its secrets 0600 (config/private_files.py).
DATA_DIR = private_dir(Path(env_str("CONVEYOR_DATA_DIR", str(BASE_DIR / "var"))))


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in DATA_DIR."""
    if key := env_str("SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(50))
    path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Encrypts secrets users type (API keys in job options); defaults to SECRET_KEY.
CONVEYOR_SECRETS_KEY = env_str("CONVEYOR_SECRETS_KEY")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY") else None
)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS once the site is served over TLS (browsers then refuse plain HTTP for a year);
# Django sends it on HTTPS requests only.
SERVED_OVER_TLS = env_bool("BEHIND_TLS_PROXY") or SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if SERVED_OVER_TLS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
# Content-Security-Policy (django-csp): scripts and styles only from our own files (no
# inline script or style, no eval), no plugins, no framing. Progress bars are <progress>
# elements, the admin's badges classes, and htmx's injected indicator style is off
# (htmx-config in templates/base.html) (docs/security.md).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],  # CSP 3: 'self' covers the page's own ws:/wss: origin
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# daphne's app only serves `manage.py runserver` over ASGI; loading it elsewhere costs
# every process ~15 MB (twisted, OpenSSL), and `make run` starts daphne directly.
RUNSERVER = sys.argv[1:2] == ["runserver"]
INSTALLED_APPS = [
    *(["daphne"] if RUNSERVER else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "template_partials",
    "axes",
    # jobs before django_q: its `qcluster` command (resilient sentinel) takes precedence.
    "jobs",
    "sheets",
    "django_q",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "jobs.web.context_processors.live_nav",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
# SQLite: WAL, a long busy timeout and IMMEDIATE transactions, measured on these
# machines to give zero "database is locked" errors with two workers and web writes.
SQLITE_PATH = DATA_DIR / "conveyor.sqlite3"
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{SQLITE_PATH}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 30),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (not :memory:) so worker subprocesses started by tests share it; one per
    # test run so parallel runs in one checkout don't collide.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        private_sqlite(Path(DATABASES["default"]["NAME"]))
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_conveyor_{os.getpid()}"}
# django-q2 calls close_old_connections() around every broker operation and task;
# persistent connections make it 7-15x faster on PostgreSQL, and spare SQLite a
# reconnect (and a WAL checkpoint) each time.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")

# --- Background work (django-q2) ------------------------------------------
# Slices stay far below `timeout`, which stays below `retry` (django-q/#183).
# Three by default: three sheets run at once (an idle 3-worker cluster is ~150 MB PSS).
CONVEYOR_WORKERS = env_int("CONVEYOR_WORKERS", 3)
Q_CLUSTER = {
    "name": env_str("CONVEYOR_QUEUE", "conveyor"),
    "workers": CONVEYOR_WORKERS,
    "recycle": 500,
    # "timeout" and "retry" are set below, from the Django tasks' time limits.
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 50,
    "save_limit_per": "func",
    "queue_limit": CONVEYOR_WORKERS,
    "catch_up": False,
    "poll": env_float("CONVEYOR_BROKER_POLL", 0.05),
    "guard_cycle": 0.5,
    "label": "Task queue (django-q2)",
    # A worker whose memory grew past this is replaced after its current task.
    "max_rss": env_int("CONVEYOR_WORKER_MAX_RSS_MB", 1024) * 1024,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Django Tasks: `@task` functions run as Conveyor jobs (jobs/tasks_backend.py) ----
TASKS = {"default": {"BACKEND": "jobs.tasks_backend.ConveyorBackend"}}
# Queues, comma-separated, each a name with options (`env_task_queues`): {"name": {"cap":
# N, "time_limit": seconds, "retries": N}} (a bare number or None as the value: the cap).
CONVEYOR_TASK_QUEUES: dict[str, dict[str, float | int] | int | None] = env_task_queues(
    "CONVEYOR_TASK_QUEUES", ["default"]
)
# Longest a Django task may run (seconds of running time) unless its queue sets its own
# time_limit; past it the task fails (its worker is replaced if it reaches no checkpoint).
CONVEYOR_TASK_TIMEOUT = env_float("CONVEYOR_TASK_TIMEOUT", 300.0)
if find_spec("django.tasks") is None:  # Django 5.2: the django-tasks backport
    INSTALLED_APPS.append("django_tasks")

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Live updates (Channels) ------------------------------------------------
# The relay inside each web process reads the database, so an in-process layer suffices.
CHANNEL_LAYERS = {"default": {"BACKEND": "jobs.web.channel_layer.RelayChannelLayer"}}

# --- Conveyor's own knobs (defaults documented in the README) ----------------
CONVEYOR_PORT = env_int("CONVEYOR_PORT", 8000)
CONVEYOR_SLICE_SECONDS = env_float("CONVEYOR_SLICE_SECONDS", 15.0)
# One django-q2 task runs slices (of the best job each time) for about this long.
CONVEYOR_TASK_BUDGET_SECONDS = env_float("CONVEYOR_TASK_BUDGET_SECONDS", 60.0)
# django-q2 saves a failed slice task's result; a successful one's only with this on.
CONVEYOR_KEEP_TASK_RESULTS = env_bool("CONVEYOR_KEEP_TASK_RESULTS", False)
CONVEYOR_LEASE_SECONDS = env_float("CONVEYOR_LEASE_SECONDS", 20.0)
CONVEYOR_HEARTBEAT_SECONDS = env_float("CONVEYOR_HEARTBEAT_SECONDS", 1.0)
CONVEYOR_DISPATCH_STALE_SECONDS = env_float("CONVEYOR_DISPATCH_STALE_SECONDS", 10.0)
CONVEYOR_MAX_ATTEMPTS = env_int("CONVEYOR_MAX_ATTEMPTS", 5)
CONVEYOR_RETRY_BASE_SECONDS = env_float("CONVEYOR_RETRY_BASE_SECONDS", 2.0)
CONVEYOR_RETRY_MAX_SECONDS = env_float("CONVEYOR_RETRY_MAX_SECONDS", 300.0)
CONVEYOR_RETENTION_DAYS = env_int("CONVEYOR_RETENTION_DAYS", 30)
# Days of per-kind history (rolled up by day) kept for the metrics page; minutes are
# kept 48 hours and hours 8 days. Prometheus' totals are never pruned.
CONVEYOR_HISTORY_DAYS = env_int("CONVEYOR_HISTORY_DAYS", 30)
# Most active (queued, running, paused, retry-waiting) jobs one user may have (staff: no
# limit; 0: no limit). Jobs of equal priority run in turns across owners anyway.
CONVEYOR_MAX_ACTIVE_JOBS = env_int("CONVEYOR_MAX_ACTIVE_JOBS", 1000)
# Active jobs above normal priority per user (staff: no limit; 0: no limit); a user's
# further ones run at normal priority, so nobody waits behind another's pile of "high".
CONVEYOR_MAX_HIGH_PRIORITY_JOBS = env_int("CONVEYOR_MAX_HIGH_PRIORITY_JOBS", 2)
# Job kinds users may submit through the API / CLI by name (the demo kind is for tests).
CONVEYOR_SUBMITTABLE_KINDS = env_list("CONVEYOR_SUBMITTABLE_KINDS", ["sheets.process"])
# Default concurrency caps of kinds or processors, on all clusters ("llm=4"); operators
# change them at run time (`conveyor kind cap`, the ops page, /api/kinds/).
CONVEYOR_KIND_CAPS = env_kind_caps("CONVEYOR_KIND_CAPS")
# Longest one row may take in a sheet job (the form can lower it per job).
CONVEYOR_ROW_TIME_LIMIT = env_float("CONVEYOR_ROW_TIME_LIMIT", 120.0)
# SQLite only: how often each web process asks SQLite whether anything was committed
# (a microsecond-cheap PRAGMA; the change feed is read only when something was).
CONVEYOR_RELAY_POLL_SECONDS = env_float("CONVEYOR_RELAY_POLL_SECONDS", 0.01)
# Live sockets one user may hold open per web process (0: no limit).
CONVEYOR_MAX_SOCKETS_PER_USER = env_int("CONVEYOR_MAX_SOCKETS_PER_USER", 30)
# Shortest `every` interval a schedule may have (seconds); workers look for due
# schedules at every heartbeat.
CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS = env_int("CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS", 5)
# Most schedules one user may have (staff: no limit; 0: no limit); beyond it a create is
# refused (API 409, CLI error).
CONVEYOR_MAX_SCHEDULES_PER_USER = env_int("CONVEYOR_MAX_SCHEDULES_PER_USER", 50)
# A cancelled job has this long to reach a checkpoint (so does a job past its time
# limit); then its worker is stopped and replaced, and the job ends (a force stop).
CONVEYOR_CANCEL_GRACE_SECONDS = env_float("CONVEYOR_CANCEL_GRACE_SECONDS", 10.0)

# django-q2's timeout of one slice task is only a backstop (a handler that reaches no
# checkpoint for that long fails and its worker is replaced): Conveyor's own limits act
# first, even for a Django task that starts at the end of its worker's task budget.
_LONGEST_TASK = max(
    [CONVEYOR_TASK_TIMEOUT]
    + [q.get("time_limit", 0) for q in CONVEYOR_TASK_QUEUES.values() if isinstance(q, dict)]
)
Q_CLUSTER["timeout"] = int(
    CONVEYOR_TASK_BUDGET_SECONDS + _LONGEST_TASK + CONVEYOR_CANCEL_GRACE_SECONDS + 60
)
Q_CLUSTER["retry"] = Q_CLUSTER["timeout"] + 60  # above timeout (django-q/#183)

# --- Auth, i18n, static -----------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Login throttling (django-axes) for /login/ and /admin/login/: after this many failed
# logins for one username from one address, that pair is locked out (the right password
# too) for the cool-off. Staff unlock in the admin (Access attempts) or with
# `manage.py axes_reset` / `axes_reset_username NAME`.
CONVEYOR_LOGIN_FAILURE_LIMIT = env_int("CONVEYOR_LOGIN_FAILURE_LIMIT", 10)
CONVEYOR_LOGIN_COOLOFF_MINUTES = env_float("CONVEYOR_LOGIN_COOLOFF_MINUTES", 15.0)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = CONVEYOR_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=CONVEYOR_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# LOG_FORMAT=json: one JSON object per line (for log shippers), daphne's access log
# included (config/logs.py); default plain text. Either way query values are masked.
LOG_FORMAT = env_str("LOG_FORMAT", "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "config.logs.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
        "json": {
            "()": "config.logs.MaskedJsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # django-q2 logs every enqueue and task at INFO; Conveyor's own timeline has the story.
    # django-axes logs every failed login at INFO; lockouts are WARNING.
    # The Tasks API logs every task's start and end at INFO (failures at ERROR).
    "loggers": {
        "django-q": {"level": env_str("Q_LOG_LEVEL", "WARNING")},
        "axes": {"level": env_str("AXES_LOG_LEVEL", "WARNING")},
        "django_tasks": {"level": env_str("Q_LOG_LEVEL", "WARNING")},
        "django.tasks": {"level": env_str("Q_LOG_LEVEL", "WARNING")},
    },
}

# --- Sheets: sources ---
# Limits on what an upload or Google Sheet may contain; exceeding one is a clear
# error naming the limit. Google Sheets access uses a service account.
CONVEYOR_MAX_UPLOAD_BYTES = env_int("CONVEYOR_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
# Uploads larger than this are imported by a background job (the request returns at once).
CONVEYOR_INLINE_IMPORT_BYTES = env_int("CONVEYOR_INLINE_IMPORT_BYTES", 5 * 1024 * 1024)
CONVEYOR_MAX_UNZIPPED_BYTES = env_int("CONVEYOR_MAX_UNZIPPED_BYTES", 1024 * 1024 * 1024)
CONVEYOR_MAX_ROWS = env_int("CONVEYOR_MAX_ROWS", 1_000_000)
CONVEYOR_MAX_COLUMNS = env_int("CONVEYOR_MAX_COLUMNS", 200)
CONVEYOR_MAX_CELL_CHARS = env_int("CONVEYOR_MAX_CELL_CHARS", 32_767)
# Request bodies (config/body_limit.py, before Django reads them): uploads may carry
# CONVEYOR_MAX_UPLOAD_BYTES plus a multipart allowance, anything else this many bytes.
CONVEYOR_MAX_REQUEST_BYTES = env_int("CONVEYOR_MAX_REQUEST_BYTES", 2 * 1024 * 1024)
# Uploads past this size stream to a temporary file instead of memory; form fields
# (not files) may hold this much in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
DATA_UPLOAD_MAX_MEMORY_SIZE = CONVEYOR_MAX_REQUEST_BYTES
CONVEYOR_GOOGLE_CREDENTIALS = env_str("CONVEYOR_GOOGLE_CREDENTIALS")
CONVEYOR_GOOGLE_API_URL = env_str("CONVEYOR_GOOGLE_API_URL", "https://sheets.googleapis.com")

# --- Sheets: processors -------------------------------------------------------
# llm: an OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, LM Studio); the form may
# override the URL, model and key per job.
CONVEYOR_LLM_BASE_URL = env_str("OPENAI_BASE_URL")
CONVEYOR_LLM_API_KEY = env_str("OPENAI_API_KEY")
# Base URLs a user may type besides OPENAI_BASE_URL (comma-separated, exact). Only
# OPENAI_BASE_URL ever gets OPENAI_API_KEY: a typed URL gets the key typed with it.
CONVEYOR_LLM_ALLOWED_BASE_URLS = env_list("CONVEYOR_LLM_ALLOWED_BASE_URLS", [])
CONVEYOR_LLM_MODEL = env_str("CONVEYOR_LLM_MODEL", "gpt-4o-mini")
CONVEYOR_LLM_TIMEOUT = env_float("CONVEYOR_LLM_TIMEOUT", 60.0)
CONVEYOR_LLM_MAX_ATTEMPTS = env_int("CONVEYOR_LLM_MAX_ATTEMPTS", 5)
# The largest answer a worker reads from the API (a row error beyond: never held whole).
CONVEYOR_LLM_MAX_RESPONSE_BYTES = env_int("CONVEYOR_LLM_MAX_RESPONSE_BYTES", 2_000_000)
# Prices per model, USD per million tokens: {"model": {"input": 0.15, "output": 0.6}}.
# Estimates and jobs show a cost only for models priced here.
CONVEYOR_LLM_PRICES = env_prices("CONVEYOR_LLM_PRICES")
# Per-user ceilings over a calendar month (UTC) of jobs' spending, 0 for none: tokens,
# and USD (priced models only). A job reaching one pauses; new ones wait for next month.
CONVEYOR_MONTHLY_BUDGET_TOKENS = env_int("CONVEYOR_MONTHLY_BUDGET_TOKENS", 0)
CONVEYOR_MONTHLY_BUDGET_USD = env_float("CONVEYOR_MONTHLY_BUDGET_USD", 0.0)
# llm pacing: `concurrency=auto` raises requests in flight up to this ceiling.
CONVEYOR_LLM_MAX_CONCURRENCY = env_int("CONVEYOR_LLM_MAX_CONCURRENCY", 64)
# Operator caps per endpoint, "base_url=n" comma-separated (a bare n: every endpoint):
# requests and tokens per minute, shared by every job and worker using an endpoint+key.
CONVEYOR_LLM_RPM = env_per_endpoint("CONVEYOR_LLM_RPM")
CONVEYOR_LLM_TPM = env_per_endpoint("CONVEYOR_LLM_TPM")
# Where the llm pace (the schedule of requests per endpoint+key) and the breakers are
# shared: "redis" (every worker on every machine; the default with REDIS_URL),
# "database" (every worker using the database; the default without Redis) or "memory"
# (each worker process on its own: it finds its share through the API's headers).
CONVEYOR_PACE_STORE = env_str("CONVEYOR_PACE_STORE")
if CONVEYOR_PACE_STORE not in {"", "redis", "database", "memory"}:
    raise ImproperlyConfigured(
        f"CONVEYOR_PACE_STORE={CONVEYOR_PACE_STORE!r}: say redis, database or memory."
    )
if CONVEYOR_PACE_STORE == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("CONVEYOR_PACE_STORE=redis needs REDIS_URL.")
# Breaker: this many consecutive connection failures / 5xx / timeouts to an endpoint
# stop every job using it; they wait and probe (first after this many seconds, doubling).
CONVEYOR_LLM_BREAKER_FAILURES = env_int("CONVEYOR_LLM_BREAKER_FAILURES", 5)
CONVEYOR_LLM_BREAKER_SECONDS = env_float("CONVEYOR_LLM_BREAKER_SECONDS", 15.0)
# llm mode=batch (OpenAI's Batch API): rows per batch (the API takes at most 50,000 lines
# and 200 MB a file), batches a job keeps open at once, how often it looks at them, and
# the batch price as a share of the live one (OpenAI: half).
CONVEYOR_LLM_BATCH_ROWS = min(env_int("CONVEYOR_LLM_BATCH_ROWS", 5_000), 50_000)
CONVEYOR_LLM_BATCH_MAX_FILE_BYTES = min(
    env_int("CONVEYOR_LLM_BATCH_MAX_FILE_BYTES", 190_000_000), 200 * 1024 * 1024
)
CONVEYOR_LLM_BATCH_OPEN = min(env_int("CONVEYOR_LLM_BATCH_OPEN", 10), 100)
CONVEYOR_LLM_BATCH_POLL_SECONDS = env_float("CONVEYOR_LLM_BATCH_POLL_SECONDS", 60.0)
CONVEYOR_LLM_BATCH_PRICE_FACTOR = env_float("CONVEYOR_LLM_BATCH_PRICE_FACTOR", 0.5)
# Row-level HTTP retries (llm, web): backoff base and cap, also the cap on Retry-After.
CONVEYOR_HTTP_RETRY_BASE_SECONDS = env_float("CONVEYOR_HTTP_RETRY_BASE_SECONDS", 1.0)
CONVEYOR_HTTP_RETRY_MAX_SECONDS = env_float("CONVEYOR_HTTP_RETRY_MAX_SECONDS", 30.0)
# web: private/loopback/link-local targets are refused unless allowed here.
CONVEYOR_WEB_ALLOW_PRIVATE = env_bool("CONVEYOR_WEB_ALLOW_PRIVATE", False)
CONVEYOR_WEB_ALLOWED_NETWORKS = env_list("CONVEYOR_WEB_ALLOWED_NETWORKS", [])
# Webhooks and e-mail notices (jobs/notices): webhooks per user (a ceiling), a
# delivery's timeout and attempts (backoff: base x 3^(attempt-1) s), failed deliveries
# in a row that switch a webhook off, days a delivery stays in the log, and the site's
# address in e-mails. Deliveries go through the outbound guard above (loopback and
# private addresses only where CONVEYOR_WEB_ALLOW_PRIVATE/_ALLOWED_NETWORKS allow them).
CONVEYOR_WEBHOOK_MAX_PER_USER = min(env_int("CONVEYOR_WEBHOOK_MAX_PER_USER", 10), 100)
CONVEYOR_WEBHOOK_TIMEOUT_SECONDS = min(env_float("CONVEYOR_WEBHOOK_TIMEOUT_SECONDS", 10.0), 60.0)
CONVEYOR_WEBHOOK_ATTEMPTS = min(max(env_int("CONVEYOR_WEBHOOK_ATTEMPTS", 6), 1), 20)
CONVEYOR_WEBHOOK_RETRY_BASE_SECONDS = env_float("CONVEYOR_WEBHOOK_RETRY_BASE_SECONDS", 10.0)
CONVEYOR_WEBHOOK_DISABLE_AFTER = max(env_int("CONVEYOR_WEBHOOK_DISABLE_AFTER", 5), 1)
CONVEYOR_WEBHOOK_KEEP_DAYS = env_int("CONVEYOR_WEBHOOK_KEEP_DAYS", 14)
# "Send test" deliveries a user (or the operator's global webhooks) may send a minute.
CONVEYOR_WEBHOOK_TESTS_PER_MINUTE = min(max(env_int("CONVEYOR_WEBHOOK_TESTS_PER_MINUTE", 5), 1), 60)
CONVEYOR_WEBHOOK_LOG_LIMIT = 200  # deliveries one page or API answer lists at most
CONVEYOR_SITE_URL = env_str("CONVEYOR_SITE_URL", "http://localhost:8000")
# E-mail (notices): Django's settings; the console backend prints them by default.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "conveyor@localhost")
CONVEYOR_WEB_MAX_ATTEMPTS = env_int("CONVEYOR_WEB_MAX_ATTEMPTS", 3)
# Ceiling of the `max_bytes` a user may ask `web` to read per page.
CONVEYOR_WEB_MAX_BYTES = env_int("CONVEYOR_WEB_MAX_BYTES", 10_000_000)
# Longest output value a processor may store per cell (an LLM answer, a page text...);
# beyond it the row fails with a message saying so.
CONVEYOR_MAX_OUTPUT_CHARS = env_int("CONVEYOR_MAX_OUTPUT_CHARS", 32_767)
# web: the User-Agent of every page request. Name your contact (a URL or an e-mail) so a
# site's operator can reach you: "Conveyor/0.1 (+https://example.com/bot; bot@example.com)".
# robots.txt rules are matched on its first word ("Conveyor").
CONVEYOR_WEB_USER_AGENT = env_str(
    "CONVEYOR_WEB_USER_AGENT", "Conveyor/0.1 (+operator contact not set: CONVEYOR_WEB_USER_AGENT)"
)
# web: ceiling of the page text (`max_text_chars`) a user may keep per row.
CONVEYOR_WEB_MAX_TEXT_CHARS = env_int("CONVEYOR_WEB_MAX_TEXT_CHARS", 30_000)
# clean: region for phone numbers written without +country.
CONVEYOR_PHONE_REGION = env_str("CONVEYOR_PHONE_REGION", "US")
# httpx logs every request at INFO: far too much for a job of 100,000 rows.
LOGGING["loggers"]["httpx"] = {"level": env_str("HTTPX_LOG_LEVEL", "WARNING")}

# --- API ---------------------------------------------------------------------
# The JSON API under /api/ (jobs/api.py). Bodies above the cap get 413; list pages
# hold CONVEYOR_API_PAGE_SIZE items unless `?page_size=` asks for up to the maximum.
CONVEYOR_API_MAX_BODY_BYTES = env_int("CONVEYOR_API_MAX_BODY_BYTES", 1_048_576)
CONVEYOR_API_PAGE_SIZE = env_int("CONVEYOR_API_PAGE_SIZE", 25)
CONVEYOR_API_MAX_PAGE_SIZE = env_int("CONVEYOR_API_MAX_PAGE_SIZE", 100)
# --- end API -----------------------------------------------------------------
