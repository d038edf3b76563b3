"""The web page at ``/`` end to end: a real ``mlxk serve`` (with an API key) and real models,
driven through Debian's Chromium (headless, Playwright's sync API) with a fake microphone that
plays a real speech clip.

One server and one browser serve the whole module; the tests run in file order and share the
page (the key entered in the first one stays in the browser's localStorage).

Set ``MLXK_UI_SCREENSHOT=docs/web-ui.png`` to (re)write the screenshot the README shows.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import playwright.sync_api as playwright_api
import pytest
import soundfile as sf
from PIL import Image, ImageDraw
from tests.conftest import RealModels
from tests.server.conftest import REPO, SPEECH, Server, base_env, fill_home, start_server

expect = playwright_api.expect

pytestmark = pytest.mark.slow

KEY = "ui-test-key-0123456789"
CLIP = SPEECH / "a_man_said_to_the_universe_sir_i_exist.wav"
OTHER_CLIP = SPEECH / "having_returned_to_the_royal_cavern.wav"
CHROMIUM = os.environ.get("MLXK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    f"--use-file-for-fake-audio-capture={CLIP}",
]
MODELS = {"smollm2", "tiny-omni", "tiny-qwen2-vl", "whisper-tiny.en"}
SLOW = 180_000  # ms: a model's first request loads it, on a busy 2-core CPU


def _link_tree(src: Path, dst: Path) -> None:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


@pytest.fixture(scope="module")
def ui_home(real_models: RealModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace home with SmolLM2, Whisper tiny.en (real weights) and the tiny random
    qwen2-vl (vision) and gemma4 omni (vision + audio) models.

    MLXK_TEST_SERVER_HOME (the server tests' shared home) is used as is when set.
    """
    given = os.environ.get("MLXK_TEST_SERVER_HOME")
    if given:
        fill_home(Path(given))
        return Path(given)
    home = tmp_path_factory.mktemp("ui-home")
    ws = home / "ws"
    for d in (ws, home / "hf" / "hub", home / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    code = (
        f"import sys; from pathlib import Path; sys.path.insert(0, {str(REPO)!r});"
        "from tests.helpers.tinyvlm import make_tiny_qwen2_vl, make_tiny_gemma4_omni;"
        f"make_tiny_qwen2_vl(Path({str(ws / 'tiny-qwen2-vl')!r}));"
        f"make_tiny_gemma4_omni(Path({str(ws / 'tiny-omni')!r}))"
    )
    tiny = subprocess.Popen(
        [sys.executable, "-c", code],
        env=base_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for name in ("smollm2", "whisper-tiny.en"):  # imported once per session, linked here
        _link_tree(real_models.path(name), ws / name)
    out, _ = tiny.communicate(timeout=600)
    assert tiny.returncode == 0, out[-3000:]
    return home


@pytest.fixture(scope="module")
def server(ui_home: Path) -> Iterator[Server]:
    t0 = time.monotonic()
    srv = start_server(
        ui_home,
        ["--api-key", KEY, "--model", "smollm2", "--model", "whisper-tiny.en"],
        api_key=KEY,
    )
    print(f"\nmlxk serve with 2 pinned models answered /health after {time.monotonic() - t0:.1f} s")
    yield srv
    srv.stop()


class Browser:
    """The page plus what it did: API requests (with their Authorization), console, errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.api_calls: list[tuple[str, str, str | None]] = []  # method, path, authorization
        self.console: list[str] = []
        self.errors: list[str] = []
        self.pw: Any = None  # the Playwright instance (a test may launch another browser)
        page.on("request", self._request)
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _request(self, req: Any) -> None:
        path = re.sub(r"^https?://[^/]+", "", req.url)
        if path.startswith("/v1/"):
            self.api_calls.append((req.method, path, req.headers.get("authorization")))

    def calls_since(self, n: int) -> list[tuple[str, str, str | None]]:
        return self.api_calls[n:]


@pytest.fixture(scope="module")
def browser(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no chromium at {CHROMIUM}: scripts/setup.sh installs it (or set MLXK_CHROMIUM)"
        )
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data-dir
    with playwright_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=BROWSER_ARGS,
            viewport={"width": 1100, "height": 860},
            device_scale_factor=1,
            permissions=["microphone"],
        )
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        b = Browser(page)
        b.pw = pw
        yield b
        ctx.close()


def _use_model(page: Any, model: str) -> None:
    page.select_option("#model", model)
    expect(page.locator("#model-info .facts")).to_contain_text("mlx-")


def _set(page: Any, temperature: str, max_tokens: str) -> None:
    page.click("#settings-button")
    page.fill("#temperature", temperature)
    page.fill("#max-tokens", max_tokens)
    page.keyboard.press("Escape")  # Esc closes Settings (so does a click outside them)
    expect(page.locator("#settings")).to_be_hidden()


def _bubbles(page: Any) -> int:
    return int(page.locator(".msg.assistant").count())


def _answer(page: Any, index: int) -> Any:
    """The assistant bubble number ``index`` (0-based), once it is finished (done or error)."""
    bubble = page.locator(".msg.assistant").nth(index)
    expect(bubble).to_have_attribute("data-state", re.compile("done|error"), timeout=SLOW)
    return bubble


def _similarity(pcm: Any, clip: Any, size: int = 4000) -> Any:
    """For each voiced 0.25 s window of the clip: its best normalized correlation anywhere in
    the recording. Windows, not the whole clip: under CPU load Chromium's fake capture device
    now and then repeats or drops a 10 ms buffer, which shifts the rest of the recording."""
    energy = np.concatenate([[0.0], np.cumsum(pcm.astype(np.float64) ** 2)])
    local = np.sqrt(np.maximum(energy[size:] - energy[:-size], 0))
    out = []
    for start in range(0, len(clip) - size, size):
        ref = clip[start : start + size]
        norm = float(np.linalg.norm(ref))
        if norm < 0.2 * float(np.linalg.norm(clip)) / np.sqrt(len(clip) / size):
            continue  # (near) silence says nothing
        n = len(pcm) + size
        corr = np.fft.irfft(np.fft.rfft(pcm, n) * np.conj(np.fft.rfft(ref, n)), n)
        corr = corr[: len(pcm) - size + 1]
        ok = local > 0.3 * norm  # skip quiet stretches of the recording (noise over noise)
        out.append(float(np.max(np.where(ok, corr / (local * norm + 1e-12), 0.0))))
    return np.array(out)


def _png(path: Path) -> Path:
    img = Image.new("RGB", (96, 64), (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.rectangle((8, 8, 56, 56), fill=(220, 40, 40))
    d.ellipse((48, 16, 88, 56), fill=(40, 90, 220))
    img.save(path, "PNG")
    return path


# What a transcript bubble went through, in order: every change of its data-state,
# data-segments-seen (segment events drawn) and data-audio-done (the progress), as the DOM
# showed them. A MutationObserver hands over its records in batches; each record keeps the old
# value, so the value after a change is the next record's old value (or the final one).
WATCH_TRANSCRIPT = """() => {
  if (window.__txWatch) window.__txWatch.disconnect();  // one watcher: the page is shared
  window.__tx = [];
  const log = document.getElementById('log');
  window.__txWatch = new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.matches && r.target.matches('.msg.assistant.transcript')) {
        window.__tx.push([r.attributeName, r.oldValue]);
      }
    }
  });
  window.__txWatch.observe(log, {subtree: true, attributes: true, attributeOldValue: true,
                   attributeFilter: ['data-state', 'data-segments-seen', 'data-audio-done']});
}"""


def _transcript_history(page: Any, bubble: Any) -> list[tuple[str, str | None]]:
    """The bubble's attribute changes (name, new value) in the order they happened."""
    records: list[list[Any]] = page.evaluate("window.__tx")
    final = {a: bubble.get_attribute(a) for a in {r[0] for r in records}}
    out: list[tuple[str, str | None]] = []
    for i, (attr, _) in enumerate(records):
        later = [old for a, old in records[i + 1 :] if a == attr]
        out.append((attr, later[0] if later else final[attr]))
    return out


