"""The reliability and security battery (../shared/spec/security.md) against real servers:
items 1–3, 7–11, 19, 20, 22 and 24 here; 12 in test_fuzz, 13 in test_chat, 18 in
test_concurrency."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from tests.helpers.audiofiles import make_fake_header_wav, make_tone_wav, requires
from tests.server.conftest import (
    API_KEY,
    MIB,
    SPEECH,
    Server,
    base_env,
    free_port,
    serve_command,
    start_server,
)
from tests.server.test_media_chat import png_url

from mlxk.server.options import ServerOptions, check_bind

pytestmark = pytest.mark.slow

PARIS = [{"role": "user", "content": "What is the capital of France?"}]


def _chat(model: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": list(parts)}]}


def _image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def _assert_openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert r.headers.get("x-request-id")
    return err


# -- 1. loopback by default; a public bind needs a key ------------------------------------------


def _listening_addresses(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if int(hexport, 16) == port and state == "0A":  # LISTEN
                found.add(addr)
    return found


def test_default_bind_is_loopback_and_public_bind_without_key_refuses(
    server: Server, model_home: Path
) -> None:
    assert ServerOptions().host == "127.0.0.1"
    assert _listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, nothing else
    cmd = serve_command(["--host", "0.0.0.0", "--port", str(free_port())])
    done = subprocess.run(
        cmd, env=base_env(model_home), capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "--api-key" in done.stderr and "--insecure" in done.stderr
    warning = check_bind(ServerOptions(host="0.0.0.0", insecure=True))
    assert warning and "WARNING" in warning
    assert check_bind(ServerOptions(host="0.0.0.0", api_key="k" * 12)) is None


# -- 2. with a key, every route but /health needs it ----------------------------------------------


def _walk(routes: list[Any]) -> list[tuple[str, str]]:
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router: walk into it
        if inner is not None:
            out += _walk(inner.routes)
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                out.append((method, route.path))
    return out


def _routes(model_home: Path) -> list[tuple[str, str]]:
    from mlxk.config import Settings
    from mlxk.server.app import create_app

    app = create_app(Settings.from_env(base_env(model_home)), ServerOptions(api_key=API_KEY))
    return _walk(list(app.routes))


def test_every_route_but_health_needs_the_key(secure_server: Server, model_home: Path) -> None:
    routes = _routes(model_home)
    assert ("POST", "/v1/chat/completions") in routes and ("GET", "/openapi.json") in routes
    with httpx.Client(base_url=secure_server.url, timeout=60) as anon:
        for method, path in routes:
            path = path.replace("{", "").replace("}", "")
            r = anon.request(method, path, headers={"Authorization": "Bearer wrong-key-000"})
            if path == "/health":
                assert r.status_code == 200
                continue
            err = _assert_openai_error(r, 401)
            assert err["code"] == "invalid_api_key", (method, path)
            assert anon.request(method, path).status_code == 401, (method, path)
    with secure_server.client() as http:
        assert http.get("/v1/models").status_code == 200


# -- 3. Host and Origin ----------------------------------------------------------------------------


def test_foreign_host_is_403_and_foreign_origin_gets_no_cors(server: Server) -> None:
    with server.client() as http:
        err = _assert_openai_error(http.get("/v1/models", headers={"Host": "evil.example"}), 403)
        assert err["code"] == "host_not_allowed"
        r = http.get("/health", headers={"Origin": "http://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        pre = http.options(
            "/v1/chat/completions",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in pre.headers
        ok = http.get("/health", headers={"Origin": "http://localhost:3000"})
        assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"


# -- 7. uploads over the limit -------------------------------------------------------------------


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _raw_post(port: int, path: str, headers: str, body: bytes) -> bytes:
    """HTTP by hand, for a body whose framing lies; returns the start of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        try:
            s.sendall(body)
            return s.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            return b""  # the server stopped reading and hung up: nothing was taken in


