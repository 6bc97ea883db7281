"""Build Conveyor's image and test the compose stack for real (`make image`,
`make test-deploy`).

    python scripts/deploy_stack.py image   # build localhost/conveyor:latest
    python scripts/deploy_stack.py test    # the deploy test below; exit status 0 = passed

The engine is docker when a docker daemon answers, else podman (CONVEYOR_ENGINE=podman
or docker to choose). With podman, every run gets a containers.conf fitted to these
machines (open-files limit capped to the hard limit, runc when crun is missing,
cgroupfs, file events): see ../shared notes in docs/deployment.md ("Building on a machine
without a registry").

Base image and Python wheels come from the host, never from a registry: the Debian
base is made with mmdebstrap (kept in var/deploy-cache/debian-bookworm-slim.tar) and
imported as debian:bookworm-slim; pip installs from wheels downloaded on the host
(var/deploy-cache/wheels, refreshed when requirements.txt changes) because HTTPS inside
builds may be intercepted. The test's postgres/redis/caddy images are saved in
var/deploy-cache/images/ keyed by their build context, so later runs load them.

The test (podman: in a storage root, network config and runtime dir of its own under
/tmp, all removed at the end; docker: its own project, images and volumes removed):
  1. builds the app image and the fixtures (deploy/test-images: stand-ins for the
     official postgres and redis images, tagged with their names);
  2. copies compose.yaml beside a generated .env (free ports on 127.0.0.1, short lease)
     and runs `compose up -d`; waits for /healthz through the front;
  3. logs in through the front with the login the migrate step made;
  4. uploads a sheet and starts a `clean` job through one web process, and watches it
     over a websocket opened through the other one (the front names the web process
     that answered in X-Conveyor-Web);
  5. kills (SIGKILL) the worker container whose worker holds the job mid-way; the job
     finishes, every row has exactly one result, and the websocket saw live progress;
  6. `compose down` and `up -d` again: the job, its results and the login are still
     there.
Exit status 1 with the failing step named; the containers' logs are printed on failure.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.cookiejar
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "deploy-cache"
BASE_TAR = CACHE / "debian-bookworm-slim.tar"
WHEELS = CACHE / "wheels"
SAVED = CACHE / "images"
APP_IMAGE = "localhost/conveyor:latest"
BASE_NAMES = ("localhost/debian:bookworm-slim", "docker.io/library/debian:bookworm-slim")
FIXTURES = {  # tag -> build context
    "docker.io/library/postgres:15": ROOT / "deploy" / "test-images" / "postgres",
    "docker.io/library/redis:7": ROOT / "deploy" / "test-images" / "redis",
    "localhost/conveyor-caddy:latest": ROOT / "deploy" / "caddy",
}
# Dependencies the image's Python needs that a download for "3.11" misses: pip evaluates
# `python_full_version` markers with the host's interpreter, and Debian bookworm's Python
# is 3.11.2 (redis needs async-timeout below 3.11.3).
EXTRA_WHEELS = ["async-timeout==5.0.1"]
ROWS = 20_000
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[deploy {time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


class Failed(Exception):
    """A step of the deploy test failed; the message says what a user would see."""


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    """Poll `check` until it returns something truthy; Failed after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = check()
        except (OSError, urllib.error.URLError, subprocess.CalledProcessError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# --- the engine ---------------------------------------------------------------------


def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def choose_engine() -> str:
    chosen = os.environ.get("CONVEYOR_ENGINE", "")
    if chosen in ("docker", "podman"):
        return chosen
    if docker_answers():
        return "docker"
    if shutil.which("podman"):
        return "podman"
    raise Failed("neither a docker daemon nor podman is available (apt-get install podman)")


def podman_conf(directory: Path, storage: Path | None) -> dict[str, str]:
    """Environment pointing podman at a containers.conf for these machines (and, for the
    test, a storage root and network config dir of its own)."""
    directory.mkdir(parents=True, exist_ok=True)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = 1_048_576 if hard == resource.RLIM_INFINITY else min(hard, 1_048_576)
    runtime = "crun" if shutil.which("crun") else "runc"
    lines = [
        "[containers]",
        f'default_ulimits = ["nofile={limit}:{limit}", "nproc={limit}:{limit}"]',
        "[engine]",
        f'runtime = "{runtime}"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
    ]
    env = {"CONTAINERS_CONF": str(directory / "containers.conf")}
    if storage is not None:
        lines[4:4] = [f'tmp_dir = "{storage}/tmp"']
        lines += ["[network]", f'network_config_dir = "{storage}/networks"']
        (directory / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{storage}/graph"\n'
            f'runroot = "{storage}/run"\n'
        )
        env["CONTAINERS_STORAGE_CONF"] = str(directory / "storage.conf")
    (directory / "containers.conf").write_text("\n".join(lines) + "\n")
    return env


class Engine:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = {**os.environ, **env}

    def run(self, *args: str, check: bool = True, capture: bool = True, timeout: float = 600):
        result = subprocess.run(
            [self.name, *args],
            env=self.env,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip()[-2000:]
            raise Failed(f"`{self.name} {' '.join(args[:3])} ...` failed: {detail}")
        return result

    def has_image(self, tag: str) -> bool:
        return self.run("image", "inspect", tag, check=False).returncode == 0

    def build(self, tag: str, context: Path, *extra: str) -> float:
        began = time.monotonic()
        args = ["build", "-t", tag, "-f", str(context / "Containerfile"), *extra]
        if self.name == "podman":
            args += ["--network", "host"]  # apt and pip reach the host's mirrors as it does
        self.run(*args, str(context))
        return time.monotonic() - began


def ensure_base(engine: Engine) -> None:
    """debian:bookworm-slim from Debian's own packages (podman: no registry needed)."""
    if engine.name == "docker":
        return  # a docker daemon pulls it
    if all(engine.has_image(name) for name in BASE_NAMES):
        return
    if not BASE_TAR.exists():
        if not shutil.which("mmdebstrap"):
            raise Failed("mmdebstrap is needed to make the Debian base image (apt-get install)")
        say("making the Debian base with mmdebstrap (cached in var/deploy-cache)")
        BASE_TAR.parent.mkdir(parents=True, exist_ok=True)
        partial = BASE_TAR.with_suffix(".partial")
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--format=tar",  # not guessed from the name: it ends in .partial
                "--quiet",
                # What debian:bookworm-slim leaves out: docs, man pages, translations.
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-exclude=/usr/share/info/*",
                "--aptopt=APT::Install-Recommends false",
                "bookworm",
                str(partial),
            ],
            check=True,
        )
        partial.rename(BASE_TAR)
    engine.run("import", str(BASE_TAR), BASE_NAMES[0])
    engine.run("tag", BASE_NAMES[0], BASE_NAMES[1])


def requirements_digest() -> str:
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes())
    digest.update(" ".join(EXTRA_WHEELS).encode())
    return digest.hexdigest()[:16]


def ensure_wheels() -> Path:
    """The pinned requirements as wheels for Debian bookworm's Python 3.11, downloaded on
    the host once per requirements.txt."""
    stamp = WHEELS / ".requirements"
    if stamp.exists() and stamp.read_text() == requirements_digest():
        return WHEELS
    say("downloading wheels for requirements.txt (cached in var/deploy-cache/wheels)")
    WHEELS.mkdir(parents=True, exist_ok=True)  # wheels already there are not fetched again
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(ROOT / "requirements.txt"),
            *EXTRA_WHEELS,
            "-d",
            str(WHEELS),
            "--only-binary=:all:",
            "--implementation=cp",
            "--python-version=3.11",
            *[
                f"--platform=manylinux{tag}_x86_64"
                for tag in ("2014", "_2_17", "_2_28", "_2_31", "_2_34")
            ],
        ],
        check=True,
    )
    stamp.write_text(requirements_digest())
    return WHEELS


def build_app(engine: Engine, tag: str = APP_IMAGE) -> float:
    if engine.name == "docker":
        return engine.build(tag, ROOT)
    wheels = ensure_wheels()
    return engine.build(
        tag,
        ROOT,
        "--volume",
        f"{wheels}:/wheels:ro",
        "--build-arg",
        "PIP_NO_INDEX=1",
        "--build-arg",
        "PIP_FIND_LINKS=/wheels",
    )


def context_digest(context: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(context.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(context)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_fixture(engine: Engine, tag: str, context: Path) -> None:
    """A fixture image, loaded from its saved copy when its build context is unchanged."""
    name = re.sub(r"[^a-z0-9]+", "-", tag.split("/")[-1])
    saved = SAVED / f"{name}-{context_digest(context)}.tar"
    if saved.exists() and engine.run("load", "-q", "-i", str(saved), check=False).returncode == 0:
        return
    seconds = engine.build(tag, context)
    say(f"built {tag} in {seconds:.0f} s")
    SAVED.mkdir(parents=True, exist_ok=True)
    for old in SAVED.glob(f"{name}-*.tar"):
        old.unlink()
    partial = saved.with_suffix(".partial")
    engine.run("save", "-o", str(partial), tag)
    partial.rename(saved)


# --- HTTP and websocket clients --------------------------------------------------------


class Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, noting which web process answered each step."""

    def __init__(self, chain: list[str]) -> None:
        self.chain = chain

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.chain.append(headers.get("X-Conveyor-Web", ""))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Browser:
    """Cookies, CSRF and form posts against the front, like a user's browser. `webs`:
    the web process that answered each step of the last request (redirects included)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.webs: list[str] = []
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), Redirects(self.webs)
        )

    def request(self, path: str, data: bytes | None = None, headers: dict | None = None):
        self.webs.clear()
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            response = self.opener.open(request, timeout=30)
        except urllib.error.HTTPError as exc:
            response = exc
        body = response.read().decode("utf-8", "replace")
        self.webs.append(response.headers.get("X-Conveyor-Web", ""))
        return response.status, body, response.headers, response.url

    def cookie(self, name: str) -> str:
        for cookie in self.jar:
            if cookie.name == name:
                return cookie.value
        return ""

    def csrf_from(self, html: str) -> str:
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        return match.group(1) if match else self.cookie("csrftoken")

    def post(self, path: str, fields: dict, csrf: str, files: dict | None = None):
        headers = {"Referer": self.base + path, "X-CSRFToken": csrf, "Origin": self.base}
        fields = {**fields, "csrfmiddlewaretoken": csrf}
        if not files:
            data = urllib.parse.urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return self.request(path, data, headers)
        boundary = "conveyor" + os.urandom(8).hex()
        parts = []
        for key, value in fields.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
        for key, (filename, content, kind) in files.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; '
                f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
                + content
                + b"\r\n"
            )
        parts.append(f"--{boundary}--\r\n".encode())
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        return self.request(path, b"".join(parts), headers)


class Websocket:
    """A minimal RFC 6455 client recording every text frame (no websocket library is
    installed)."""

    def __init__(self, port: int, path: str, session: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{port}\r\nCookie: sessionid={session}\r\n\r\n"
            ).encode()
        )
        self.stream = self.sock.makefile("rb")
        status = self.stream.readline()
        if b" 101 " not in status:
            raise Failed(f"websocket handshake through the front refused: {status!r}")
        self.web = ""
        while (line := self.stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "x-conveyor-web":
                self.web = value.strip()
        self.sock.settimeout(None)
        self.frames: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        message = b""
        try:
            while True:
                head = self.stream.read(2)
                if len(head) < 2:
                    return
                fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
                if length == 126:
                    length = int.from_bytes(self.stream.read(2), "big")
                elif length == 127:
                    length = int.from_bytes(self.stream.read(8), "big")
                payload = self.stream.read(length)
                if opcode == 0x8:
                    return
                if opcode == 0x9:
                    self._send(0xA, payload)
                    continue
                if opcode in (0x0, 0x1):
                    message += payload
                    if fin:
                        with self.lock:
                            self.frames.append(message.decode("utf-8", "replace"))
                        message = b""
        except (OSError, ValueError):
            return

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        size = len(payload)
        header = bytes([0x80 | opcode, 0x80 | size]) if size < 126 else b""
        if not header:
            header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def received(self) -> list[str]:
        with self.lock:
            return list(self.frames)

    def job_rows(self, job_id: int) -> list[tuple[str, int]]:
        """(status, processed) of every live row fragment of this job received."""
        pattern = re.compile(
            rf'<tr id="job-row-{job_id}" class="job-row" data-status="(\w+)".*?'
            r'<div class="muted small">(\d+)',
            re.S,
        )
        seen = []
        for frame in self.received():
            seen += [(status, int(done)) for status, done in pattern.findall(frame)]
        return seen

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


# --- the test -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sheet_csv(rows: int) -> bytes:
    lines = ["name,email,phone,website"]
    lines += [
        f" person {i} ,Person.{i}@Example.COM,+1 415 555 {i % 10_000:04d},site{i}.example"
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


class Stack:
    def __init__(self, engine: Engine, workdir: Path, project: str) -> None:
        self.engine = engine
        self.workdir = workdir
        self.project = project
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.password = os.urandom(12).hex()
        if engine.name == "docker":
            self.compose = ["docker", "compose"]
        else:
            found = shutil.which("podman-compose") or str(
                Path(sys.executable).with_name("podman-compose")
            )
            self.compose = [found]

    def write(self) -> None:
        shutil.copy(ROOT / "compose.yaml", self.workdir / "compose.yaml")
        https = free_port()
        settings = {
            "SECRET_KEY": os.urandom(24).hex(),
            "POSTGRES_USER": "conveyor",
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": "conveyor",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CONVEYOR_SITE": ":80",
            "CONVEYOR_BIND": "127.0.0.1",
            "CONVEYOR_HTTP_PORT": str(self.port),
            "CONVEYOR_HTTPS_PORT": str(https),
            "CONVEYOR_WORKERS": "1",
            # A killed container's job is recovered by the other cluster after the lease.
            "CONVEYOR_LEASE_SECONDS": "8",
            "CONVEYOR_SLICE_SECONDS": "5",
            "LOG_FORMAT": "text",
        }
        text = "".join(f"{key}={value}\n" for key, value in settings.items())
        (self.workdir / ".env").write_text(text)
        (self.workdir / ".env").chmod(0o600)

    def compose_run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*self.compose, "-p", self.project, "-f", str(self.workdir / "compose.yaml"), *args],
            cwd=self.workdir,
            env=self.engine.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-3000:]
            raise Failed(f"`compose {' '.join(args)}` failed: {detail}")
        return result

    def container(self, service: str) -> str:
        result = self.engine.run(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        )
        names = result.stdout.split()
        if not names:
            raise Failed(f"no container for service {service}")
        return names[0]

    def psql(self, sql: str) -> list[list[str]]:
        result = self.engine.run(
            "exec",
            self.container("postgres"),
            "psql",
            "-U",
            "conveyor",
            "-d",
            "conveyor",
            "-tA",
            "-F",
            "|",
            "-c",
            sql,
        )
        return [line.split("|") for line in result.stdout.splitlines() if line]

    def healthy(self) -> bool:
        with urllib.request.urlopen(self.base + "/healthz", timeout=5) as response:
            body = json.loads(response.read())
        return response.status == 200 and len(body.get("cluster", {}).get("clusters", [])) >= 2

    def websocket_connects(self) -> dict[str, int]:
        """Websocket connections each web process has logged (daphne's access log)."""
        counts = {}
        for service in ("web1", "web2"):
            result = self.engine.run("logs", self.container(service), check=False)
            counts[service] = (result.stdout + result.stderr).count('"WSCONNECT /ws/live/')
        return counts

    def logs(self) -> str:
        out = []
        for service in ("migrate", "web1", "web2", "worker1", "worker2", "caddy", "postgres"):
            with contextlib.suppress(Failed, subprocess.SubprocessError):
                name = self.container(service)
                result = self.engine.run("logs", "--tail", "40", name, check=False)
                out.append(f"--- {service} ---\n{result.stdout}{result.stderr}")
        return "\n".join(out)


def login(stack: Stack) -> Browser:
    name = stack.container("web1")
    saved = json.loads(stack.engine.run("exec", name, "cat", "/data/login.json").stdout)
    browser = Browser(stack.base)
    status, page, _, _ = browser.request("/login/")
    if status != 200:
        raise Failed(f"GET /login/ through the front: {status}")
    status, page, _, url = browser.post(
        "/login/",
        {"username": saved["username"], "password": saved["password"], "next": "/"},
        browser.csrf_from(page),
    )
    if status != 200 or not browser.cookie("sessionid") or "/login/" in url:
        raise Failed(f"logging in through the front failed ({status}, at {url})")
    return browser


def run_test(engine: Engine, workdir: Path) -> dict[str, float]:
    timings: dict[str, float] = {}
    began = time.monotonic()
    ensure_base(engine)
    timings["base"] = time.monotonic() - began
    began = time.monotonic()
    # The app image and the fixtures at once: their builds wait on apt downloads as
    # much as on the CPU.
    with ThreadPoolExecutor(max_workers=1 + len(FIXTURES)) as pool:
        app = pool.submit(build_app, engine)
        fixtures = [pool.submit(ensure_fixture, engine, t, c) for t, c in FIXTURES.items()]
        timings["app image build"] = app.result()
        say(f"built {APP_IMAGE} in {timings['app image build']:.0f} s")
        for fixture in fixtures:
            fixture.result()
    timings["images"] = time.monotonic() - began

    stack = Stack(engine, workdir, f"conveyortest{os.getpid()}")
    stack.write()
    began = time.monotonic()
    try:
        stack.compose_run("up", "-d")
        wait_for(stack.healthy, 180, "/healthz through the front (2 clusters alive)")
        timings["up to healthy"] = time.monotonic() - began
        say(f"stack up and healthy in {timings['up to healthy']:.0f} s on port {stack.port}")
        for service in ("web1", "worker1"):  # the image's HEALTHCHECK command, by hand
            # (podman 4.3 runs health checks only through systemd timers)
            stack.engine.run(
                "exec", stack.container(service), "python", "/app/deploy/healthcheck.py"
            )
        check_job_and_kill(stack, timings)
        check_down_and_up(stack, timings)
    except Failed:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        began = time.monotonic()
        with contextlib.suppress(Failed, subprocess.SubprocessError):
            stack.compose_run("down", "-v", "-t", "5", timeout=120)
        timings["down"] = time.monotonic() - began
    return timings


def check_job_and_kill(stack: Stack, timings: dict[str, float]) -> None:
    browser = login(stack)
    say("logged in through the front")
    status, page, _, _ = browser.request("/sheets/")
    csrf = browser.csrf_from(page)
    status, page, headers, url = browser.post(
        "/sheets/upload/", {}, csrf, files={"file": ("people.csv", sheet_csv(ROWS), "text/csv")}
    )
    match = re.search(r"/sheets/(\d+)/", url)
    if status != 200 or not match:
        raise Failed(f"upload through the front: {status} at {url}")
    sheet_id = int(match.group(1))
    upload_web = browser.webs[0]
    if not upload_web:
        raise Failed("the front named no web process (X-Conveyor-Web) for the upload")
    # Start the job and remember which web process took it.
    status, page, headers, url = browser.post(
        f"/sheets/{sheet_id}/start/",
        {"processor": "clean", "mode": "background"},
        browser.csrf_from(browser.request(f"/sheets/{sheet_id}/")[1]),
    )
    started = re.search(r"job #(\d+)", page)
    if status != 200 or not started:
        raise Failed(f"starting a clean job through the front: {status} at {url}")
    job_id = int(started.group(1))
    say(f"job #{job_id} started ({ROWS} rows); {upload_web} took the upload")

    # A websocket through the front to the other web process. (Caddy names the web process
    # on plain responses only, not on a websocket's 101, so the web processes' access logs
    # tell where each websocket landed.)
    session = browser.cookie("sessionid")
    other = "web1" if upload_web.startswith("web2") else "web2"
    sockets: list[Websocket] = []
    watcher = None
    for _ in range(8):
        before = stack.websocket_connects()
        ws = Websocket(stack.port, "/ws/live/?rows=1", session)
        landed = wait_for(
            lambda before=before: [
                service
                for service, count in stack.websocket_connects().items()
                if count > before.get(service, 0)
            ],
            30,
            "a web process to log the websocket's connection",
        )
        if landed == [other]:
            watcher = ws
            break
        sockets.append(ws)
    for ws in sockets:
        ws.close()
    if watcher is None:
        raise Failed(f"no websocket through the front landed on {other} in 8 tries")
    watcher.web = other
    say(f"watching job #{job_id} over a websocket through {other}")

    try:

        def leased_mid_way() -> str:
            rows = stack.psql(
                f"SELECT processed, total, lease_owner FROM jobs_job WHERE id={job_id}"
            )
            processed, total, owner = rows[0]
            if owner and 0 < int(processed) < int(total or ROWS):
                return owner.rsplit(":", 1)[0]
            return ""

        host = wait_for(leased_mid_way, 120, "the job mid-way under a worker's lease", 0.2)
        victim = stack.container(host)
        stack.engine.run("kill", "--signal", "KILL", victim)
        say(f"killed (SIGKILL) {victim}, which held job #{job_id} mid-way")
        began = time.monotonic()

        def finished() -> bool:
            status, processed, failed, total = stack.psql(
                f"SELECT status, processed, failed, total FROM jobs_job WHERE id={job_id}"
            )[0]
            if status in ("failed", "cancelled"):
                raise Failed(f"job #{job_id} ended {status}")
            return status == "succeeded"

        wait_for(finished, 180, f"job #{job_id} to succeed after the kill", 0.5)
        timings["kill to finished"] = time.monotonic() - began
        say(f"job #{job_id} succeeded {timings['kill to finished']:.0f} s after the kill")
        counts = stack.psql(
            "SELECT count(*), count(DISTINCT row_number), min(row_number), max(row_number) "
            f"FROM sheets_rowresult WHERE job_id={job_id}"
        )[0]
        if counts != [str(ROWS), str(ROWS), "1", str(ROWS)]:
            raise Failed(f"each row one result: expected {ROWS} distinct rows, got {counts}")
        job = stack.psql(f"SELECT processed, failed, total FROM jobs_job WHERE id={job_id}")[0]
        if job != [str(ROWS), "0", str(ROWS)]:
            raise Failed(f"job #{job_id} processed/failed/total: {job}")
        say(f"every row has exactly one result ({ROWS})")

        wait_for(
            lambda: ("succeeded", ROWS) in watcher.job_rows(job_id),
            30,
            f"the websocket through {watcher.web} to show the job succeeded",
        )
        live = [p for status, p in watcher.job_rows(job_id) if status == "running" and p < ROWS]
        if not live:
            raise Failed(f"the websocket through {watcher.web} saw no live progress")
        say(f"the websocket saw {len(live)} live progress updates and the end")
    finally:
        watcher.close()
    stack.job_id = job_id  # type: ignore[attr-defined]


def check_down_and_up(stack: Stack, timings: dict[str, float]) -> None:
    job_id = stack.job_id  # type: ignore[attr-defined]
    began = time.monotonic()
    stack.compose_run("down", "-t", "20", timeout=180)
    stack.compose_run("up", "-d")
    wait_for(stack.healthy, 180, "/healthz through the front after down and up")
    timings["down and up"] = time.monotonic() - began
    browser = login(stack)  # the login kept in the conveyor-data volume still works
    status, page, _, _ = browser.request(f"/jobs/{job_id}/")
    if status != 200 or "Succeeded" not in page and "succeeded" not in page:
        raise Failed(f"after down and up, job #{job_id}'s page: {status}")
    count = stack.psql(f"SELECT count(*) FROM sheets_rowresult WHERE job_id={job_id}")[0][0]
    if count != str(ROWS):
        raise Failed(f"after down and up: {count} row results, expected {ROWS}")
    say(f"down and up again in {timings['down and up']:.0f} s: job #{job_id} and its rows kept")


def cleanup_podman(engine: Engine, storage: Path) -> None:
    """Containers, pods, networks and images of the test's own storage, then the storage."""
    for args in (
        ("rm", "-a", "-f", "-t", "0"),
        ("pod", "rm", "-a", "-f"),
        ("volume", "prune", "-f"),
        ("network", "prune", "-f"),
        ("rmi", "-a", "-f"),
    ):
        with contextlib.suppress(subprocess.SubprocessError):
            engine.run(*args, check=False, timeout=120)
    with contextlib.suppress(subprocess.SubprocessError):
        subprocess.run(["umount", "-R", str(storage / "graph" / "overlay")], capture_output=True)
    shutil.rmtree(storage, ignore_errors=True)


def sweep_abandoned(engine_name: str) -> None:
    """Storage roots of earlier test runs that were killed before their cleanup (their
    owner.pid names a process that is gone): their containers, networks and storage."""
    for storage in Path(tempfile.gettempdir()).glob("conveyor-deploy-*"):
        try:
            pid = int((storage / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            continue
        say(f"removing {storage}, left by a deploy test that was killed")
        if engine_name == "podman" and (storage / "conf" / "containers.conf").exists():
            env = {
                "CONTAINERS_CONF": str(storage / "conf" / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(storage / "conf" / "storage.conf"),
            }
            cleanup_podman(Engine("podman", env), storage)
        shutil.rmtree(storage, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["image", "test"])
    args = parser.parse_args()
    try:
        name = choose_engine()
        if args.command == "image":
            env = podman_conf(CACHE / "podman", None) if name == "podman" else {}
            engine = Engine(name, env)
            ensure_base(engine)
            seconds = build_app(engine)
            size = engine.run("image", "inspect", APP_IMAGE, "--format", "{{.Size}}").stdout
            say(f"{APP_IMAGE} built in {seconds:.0f} s, {int(size) / 1e6:.0f} MB ({name})")
            return 0
        sweep_abandoned(name)
        storage = Path(tempfile.mkdtemp(prefix="conveyor-deploy-"))
        (storage / "owner.pid").write_text(str(os.getpid()))
        env = podman_conf(storage / "conf", storage) if name == "podman" else {}
        engine = Engine(name, env)
        try:
            timings = run_test(engine, storage)
        finally:
            if name == "podman":
                cleanup_podman(engine, storage)
            else:
                shutil.rmtree(storage, ignore_errors=True)
        total = time.monotonic() - STARTED
        figures = ", ".join(f"{key} {value:.0f} s" for key, value in timings.items())
        say(f"PASSED in {total:.0f} s ({figures})")
        return 0
    except Failed as exc:
        say(f"FAILED: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