def _segment_updates_before_done(history: list[tuple[str, str | None]]) -> list[int]:
    """The data-segments-seen values the page showed before its state became done."""
    seen: list[int] = []
    for attr, value in history:
        if attr == "data-state" and value == "done":
            return seen
        if attr == "data-segments-seen" and value not in (None, "0"):
            seen.append(int(value))
    raise AssertionError(f"the transcript never became done: {history}")


def _progress(bubble: Any) -> tuple[float, float, str]:
    """The transcript's <progress> (value, max) and its text."""
    bar = bubble.locator("progress.transcript-progress")
    value, top = bar.evaluate("p => [p.value, p.max]")
    return float(value), float(top), bubble.locator(".progress-text").inner_text()


def _field(body: bytes, name: str) -> bytes | None:
    m = re.search(rb'name="' + name.encode() + rb'"\r\n\r\n([^\r]*)\r\n', body)
    return m.group(1) if m else None


class FakeStream:
    """A stand-in for a streaming route (/v1/audio/transcriptions, /v1/chat/completions) for
    what a real server does not do on cue: fail after its stream started, stream slowly, or
    keep a stream open while Stop is pressed. It sends ``events`` as server-sent events (a str
    as it is, e.g. ``[DONE]``), ``delay`` seconds apart, then ends the stream, or with ``hold``
    keeps it open until the client goes away (``closed`` is set then)."""

    def __init__(
        self, events: list[Any], hold: bool, delay: float = 0.0, path: str = "/v1/x"
    ) -> None:
        self.closed = threading.Event()
        self.stop = threading.Event()
        self.bodies: list[bytes] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()  # HTTP/1.0: the stream ends when the connection closes
                try:
                    for ev in events:
                        data = ev if isinstance(ev, str) else json.dumps(ev)
                        self.wfile.write(b"data: " + data.encode() + b"\n\n")
                        self.wfile.flush()
                        time.sleep(delay)
                    while hold and not fake.stop.wait(0.1):
                        self.wfile.write(b": still working\n\n")  # an SSE comment
                        self.wfile.flush()
                except OSError:
                    fake.closed.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def _fake_stream(
    page: Any, route: str, events: list[Any], hold: bool = False, delay: float = 0.0
) -> Iterator[FakeStream]:
    """The page's requests to ``route`` go to a FakeStream (the page cannot tell)."""
    fake = FakeStream(events, hold, delay, route)
    target = "**" + route
    page.route(target, lambda r: r.continue_(url=fake.url))
    try:
        yield fake
    finally:
        page.unroute(target)
        fake.close()


def _fake_transcriptions(
    page: Any, events: list[Any], hold: bool = False
) -> contextlib.AbstractContextManager[FakeStream]:
    return _fake_stream(page, "/v1/audio/transcriptions", events, hold)


