"""Start the DeepMCAT MONAI Label app as a real ``monailabel start_server`` process.

Used by ``deepmcat demo`` / ``deepmcat serve`` and by tests and benchmarks that drive the server. It only
launches the process (MONAI Label is not imported here) and waits until ``/info/`` answers.
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