def test_upload_over_limit_is_413_with_true_missing_or_lying_length(server: Server) -> None:
    big = b"x" * (8 * MIB)  # the limit for these servers is ~5.6 MiB
    rss_before = _rss(server.proc.pid)
    with server.client() as http:
        r = http.post(
            "/v1/chat/completions", content=big, headers={"Content-Type": "application/json"}
        )
        _assert_openai_error(r, 413)

        def chunked() -> Any:  # a well-formed multipart upload, sent without Content-Length
            yield (
                b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                b"Content-Type: audio/wav\r\n\r\n"
            )
            for i in range(0, len(big), MIB):
                yield big[i : i + MIB]
            yield b"\r\n--x--\r\n"

        r = http.post(
            "/v1/audio/transcriptions",
            content=chunked(),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        _assert_openai_error(r, 413)
    # Content-Length says 1 KB, 8 MiB follow: only 1 KB is read as the body.
    headers = "Content-Type: application/json\r\nContent-Length: 1024\r\n"
    answer = _raw_post(server.port, "/v1/chat/completions", headers, big[:MIB])
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    with server.client() as http:
        assert http.get("/health").status_code == 200
    assert _rss(server.proc.pid) - rss_before < 48 * MIB


# -- 8. audio bombs ----------------------------------------------------------------------------


def _transcribe(server: Server, data: bytes, name: str = "a.wav") -> httpx.Response:
    with server.client() as http:
        return http.post(
            "/v1/audio/transcriptions",
            files={"file": (name, data)},
            data={"model": "whisper-tiny.en"},
        )


def test_audio_bombs_are_refused_while_decoding(server: Server, tmp_path: Path) -> None:
    # 150 s of 8 kHz 8-bit audio is 1.2 MB: small in bytes, over the 120 s duration limit.
    long_wav = make_tone_wav(tmp_path / "long.wav", rate=8000, seconds=150, subtype="PCM_U8")
    err = _assert_openai_error(_transcribe(server, long_wav.read_bytes()), 413)
    assert "120" in err["message"]
    # Silence behind the lying header: Whisper has nothing to say and answers quickly.
    liar = make_fake_header_wav(tmp_path / "liar.wav", claimed_bytes=0xFFFFFFF0, freq=0.0)
    r = _transcribe(server, liar.read_bytes())
    assert r.status_code in (200, 400, 413), r.text  # decodes what is really there, or refuses
    with server.client() as http:
        assert http.get("/health").status_code == 200


@requires("ffmpeg")
def test_low_bitrate_long_mp3_is_refused(server: Server, tmp_path: Path) -> None:
    mp3 = tmp_path / "quiet.mp3"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=8000:cl=mono",
            "-t",
            "600",
            "-b:a",
            "8k",
            str(mp3),
        ],
        check=True,
        capture_output=True,
    )
    assert mp3.stat().st_size < 1 * MIB
    err = _assert_openai_error(_transcribe(server, mp3.read_bytes(), "q.mp3"), 413)
    assert "seconds" in err["message"] or "long" in err["message"]


# -- 9, 10. image bombs, bad base64, wrong data-URL types, oversized strings -------------------------


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("url", "status"),
    [
        (_data_url(_png_claiming(100_000, 100_000)), 400),
        (png_url((1, 1)), 400),
        (_data_url(b""), 400),
        (_data_url(b"GIF89a not really"), 400),
        (_data_url(b"plain text, not an image"), 400),
        ("data:image/png;base64,%%%not-base64%%%", 400),
        (_data_url(b"hello", "text/plain"), 400),
        ("https://example.com/cat.png", 400),
        ("data:image/png;base64," + "A" * (3 * MIB), 400),
    ],
    ids=[
        "pixel-bomb",
        "1x1",
        "empty",
        "fake-gif",
        "text",
        "bad-base64",
        "text-mime",
        "remote-url",
        "oversized",
    ],
)
def test_bad_images_are_refused_before_decoding(server: Server, url: str, status: int) -> None:
    with server.client() as http:
        t0 = time.perf_counter()
        r = http.post("/v1/chat/completions", json=_chat("tiny-qwen2-vl", _image(url)))
    _assert_openai_error(r, status)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize(
    ("data", "fmt", "status"),
    [("***", "wav", 400), ("A" * (6 * MIB), "wav", 413), ("AAAA", "exe", 400)],
    ids=["bad-base64", "oversized", "unknown-format"],
)
def test_bad_input_audio_is_refused(server: Server, data: str, fmt: str, status: int) -> None:
    part = {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}
    with server.client() as http:
        r = http.post("/v1/chat/completions", json=_chat("whisper-tiny.en", part))
    assert r.status_code in (status, 413), r.text
    _assert_openai_error(r, r.status_code)


# -- 11. error bodies leak nothing -----------------------------------------------------------------