def _chunk(text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    """A chat.completion.chunk as the server streams it."""
    delta = {"content": text} if text is not None else {}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": "smollm2",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


# ----------------------------------------------------------------------------- tests


def test_page_and_files_are_public_api_is_not(server: Server) -> None:
    """`/`, app.js and app.css come without a key, with their types and a 'self'-only CSP;
    the API beside them still refuses a request without the key."""
    types = {"/": "text/html", "/ui/app.js": "text/javascript", "/ui/app.css": "text/css"}
    for path, media in types.items():
        r = httpx.get(server.url + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["content-type"].startswith(media)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        again = httpx.get(server.url + path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
    html = httpx.get(server.url + "/").text
    assert '<script src="/ui/app.js"' in html and "<script>" not in html and "style=" not in html
    assert httpx.get(server.url + "/v1/models", timeout=10).status_code == 401
    assert httpx.post(server.url + "/", timeout=10).status_code == 401  # only GET/HEAD are open


def test_api_key_missing_wrong_and_right(browser: Browser, server: Server) -> None:
    page = browser.page
    response = page.goto(server.url + "/")
    assert response is not None and response.status == 200
    # No key stored: the page says the server needs one and asks for it.
    expect(page.locator("#auth")).to_be_visible()
    expect(page.locator("#auth-message")).to_contain_text("needs an API key")
    expect(page.locator("#error")).to_contain_text("401")
    expect(page.locator("#api-key")).to_be_focused()
    expect(page.locator("#model option")).to_have_count(0)
    # A wrong key: refused, and the page says so.
    page.fill("#api-key", "wrong-key-00000")
    page.click("#auth-form button[type=submit]")
    expect(page.locator("#auth-message")).to_contain_text("did not accept the API key")
    expect(page.locator("#auth-message")).to_contain_text("401")
    expect(page.locator("#model option")).to_have_count(0)
    expect(page.locator("#status")).to_contain_text("Waiting for an API key")
    assert page.evaluate("localStorage.getItem('mlxk.apiKey')") is None  # not kept: it failed
    # The right key (typed, Enter): the models appear with their capabilities.
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    expect(page.locator("#auth")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    options = page.locator("#model option")
    expect(options).not_to_have_count(0)
    assert set(options.evaluate_all("os => os.map(o => o.value)")) >= MODELS
    texts = options.all_inner_texts()
    assert any(t.startswith("tiny-qwen2-vl") and "vision" in t for t in texts), texts
    assert any(t.startswith("whisper-tiny.en") and "audio" in t for t in texts), texts
    assert page.evaluate("localStorage.getItem('mlxk.apiKey')") == KEY
    auths = [a for _, path, a in browser.api_calls if path == "/v1/models"]
    assert auths[:3] == [None, "Bearer wrong-key-00000", f"Bearer {KEY}"], auths
    # The key survives a reload: no prompt the second time.
    page.reload()
    expect(page.locator("#model option")).not_to_have_count(0)
    expect(page.locator("#auth")).to_be_hidden()


def test_microphone_recording_is_transcribed_by_whisper(browser: Browser) -> None:
    page = browser.page
    seen = len(browser.api_calls)
    page.click("#new-chat")
    _use_model(page, "whisper-tiny.en")
    page.click("#mic")
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#status")).to_contain_text("Recording")
    page.wait_for_timeout(5200)  # the clip is 4.65 s; the fake microphone loops it
    page.click("#mic")
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#attachments li[data-kind=audio]")).to_have_count(1)
    expect(page.locator("#status")).to_contain_text("16 kHz mono 16-bit WAV")
    bodies: list[bytes] = []

    def keep_body(route: Any) -> None:  # look at what the page sends; the server answers it
        bodies.append(route.request.post_data_buffer or b"")
        route.continue_()

    page.route("**/v1/audio/transcriptions", keep_body)
    page.evaluate(WATCH_TRANSCRIPT)
    t0 = time.monotonic()
    with page.expect_response("**/v1/audio/transcriptions", timeout=SLOW) as resp_info:
        page.click("#send")
    resp = resp_info.value
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    done = _answer(page, 0)
    expect(done).to_have_class(re.compile("transcript"))
    expect(done).to_have_attribute("data-state", "done")
    page.unroute("**/v1/audio/transcriptions")
    print(f"\ntranscript after {time.monotonic() - t0:.1f} s")
    text = done.locator(".transcript-text").inner_text()
    assert "universe" in text.lower(), text
    stamps = done.locator(".segments .ts").all_inner_texts()
    assert stamps and all(re.fullmatch(r"\d+:\d\d\.\d – \d+:\d\d\.\d", s) for s in stamps), stamps
    assert all(a == f"Bearer {KEY}" for _, _, a in browser.calls_since(seen))
    # Streamed: the segments were drawn as their events came, before the done event.
    history = _transcript_history(page, done)
    states = [v for a, v in history if a == "data-state"]
    assert states[-2:] == ["streaming", "done"], history
    updates = _segment_updates_before_done(history)
    final = int(done.get_attribute("data-segments-seen") or 0)
    assert updates == list(range(1, final + 1)) and 1 <= len(stamps) <= final, (updates, stamps)

    # What was sent: multipart with model, stream=true, json and a 16 kHz mono 16-bit PCM WAV
    # that is the clip itself (the browser's 44.1/48 kHz capture, resampled by app.js).
    (body,) = bodies
    fields = {f: _field(body, f) for f in ("model", "response_format", "stream")}
    assert fields == {"model": b"whisper-tiny.en", "response_format": b"json", "stream": b"true"}
    wav = body[body.index(b"RIFF") :]
    assert wav[8:16] == b"WAVEfmt " and wav[36:40] == b"data"
    fmt, channels = int.from_bytes(wav[20:22], "little"), int.from_bytes(wav[22:24], "little")
    rate, bits = int.from_bytes(wav[24:28], "little"), int.from_bytes(wav[34:36], "little")
    assert (fmt, channels, rate, bits) == (1, 1, 16000, 16)
    size = int.from_bytes(wav[40:44], "little")
    pcm = np.frombuffer(wav[44 : 44 + size], "<i2").astype(np.float32) / 32768
    assert 4.5 < len(pcm) / 16000 < 8, len(pcm)
    scores = _similarity(pcm, sf.read(CLIP, dtype="float32")[0])
    median = float(np.median(scores))
    print(f"recorded {len(pcm) / 16000:.2f} s; similarity to the clip: median {median:.3f}")
    assert median > 0.95 and np.mean(scores > 0.9) >= 0.75, scores

    # The progress reached the whole recording: "4.9 s of 4.9 s transcribed", bar full.
    seconds = len(pcm) / 16000
    assert abs(float(done.get_attribute("data-audio-duration") or 0) - seconds) < 0.05
    value, top, label = _progress(done)
    assert value == top and abs(top - seconds) < 0.05, (value, top, seconds)
    m = re.fullmatch(r"(\d+\.\d) s of (\d+\.\d) s transcribed", label)
    assert m and m[1] == m[2] and abs(float(m[2]) - seconds) < 0.06, label
    expect(done.locator(".progress")).to_have_class(re.compile("complete"))


def test_streaming_chat_with_smollm2(browser: Browser, tmp_path: Path) -> None:
    page = browser.page
    seen = len(browser.api_calls)
    _use_model(page, "smollm2")
    _set(page, "0", "64")
    # Every distinct text of the answer while it streams, as the DOM showed it.
    page.evaluate(
        """() => {
        window.__seen = [];
        const log = document.getElementById('log');
        new MutationObserver(() => {
          const b = [...log.querySelectorAll('.msg.assistant')].pop();
          if (!b || b.dataset.state !== 'streaming') return;
          const t = b.querySelector('.body').textContent;
          if (t && window.__seen[window.__seen.length - 1] !== t) window.__seen.push(t);
        }).observe(log, {subtree: true, childList: true, characterData: true, attributes: true});
      }"""
    )
    page.fill("#message", "What is the capital of France?")
    before = _bubbles(page)
    t0 = time.monotonic()
    with page.expect_response("**/v1/chat/completions") as resp_info:
        page.press("#message", "Enter")  # Enter sends
    resp = resp_info.value
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    sent = json.loads(resp.request.post_data or "{}")
    assert sent["stream"] is True and sent["temperature"] == 0 and sent["max_tokens"] == 64
    answer = _answer(page, before)
    expect(answer).to_have_attribute("data-state", "done")
    final = answer.locator(".body").inner_text()
    updates: list[str] = page.evaluate("window.__seen")
    print(
        f"\nchat answered in {time.monotonic() - t0:.1f} s with {len(updates)} DOM updates: {final!r}"
    )
    assert "Paris" in final
    assert len(updates) > 1, updates  # streamed: the text grew in several steps
    assert len(updates[0]) < len(final.strip()), updates
    assert all(final.strip().startswith(u.strip()[:10]) for u in updates), updates
    expect(answer.locator(".meta")).to_contain_text("tokens")
    assert all(a == f"Bearer {KEY}" for _, _, a in browser.calls_since(seen))

    # The screenshot for the docs: the transcript above, this chat, one answer with Markdown.
    target = os.environ.get("MLXK_UI_SCREENSHOT")
    if target:
        _set(page, "0", "110")
        page.fill("#message", "Give me three tips for visiting Paris, as a numbered list.")
        page.press("#message", "Enter")
        expect(_answer(page, before + 1).locator("ol")).not_to_have_count(0)
        page.fill("#message", "And what is the Louvre?")
        page.locator("#message").blur()
        page.set_viewport_size({"width": 1100, "height": 960})  # the whole conversation
        page.evaluate("document.getElementById('log').scrollTop = 1e6")
        page.wait_for_timeout(300)
    shot = Path(target) if target else tmp_path / "web-ui.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    with Image.open(shot) as im:
        size = page.viewport_size
        assert size and im.size == (size["width"], size["height"])
        assert len(im.convert("L").getcolors(65536) or []) > 20  # not blank


def test_audio_file_to_whisper_and_a_recording_to_an_omni_model(browser: Browser) -> None:
    page = browser.page
    mp3 = SPEECH / "a_man_said_to_the_universe_sir_i_exist.mp3"
    page.click("#new-chat")
    # An uploaded file goes to Whisper as it is (multipart, the original bytes and name).
    _use_model(page, "whisper-tiny.en")
    page.set_input_files("#audio-input", str(mp3))
    expect(page.locator("#attachments li[data-kind=audio]")).to_contain_text(mp3.name)
    bodies: list[bytes] = []

    def keep_body(route: Any) -> None:
        bodies.append(route.request.post_data_buffer or b"")
        route.continue_()

    page.route("**/v1/audio/transcriptions", keep_body)
    page.click("#send")
    done = _answer(page, 0)
    page.unroute("**/v1/audio/transcriptions")
    expect(done).to_have_attribute("data-state", "done")
    expect(done.locator(".transcript-text")).to_contain_text("universe", ignore_case=True)
    (body,) = bodies  # (Chromium reports a file from disk without its bytes: the name and type)
    assert f'filename="{mp3.name}"\r\nContent-Type: audio/mpeg'.encode() in body

    # A recording to an omni chat model: an input_audio part, base64 WAV, format "wav".
    _use_model(page, "tiny-omni")
    expect(page.locator("#model-info")).to_contain_text("Chat with text, images and audio")
    _set(page, "0", "12")
    page.click("#mic")
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(1500)
    page.click("#mic")
    expect(page.locator("#attachments li[data-kind=audio]")).to_have_count(1)
    page.fill("#message", "What is said in this clip?")
    with page.expect_request("**/v1/chat/completions") as req_info:
        page.press("#message", "Enter")
    content = json.loads(req_info.value.post_data or "{}")["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is said in this clip?"}
    part = content[1]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    wav = base64.b64decode(part["input_audio"]["data"])
    assert wav[:4] == b"RIFF" and int.from_bytes(wav[24:28], "little") == 16000
    answer = _answer(page, 1)  # a random tiny model: any text, but a finished answer
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer.locator(".meta")).to_contain_text("tokens")

    # The conversation goes on with a text-only model: the earlier clip becomes a note.
    _use_model(page, "smollm2")
    page.fill("#message", "Thanks!")
    with page.expect_request("**/v1/chat/completions") as req_info:
        page.press("#message", "Enter")
    expect(page.locator("#status")).to_contain_text("Earlier audio clips are left out")
    sent = json.loads(req_info.value.post_data or "{}")["messages"]
    assert sent[0]["content"] == "What is said in this clip?\n[an audio clip]"
    expect(_answer(page, 2)).to_have_attribute("data-state", "done")


def test_long_clip_is_drawn_segment_by_segment(browser: Browser, tmp_path: Path) -> None:
    """57 s of speech (the two LibriSpeech clips in turn, three times each): more than one of
    Whisper's 30 s windows, so the page shows segments, and the progress, before the end."""
    page = browser.page
    first, rate = sf.read(CLIP, dtype="int16")
    second, rate2 = sf.read(OTHER_CLIP, dtype="int16")
    assert rate == rate2 == 16000
    pcm = np.concatenate([first, second] * 3)
    seconds = len(pcm) / rate
    assert seconds >= 30
    clip = tmp_path / "long_speech.wav"
    sf.write(clip, pcm, rate, subtype="PCM_16")
    page.click("#new-chat")
    _use_model(page, "whisper-tiny.en")
    page.set_input_files("#audio-input", str(clip))
    expect(page.locator("#attachments li[data-kind=audio]")).to_contain_text(clip.name)
    page.evaluate(WATCH_TRANSCRIPT)
    t0 = time.monotonic()
    page.click("#send")
    done = _answer(page, 0)
    expect(done).to_have_attribute("data-state", "done")
    history = _transcript_history(page, done)
    updates = _segment_updates_before_done(history)
    final = int(done.get_attribute("data-segments-seen") or 0)
    stamps = done.locator(".segments .ts").all_inner_texts()
    text = done.locator(".transcript-text").inner_text()
    print(
        f"\n{seconds:.1f} s transcribed in {time.monotonic() - t0:.1f} s, "
        f"{final} segment events: {text[:120]!r}…"
    )
    # At least two segments were on the page before the done event, one event at a time,
    # and all of them were (the done event added none).
    assert len(updates) >= 2 and updates == list(range(1, final + 1)), history
    assert 2 <= len(stamps) <= final, stamps
    assert all(re.fullmatch(r"\d+:\d\d\.\d – \d+:\d\d\.\d", s) for s in stamps), stamps
    assert "universe" in text.lower() and "cavern" in text.lower(), text
    # The progress grew with the segments: it showed part of the audio done before the end.
    progress = []
    for attr, value in history:
        if attr == "data-state" and value == "done":
            break
        if attr == "data-audio-done" and value is not None:
            progress.append(float(value))
    assert progress == sorted(progress) and progress[0] < seconds - 1, progress
    assert abs(float(done.get_attribute("data-audio-duration") or 0) - seconds) < 0.05
    value, top, label = _progress(done)
    assert value == top and abs(top - seconds) < 0.05, (value, top, seconds)
    assert label == f"{seconds:.1f} s of {seconds:.1f} s transcribed", label
    expect(done.locator(".meta")).to_contain_text(f"{final} segments")

    # (6) Downloads are built from the segments: SRT cues with "-->", VTT, JSON, text.
    files = {}
    for fmt in ("srt", "vtt", "json", "txt"):
        with page.expect_download() as dl:
            done.locator(f"button[data-format={fmt}]").click()
        assert dl.value.suggested_filename == f"long_speech.{fmt}"
        files[fmt] = Path(dl.value.path()).read_text()
    cues = re.findall(
        r"^(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n\S", files["srt"], re.M
    )
    assert len(cues) == len(stamps) and [int(c[0]) for c in cues] == list(range(1, len(cues) + 1))
    assert cues[-1][2] > cues[0][1] and "universe" in files["srt"].lower(), files["srt"][:300]
    assert files["vtt"].startswith("WEBVTT\n\n") and files["vtt"].count(" --> ") == len(cues)
    meta = json.loads(files["json"])
    assert len(meta["segments"]) == len(cues) and meta["text"] == files["txt"].strip()
    assert "cavern" in meta["text"].lower()
    # A click on a segment plays the clip from there.
    second = done.locator(".segments li").nth(1)
    start = float(second.get_attribute("data-start") or 0)
    second.click()
    player = page.locator(".msg.user audio").last
    assert abs(player.evaluate("a => a.currentTime") - start) < 1.0


def test_transcript_error_midway_and_stop(browser: Browser) -> None:
    """An error event after the stream started is shown on the bubble, below what came; Stop
    while a transcript streams cancels the reader (the connection closes) and keeps the rest."""
    page = browser.page
    page.click("#new-chat")
    _use_model(page, "whisper-tiny.en")
    said = " A man said to the universe."
    delta = {"type": "transcript.text.delta", "delta": said, "segment_id": "seg_0"}
    segment = {
        "type": "transcript.text.segment",
        "id": "seg_0",
        "start": 0.0,
        "end": 2.5,
        "text": said,
        "audio_done": 2.5,
        "audio_duration": 10.0,
    }
    error = {
        "error": {
            "message": "not enough memory to go on",
            "type": "insufficient_storage",
            "code": "insufficient_memory",
        }
    }
    with _fake_transcriptions(page, [delta, segment, error]) as fake:
        page.set_input_files("#audio-input", str(CLIP))
        page.click("#send")
        failed = _answer(page, 0)
    assert _field(fake.bodies[0], "stream") == b"true"
    expect(failed).to_have_attribute("data-state", "error")
    expect(failed).to_have_class(re.compile("failed"))
    expect(failed.locator(".transcript-text")).to_have_text(said.strip())
    expect(failed.locator(".segments .ts")).to_have_text(["0:00.0 – 0:02.5"])
    expect(failed.locator(".progress-text")).to_have_text("2.5 s of 10.0 s transcribed")
    expect(failed.locator(".err")).to_contain_text("Not enough memory for this model (507):")
    expect(failed.locator(".err")).to_contain_text("not enough memory to go on")
    expect(page.locator("#error")).to_contain_text("not enough memory to go on")

    with _fake_transcriptions(page, [delta, segment], hold=True) as fake:
        page.set_input_files("#audio-input", str(CLIP))
        page.click("#send")
        bubble = page.locator(".msg.assistant").nth(1)
        expect(bubble).to_have_attribute("data-segments-seen", "1")
        expect(bubble).to_have_attribute("data-state", "streaming")
        expect(page.locator("#stop")).to_be_visible()
        page.click("#stop")
        expect(bubble).to_have_attribute("data-state", "stopped")
        assert fake.closed.wait(10), "the page kept the transcript stream open after Stop"
    expect(bubble.locator(".dim")).to_have_text("(stopped)")
    expect(bubble.locator(".transcript-text")).to_have_text(said.strip())
    expect(bubble.locator(".segments li")).to_have_count(1)
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()


def test_image_for_vision_model_and_capability_mismatch(browser: Browser, tmp_path: Path) -> None:
    page = browser.page
    png = _png(tmp_path / "shapes.png")
    page.click("#new-chat")
    _use_model(page, "tiny-qwen2-vl")
    expect(page.locator("#model-info")).to_contain_text("vision")
    _set(page, "0", "24")
    page.set_input_files("#image-input", str(png))
    expect(page.locator("#attachments li[data-kind=image] img")).to_have_count(1)
    page.fill("#message", "What is in this picture?")
    t0 = time.monotonic()
    with page.expect_request("**/v1/chat/completions") as req_info:
        page.click("#send")
    content = json.loads(req_info.value.post_data or "{}")["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is in this picture?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    answer = _answer(page, 0)
    expect(answer).to_have_attribute("data-state", "done")
    print(f"\nvision answer (random tiny model) after {time.monotonic() - t0:.1f} s")
    expect(answer.locator(".meta")).to_contain_text("tokens")
    expect(page.locator(".msg.user img")).to_have_count(1)
    expect(page.locator("#error")).to_be_hidden()

    # The same image to a text-only model: the server's 400 message is shown.
    page.click("#new-chat")
    _use_model(page, "smollm2")
    page.set_input_files("#image-input", str(png))
    page.fill("#message", "Describe this image.")
    page.click("#send")
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=SLOW)
    expect(error).to_contain_text("400")
    expect(error).to_contain_text("does not support image input")
    expect(error).to_contain_text("tiny-qwen2-vl")  # the server names the models that can
    expect(page.locator(".msg.assistant.failed")).to_contain_text("does not support image input")
    expect(page.locator(".msg.user.unsent")).to_have_count(1)
    # (3) The refused message is back in the composer: its text and its image.
    expect(page.locator("#message")).to_have_value("Describe this image.")
    expect(page.locator("#attachments li[data-kind=image]")).to_have_count(1)
    # Image / Audio / Record are off for a text-only model; the tooltip names who can.
    for button, who in (("#attach-image", "tiny-qwen2-vl"), ("#attach-audio", "tiny-omni")):
        expect(page.locator(button)).to_be_disabled()
        expect(page.locator(button)).to_have_attribute(
            "title", re.compile(f"Models that can: .*{who}")
        )
    expect(page.locator("#mic")).to_be_disabled()
    assert "whisper-tiny.en" in (page.get_attribute("#attach-audio", "title") or "")
    page.click("#attachments li[data-kind=image] button")
    # Audio to the text model (a file dropped in; the button is off): refused, kept as well.
    page.set_input_files("#audio-input", str(CLIP))
    page.fill("#message", "What is said here?")
    page.press("#message", "Enter")
    expect(page.locator(".msg.user.unsent")).to_have_count(2)
    expect(page.locator("#error")).to_contain_text("audio")
    expect(page.locator("#message")).to_have_value("What is said here?")
    expect(page.locator("#attachments li[data-kind=audio]")).to_contain_text(CLIP.name)
    page.click("#attachments li[data-kind=audio] button")
    # Recovered: the refused turns are not part of the conversation, text still works.
    _set(page, "0", "12")
    page.fill("#message", "Say hello.")
    page.click("#send")
    expect(_answer(page, 2)).to_have_attribute("data-state", "done")
    expect(page.locator("#error")).to_be_hidden()


def test_too_large_upload_shows_the_413(browser: Browser, tmp_path: Path) -> None:
    """The module's server allows 4 MiB of audio (the server tests' limits): 4.5 MiB is a 413."""
    page = browser.page
    big = tmp_path / "long.wav"
    sf.write(big, np.zeros(int(4.5 * 2**20 / 2), np.int16), 16000, subtype="PCM_16")
    page.click("#new-chat")
    _use_model(page, "whisper-tiny.en")
    page.set_input_files("#audio-input", str(big))
    page.click("#send")
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=SLOW)
    expect(error).to_contain_text("Too large (413)")
    expect(error).to_contain_text("limit")
    expect(error).to_contain_text("shorter recording or a smaller file")
    expect(_answer(page, 0)).to_have_class(re.compile("failed"))
    # Refused before anything was transcribed: the clip is back in the composer.
    expect(page.locator("#attachments li[data-kind=audio]")).to_contain_text(big.name)
    page.click("#attachments li[data-kind=audio] button")


def test_markdown_is_rendered_safely(browser: Browser) -> None:
    render = "(s) => window.mlxkUi.renderMarkdown(s)"
    page = browser.page
    html = page.evaluate(render, "**bold** and `code` and *it*\n\n- a\n- b\n\n```py\nx < 1\n```")
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html and "<em>it</em>" in html
    assert "<ul><li>a</li><li>b</li></ul>" in html
    assert '<pre><code data-lang="py">x &lt; 1</code></pre>' in html
    evil = page.evaluate(
        render,
        '<img src=x onerror="alert(1)"> [x](javascript:alert(1)) <script>alert(2)</script>'
        ' [ok](https://example.org/a?b=1&c="2")',
    )
    assert "<img" not in evil and "<script" not in evil and 'href="javascript' not in evil
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in evil
    assert '<a href="https://example.org/a?b=1&amp;c=&quot;2&quot;"' in evil


def _download(page: Any, locator: Any) -> tuple[str, str]:
    with page.expect_download() as dl:
        locator.click()
    return dl.value.suggested_filename, Path(dl.value.path()).read_text()


def _chat_entry(page: Any, title: str) -> Any:
    return page.locator("#chat-list li").filter(
        has=page.get_by_role("button", name=title, exact=True)
    )


def test_conversations_survive_a_reload_and_new_chat_keeps_the_old_one(browser: Browser) -> None:
    """(1) A chat is kept in the browser: after a reload it is on the page and in the list;
    New chat keeps it there; switch back, rename, export as Markdown and JSON, delete."""
    page = browser.page
    page.click("#new-chat")
    _use_model(page, "smollm2")
    _set(page, "0", "8")
    page.fill("#message", "Name a colour.")
    page.press("#message", "Enter")
    expect(_answer(page, 0)).to_have_attribute("data-state", "done")
    said = page.locator(".msg.assistant .body").inner_text()
    page.reload()
    expect(page.locator("#model option")).not_to_have_count(0)
    expect(page.locator(".msg.user .plain")).to_have_text("Name a colour.")
    expect(page.locator(".msg.assistant .body")).to_have_text(said)
    expect(page.locator("#chats")).to_be_visible()  # open by default on a wide window
    expect(page.locator("#chat-list li.current .chat-open")).to_have_text("Name a colour.")
    listed = page.locator("#chat-list li").count()

    page.click("#new-chat")
    expect(page.locator(".msg")).to_have_count(0)
    expect(_chat_entry(page, "Name a colour.")).to_have_count(1)  # the old one stays
    page.fill("#message", "Say yes.")
    page.press("#message", "Enter")
    expect(_answer(page, 0)).to_have_attribute("data-state", "done")
    expect(page.locator("#chat-list li")).to_have_count(listed + 1)
    expect(page.locator("#chat-list li.current .chat-open")).to_have_text("Say yes.")

    # Switch back, rename, export.
    _chat_entry(page, "Name a colour.").locator(".chat-open").click()
    expect(page.locator(".msg.user .plain")).to_have_text("Name a colour.")
    entry = _chat_entry(page, "Name a colour.")
    entry.get_by_role("button", name="Rename Name a colour.").click()
    page.fill("#chat-list input.chat-rename", "Colours")
    page.press("#chat-list input.chat-rename", "Enter")
    entry = _chat_entry(page, "Colours")
    expect(entry).to_have_count(1)
    name, md = _download(page, entry.get_by_role("button", name="Export Colours as Markdown"))
    assert name == "Colours.md"
    assert md.startswith("# Colours\n") and "## You\n\nName a colour.\n" in md, md
    assert f"## smollm2\n\n{said.strip()[:20]}" in md, md
    name, raw = _download(page, entry.get_by_role("button", name="Export Colours as JSON"))
    data = json.loads(raw)
    assert name == "Colours.json" and data["title"] == "Colours"
    assert [(i["role"], i.get("text")) for i in data["items"]] == [
        ("user", "Name a colour."),
        ("assistant", None),
    ]
    assert (
        data["items"][0]["content"] == "Name a colour." and data["items"][1]["model"] == "smollm2"
    )
    page.reload()  # the new name was kept
    expect(page.locator("#chat-list li.current .chat-open")).to_have_text("Colours")
    # Delete asks once more (a second click).
    entry = _chat_entry(page, "Colours")
    entry.get_by_role("button", name="Delete Colours").click()
    expect(entry.get_by_role("button", name="Delete Colours")).to_have_text("Delete?")
    entry.get_by_role("button", name="Delete Colours").click()
    expect(_chat_entry(page, "Colours")).to_have_count(0)
    expect(page.locator(".msg")).to_have_count(0)  # it was the open one: a new chat
    assert (
        page.evaluate(
            "Object.keys(localStorage).filter(k => k.startsWith('mlxk.chat.') "
            "&& (localStorage.getItem(k) || '').includes('Colours'))"
        )
        == []
    )


def test_enter_while_streaming_queues_and_esc_stops(browser: Browser) -> None:
    """(2) Enter during a streamed answer does not stop it: the new message is queued and sent
    after it. Esc and Stop stop; Regenerate, Edit and the copy buttons. (A stand-in server
    streams slowly, on cue.)"""
    page = browser.page
    page.click("#new-chat")
    _use_model(page, "smollm2")
    words = [f"word{i} " for i in range(10)]
    slow = [_chunk(w) for w in words] + [_chunk(finish="stop"), "[DONE]"]
    with _fake_stream(page, "/v1/chat/completions", slow, delay=0.2) as fake:
        page.fill("#message", "First question")
        page.press("#message", "Enter")
        first = page.locator(".msg.assistant").nth(0)
        expect(first).to_have_attribute("data-state", "streaming")
        expect(page.locator("#stop")).to_be_visible()
        page.fill("#message", "Second question")
        page.press("#message", "Enter")
        expect(page.locator("#queue li")).to_have_count(1)
        expect(page.locator("#message")).to_have_value("")
        expect(first).to_have_attribute("data-state", "done")  # not stopped
        expect(first.locator(".body")).to_have_text("".join(words).strip())
        expect(page.locator("#queue li")).to_have_count(0)
        expect(_answer(page, 1)).to_have_attribute("data-state", "done")
        assert len(fake.bodies) == 2
        sent = json.loads(fake.bodies[1])["messages"]
        assert sent[-3:] == [
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "".join(words)},
            {"role": "user", "content": "Second question"},
        ], sent
        # Regenerate the last answer: the same conversation, asked again.
        page.locator(".msg.assistant").nth(1).get_by_role("button", name="Regenerate").click()
        expect(page.locator(".msg.assistant")).to_have_count(2)
        expect(_answer(page, 1)).to_have_attribute("data-state", "done")
        assert len(fake.bodies) == 3 and json.loads(fake.bodies[2])["messages"] == sent
    # Copy buttons: the answer, and each code block.
    page.locator(".msg.assistant").nth(0).get_by_role("button", name="Copy the answer").click()
    expect(page.locator("#status")).to_contain_text("Copied")

    code = [_chunk("Here:\n\n```py\nprint(1)\n```\n"), _chunk(finish="stop"), "[DONE]"]
    with _fake_stream(page, "/v1/chat/completions", code):
        page.fill("#message", "Code please")
        page.press("#message", "Enter")
        expect(_answer(page, 2).locator(".code button")).to_have_text("Copy code")
    # Esc stops a stream (and so does Stop); what came is kept.
    with _fake_stream(page, "/v1/chat/completions", [_chunk("Partial ")], hold=True) as fake:
        page.fill("#message", "Third question")
        page.press("#message", "Enter")
        third = page.locator(".msg.assistant").nth(3)
        expect(third.locator(".body")).to_contain_text("Partial")
        page.keyboard.press("Escape")
        expect(third).to_have_attribute("data-state", "stopped")
        assert fake.closed.wait(10)
    expect(third.locator(".dim")).to_have_text("(stopped)")
    # Edit a message: it goes back to the box, the turns from it on are removed.
    page.locator(".msg.user").nth(1).get_by_role("button", name="Edit this message").click()
    expect(page.locator("#message")).to_have_value("Second question")
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.assistant")).to_have_count(1)
    page.fill("#message", "")


def test_dictation_puts_the_words_into_the_message_box(browser: Browser) -> None:
    """(4) Dictate records (the fake microphone plays the short clip), the Whisper model of
    Settings transcribes it, the text lands in the message box; the model picker stays."""
    page = browser.page
    page.click("#new-chat")
    _use_model(page, "smollm2")
    page.click("#settings-button")
    expect(page.locator("#stt-model")).to_have_value("whisper-tiny.en")  # the first mlx-audio
    page.keyboard.press("Escape")
    expect(page.locator("#dictate")).to_be_visible()
    page.fill("#message", "")
    page.click("#dictate")  # a click starts, a second click stops
    expect(page.locator("#dictate")).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(5200)
    with page.expect_request("**/v1/audio/transcriptions") as req:
        page.click("#dictate")
    assert req.value.method == "POST"
    expect(page.locator("#message")).to_have_value(re.compile("universe", re.I), timeout=SLOW)
    assert page.input_value("#model") == "smollm2"
    expect(page.locator(".msg")).to_have_count(0)  # nothing was sent
    # Push to talk: held down it records, released it stops.
    page.hover("#dictate")
    page.mouse.down()
    page.wait_for_timeout(1500)
    expect(page.locator("#dictate")).to_have_attribute("aria-pressed", "true")
    with page.expect_request("**/v1/audio/transcriptions"):
        page.mouse.up()
    expect(page.locator("#dictate")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#dictate")).not_to_have_attribute("aria-busy", "true", timeout=SLOW)
    assert page.input_value("#model") == "smollm2"
    page.fill("#message", "")


LIVE_SESSION = {
    "type": "session.update",
    "session": {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "whisper-tiny.en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 800},
            }
        },
    },
}
WATCH_WEBSOCKET = """() => {
  const Real = window.WebSocket;
  window.__ws = [];
  window.WebSocket = function (url, protocols) {
    window.__ws.push([url, protocols]);
    return new Real(url, protocols);
  };
  window.WebSocket.prototype = Real.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
}"""


