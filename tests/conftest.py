"""Shared fixtures: the ../shared folder (skipped when absent), quiet progress, temp MLflow."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KOFORGE_SHARED", ROOT.parent / "shared")).resolve()
ASSETS = Path(__file__).resolve().parent / "assets"

os.environ.setdefault("KOFORGE_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared data folder), which is absent here")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip the test with the reason."""
    return _shared("data")


@pytest.fixture(scope="session")
def shared_tokenizers() -> Path:
    """../shared/tokenizers, or skip the test with the reason."""
    return _shared("tokenizers")


@pytest.fixture(scope="session")
def assets() -> Path:
    """KB-sized fixtures checked into tests/assets."""
    return ASSETS


os.environ.setdefault("KOFORGE_MLFLOW", "off")


@pytest.fixture(scope="session")
def _mlflow_store(tmp_path_factory) -> str:
    # One SQLite store for the whole session: creating one costs ~7 s of migrations.
    folder = tmp_path_factory.mktemp("mlruns")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def mlflow_store(_mlflow_store, monkeypatch) -> str:
    """Turn MLflow tracking on, into a throwaway store shared by the session; returns its URI."""
    monkeypatch.setenv("KOFORGE_MLFLOW", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _mlflow_store)
    return _mlflow_store


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for tiny models: on a busy 2-core machine, spinning OpenMP threads make tiny ops 3-10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def hub_online(monkeypatch):
    """The hub switched on and pointed at a stand-in: `hub_online("missing")` answers every request "repository
    not found" (401, as the hub does), `hub_online("unreachable")` is a port nobody listens on."""
    import http.server
    import socket
    import threading

    from huggingface_hub import constants

    class NoSuchRepo(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(401)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()

        def log_message(self, *args):
            pass

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = http.server.HTTPServer(("127.0.0.1", 0), NoSuchRepo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    ports = {"missing": server.server_port, "unreachable": closed}

    def point_at(which: str) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{ports[which]}")

    yield point_at
    server.shutdown()