def _broken_model(ws: Path) -> str:
    """A workspace whose weights are cut short: the request must fail, and say so cleanly."""
    name = "broken-llama"
    d = ws / name
    if not d.is_dir():
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
        (d / "model.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
        (d / "README.md").write_text("---\nlibrary_name: mlx\n---\n")
    return name


def test_error_bodies_contain_no_paths_users_tracebacks_or_reprs(
    server: Server, model_home: Path
) -> None:
    broken = _broken_model(model_home / "ws")
    requests = [
        ("POST", "/v1/chat/completions", {"model": broken, "messages": PARIS}),
        (
            "POST",
            "/v1/chat/completions",
            {"model": str(model_home / "ws" / "smollm2"), "messages": PARIS},
        ),
        ("POST", "/v1/chat/completions", {"model": "../../etc", "messages": PARIS}),
        ("POST", "/v1/chat/completions", {"model": "smollm2", "messages": "not a list"}),
        ("POST", "/v1/embeddings", {"model": "minilm", "input": [[99_999_999]]}),
        ("POST", "/v1/completions", {"model": "whisper-tiny.en", "prompt": "x"}),
    ]
    user = os.environ.get("USER") or ""
    with server.client() as http:
        for method, path, body in requests:
            r = http.request(method, path, json=body)
            assert 400 <= r.status_code < 500, (body, r.text)
            text = r.text
            assert str(model_home) not in text and "/tmp/" not in text, text
            assert "Traceback" not in text and " at 0x" not in text, text
            assert not user or len(user) < 3 or f"/{user}" not in text
            _assert_openai_error(r, r.status_code)


# -- 19, 20. queue full; model too big -------------------------------------------------------------


def test_queue_full_is_503_with_retry_after_for_the_overflow_only(secure_server: Server) -> None:
    results: list[httpx.Response] = []
    lock = threading.Lock()
    body = {"model": "smollm2", "messages": PARIS, "max_tokens": 6, "temperature": 0}

    def one() -> None:
        with secure_server.client() as http:
            r = http.post("/v1/chat/completions", json=body)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) >= 2 and set(codes) <= {200, 503}, codes
    assert 503 in codes
    for r in results:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1
            assert _assert_openai_error(r, 503)["code"] == "queue_full"
        else:
            assert r.json()["choices"][0]["finish_reason"] in ("length", "stop")


def test_model_too_big_is_507_before_loading_and_pinned_model_keeps_serving(
    secure_server: Server,
) -> None:
    with (
        secure_server.client() as http,
        (SPEECH / "a_man_said_to_the_universe_sir_i_exist.wav").open("rb") as fh,
    ):
        r = http.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", fh)},
            data={"model": "whisper-base"},
        )
        err = _assert_openai_error(r, 507)
        assert err["needed_bytes"] > err["available_bytes"] >= 0
        assert "GB" in err["message"] and "smollm2" in err["message"]
        stats = http.get("/v1/mlxk/stats").json()
        assert [m["id"] for m in stats["loaded"]] == ["smollm2"]
        ok = http.post(
            "/v1/chat/completions", json={"model": "smollm2", "messages": PARIS, "max_tokens": 2}
        )
        assert ok.status_code == 200


# -- 22. signals ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return kids


def _port_is_free(port: int) -> bool:
    """Nothing listens, and a new server could bind it (as uvicorn does: SO_REUSEADDR, so
    connections of the old one lingering in TIME_WAIT do not count)."""
    if _listening_addresses(port):
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigterm_mid_stream_exits_promptly_and_frees_the_port(model_home: Path) -> None:
    srv = start_server(model_home, ["--model", "smollm2"])
    got_chunk = threading.Event()

    def stream() -> None:
        body = {"model": "smollm2", "messages": PARIS, "max_tokens": 300, "stream": True}
        try:
            with srv.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    if "content" in line:
                        got_chunk.set()
        except httpx.HTTPError:
            pass  # the server went away mid-stream: expected

    t = threading.Thread(target=stream)
    t.start()
    assert got_chunk.wait(120), srv.output()
    t0 = time.monotonic()
    code = srv.stop(signal.SIGTERM, timeout=20)
    elapsed = time.monotonic() - t0
    t.join(30)
    assert code == 0, srv.output()
    assert elapsed < 15, f"took {elapsed:.1f} s to stop"
    assert _port_is_free(srv.port)
    assert not Path(f"/proc/{srv.proc.pid}").exists() or not _children(srv.proc.pid)


def test_sigint_on_an_idle_server_exits_cleanly(model_home: Path) -> None:
    srv = start_server(model_home, [])
    assert srv.stop(signal.SIGINT, timeout=20) == 0, srv.output()
    assert _port_is_free(srv.port)


# -- 24. unknown models and routes -----------------------------------------------------------------


def test_unknown_model_is_404_without_download_and_unknown_route_is_404(
    server: Server, model_home: Path
) -> None:
    hub = model_home / "hf" / "hub"
    before = sorted(p.name for p in hub.iterdir())
    with server.client() as http:
        for model in ("mlx-community/Llama-3-8B-4bit", "gpt-4o"):
            r = http.post("/v1/chat/completions", json={"model": model, "messages": PARIS})
            assert _assert_openai_error(r, 404)["code"] == "model_not_found"
        _assert_openai_error(http.get("/v1/nope"), 404)
        _assert_openai_error(http.get("/v1/chat/completions"), 405)
    assert sorted(p.name for p in hub.iterdir()) == before