def test_live_transcription_shows_text_before_stop(browser: Browser) -> None:
    """(5) Live mode against a stand-in Realtime server (Playwright answers the WebSocket): the
    page sends session.update and ~100 ms of 24 kHz PCM16 per append; partial text shows while
    it records; Stop commits and waits for the completed text."""
    page = browser.page
    got: list[dict[str, Any]] = []
    closed = threading.Event()

    def server(ws: Any) -> None:
        def on_message(message: str | bytes) -> None:
            ev = json.loads(message)
            got.append(
                ev
                if ev["type"] != "input_audio_buffer.append"
                else {"type": ev["type"], "n": len(base64.b64decode(ev["audio"]))}
            )
            appends = sum(e["type"] == "input_audio_buffer.append" for e in got)
            item = {"item_id": "item_1", "content_index": 0}
            if ev["type"] == "input_audio_buffer.append" and appends == 3:
                ws.send(
                    json.dumps({"type": "input_audio_buffer.speech_started", "item_id": "item_0"})
                )
                ws.send(
                    json.dumps(
                        {
                            "type": "conversation.item.input_audio_transcription.delta",
                            "item_id": "item_0",
                            "delta": "A man",
                        }
                    )
                )
            if ev["type"] == "input_audio_buffer.append" and appends == 6:
                ws.send(
                    json.dumps(
                        {
                            "type": "conversation.item.input_audio_transcription.delta",
                            "item_id": "item_0",
                            "delta": " said",
                        }
                    )
                )
                ws.send(
                    json.dumps({"type": "input_audio_buffer.speech_stopped", "item_id": "item_0"})
                )
                ws.send(
                    json.dumps(
                        {
                            "type": "conversation.item.input_audio_transcription.completed",
                            "item_id": "item_0",
                            "transcript": "A man said to the universe,",
                        }
                    )
                )
                ws.send(
                    json.dumps(
                        {
                            "type": "conversation.item.input_audio_transcription.delta",
                            **item,
                            "delta": "Sir, I",
                        }
                    )
                )
            if ev["type"] == "input_audio_buffer.commit":
                ws.send(json.dumps({"type": "input_audio_buffer.committed", "item_id": "item_1"}))
                ws.send(
                    json.dumps(
                        {
                            "type": "conversation.item.input_audio_transcription.completed",
                            **item,
                            "transcript": "Sir, I exist.",
                        }
                    )
                )

        ws.on_message(on_message)
        ws.on_close(lambda *_: closed.set())

    page.route_web_socket(re.compile(r".*/v1/realtime\?intent=transcription$"), server)
    page.reload()
    page.evaluate(WATCH_WEBSOCKET)
    page.click("#new-chat")
    _use_model(page, "whisper-tiny.en")
    expect(page.locator("#dictate")).to_be_hidden()
    page.click("#live")
    expect(page.locator("#live")).to_have_attribute("aria-pressed", "true")
    bubble = page.locator(".msg.assistant.live")
    expect(bubble.locator(".live-turn").nth(0)).to_have_text("A man said to the universe,")
    expect(bubble.locator(".live-turn").nth(1)).to_have_text("Sir, I")  # partial, before stop
    expect(page.locator("#live")).to_have_attribute("aria-pressed", "true")  # still recording
    page.click("#live")
    expect(bubble).to_have_attribute("data-state", "done")
    expect(bubble.locator(".live-turn").nth(1)).to_have_text("Sir, I exist.")
    expect(page.locator("#live")).to_have_attribute("aria-pressed", "false")
    assert closed.wait(10), "the page kept the socket open"
    url, protocols = page.evaluate("window.__ws")[0]
    assert url.endswith("/v1/realtime?intent=transcription") and url.startswith("ws://")
    assert protocols == ["realtime", f"openai-insecure-api-key.{KEY}"]
    assert got[0] == LIVE_SESSION
    sizes = [e["n"] for e in got if e["type"] == "input_audio_buffer.append"]
    assert len(sizes) >= 6 and all(n == 4800 for n in sizes[:-1]), sizes  # 100 ms at 24 kHz
    assert got[-1] == {"type": "input_audio_buffer.commit"}
    # The transcript tools work on the live transcript too.
    name, txt = _download(page, bubble.locator("button[data-format=txt]"))
    assert name == "live.txt" and txt == "A man said to the universe, Sir, I exist.\n"


