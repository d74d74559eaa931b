"""Start the DeepMCAT MONAI Label app as a real ``monailabel start_server`` process, and Debian's Orthanc as a
local PACS (``scripts/start_orthanc.sh``).

Used by ``deepmcat demo`` / ``deepmcat serve`` and by tests and benchmarks that drive the servers. It only
launches the processes (MONAI Label is not imported here) and waits until they answer.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def default_app_dir() -> Path:
    """``$DEEPMCAT_APP``, else ``apps/deepmcat`` of the source tree this package was installed from."""
    env = os.environ.get("DEEPMCAT_APP")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "apps" / "deepmcat"
    if not (path / "main.py").is_file():
        raise FileNotFoundError(f"the DeepMCAT MONAI Label app is not at {path}: set DEEPMCAT_APP or --app")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A running ``monailabel start_server``; ``stop()`` ends it and the tasks it spawned."""

    url: str
    process: subprocess.Popen
    log_path: Path
    conf: dict = field(default_factory=dict)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def command(app_dir: str | Path, studies: str, host: str, port: int, conf: dict) -> list[str]:
    cmd = ["monailabel", "start_server", "--app", str(app_dir), "--studies", str(studies),
           "--host", host, "--port", str(port)]
    for key, value in conf.items():
        cmd += ["--conf", key, str(value)]
    return cmd


def server_env(extra: dict | None = None) -> dict:
    """This interpreter's bin folder first on PATH: ``monailabel`` runs ``python -m monailabel.main``."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def start_server(studies: str | Path, conf: dict | None = None, *, app_dir: str | Path | None = None,
                 host: str = "127.0.0.1", port: int | None = None, log_path: str | Path | None = None,
                 env: dict | None = None, timeout: float = 180.0) -> ServerProcess:
    """Launch the server in its own process group and wait until ``/info/`` answers (or raise with its log)."""
    conf = dict(conf or {})
    port = port or free_port(host)
    app_dir = Path(app_dir) if app_dir else default_app_dir()
    log_path = Path(log_path) if log_path else Path(studies).parent / f"monailabel-{port}.log"
    log_file = open(log_path, "w")
    proc = subprocess.Popen(command(app_dir, str(studies), host, port, conf), stdout=log_file,
                            stderr=subprocess.STDOUT, env=server_env(env), start_new_session=True)
    log_file.close()
    server = ServerProcess(f"http://{host}:{port}", proc, log_path, conf)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"monailabel start_server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/info/", timeout=5) as resp:
                json.loads(resp.read())
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"monailabel start_server did not answer within {timeout:.0f}s:\n{server.log_tail()}")


class OrthancProcess:
    """Orthanc started by ``scripts/start_orthanc.sh`` on 127.0.0.1 (a free port), stoppable and restartable
    on the same storage folder and port."""

    def __init__(self, storage: str | Path, stable_age: int = 60, port: int | None = None):
        self.storage, self.port = Path(storage), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, ORTHANC_STABLE_AGE=str(stable_age))
        self.log_path = self.storage.parent / f"{self.storage.name}.log"
        self.script = Path(__file__).resolve().parents[2] / "scripts" / "start_orthanc.sh"
        self.start()

    def start(self, timeout: float = 40.0) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(["bash", str(self.script), str(self.port), str(self.storage)], stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{self.url}/system", timeout=2).read()
                return
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"Orthanc did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)

    def upload(self, paths) -> None:
        """Store DICOM files through Orthanc's REST API, one instance at a time."""
        for path in paths:
            request = urllib.request.Request(f"{self.url}/instances", data=Path(path).read_bytes(), method="POST",
                                             headers={"Content-Type": "application/dicom"})
            urllib.request.urlopen(request, timeout=30).read()

    def get(self, path: str):
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as answer:
            return json.loads(answer.read())