def test_live_transcription_with_the_real_server(browser: Browser, server: Server) -> None:
    """(5, live) The real /v1/realtime with Whisper tiny.en: a second Chromium whose fake
    microphone plays the royal-cavern clip; its words show before Stop."""
    chromium = browser.pw.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[a for a in BROWSER_ARGS if "fake-audio-capture" not in a]
        + [f"--use-file-for-fake-audio-capture={OTHER_CLIP}"],
    )
    try:
        ctx = chromium.new_context(
            permissions=["microphone"], viewport={"width": 1100, "height": 860}
        )
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.evaluate(f"localStorage.setItem('mlxk.apiKey', {KEY!r})")
        page.reload()
        _use_model(page, "whisper-tiny.en")
        t0 = time.monotonic()
        page.click("#live")
        bubble = page.locator(".msg.assistant.live")
        first = bubble.locator(".live-turn").first
        expect(first).to_contain_text(re.compile("having|returned", re.I), timeout=60_000)
        heard = bubble.locator(".live-turns").inner_text()
        expect(page.locator("#live")).to_have_attribute("aria-pressed", "true")  # before Stop
        print(f"\nlive: text after {time.monotonic() - t0:.1f} s, before Stop: {heard!r}")
        page.wait_for_timeout(max(0, 7000 - 1000 * (time.monotonic() - t0)))  # ~7 s of speech
        page.click("#live")
        expect(bubble).to_have_attribute("data-state", re.compile("done|error"), timeout=15_000)
        expect(bubble).to_have_attribute("data-state", "done")
        final = bubble.locator(".live-turns").inner_text().lower()
        print(f"live: final after Stop: {final!r}")
        # The last turn's final text comes within 3 s of Stop (on a busy CPU it may not: then
        # the turns before it are what stays).
        assert final.startswith("having returned"), final
        assert errors == []
        ctx.close()
    finally:
        chromium.close()


def test_keyboard_record_and_settings_close(browser: Browser) -> None:
    """(7) Keyboard only: Tab to Record, Space starts, Space stops, and the focus stays on the
    button. Settings close on Esc and on a click outside, and do not cover the message box."""
    page = browser.page
    page.click("#new-chat")
    _use_model(page, "whisper-tiny.en")
    page.focus("#attach-audio")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "mic"
    page.keyboard.press("Space")
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("document.activeElement.id") == "mic"
    page.wait_for_timeout(1200)
    page.keyboard.press("Space")
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#attachments li[data-kind=audio]")).to_have_count(1)
    assert page.evaluate("document.activeElement.id") == "mic"
    page.click("#attachments li[data-kind=audio] button")

    page.click("#settings-button")
    panel = page.locator("#settings")
    expect(panel).to_be_visible()
    box, message = panel.bounding_box(), page.locator("#message").bounding_box()
    assert box and message and box["y"] + box["height"] <= message["y"], (box, message)
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "settings-button"
    page.click("#settings-button")
    expect(panel).to_be_visible()
    page.click("#log", position={"x": 20, "y": 20})
    expect(panel).to_be_hidden()


def test_phone_layout(browser: Browser) -> None:
    """390×844: short picker labels, header and bubble headers on one line, nothing wider than
    the screen."""
    page = browser.page
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        _use_model(page, "smollm2")
        labels = page.locator("#model option").all_inner_texts()
        assert labels and all(" — " not in t for t in labels), labels
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        heights = page.evaluate(
            """() => [...document.querySelectorAll('.bar button, .msg > header, .tools button')]
              .filter(e => e.offsetParent).map(e => [e.id || e.className, e.getBoundingClientRect().height])"""
        )
        assert heights and all(hgt < 40 for _, hgt in heights), heights
        tops = page.evaluate(
            "() => [...document.querySelectorAll('.brand, .bar-actions')].map(e => e.getBoundingClientRect().top)"
        )
        assert max(tops) - min(tops) < 12, tops  # brand and buttons share a line
    finally:
        page.set_viewport_size({"width": 1100, "height": 860})
    expect(page.locator("#model option").first).to_contain_text(" — ")


def test_html_error_page_is_shown_as_text(browser: Browser) -> None:
    """A proxy's HTML error page (502) is shown as its text, never as markup."""
    page = browser.page
    page.click("#new-chat")
    _use_model(page, "smollm2")
    html = (
        "<html><head><title>502 Bad Gateway</title><style>h1{color:red}</style></head>"
        "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
        "<script>window.__pwned = 1</script></body></html>"
    )
    page.route(
        "**/v1/chat/completions",
        lambda r: r.fulfill(status=502, content_type="text/html", body=html),
    )
    try:
        page.fill("#message", "Hello?")
        page.press("#message", "Enter")
        expect(page.locator("#error")).to_be_visible()
    finally:
        page.unroute("**/v1/chat/completions")
    message = page.locator("#error-message").inner_text()
    assert message == "502 Bad Gateway nginx", message
    assert page.locator("#error h1, .msg h1").count() == 0
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("#message")).to_have_value("Hello?")
    page.fill("#message", "")
    page.click("#error-close")


def test_controls_are_labelled_and_nothing_broke(browser: Browser) -> None:
    page = browser.page
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=file]), select, textarea, button')]
          .filter(e => !e.closest('[hidden]'))
          .filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label')
                         || (e.tagName === 'BUTTON' && e.textContent.trim())))
          .map(e => e.id || e.outerHTML.slice(0, 60))"""
    )
    assert unlabelled == []
    # Keyboard: the picker and its reload button are neighbours in the tab order.
    page.focus("#refresh")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "model"
    # No script errors and no Content-Security-Policy violations in the whole session.
    assert browser.errors == []
    assert not [c for c in browser.console if "Content Security Policy" in c], browser.console
    refused = re.compile(r"Failed to load resource: .* status of (400|401|413|502) ")
    unexpected = [c for c in browser.console if c.startswith("error") and not refused.search(c)]
    assert unexpected == [], browser.console
