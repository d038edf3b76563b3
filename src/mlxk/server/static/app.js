/* mlxk web UI: chat, images and speech against this server's OpenAI-compatible API.
 *
 * Plain JavaScript, no dependencies, nothing fetched from elsewhere. This one file is loaded
 * twice: as the page's script, and as the AudioWorklet module that captures microphone PCM
 * (so the Content-Security-Policy can stay at 'self' without a separate worklet file).
 */
(function () {
  "use strict";

  // ---------------------------------------------------------------- AudioWorklet side
  if (typeof registerProcessor === "function" && typeof AudioWorkletProcessor === "function") {
    const BATCH = 4096;
    class Capture extends AudioWorkletProcessor {
      constructor() {
        super();
        this.buf = new Float32Array(BATCH);
        this.fill = 0;
        this.port.onmessage = (e) => {
          if (e.data === "flush") {
            if (this.fill) this.port.postMessage(this.buf.slice(0, this.fill));
            this.fill = 0;
            this.port.postMessage("flushed");
          }
        };
      }
      process(inputs) {
        const input = inputs[0];
        if (!input || !input.length || !input[0]) return true;
        const n = input[0].length;
        const channels = input.length;
        for (let i = 0; i < n; i++) {
          let v = 0;
          for (let c = 0; c < channels; c++) v += input[c][i];
          this.buf[this.fill++] = v / channels; // mono: the mean of the channels
          if (this.fill === BATCH) {
            this.port.postMessage(this.buf);
            this.buf = new Float32Array(BATCH);
            this.fill = 0;
          }
        }
        return true;
      }
    }
    registerProcessor("mlxk-capture", Capture);
    return;
  }

  // ---------------------------------------------------------------- page side
  const SCRIPT_URL = (document.currentScript && document.currentScript.src) || "/ui/app.js";
  const KEY_STORE = "mlxk.apiKey";
  const MODEL_STORE = "mlxk.model";
  const SETTINGS_STORE = "mlxk.settings";
  // Conversations: an index and one entry per conversation. localStorage belongs to the
  // page's origin, so each server (scheme, host, port) has its own list.
  const CHATS_STORE = "mlxk.chats";
  const CHAT_PREFIX = "mlxk.chat.";
  const CURRENT_STORE = "mlxk.chat.current";
  const MEDIA_KEEP = 256 * 1024; // images / clips up to this size (base64) are kept with a chat
  const TARGET_RATE = 16000;
  const LIVE_RATE = 24000; // the Realtime API's audio/pcm rate
  const LIVE_CHUNK = 2400; // samples per input_audio_buffer.append: 100 ms at 24 kHz
  const AUDIO_FORMATS = ["wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "webm", "aiff"];

  const $ = (id) => document.getElementById(id);
  const el = {};
  for (const id of [
    "model", "refresh", "model-info", "new-chat", "key-button", "auth", "auth-message",
    "auth-form", "api-key", "forget-key", "log", "empty", "error", "error-title",
    "error-message", "error-close", "attachments", "composer", "message", "attach-image",
    "image-input", "attach-audio", "audio-input", "mic", "mic-label", "rec", "rec-time",
    "rec-level", "temperature", "max-tokens", "system", "send", "stop", "status",
    "chats", "chats-button", "chats-close", "chat-list", "settings", "settings-button",
    "stt-model", "queue", "dictate", "dictate-label", "live", "live-label", "stt-options",
    "language", "translate",
  ]) el[id] = $(id);

  const state = {
    key: storeGet(KEY_STORE) || "",
    models: [],
    conv: null, // {id, title, created, updated, items: [...]} — see "conversations"
    attachments: [], // {kind: "image"|"audio", name, blob, url, format, seconds}
    queue: [], // messages typed while an answer streams: {text, atts}
    busy: false,
    abort: null,
    recorder: null, // the open microphone: {owner: "mic"|"dictate"|"live", ...}
    starting: null, // the promise of a microphone being opened
    live: null, // the live transcription session
  };
  // ------------------------------------------------------------ small helpers
  function storeGet(k) {
    try { return window.localStorage.getItem(k); } catch (_) { return null; }
  }
  function storeSet(k, v) {
    try {
      if (v === null || v === undefined || v === "") window.localStorage.removeItem(k);
      else window.localStorage.setItem(k, v);
    } catch (_) { /* storage disabled: the key lasts for this page only */ }
  }
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function fmtSeconds(s) {
    const m = Math.floor(s / 60);
    const rest = (s - m * 60).toFixed(1).padStart(4, "0");
    return `${m}:${rest}`;
  }
  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} kB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }
  function setStatus(text) { el.status.textContent = text || ""; }
  function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }
  function newId() {
    return Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  }
  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = h("a", { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  }
  function fileSafe(s) {
    return (String(s || "chat").replace(/[^\w.-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60)) || "chat";
  }
  async function copyText(text, button) {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (_) { // no clipboard API (or not allowed): the old way
      const ta = h("textarea", { class: "visually-hidden", "aria-hidden": "true" });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
      ta.remove();
    }
    if (button) {
      const was = button.dataset.label || button.textContent;
      button.dataset.label = was;
      button.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(() => { button.textContent = was; }, 1500);
    }
    setStatus(ok ? "Copied to the clipboard." : "The browser did not allow copying.");
    return ok;
  }
  function copyButton(label, getText, aria) {
    const b = h("button", { type: "button", class: "small", text: label, "aria-label": aria || label });
    b.addEventListener("click", () => copyText(getText(), b));
    return b;
  }
  function bytesToBase64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }
  function base64ToBlob(b64, type) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type });
  }
  // Grow the message box with its text (up to 40% of the window, then it scrolls).
  function grow() {
    const m = el.message;
    m.style.height = "auto";
    m.style.height = `${Math.min(m.scrollHeight + 2, Math.max(80, window.innerHeight * 0.4))}px`;
  }
  function setMessage(text) {
    el.message.value = text;
    grow();
  }

  // ------------------------------------------------------------ Markdown (escape first)
  function escapeHtml(s) {
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  // Inline formatting on already-escaped text: only fixed tags are added.
  function inline(text) {
    const kept = [];
    const keep = (html) => `\u0000${kept.push(html) - 1}\u0000`;
    let s = text.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${code}</code>`));
    s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, (_, label, url) =>
      keep(`<a href="${url}" target="_blank" rel="noopener noreferrer nofollow">${label}</a>`));
    s = s.replace(/(^|[\s(])(https?:\/\/[^\s<)]+[^\s<).,;:!?])/g, (_, pre, url) =>
      pre + keep(`<a href="${url}" target="_blank" rel="noopener noreferrer nofollow">${url}</a>`));
    s = s.replace(/\*\*(?=\S)([^\n]*?\S)\*\*/g, "<strong>$1</strong>");
    s = s.replace(/(^|[^\w])__(?=\S)([^\n]*?\S)__(?!\w)/g, "$1<strong>$2</strong>");
    s = s.replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/g, "$1<em>$2</em>");
    s = s.replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>");
    s = s.replace(/~~(?=\S)([^\n]*?\S)~~/g, "<del>$1</del>");
    return s.replace(/\u0000(\d+)\u0000/g, (_, i) => kept[Number(i)]);
  }

  const RE = {
    fence: /^\s*(```|~~~)\s*([\w+#.-]*)\s*$/,
    heading: /^(#{1,6})\s+(.*?)\s*#*\s*$/,
    rule: /^\s*([-*_])(\s*\1){2,}\s*$/,
    quote: /^\s*&gt;\s?(.*)$/,
    ul: /^(\s*)[-*+]\s+(.*)$/,
    ol: /^(\s*)(\d{1,9})[.)]\s+(.*)$/,
    tableSep: /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/,
  };

  function cells(line) {
    return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => inline(c.trim()));
  }

  function blocks(lines) {
    const out = [];
    let i = 0;
    const startsBlock = (l) => RE.fence.test(l) || RE.heading.test(l) || RE.rule.test(l) ||
      RE.quote.test(l) || RE.ul.test(l) || RE.ol.test(l);
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (!line.trim()) { i++; continue; }
      if ((m = line.match(RE.fence))) {
        const code = [];
        i++;
        while (i < lines.length && !new RegExp(`^\\s*${m[1]}\\s*$`).test(lines[i])) code.push(lines[i++]);
        i++; // the closing fence (absent while a reply is still streaming)
        const lang = m[2] ? ` data-lang="${m[2]}"` : "";
        out.push(`<pre><code${lang}>${code.join("\n")}</code></pre>`);
        continue;
      }
      if ((m = line.match(RE.heading))) {
        const level = Math.min(6, m[1].length + 2); // the page has h1/h2 itself
        out.push(`<h${level}>${inline(m[2])}</h${level}>`);
        i++;
        continue;
      }
      if (RE.rule.test(line)) { out.push("<hr>"); i++; continue; }
      if (RE.quote.test(line)) {
        const inner = [];
        while (i < lines.length && (m = lines[i].match(RE.quote))) { inner.push(m[1]); i++; }
        out.push(`<blockquote>${blocks(inner)}</blockquote>`);
        continue;
      }
      if (RE.ul.test(line) || RE.ol.test(line)) {
        const ordered = RE.ol.test(line);
        const re = ordered ? RE.ol : RE.ul;
        const items = [];
        const first = line.match(re);
        while (i < lines.length) {
          const cur = lines[i];
          if ((m = cur.match(re))) { items.push(m[ordered ? 3 : 2]); i++; continue; }
          // an indented continuation line belongs to the item before it
          if (items.length && /^\s{2,}\S/.test(cur) && !startsBlock(cur)) {
            items[items.length - 1] += "\n" + cur.trim();
            i++;
            continue;
          }
          break;
        }
        const lis = items.map((t) => `<li>${inline(t).replace(/\n/g, "<br>")}</li>`).join("");
        const start = ordered && first[2] !== "1" ? ` start="${Number(first[2])}"` : "";
        out.push(ordered ? `<ol${start}>${lis}</ol>` : `<ul>${lis}</ul>`);
        continue;
      }
      if (line.includes("|") && i + 1 < lines.length && RE.tableSep.test(lines[i + 1])) {
        const head = cells(line);
        i += 2;
        const rows = [];
        while (i < lines.length && lines[i].includes("|") && lines[i].trim()) rows.push(cells(lines[i++]));
        const th = head.map((c) => `<th>${c}</th>`).join("");
        const trs = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("");
        out.push(`<div class="table"><table><thead><tr>${th}</tr></thead><tbody>${trs}</tbody></table></div>`);
        continue;
      }
      const para = [line];
      i++;
      while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) para.push(lines[i++]);
      out.push(`<p>${para.map(inline).join("<br>")}</p>`);
    }
    return out.join("");
  }

  // Markdown → HTML. Everything is HTML-escaped *before* any markup is added, links are
  // http(s) only, so model output can never inject elements, attributes or script.
  function renderMarkdown(src) {
    const clean = String(src).replace(/\r\n?/g, "\n").replace(/\u0000/g, "\ufffd");
    return blocks(escapeHtml(clean).split("\n"));
  }

  // ------------------------------------------------------------ errors
  const TITLES = {
    400: "The server refused the request (400):",
    401: "API key missing or wrong (401):",
    403: "Forbidden (403):",
    404: "Not found (404):",
    413: "Too large (413):",
    500: "Server error (500):",
    503: "The server is busy (503):",
    507: "Not enough memory for this model (507):",
  };
  const HINTS = {
    413: " Send a shorter recording or a smaller file.",
    507: " Free memory on the server (other models, other programs) or pick a smaller model.",
  };

  class ApiError extends Error {
    constructor(status, message, code, retryAfter) {
      super(message);
      this.status = status;
      this.code = code || null;
      this.retryAfter = retryAfter || null;
    }
  }

  // An error that comes as an event after the stream started (the 200 was already sent):
  // its type says which status it would have had.
  const TYPE_STATUS = {
    invalid_request_error: 400, authentication_error: 401, permission_error: 403,
    not_found_error: 404, request_too_large: 413, rate_limit_error: 429, server_error: 500,
    server_busy: 503, insufficient_storage: 507,
  };
  function streamError(e) {
    const status = TYPE_STATUS[e && e.type] || 500;
    return new ApiError(status, (e && e.message) || "the stream failed", e && e.code);
  }

  // The text of an HTML page (parsed inert: no script runs, nothing is fetched).
  function htmlText(src) {
    try {
      // Scripts, styles and style attributes go first: not text, and the page's CSP would
      // report inline style even in a document that is never shown.
      const bare = src.replace(/<(script|style|noscript|template)\b[\s\S]*?<\/\1\s*>/gi, " ")
        .replace(/\sstyle\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)/gi, "");
      const doc = new DOMParser().parseFromString(bare, "text/html");
      for (const n of Array.from(doc.querySelectorAll("script, style, noscript, template"))) n.remove();
      const title = (doc.title || "").replace(/\s+/g, " ").trim();
      const words = [];
      if (doc.body) {
        const walk = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) words.push(walk.currentNode.nodeValue);
      }
      const body = words.join(" ").replace(/\s+/g, " ").trim();
      if (!title) return body;
      return body.startsWith(title) ? body : `${title}: ${body}`.replace(/: $/, "");
    } catch (_) {
      return src.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
    }
  }

  async function apiError(res) {
    let message = res.statusText || "request failed";
    let code = null;
    try {
      const text = await res.text();
      try {
        const body = JSON.parse(text);
        if (body && body.error && body.error.message) {
          message = body.error.message;
          code = body.error.code;
        } else if (body && body.detail) {
          message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
        }
      } catch (_) {
        // Not JSON: a proxy's HTML error page is shown as its text, never as markup.
        const html = /^\s*</.test(text) || (res.headers.get("Content-Type") || "").includes("html");
        const plain = html ? htmlText(text) : text.trim();
        if (plain) message = plain.slice(0, 500);
      }
    } catch (_) { /* body unreadable: keep the status text */ }
    return new ApiError(res.status, message, code, res.headers.get("Retry-After"));
  }

  function describe(err) {
    if (err instanceof ApiError) {
      const title = TITLES[err.status] || `Error ${err.status}:`;
      let msg = err.message + (HINTS[err.status] || "");
      if (err.status === 503 && err.retryAfter) msg += ` Try again in ${err.retryAfter} s.`;
      return { title, message: msg };
    }
    if (err && err.name === "AbortError") return { title: "Stopped.", message: "" };
    return {
      title: "Could not reach the server:",
      message: `${(err && err.message) || err} (is mlxk serve still running?)`,
    };
  }

  function showError(err, tried) {
    const d = typeof err === "string" ? { title: "", message: err } : describe(err);
    el["error-title"].textContent = d.title;
    el["error-message"].textContent = d.message;
    el.error.hidden = false;
    if (err instanceof ApiError && err.status === 401) askForKey(err.message, tried);
    return d;
  }
  function clearError() { el.error.hidden = true; }

  // ------------------------------------------------------------ API
  function api(path, init, key) {
    const opts = Object.assign({}, init || {});
    const headers = new Headers(opts.headers || {});
    const k = key === undefined ? state.key : key;
    if (k) headers.set("Authorization", `Bearer ${k}`);
    opts.headers = headers;
    return fetch(path, opts);
  }

  // ------------------------------------------------------------ API key
  function askForKey(serverMessage, tried) {
    el.auth.hidden = false;
    el["key-button"].setAttribute("aria-expanded", "true");
    const wrong = tried || state.key;
    el["auth-message"].textContent = wrong
      ? `The server did not accept the API key (401: ${serverMessage}). Enter the right key.`
      : "This server needs an API key. Enter it to use the models " +
        "(mlxk serve --api-key KEY was given one).";
    el["auth-message"].className = "auth-message " + (wrong ? "bad" : "ask");
    el["api-key"].focus();
  }
  function hideAuth() {
    el.auth.hidden = true;
    el["key-button"].setAttribute("aria-expanded", "false");
  }

  // ------------------------------------------------------------ models
  function kindOf(m) {
    const caps = m.capabilities || [];
    if (m.backend === "mlx-audio" || (caps.includes("audio") && !caps.includes("chat"))) return "stt";
    if (!caps.includes("chat") && !caps.includes("text-generation")) return "other";
    return "chat";
  }
  function current() {
    return state.models.find((m) => m.id === el.model.value) || null;
  }
  function takes(m, what) {
    const caps = (m && m.capabilities) || [];
    if (!m) return false;
    if (what === "image") return kindOf(m) === "chat" && caps.includes("vision");
    return kindOf(m) === "stt" || (kindOf(m) === "chat" && caps.includes("audio"));
  }
  function sttModels() { return state.models.filter((m) => kindOf(m) === "stt"); }
  function sttModel() {
    return sttModels().find((m) => m.id === el["stt-model"].value) || sttModels()[0] || null;
  }
  function hintFor(m) {
    const caps = m.capabilities || [];
    switch (kindOf(m)) {
      case "stt":
        return "Speech to text: record or attach audio, then Send — the transcript streams in segment by segment, with timestamps and progress. Live transcribes while you speak.";
      case "other":
        return "Not a chat model (embeddings): use it through the API.";
      default:
        if (caps.includes("vision") && caps.includes("audio")) return "Chat with text, images and audio.";
        if (caps.includes("vision")) return "Chat; attach images to ask about them.";
        if (caps.includes("audio")) return "Chat; record or attach audio.";
        return "Text chat.";
    }
  }

  // The picker's labels: the id and its capabilities, only the id on a narrow screen.
  const NARROW = window.matchMedia ? window.matchMedia("(max-width: 640px)") : { matches: false };
  function optionLabel(m) {
    const caps = (m.capabilities || []).filter((c) => c !== "text-generation").join(", ");
    if (NARROW.matches) return m.id;
    return caps ? `${m.id} — ${caps}` : m.id;
  }
  function relabel() {
    for (const opt of Array.from(el.model.options)) {
      const m = state.models.find((x) => x.id === opt.value);
      if (m) opt.textContent = optionLabel(m);
    }
  }

  // Image / Audio / Record follow what the picked model can take; the tooltip names the
  // models that can.
  function updateTools() {
    const m = current();
    const stt = Boolean(m && kindOf(m) === "stt");
    const names = (what) => state.models.filter((x) => takes(x, what)).map((x) => x.id);
    const set = (btn, ok, what, usual) => {
      btn.disabled = !ok;
      const can = names(what);
      btn.title = ok ? usual : `${m ? m.id : "This model"} cannot take ${what === "image" ? "images" : "audio"}. ` +
        (can.length ? `Models that can: ${can.join(", ")}` : "No model on this server can.");
    };
    set(el["attach-image"], takes(m, "image"), "image", "Attach an image (vision models)");
    set(el["attach-audio"], takes(m, "audio"), "audio", "Attach an audio file");
    if (!state.recorder || state.recorder.owner !== "mic") {
      set(el.mic, takes(m, "audio"), "audio", "Record a clip to send (audio models)");
    }
    el.dictate.hidden = stt || !sttModels().length;
    el.live.hidden = !stt;
    const caps = (m && m.capabilities) || [];
    const multilingual = stt && caps.includes("audio-translate-en");
    el["stt-options"].hidden = !multilingual;
    el.language.disabled = el.translate.checked;
  }

  function showModelInfo() {
    const m = current();
    el["model-info"].replaceChildren();
    updateTools();
    if (!m) return;
    const caps = (m.capabilities || []).map((c) => h("span", { class: `badge cap-${c}`, text: c }));
    const facts = [m.backend, m.context_length ? `${m.context_length.toLocaleString("en")} ctx` : null,
      m.loaded ? (m.pinned ? "loaded · pinned" : "loaded") : "not loaded"].filter(Boolean).join(" · ");
    el["model-info"].append(
      h("span", { class: "caps", "aria-label": "capabilities" }, ...caps),
      h("span", { class: "facts", text: facts }),
      h("span", { class: "mode", text: hintFor(m) }),
    );
    el.message.placeholder = kindOf(m) === "stt"
      ? "Optional: words to guide the transcription (Whisper's prompt)"
      : `Message ${m.id}`;
  }

  function fillSttPicker() {
    const list = sttModels();
    const wanted = el["stt-model"].value || el["stt-model"].dataset.wanted || "";
    el["stt-model"].replaceChildren(...list.map((m) => h("option", { value: m.id, text: m.id })));
    if (!list.length) el["stt-model"].append(h("option", { value: "", text: "(no Whisper model on this server)" }));
    if (list.some((m) => m.id === wanted)) el["stt-model"].value = wanted;
  }

  // `key`: a key to try (it is kept only once the server accepts it).
  async function loadModels(quiet, key) {
    if (!quiet) setStatus("Loading the model list…");
    let res;
    try {
      res = await api("/v1/models", {}, key);
    } catch (e) {
      showError(e);
      setStatus("");
      return false;
    }
    if (!res.ok) {
      const err = await apiError(res);
      if (err.status === 401) { showError(err, key); } else if (!quiet) showError(err);
      setStatus(err.status === 401 ? "Waiting for an API key." : "");
      return false;
    }
    hideAuth();
    if (!quiet) clearError();
    const body = await res.json();
    state.models = Array.isArray(body.data) ? body.data : [];
    const wanted = el.model.value || storeGet(MODEL_STORE);
    el.model.replaceChildren();
    for (const m of state.models) {
      const opt = h("option", { value: m.id, text: optionLabel(m) });
      if (kindOf(m) === "other") opt.disabled = true;
      el.model.append(opt);
    }
    const usable = state.models.filter((m) => kindOf(m) !== "other");
    if (wanted && usable.some((m) => m.id === wanted)) el.model.value = wanted;
    else if (usable.length) el.model.value = usable[0].id;
    fillSttPicker();
    showModelInfo();
    if (!quiet) {
      setStatus(state.models.length
        ? `${plural(state.models.length, "model")} on this server.`
        : "No runnable models on this server (mlxk list shows what is there).");
    }
    return true;
  }

  // ------------------------------------------------------------ attachments
  function audioFormat(name, type) {
    const ext = (name.split(".").pop() || "").toLowerCase();
    if (AUDIO_FORMATS.includes(ext)) return ext;
    if (ext === "aif") return "aiff";
    const sub = (type.split("/")[1] || "").replace(/^x-/, "").replace("mpeg", "mp3").replace("wave", "wav");
    return AUDIO_FORMATS.includes(sub) ? sub : "wav"; // the server sniffs the real container
  }

  function addAttachment(a) {
    if (!a.url) a.url = URL.createObjectURL(a.blob);
    state.attachments.push(a);
    renderAttachments();
  }
  function removeAttachment(a) {
    state.attachments = state.attachments.filter((x) => x !== a);
    renderAttachments();
  }
  function renderAttachments() {
    el.attachments.replaceChildren();
    for (const a of state.attachments) {
      const label = a.kind === "image" ? `image ${a.name}` : `audio ${a.name}`;
      const preview = a.kind === "image"
        ? h("img", { src: a.url, alt: "" })
        : h("span", { class: "att-icon", "aria-hidden": "true", text: "♪" });
      const info = a.kind === "audio" && a.seconds ? `${a.seconds.toFixed(1)} s · ${fmtBytes(a.blob.size)}` : fmtBytes(a.blob.size);
      el.attachments.append(h("li", { class: `att att-${a.kind}`, "data-kind": a.kind },
        preview,
        h("span", { class: "att-name", text: a.name }),
        h("span", { class: "att-info", text: info }),
        h("button", {
          type: "button", class: "icon", "aria-label": `Remove ${label}`, text: "✕",
          onclick: () => removeAttachment(a),
        })));
    }
  }

  function addFiles(files) {
    for (const f of files) {
      if (f.type.startsWith("image/")) {
        addAttachment({ kind: "image", name: f.name || "pasted image", blob: f });
      } else if (f.type.startsWith("audio/") || f.type === "video/webm" ||
                 AUDIO_FORMATS.includes((f.name.split(".").pop() || "").toLowerCase())) {
        addAttachment({ kind: "audio", name: f.name || "audio", blob: f, format: audioFormat(f.name, f.type) });
      } else {
        showError(`${f.name || "This file"} is neither an image nor audio.`);
      }
    }
  }

  function readDataUrl(blob) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(String(r.result));
      r.onerror = () => reject(r.error);
      r.readAsDataURL(blob);
    });
  }
  async function base64Of(blob) {
    const url = await readDataUrl(blob);
    return url.slice(url.indexOf(",") + 1);
  }

  // ------------------------------------------------------------ conversations
  // An item of a conversation is one of
  //   {role: "user", text, content, atts: [{kind, name, seconds, format}]}  (content: OpenAI's)
  //   {role: "assistant", model, content, meta, stopped}
  //   {role: "transcript", model, name, seconds, text, segments: [{id, start, end, text}],
  //    duration, language, translated, live}
  // User and assistant items are the chat history; transcripts are shown, not sent.
  // In memory a user item's atts also hold the blobs (and object URLs) of this page.
  function freshConv() {
    return { id: newId(), title: "", created: Date.now(), updated: Date.now(), items: [] };
  }
  function convIndex() {
    try {
      const list = JSON.parse(storeGet(CHATS_STORE) || "[]");
      return Array.isArray(list) ? list.filter((c) => c && typeof c.id === "string") : [];
    } catch (_) { return []; }
  }
  function readConv(id) {
    try {
      const c = JSON.parse(storeGet(CHAT_PREFIX + id) || "null");
      return c && Array.isArray(c.items) ? c : null;
    } catch (_) { return null; }
  }
  function titleOf(c) {
    if (c.title) return c.title;
    for (const it of c.items) {
      const t = it.role === "user" ? it.text : it.role === "transcript" ? `Transcript: ${it.text || it.name}` : "";
      if (t && t.trim()) return t.trim().replace(/\s+/g, " ").slice(0, 60);
    }
    const att = c.items.find((it) => it.atts && it.atts.length);
    return att ? `${att.atts[0].kind} ${att.atts[0].name}` : "New chat";
  }
  // What is written to storage: media parts small enough stay, larger ones become a note.
  function storable(it, keep) {
    const out = Object.assign({}, it);
    const meta = (a) => ({ kind: a.kind, name: a.name, seconds: a.seconds || null, format: a.format || null });
    if (it.atts) out.atts = it.atts.map(meta);
    if (it.clip) out.clip = meta(it.clip);
    if (Array.isArray(it.content)) {
      out.content = it.content.map((p) => {
        const size = p.type === "image_url" ? p.image_url.url.length : p.type === "input_audio" ? p.input_audio.data.length : 0;
        if (size > keep) return { type: "text", text: p.type === "image_url" ? "[an image]" : "[an audio clip]" };
        return p;
      });
    }
    return out;
  }
  function saveConv(c) {
    c = c || state.conv;
    if (!c || !c.items.length) return; // an empty conversation is not listed
    c.updated = Date.now();
    const body = (keep) => JSON.stringify({
      id: c.id, title: c.title, created: c.created, updated: c.updated,
      items: c.items.map((it) => storable(it, keep)),
    });
    let ok = false;
    for (const keep of [MEDIA_KEEP, 0]) { // full: then without media
      try { window.localStorage.setItem(CHAT_PREFIX + c.id, body(keep)); ok = true; break; } catch (_) { /* quota */ }
    }
    if (!ok) { setStatus("This conversation could not be kept: the browser's storage is full (delete old chats)."); return; }
    const list = convIndex().filter((x) => x.id !== c.id);
    list.unshift({ id: c.id, title: titleOf(c), updated: c.updated });
    storeSet(CHATS_STORE, JSON.stringify(list));
    storeSet(CURRENT_STORE, c.id);
    renderChatList();
  }
  function history(c) {
    return c.items.filter((it) => it.role === "user" || it.role === "assistant")
      .map((it) => ({ role: it.role, content: it.content }));
  }

  function renderChatList() {
    const list = convIndex();
    const cur = state.conv && state.conv.id;
    el["chat-list"].replaceChildren();
    if (!list.length) el["chat-list"].append(h("li", { class: "dim", text: "No conversations yet." }));
    for (const c of list) {
      const title = c.title || "New chat";
      const open = h("button", {
        type: "button", class: "chat-open", text: title, "aria-current": c.id === cur ? "true" : null,
        title: `${title} · ${new Date(c.updated).toLocaleString()}`, onclick: () => switchTo(c.id),
      });
      const del = h("button", { type: "button", class: "small", text: "Delete", "aria-label": `Delete ${title}` });
      del.addEventListener("click", () => {
        if (del.dataset.armed) { deleteConv(c.id); return; }
        del.dataset.armed = "1";
        del.textContent = "Delete?";
        del.classList.add("warn");
        setTimeout(() => { delete del.dataset.armed; del.textContent = "Delete"; del.classList.remove("warn"); }, 4000);
      });
      el["chat-list"].append(h("li", { class: c.id === cur ? "current" : null, "data-id": c.id },
        open,
        h("span", { class: "chat-actions" },
          h("button", { type: "button", class: "small", text: "Rename", "aria-label": `Rename ${title}`, onclick: () => renameConv(c.id, open) }),
          h("button", { type: "button", class: "small", text: ".md", "aria-label": `Export ${title} as Markdown`, onclick: () => exportConv(c.id, "md") }),
          h("button", { type: "button", class: "small", text: ".json", "aria-label": `Export ${title} as JSON`, onclick: () => exportConv(c.id, "json") }),
          del)));
    }
  }
  function convById(id) { return state.conv && state.conv.id === id ? state.conv : readConv(id); }
  function renameConv(id, button) {
    const c = convById(id);
    if (!c) return;
    const input = h("input", { type: "text", class: "chat-rename", "aria-label": "New name", value: titleOf(c) });
    let done = false;
    const finish = (keep) => {
      if (done) return;
      done = true;
      const name = input.value.trim();
      if (keep && name) {
        c.title = name.slice(0, 120);
        if (state.conv && state.conv.id === id) state.conv.title = c.title;
        saveConv(c);
      }
      renderChatList();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); finish(true); }
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
    });
    input.addEventListener("blur", () => finish(true));
    button.replaceWith(input);
    input.focus();
    input.select();
  }
  function deleteConv(id) {
    storeSet(CHAT_PREFIX + id, null);
    storeSet(CHATS_STORE, JSON.stringify(convIndex().filter((x) => x.id !== id)));
    if (state.conv && state.conv.id === id) startConv(freshConv());
    renderChatList();
    setStatus("The conversation was deleted.");
  }
  function exportConv(id, fmt) {
    const c = convById(id);
    if (!c) return;
    const title = titleOf(c);
    if (fmt === "json") {
      const data = { title, id: c.id, created: new Date(c.created).toISOString(),
        updated: new Date(c.updated).toISOString(), server: location.origin,
        items: c.items.map((it) => storable(it, Infinity)) };
      download(`${fileSafe(title)}.json`, JSON.stringify(data, null, 2) + "\n", "application/json");
      return;
    }
    const out = [`# ${title}`, "", `*${new Date(c.created).toLocaleString()} · ${location.origin}*`, ""];
    for (const it of c.items) {
      if (it.role === "user") {
        out.push("## You", "");
        if (it.text) out.push(it.text, "");
        for (const a of it.atts || []) out.push(`*[${a.kind}: ${a.name}]*`, "");
      } else if (it.role === "assistant") {
        out.push(`## ${it.model || "Assistant"}`, "", it.content || "*(empty answer)*", "");
      } else if (it.role === "transcript") {
        out.push(`## Transcript (${it.model})${it.name ? ` of ${it.name}` : ""}`, "", (it.text || "").trim(), "");
      }
    }
    download(`${fileSafe(title)}.md`, out.join("\n"), "text/markdown");
  }

  function startConv(c) {
    if (state.busy && state.abort) state.abort.abort();
    state.conv = c;
    state.queue = [];
    renderQueue();
    storeSet(CURRENT_STORE, c.items.length ? c.id : null);
    renderConv();
    renderChatList();
  }
  function switchTo(id) {
    if (state.conv && state.conv.id === id) { closeChatsIfNarrow(); return; }
    const c = readConv(id);
    if (!c) { setStatus("That conversation is gone."); renderChatList(); return; }
    startConv(c);
    clearError();
    setStatus(`Conversation: ${titleOf(c)}.`);
    closeChatsIfNarrow();
  }
  function closeChatsIfNarrow() { if (NARROW.matches) toggleChats(false); }
  function toggleChats(open) {
    el.chats.hidden = !open;
    el["chats-button"].setAttribute("aria-expanded", String(open));
    if (open) renderChatList();
  }
  // ------------------------------------------------------------ conversation log
  function logAppend(node) {
    el.empty.hidden = true;
    const nearBottom = el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 120;
    el.log.append(node);
    if (nearBottom) node.scrollIntoView({ block: "end" });
  }
  function keepScrolled() {
    const log = el.log;
    if (log.scrollHeight - log.scrollTop - log.clientHeight < 200) log.scrollTop = log.scrollHeight;
  }

  // The media of a user item: this page's own blobs, or what a stored conversation kept.
  function mediaOf(it) {
    const atts = it.atts || [];
    const parts = Array.isArray(it.content) ? it.content.filter((p) => p.type !== "text") : [];
    return atts.map((a, i) => {
      if (a.url) return a;
      const p = parts[i];
      let url = null;
      if (p && p.type === "image_url" && p.image_url.url.startsWith("data:")) {
        const [head, data] = p.image_url.url.split(",", 2);
        url = URL.createObjectURL(base64ToBlob(data, head.slice(5).split(";")[0]));
      } else if (p && p.type === "input_audio") {
        url = URL.createObjectURL(base64ToBlob(p.input_audio.data, `audio/${p.input_audio.format || "wav"}`));
      }
      if (url) a.url = url;
      return a;
    });
  }

  function userBubble(text, atts, item) {
    const body = h("div", { class: "body" });
    if (text) body.append(h("p", { class: "plain", text }));
    const media = h("div", { class: "media" });
    for (const a of atts) {
      if (a.kind === "image") {
        media.append(a.url ? h("img", { src: a.url, alt: `attached image ${a.name}` })
          : h("span", { class: "clip", text: `image ${a.name} (not kept)` }));
      } else {
        media.append(h("figure", { class: "clip" },
          a.url ? h("audio", { controls: true, src: a.url, preload: "metadata", "aria-label": `audio ${a.name}` }) : null,
          h("figcaption", { text: (a.seconds ? `${a.name} · ${a.seconds.toFixed(1)} s` : a.name) + (a.url ? "" : " (not kept)") })));
      }
    }
    if (media.childElementCount) body.append(media);
    const node = h("article", { class: "msg user" },
      h("header", {}, h("span", { class: "who", text: "You" })), body);
    if (item) {
      node.append(h("div", { class: "msg-tools" },
        h("button", { type: "button", class: "small", text: "Edit", "aria-label": "Edit this message and send it again", onclick: () => editFrom(item) })));
    }
    logAppend(node);
    return node;
  }

  function assistantBubble(model, kind) {
    const meta = h("span", { class: "meta" });
    const body = h("div", { class: kind && kind.startsWith("transcript") ? "body" : "body md" });
    const node = h("article", {
      class: `msg assistant ${kind || ""}`.trim(), "data-state": "pending", "aria-busy": "true",
    }, h("header", {}, h("span", { class: "who", text: model }),
      kind && kind.startsWith("transcript") ? h("span", { class: "tag", text: kind === "transcript live" ? "live transcript" : "transcript" }) : null, meta), body,
    h("span", { class: "typing", "aria-hidden": "true" }, h("i"), h("i"), h("i")));
    logAppend(node);
    return { node, body, meta };
  }

  function failBubble(b, err, keepText) {
    const d = describe(err);
    b.node.dataset.state = "error";
    b.node.removeAttribute("aria-busy");
    b.node.classList.add("failed");
    const note = h("p", { class: "err" }, h("strong", { text: d.title }), " ", d.message);
    if (keepText) b.body.append(note); // a stream that broke midway: keep what came
    else b.body.replaceChildren(note);
  }

  // A finished answer: Markdown, a copy button on each code block, Copy / Regenerate.
  function finishAnswer(b, item) {
    b.body.innerHTML = renderMarkdown(item.content || "");
    if (!item.content) b.body.append(h("p", { class: "dim", text: "(empty answer)" }));
    if (item.stopped) b.body.append(h("p", { class: "dim", text: "(stopped)" }));
    for (const pre of Array.from(b.body.querySelectorAll("pre"))) {
      const wrap = h("div", { class: "code" });
      pre.replaceWith(wrap);
      wrap.append(copyButton("Copy code", () => pre.textContent, "Copy this code"), pre);
    }
    if (item.meta) b.meta.textContent = item.meta;
    b.node.querySelectorAll(".msg-tools").forEach((n) => n.remove());
    b.node.append(h("div", { class: "msg-tools" },
      copyButton("Copy", () => item.content || "", "Copy the answer"),
      h("button", { type: "button", class: "small", text: "Regenerate", "aria-label": "Regenerate this answer", onclick: () => regenerate(item) })));
  }

  function renderConv() {
    for (const n of Array.from(el.log.querySelectorAll(".msg"))) n.remove();
    const c = state.conv;
    el.empty.hidden = c.items.length > 0;
    for (const it of c.items) {
      if (it.role === "user") userBubble(it.text, mediaOf(it), it);
      else if (it.role === "assistant") {
        const b = assistantBubble(it.model || "assistant");
        b.node.dataset.state = it.stopped ? "stopped" : "done";
        b.node.removeAttribute("aria-busy");
        finishAnswer(b, it);
      } else if (it.role === "transcript") {
        const clip = it.clip || { kind: "audio", name: it.name || "audio", seconds: it.seconds };
        const u = it.live ? null : userBubble("", [clip]);
        const b = assistantBubble(it.model, it.live ? "transcript live" : "transcript");
        const v = transcriptView(b);
        v.whole({ text: it.text, segments: it.segments, duration: it.duration });
        b.node.dataset.state = "done";
        b.node.removeAttribute("aria-busy");
        b.meta.textContent = it.meta || "";
        transcriptTools(b, it, u && u.querySelector("audio"));
      }
    }
  }

  // ------------------------------------------------------------ chat (streamed)
  function settings() {
    const t = Number(el.temperature.value);
    const n = Math.floor(Number(el["max-tokens"].value));
    return {
      temperature: Number.isFinite(t) ? Math.min(2, Math.max(0, t)) : 0.7,
      max_tokens: Number.isFinite(n) && n > 0 ? n : 512,
      system: el.system.value.trim(),
    };
  }
  function saveSettings() {
    const s = settings();
    storeSet(SETTINGS_STORE, JSON.stringify({
      temperature: s.temperature, max_tokens: s.max_tokens, system: s.system,
      stt_model: el["stt-model"].value || el["stt-model"].dataset.wanted || "",
      language: el.language.value.trim(), translate: el.translate.checked,
    }));
  }
  function loadSettings() {
    try {
      const s = JSON.parse(storeGet(SETTINGS_STORE) || "{}");
      if (typeof s.temperature === "number") el.temperature.value = String(s.temperature);
      if (typeof s.max_tokens === "number") el["max-tokens"].value = String(s.max_tokens);
      if (typeof s.system === "string") el.system.value = s.system;
      if (typeof s.stt_model === "string") el["stt-model"].dataset.wanted = s.stt_model;
      if (typeof s.language === "string") el.language.value = s.language;
      if (typeof s.translate === "boolean") el.translate.checked = s.translate;
    } catch (_) { /* ignore a damaged entry */ }
  }

  async function contentFor(text, atts) {
    if (!atts.length) return text;
    const parts = [];
    if (text) parts.push({ type: "text", text });
    for (const a of atts) {
      if (a.kind === "image") {
        parts.push({ type: "image_url", image_url: { url: await readDataUrl(a.blob) } });
      } else {
        parts.push({ type: "input_audio", input_audio: { data: await base64Of(a.blob), format: a.format || "wav" } });
      }
    }
    return parts;
  }

  // Earlier turns may hold images or audio that the model now picked cannot take (the
  // conversation went on with another model): they become a short text note instead of
  // turning every later request into a 400. The new turn is sent as it is.
  function adaptHistory(history, model) {
    const caps = model.capabilities || [];
    const keep = { image_url: caps.includes("vision"), input_audio: caps.includes("audio") };
    const dropped = new Set();
    const messages = history.map((m) => {
      if (!Array.isArray(m.content)) return m;
      const parts = m.content.map((p) => {
        if (p.type in keep && !keep[p.type]) {
          dropped.add(p.type === "image_url" ? "images" : "audio clips");
          return { type: "text", text: p.type === "image_url" ? "[an image]" : "[an audio clip]" };
        }
        return p;
      });
      return parts.every((p) => p.type === "text")
        ? { role: m.role, content: parts.map((p) => p.text).join("\n") }
        : { role: m.role, content: parts };
    });
    return { messages, dropped: Array.from(dropped).join(" and ") };
  }

  // The data of each server-sent event, as it arrives. Stop (the AbortController) cancels
  // the reader; the loop then ends with an AbortError, never as if the stream had finished.
  async function* sseEvents(res, signal) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const cancel = () => { reader.cancel().catch(() => {}); };
    if (signal) signal.addEventListener("abort", cancel, { once: true });
    let buf = "";
    try {
      for (;;) {
        if (signal && signal.aborted) throw new DOMException("stopped", "AbortError");
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
          if (data) yield data;
        }
      }
      if (signal && signal.aborted) throw new DOMException("stopped", "AbortError");
    } finally {
      if (signal) signal.removeEventListener("abort", cancel);
      if (signal && signal.aborted) reader.cancel().catch(() => {});
      reader.releaseLock();
    }
  }

  // One answer. `text`/`atts`: the new user turn, or null to answer the conversation as it
  // is (Regenerate). Returns "done", "stopped", "broken" (an error midway) or "refused".
  async function chat(model, text, atts) {
    const conv = state.conv;
    const s = settings();
    let turn = null;
    let userNode = null;
    if (text !== null) {
      turn = { role: "user", text, content: await contentFor(text, atts), atts };
      userNode = userBubble(text, atts, turn);
    }
    const b = assistantBubble(model.id);
    const earlier = adaptHistory(history(conv), model);
    if (turn) conv.items.push(turn);
    const messages = (s.system ? [{ role: "system", content: s.system }] : [])
      .concat(earlier.messages, turn ? [{ role: "user", content: turn.content }] : []);
    const ctrl = new AbortController();
    state.abort = ctrl;
    setBusy(true);
    const note = earlier.dropped ? ` Earlier ${earlier.dropped} are left out: ${model.id} cannot take them.` : "";
    setStatus((model.loaded ? `${model.id} is answering…` : `Loading ${model.id} (its first request loads it)…`) + note);
    const t0 = performance.now();
    let first = 0;
    let reply = "";
    let usage = null;
    let finish = null;
    let frame = 0;
    const item = { role: "assistant", model: model.id, content: "", meta: "" };
    const paint = () => {
      frame = 0;
      b.body.innerHTML = renderMarkdown(reply);
      keepScrolled();
    };
    try {
      const res = await api("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({
          model: model.id, messages, stream: true, stream_options: { include_usage: true },
          temperature: s.temperature, max_tokens: s.max_tokens,
        }),
        signal: ctrl.signal,
      });
      if (!res.ok) throw await apiError(res);
      b.node.dataset.state = "streaming";
      for await (const data of sseEvents(res, ctrl.signal)) {
        if (data === "[DONE]") break;
        let chunk;
        try { chunk = JSON.parse(data); } catch (_) { continue; }
        if (chunk.error) throw streamError(chunk.error);
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) continue;
        if (choice.finish_reason) finish = choice.finish_reason;
        const piece = choice.delta && choice.delta.content;
        if (piece) {
          if (!first) { first = performance.now(); setStatus(`${model.id} is answering…${note}`); }
          reply += piece;
          if (!frame) frame = requestAnimationFrame(paint);
        }
      }
      if (frame) cancelAnimationFrame(frame);
      const secs = (performance.now() - t0) / 1000;
      const meta = [];
      if (usage) meta.push(`${usage.completion_tokens} tokens`);
      meta.push(`${secs.toFixed(1)} s`);
      if (usage && first) {
        const gen = (performance.now() - first) / 1000;
        if (gen > 0 && usage.completion_tokens > 1) meta.push(`${((usage.completion_tokens - 1) / gen).toFixed(1)} tok/s`);
      }
      if (finish === "length") meta.push("cut at max tokens");
      item.content = reply;
      item.meta = meta.join(" · ");
      conv.items.push(item);
      finishAnswer(b, item);
      b.node.dataset.state = "done";
      setStatus(`Answered in ${secs.toFixed(1)} s.${note}`);
      return "done";
    } catch (err) {
      if (frame) cancelAnimationFrame(frame);
      if (err && err.name === "AbortError") {
        item.content = reply;
        item.stopped = true;
        conv.items.push(item);
        finishAnswer(b, item);
        b.node.dataset.state = "stopped";
        setStatus("Stopped.");
        return "stopped";
      }
      if (reply) { // the stream broke midway: keep what came as the answer
        item.content = reply;
        conv.items.push(item);
        paint();
      } else if (turn) { // refused: not part of the conversation, or it would poison every next request
        conv.items.splice(conv.items.indexOf(turn), 1);
        userNode.classList.add("unsent");
        userNode.querySelector(".msg-tools").remove();
        userNode.querySelector("header").append(h("span", { class: "tag warn", text: "not sent" }));
      }
      failBubble(b, err, Boolean(reply));
      showError(err);
      setStatus("");
      return reply ? "broken" : "refused";
    } finally {
      b.node.removeAttribute("aria-busy");
      state.abort = null;
      setBusy(false);
      saveConv(conv);
      loadModels(true); // "loaded" changed
    }
  }

  function regenerate(item) {
    if (state.busy) { setStatus("Wait for the answer to finish (or Stop it), then regenerate."); return; }
    const conv = state.conv;
    const at = conv.items.indexOf(item);
    if (at < 0) return;
    const model = current();
    if (!model || kindOf(model) !== "chat") { showError("Pick a chat model to regenerate the answer."); return; }
    conv.items.splice(at);
    while (conv.items.length && conv.items[conv.items.length - 1].role === "transcript") conv.items.pop();
    if (!conv.items.length || conv.items[conv.items.length - 1].role !== "user") { renderConv(); return; }
    renderConv();
    clearError();
    chat(model, null, null).then(() => drainQueue());
  }

  function editFrom(item) {
    if (state.busy) { setStatus("Wait for the answer to finish (or Stop it), then edit."); return; }
    const conv = state.conv;
    const at = conv.items.indexOf(item);
    if (at < 0) return;
    conv.items.splice(at);
    renderConv();
    saveConv(conv);
    setMessage(item.text || "");
    state.attachments = (item.atts || []).filter((a) => a.blob);
    renderAttachments();
    el.message.focus();
    setStatus("Edit the message and send it again (the turns after it were removed).");
  }

  // ------------------------------------------------------------ transcription (Whisper, streamed)
  // The transcript is streamed (`stream=true`): server-sent events, drawn as they arrive —
  // transcript.text.delta (text of a segment), transcript.text.segment (a finished segment
  // with its timestamps and how much of the audio is done), transcript.text.done (the whole
  // text). A server that answers with plain JSON instead is drawn the way it always was.
  function transcriptView(b) {
    const text = h("p", { class: "transcript-text" });
    const bar = h("progress", { class: "transcript-progress", "aria-label": "Audio transcribed so far" });
    const label = h("span", { class: "progress-text", text: "Transcribing…" });
    const progress = h("div", { class: "progress" }, bar, label);
    const list = h("ol", { class: "segments", "aria-label": "segments with timestamps" });
    b.body.replaceChildren(text, progress, list);
    b.node.dataset.segmentsSeen = "0";
    const v = {
      entries: [], // {id, text, final}, in the order the segments came
      items: new Map(), // segment id → its <li>
      seen: 0,
      done: 0,
      duration: null,
      text: "",
    };

    const joined = () => {
      let s = "";
      for (const e of v.entries) {
        if (s && e.text && !/\s$/.test(s) && !/^\s/.test(e.text)) s += " ";
        s += e.text;
      }
      return s;
    };
    const entry = (id) => {
      let e = id === null ? null : v.entries.find((x) => x.id === id);
      if (!e && id === null) {
        const last = v.entries[v.entries.length - 1];
        if (last && !last.final) e = last;
      }
      if (!e) { e = { id, text: "", final: false }; v.entries.push(e); }
      return e;
    };
    const showText = (s) => {
      v.text = s;
      text.textContent = s.trim();
      keepScrolled();
    };
    const showProgress = (final) => {
      b.node.dataset.audioDone = v.done.toFixed(2);
      if (v.duration === null) {
        label.textContent = final ? "Transcribed." : `${v.done.toFixed(1)} s transcribed…`;
        if (final) { bar.max = 1; bar.value = 1; }
        return;
      }
      b.node.dataset.audioDuration = v.duration.toFixed(2);
      bar.max = Math.max(v.duration, 0.001);
      bar.value = Math.min(v.done, bar.max);
      label.textContent = `${v.done.toFixed(1)} s of ${v.duration.toFixed(1)} s transcribed`;
      progress.classList.toggle("complete", Boolean(final));
    };

    v.delta = (ev) => {
      if (typeof ev.delta !== "string" || !ev.delta) return;
      const e = entry(typeof ev.segment_id === "string" ? ev.segment_id : null);
      if (e.final) return; // its segment event already gave the whole text
      e.text += ev.delta;
      showText(joined());
    };
    v.segment = (ev) => {
      const id = typeof ev.id === "string" ? ev.id : `seg_${v.entries.length}`;
      const e = entry(id);
      if (typeof ev.text === "string") e.text = ev.text;
      e.final = true;
      const start = Number(ev.start) || 0;
      const end = Number(ev.end) || start;
      e.start = start;
      e.end = end;
      const li = h("li", { "data-id": id, "data-start": start.toFixed(2) },
        h("span", { class: "ts", text: `${fmtSeconds(start)} – ${fmtSeconds(end)}` }),
        h("span", { class: "seg", text: e.text.trim() }));
      const old = v.items.get(id);
      if (old) old.replaceWith(li); else list.append(li);
      v.items.set(id, li);
      if (typeof ev.audio_duration === "number" && ev.audio_duration > 0) v.duration = ev.audio_duration;
      const reached = typeof ev.audio_done === "number" ? ev.audio_done : end;
      v.done = Math.max(v.done, v.duration === null ? reached : Math.min(reached, v.duration));
      showText(joined());
      showProgress(false);
      v.seen += 1;
      b.node.dataset.segmentsSeen = String(v.seen);
    };
    v.finish = (ev) => {
      if (typeof ev.text === "string") showText(ev.text);
      else showText(joined());
      if (typeof ev.duration === "number" && ev.duration > 0) v.duration = ev.duration;
      if (v.duration !== null) v.done = v.duration;
      if (!v.text.trim()) text.textContent = "(no speech found)";
      if (!v.seen && v.duration === null) progress.remove(); // nothing to say about progress
      else showProgress(true);
      if (!v.seen) list.remove();
    };
    // The whole transcript at once (a JSON answer): text, segments, duration.
    v.whole = (t) => {
      const segs = Array.isArray(t.segments) ? t.segments : [];
      if (typeof t.duration === "number" && t.duration > 0) v.duration = t.duration;
      segs.forEach((s, i) => v.segment({ id: `seg_${i}`, start: s.start, end: s.end, text: s.text || "" }));
      v.finish({ text: t.text || "" });
    };
    v.stop = () => { // stopped or broken midway: keep what came, drop an empty list
      if (!v.seen) list.remove();
      if (!v.text.trim()) text.remove();
      if (!v.seen) progress.remove();
    };
    return v;
  }


  // Copy, downloads (txt, srt, vtt, json; built here from the segments), Use as message;
  // a click on a segment plays the clip from its start.
  function srtTime(s, sep) {
    const ms = Math.max(0, Math.round((Number(s) || 0) * 1000));
    const p = (n, w) => String(n).padStart(w, "0");
    return `${p(Math.floor(ms / 3600000), 2)}:${p(Math.floor(ms / 60000) % 60, 2)}:${p(Math.floor(ms / 1000) % 60, 2)}${sep}${p(ms % 1000, 3)}`;
  }
  function transcriptFile(it, fmt) {
    const segs = it.segments && it.segments.length ? it.segments
      : [{ id: "seg_0", start: 0, end: it.duration || 0, text: it.text || "" }];
    const cue = (s, sep) => `${srtTime(s.start, sep)} --> ${srtTime(s.end, sep)}\n${(s.text || "").trim()}\n`;
    if (fmt === "srt") return segs.map((s, i) => `${i + 1}\n${cue(s, ",")}`).join("\n");
    if (fmt === "vtt") return "WEBVTT\n\n" + segs.map((s) => cue(s, ".")).join("\n");
    if (fmt === "json") {
      return JSON.stringify({
        text: (it.text || "").trim(), model: it.model, language: it.language || null,
        duration: it.duration || null, task: it.translated ? "translate" : "transcribe",
        segments: segs.map((s) => ({ id: s.id, start: s.start, end: s.end, text: (s.text || "").trim() })),
      }, null, 2) + "\n";
    }
    return (it.text || "").trim() + "\n";
  }
  const FILE_TYPES = { txt: "text/plain", srt: "application/x-subrip", vtt: "text/vtt", json: "application/json" };
  function transcriptTools(b, it, audio) {
    const base = fileSafe((it.name || "transcript").replace(/\.[^.]+$/, ""));
    const tools = h("div", { class: "msg-tools" },
      copyButton("Copy", () => (it.text || "").trim(), "Copy the transcript"),
      ...["txt", "srt", "vtt", "json"].map((f) => h("button", {
        type: "button", class: "small", text: f.toUpperCase(), "aria-label": `Download the transcript as ${f}`,
        "data-format": f, onclick: () => download(`${base}.${f}`, transcriptFile(it, f), FILE_TYPES[f]),
      })),
      h("button", {
        type: "button", class: "small", text: "Use as message",
        onclick: () => { setMessage((it.text || "").trim()); el.message.focus(); },
      }));
    b.node.querySelectorAll(".msg-tools").forEach((n) => n.remove());
    b.node.append(tools);
    const list = b.body.querySelector(".segments");
    if (!list || !audio) return;
    for (const li of Array.from(list.querySelectorAll("li[data-start]"))) {
      li.tabIndex = 0;
      li.setAttribute("role", "button");
      li.title = "Play from here";
      li.classList.add("playable");
    }
    const play = (li) => {
      audio.currentTime = Number(li.dataset.start) || 0;
      audio.play().catch(() => {});
    };
    list.addEventListener("click", (e) => { const li = e.target.closest("li[data-start]"); if (li) play(li); });
    list.addEventListener("keydown", (e) => {
      const li = e.target.closest("li[data-start]");
      if (li && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); play(li); }
    });
  }

  // Returns "done", "stopped", "broken" (error midway) or "refused" (nothing streamed).
  async function transcribe(model, prompt, a) {
    const conv = state.conv;
    const u = userBubble("", [a]);
    const caps = model.capabilities || [];
    const translate = caps.includes("audio-translate-en") && el.translate.checked;
    const language = caps.includes("audio-translate-en") && !translate ? el.language.value.trim() : "";
    const b = assistantBubble(model.id, "transcript");
    const form = new FormData();
    const name = a.name && a.name.includes(".") ? a.name : `${a.name || "audio"}.${a.format || "wav"}`;
    form.append("file", a.blob, name);
    form.append("model", model.id);
    form.append("response_format", "json");
    form.append("stream", "true");
    if (prompt) form.append("prompt", prompt);
    if (language) form.append("language", language);
    const ctrl = new AbortController();
    state.abort = ctrl;
    const verb = translate ? "Translating" : "Transcribing";
    setStatus(model.loaded ? `${verb} ${a.name}…` : `Loading ${model.id} and ${verb.toLowerCase()}…`);
    const t0 = performance.now();
    const v = transcriptView(b);
    let lang = language || null;
    let streamed = false;
    try {
      const res = await api(translate ? "/v1/audio/translations" : "/v1/audio/transcriptions", {
        method: "POST", body: form, signal: ctrl.signal, headers: { Accept: "text/event-stream" },
      });
      if (!res.ok) throw await apiError(res);
      streamed = true;
      b.node.dataset.state = "streaming";
      if ((res.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
        let finished = false;
        for await (const data of sseEvents(res, ctrl.signal)) {
          if (data === "[DONE]") break;
          let ev;
          try { ev = JSON.parse(data); } catch (_) { continue; }
          if (!ev || typeof ev !== "object") continue;
          if (ev.error) throw streamError(ev.error);
          if (ev.type === "transcript.text.delta") v.delta(ev);
          else if (ev.type === "transcript.text.segment") {
            v.segment(ev);
            setStatus(v.duration
              ? `${verb} ${a.name}: ${v.done.toFixed(1)} s of ${v.duration.toFixed(1)} s…`
              : `${verb} ${a.name}…`);
          } else if (ev.type === "transcript.text.done") {
            if (typeof ev.language === "string") lang = ev.language;
            v.finish(ev);
            finished = true;
            break;
          }
        }
        if (!finished) throw new ApiError(500, "the transcript stream ended before it was done");
      } else {
        const t = await res.json();
        if (typeof t.language === "string") lang = t.language;
        v.whole(t);
      }
      const secs = (performance.now() - t0) / 1000;
      const facts = [translate ? "translated to English" : null, lang,
        v.duration !== null ? `${v.duration.toFixed(1)} s audio` : null,
        v.seen ? plural(v.seen, "segment") : null, `${secs.toFixed(1)} s`].filter(Boolean);
      b.meta.textContent = facts.join(" · ");
      const it = {
        role: "transcript", model: model.id, name: a.name, seconds: a.seconds || v.duration || null,
        clip: a, text: v.text, duration: v.duration, language: lang, translated: translate,
        segments: v.entries.filter((e) => e.final).map((e) => ({ id: e.id, start: e.start, end: e.end, text: e.text })),
        meta: b.meta.textContent,
      };
      conv.items.push(it);
      saveConv(conv);
      transcriptTools(b, it, u.querySelector("audio"));
      b.node.dataset.state = "done";
      setStatus(`${translate ? "Translated" : "Transcribed"} in ${secs.toFixed(1)} s.`);
      return "done";
    } catch (err) {
      const partial = Boolean(v.text.trim()) || v.seen > 0;
      v.stop();
      if (err && err.name === "AbortError") {
        if (!partial) b.body.replaceChildren();
        b.body.append(h("p", { class: "dim", text: "(stopped)" }));
        b.node.dataset.state = "stopped";
        setStatus("Stopped.");
        return "stopped";
      }
      failBubble(b, err, partial); // broke midway: what came stays, the error below it
      showError(err);
      setStatus("");
      if (!streamed) u.classList.add("unsent");
      return streamed ? "broken" : "refused";
    } finally {
      b.node.removeAttribute("aria-busy");
      state.abort = null;
    }
  }

  // Returns the attachments that were refused before anything was transcribed (to give back).
  async function transcribeAll(model, prompt, atts) {
    const audio = atts.filter((a) => a.kind === "audio");
    if (!audio.length) {
      showError(`${model.id} is a speech-to-text model: record (Record button) or attach an audio file, then Send.`);
      return atts;
    }
    if (audio.length < atts.length) showError(`${model.id} takes audio only; the images were left out.`);
    setBusy(true);
    try {
      for (let i = 0; i < audio.length; i++) {
        const r = await transcribe(model, prompt, audio[i]);
        if (r === "refused") return audio.slice(i);
        if (r !== "done") return [];
      }
      return [];
    } finally {
      setBusy(false);
      loadModels(true);
    }
  }

  // ------------------------------------------------------------ sending
  function setBusy(busy) {
    state.busy = busy;
    el.stop.hidden = !busy;
    el.send.setAttribute("aria-label", busy ? "Send (queued until the answer is done)" : "Send");
    document.body.classList.toggle("busy", busy);
  }
  function stopAnswer() { if (state.busy && state.abort) state.abort.abort(); }

  function renderQueue() {
    el.queue.replaceChildren(...state.queue.map((job) => h("li", {},
      h("span", { class: "tag", text: "queued" }),
      h("span", { class: "queued-text", text: job.text || job.atts.map((a) => a.name).join(", ") }),
      h("button", {
        type: "button", class: "icon", text: "✕", "aria-label": "Remove this queued message",
        onclick: () => { state.queue = state.queue.filter((x) => x !== job); renderQueue(); },
      }))));
    el.queue.hidden = !state.queue.length;
  }

  // Enter / Send: sends, or queues while an answer streams (it never stops one).
  async function send() {
    if (state.recorder && state.recorder.owner === "mic") await stopMic();
    const text = el.message.value.trim();
    const atts = state.attachments.slice();
    if (!text && !atts.length) { el.message.focus(); return; }
    if (!current()) { showError("No model selected: the model list is empty or could not be loaded."); return; }
    setMessage("");
    state.attachments = [];
    renderAttachments();
    saveSettings();
    if (state.busy) {
      state.queue.push({ text, atts });
      renderQueue();
      setStatus(`Queued (${plural(state.queue.length, "message")}): sent when this answer is done.`);
      return;
    }
    await run({ text, atts });
    drainQueue();
  }
  async function drainQueue() {
    while (!state.busy && state.queue.length) {
      const job = state.queue.shift();
      renderQueue();
      await run(job);
    }
  }
  // A refused message goes back to the composer: its text and its attachments.
  function giveBack(text, atts) {
    if (text && !el.message.value.trim()) setMessage(text);
    const known = new Set(state.attachments);
    state.attachments = atts.filter((a) => !known.has(a)).concat(state.attachments);
    renderAttachments();
  }
  async function run(job) {
    const model = current();
    if (!model) { giveBack(job.text, job.atts); return; }
    clearError();
    if (kindOf(model) === "stt") {
      const back = await transcribeAll(model, job.text, job.atts);
      if (back.length) giveBack(job.text, back);
      else if (!job.atts.some((a) => a.kind === "audio")) giveBack(job.text, []);
      return;
    }
    if ((await chat(model, job.text, job.atts)) === "refused") giveBack(job.text, job.atts);
  }

  // ------------------------------------------------------------ microphone → 16 kHz WAV
  // Windowed-sinc resampling (Hann window, 8 zero crossings; the low-pass at the lower
  // Nyquist frequency removes what would alias when downsampling 48 kHz to 16 kHz).
  function resample(x, from, to) {
    if (from === to) return x;
    const ratio = from / to;
    const n = Math.floor(x.length / ratio);
    const out = new Float32Array(n);
    const cutoff = Math.min(1, to / from);
    const half = Math.ceil(8 / cutoff);
    for (let i = 0; i < n; i++) {
      const t = i * ratio;
      const c = Math.floor(t);
      let acc = 0;
      let wsum = 0;
      for (let k = c - half + 1; k <= c + half; k++) {
        if (k < 0 || k >= x.length) continue;
        const d = t - k;
        const z = Math.PI * cutoff * d;
        const sinc = z === 0 ? 1 : Math.sin(z) / z;
        const w = sinc * 0.5 * (1 + Math.cos((Math.PI * d) / half));
        acc += x[k] * w;
        wsum += w;
      }
      out[i] = wsum ? acc / wsum : 0;
    }
    return out;
  }

  function encodeWav(samples, rate) {
    const buf = new ArrayBuffer(44 + samples.length * 2);
    const v = new DataView(buf);
    const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
    str(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE");
    str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true);
    v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      v.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return buf;
  }

  function micError(e) {
    const name = e && e.name;
    if (name === "NotAllowedError" || name === "SecurityError") return "The browser did not allow the microphone. Allow it for this page (the icon in the address bar) and try again.";
    if (name === "NotFoundError" || name === "OverconstrainedError") return "No microphone was found.";
    if (name === "NotReadableError") return "The microphone is in use by another program or could not be opened.";
    return `The microphone could not be started: ${(e && e.message) || e}`;
  }


  // A streaming resampler (the same windowed sinc, carried over from block to block): the
  // live mode sends 24 kHz while the microphone runs at 44.1 or 48 kHz.
  function streamResampler(from, to) {
    const ratio = from / to;
    const cutoff = Math.min(1, to / from);
    const half = Math.ceil(8 / cutoff);
    let buf = new Float32Array(0);
    let pos = 0; // the input index (fractional) of the next output sample, within buf
    return (x, last) => {
      const joined = new Float32Array(buf.length + x.length);
      joined.set(buf);
      joined.set(x, buf.length);
      buf = joined;
      const out = [];
      while (Math.floor(pos) + half < buf.length || (last && pos < buf.length)) {
        const c = Math.floor(pos);
        let acc = 0;
        let wsum = 0;
        for (let k = c - half + 1; k <= c + half; k++) {
          if (k < 0 || k >= buf.length) continue;
          const d = pos - k;
          const z = Math.PI * cutoff * d;
          const sinc = z === 0 ? 1 : Math.sin(z) / z;
          const w = sinc * 0.5 * (1 + Math.cos((Math.PI * d) / half));
          acc += buf[k] * w;
          wsum += w;
        }
        out.push(wsum ? acc / wsum : 0);
        pos += ratio;
      }
      const drop = Math.max(0, Math.floor(pos) - half);
      if (drop) { buf = buf.slice(drop); pos -= drop; }
      return Float32Array.from(out);
    };
  }
  function pcm16Base64(f32) {
    const v = new DataView(new ArrayBuffer(f32.length * 2));
    for (let i = 0; i < f32.length; i++) {
      const s = Math.max(-1, Math.min(1, f32[i]));
      v.setInt16(i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return bytesToBase64(new Uint8Array(v.buffer));
  }

  // The microphone, for the three things that use it: Record (a clip to send), Dictate (text
  // into the message box) and Live (a realtime transcription session). One at a time.
  // The buttons are never disabled while the microphone opens, so keyboard focus stays.
  async function openMic(owner, onChunk) {
    if (state.recorder || state.starting) return null;
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("The browser offers no microphone here: recording needs https or a localhost address (http://127.0.0.1:PORT). Attach an audio file instead.");
      return null;
    }
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) { showError("This browser has no Web Audio; attach an audio file instead."); return null; }
    clearError();
    let release;
    state.starting = new Promise((resolve) => { release = resolve; });
    try {
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        });
      } catch (e) {
        showError(micError(e));
        return null;
      }
      const ctx = new Ctx();
      const r = { owner, stream, ctx, chunks: [], node: null, started: 0, rate: ctx.sampleRate, peak: 0, timer: 0, via: "", onChunk };
      const take = (f32) => {
        r.chunks.push(f32);
        let sum = 0;
        for (let i = 0; i < f32.length; i++) sum += f32[i] * f32[i];
        r.peak = Math.max(r.peak * 0.6, Math.sqrt(sum / Math.max(1, f32.length)));
        if (r.onChunk) r.onChunk(f32, false);
      };
      r.take = take;
      try {
        if (ctx.state === "suspended") await ctx.resume();
        const source = ctx.createMediaStreamSource(stream);
        const sink = ctx.createGain(); // silent: the graph must reach the destination to run
        sink.gain.value = 0;
        sink.connect(ctx.destination);
        if (ctx.audioWorklet && typeof AudioWorkletNode === "function") {
          try {
            await ctx.audioWorklet.addModule(SCRIPT_URL);
            r.node = new AudioWorkletNode(ctx, "mlxk-capture", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
            r.node.port.onmessage = (e) => { if (e.data instanceof Float32Array) take(e.data); };
            r.via = "AudioWorklet";
          } catch (_) { r.node = null; }
        }
        if (!r.node) { // older browsers: the deprecated ScriptProcessorNode
          r.node = ctx.createScriptProcessor(4096, 1, 1);
          r.node.onaudioprocess = (e) => take(new Float32Array(e.inputBuffer.getChannelData(0)));
          r.via = "ScriptProcessor";
        }
        source.connect(r.node);
        r.node.connect(sink);
        r.source = source;
      } catch (e) {
        stream.getTracks().forEach((t) => t.stop());
        ctx.close().catch(() => {});
        showError(`Recording could not start: ${e.message || e}`);
        return null;
      }
      r.started = performance.now();
      r.timer = setInterval(() => {
        const secs = (performance.now() - r.started) / 1000;
        el["rec-time"].textContent = `${secs.toFixed(1)} s`;
        const db = 20 * Math.log10(Math.max(1e-5, r.peak));
        el["rec-level"].style.width = `${Math.max(2, Math.min(100, ((db + 60) / 60) * 100))}%`;
      }, 100);
      state.recorder = r;
      el.rec.hidden = false;
      el["rec-time"].textContent = "0.0 s";
      return r;
    } finally {
      state.starting = null;
      release();
    }
  }

  // Closes the microphone; returns all it captured (mono float32 at r.rate).
  async function closeMic() {
    const r = state.recorder;
    if (!r) return null;
    state.recorder = null;
    clearInterval(r.timer);
    if (r.node && r.node.port) {
      await new Promise((resolve) => {
        const done = setTimeout(resolve, 500);
        r.node.port.onmessage = (e) => {
          if (e.data === "flushed") { clearTimeout(done); resolve(); } else if (e.data instanceof Float32Array) r.take(e.data);
        };
        r.node.port.postMessage("flush");
      });
    }
    r.stream.getTracks().forEach((t) => t.stop());
    try { r.source.disconnect(); r.node.disconnect(); } catch (_) { /* already gone */ }
    r.ctx.close().catch(() => {});
    el.rec.hidden = true;
    let total = 0;
    for (const c of r.chunks) total += c.length;
    const pcm = new Float32Array(total);
    let at = 0;
    for (const c of r.chunks) { pcm.set(c, at); at += c.length; }
    return { pcm, rate: r.rate, via: r.via };
  }

  function pressed(btn, label, on, text, title) {
    btn.setAttribute("aria-pressed", String(on));
    btn.classList.toggle("recording", on);
    label.textContent = text;
    btn.title = title;
  }
  function wavOf(got) {
    const mono16k = resample(got.pcm, got.rate, TARGET_RATE);
    return { wav: encodeWav(mono16k, TARGET_RATE), seconds: mono16k.length / TARGET_RATE };
  }

  // Record: a clip, as an attachment.
  async function startMic() {
    const r = await openMic("mic");
    if (!r) return;
    pressed(el.mic, el["mic-label"], true, "Stop", "Stop recording");
    el.mic.disabled = false;
    setStatus(`Recording (${r.rate} Hz, ${r.via})… press Stop when done.`);
  }
  async function stopMic() {
    if (!state.recorder || state.recorder.owner !== "mic") return;
    const got = await closeMic();
    pressed(el.mic, el["mic-label"], false, "Record", "Record a clip to send (audio models)");
    updateTools();
    if (!got.pcm.length) { showError("The microphone delivered no sound."); setStatus(""); return; }
    const { wav, seconds } = wavOf(got);
    const stamp = new Date().toTimeString().slice(0, 8).replace(/:/g, "");
    addAttachment({ kind: "audio", name: `recording-${stamp}.wav`, blob: new Blob([wav], { type: "audio/wav" }), format: "wav", seconds });
    setStatus(`Recorded ${seconds.toFixed(1)} s: ${got.rate} Hz → 16 kHz mono 16-bit WAV, ${fmtBytes(wav.byteLength)}. Send it, or record more.`);
  }

  // Dictate: speech → the Whisper model of Settings → text in the message box. The model
  // picker is not touched.
  async function startDictation() {
    const stt = sttModel();
    if (!stt) { showError("No speech-to-text (Whisper) model on this server to dictate with."); return; }
    const r = await openMic("dictate");
    if (!r) return;
    pressed(el.dictate, el["dictate-label"], true, "Stop", "Stop dictating (or release the button)");
    setStatus(`Dictating with ${stt.id}… click Dictate again (or release it) when done.`);
  }
  async function stopDictation() {
    if (state.starting) await state.starting;
    if (!state.recorder || state.recorder.owner !== "dictate") return;
    const got = await closeMic();
    pressed(el.dictate, el["dictate-label"], false, "Dictate", "Dictate into the message box (click to start and stop, or hold while speaking)");
    const stt = sttModel();
    if (!got.pcm.length || !stt) { setStatus(""); return; }
    const { wav, seconds } = wavOf(got);
    const form = new FormData();
    form.append("file", new Blob([wav], { type: "audio/wav" }), "dictation.wav");
    form.append("model", stt.id);
    form.append("response_format", "json");
    el.dictate.classList.add("working");
    el.dictate.setAttribute("aria-busy", "true");
    setStatus(`Transcribing ${seconds.toFixed(1)} s of dictation with ${stt.id}…`);
    try {
      const res = await api("/v1/audio/transcriptions", { method: "POST", body: form });
      if (!res.ok) throw await apiError(res);
      const t = await res.json();
      const said = String(t.text || "").trim();
      if (!said) { setStatus("No speech was heard."); return; }
      const m = el.message;
      const at = m.selectionStart === m.selectionEnd && document.activeElement === m ? m.selectionStart : m.value.length;
      const before = m.value.slice(0, at);
      const glue = before && !/\s$/.test(before) ? " " : "";
      setMessage(before + glue + said + m.value.slice(at));
      setStatus(`Dictated with ${stt.id}: ${said.length} characters. Edit and send.`);
    } catch (err) {
      showError(err);
      setStatus("");
    } finally {
      el.dictate.classList.remove("working");
      el.dictate.removeAttribute("aria-busy");
    }
  }

  // ------------------------------------------------------------ live transcription
  // An OpenAI Realtime transcription session over a WebSocket: the microphone goes out as
  // 24 kHz PCM16 in ~100 ms input_audio_buffer.append events; the server's VAD cuts turns and
  // sends their text as it decodes them (delta), then the turn's final text (completed).
  async function startLive() {
    const model = current();
    if (!model || kindOf(model) !== "stt" || state.live || state.recorder) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.host}/v1/realtime?intent=transcription`;
    const protocols = ["realtime"];
    if (state.key) protocols.push(`openai-insecure-api-key.${state.key}`);
    let ws;
    try { ws = new WebSocket(url, protocols); } catch (e) { showError(`Live transcription could not start: ${e.message || e}`); return; }
    const b = assistantBubble(model.id, "transcript live");
    const speaking = h("span", { class: "speaking", text: "speaking", hidden: true });
    b.node.querySelector("header .tag").after(speaking);
    const turns = h("div", { class: "live-turns" });
    b.body.replaceChildren(turns);
    const L = {
      ws, model, b, turns, speaking, items: new Map(), order: [], open: false, closing: false,
      out: [], outLen: 0, resampler: null, waiter: null, started: performance.now(), sent: 0,
    };
    state.live = L;
    pressed(el.live, el["live-label"], true, "Stop live", "Stop the live transcription");
    setStatus(`Connecting to ${model.id} for live transcription…`);
    const flushOut = (all) => {
      while (L.outLen >= LIVE_CHUNK || (all && L.outLen)) {
        const n = Math.min(LIVE_CHUNK, L.outLen);
        const block = new Float32Array(n);
        let at = 0;
        while (at < n) {
          const head = L.out[0];
          const take = Math.min(head.length, n - at);
          block.set(head.subarray(0, take), at);
          at += take;
          if (take === head.length) L.out.shift(); else L.out[0] = head.subarray(take);
        }
        L.outLen -= n;
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: pcm16Base64(block) }));
          L.sent += n;
        }
      }
    };
    L.flushOut = flushOut;
    const onChunk = (f32, last) => {
      if (!L.resampler) return;
      const y = L.resampler(f32, last);
      if (y.length) { L.out.push(y); L.outLen += y.length; }
      if (L.open) flushOut(false);
    };
    ws.addEventListener("open", async () => {
      L.open = true;
      ws.send(JSON.stringify({
        type: "session.update",
        session: {
          type: "transcription",
          audio: {
            input: {
              format: { type: "audio/pcm", rate: LIVE_RATE },
              transcription: { model: model.id },
              turn_detection: { type: "server_vad", silence_duration_ms: 800 },
            },
          },
        },
      }));
      b.node.dataset.state = "streaming";
      const r = await openMic("live", onChunk);
      if (!r) { finishLive(L, "the microphone did not open"); return; }
      L.resampler = streamResampler(r.rate, LIVE_RATE);
      if (state.live !== L) { await closeMic(); return; } // stopped while the microphone opened
      setStatus(`Live: speak, the text appears as ${model.id} hears it. Stop live when done.`);
    });
    ws.addEventListener("message", (e) => {
      let ev;
      try { ev = JSON.parse(typeof e.data === "string" ? e.data : ""); } catch (_) { return; }
      if (ev && typeof ev === "object") liveEvent(L, ev);
    });
    ws.addEventListener("close", (e) => {
      L.open = false;
      if (L.waiter) L.waiter();
      if (!L.closing) {
        const why = e.code === 1000 ? "" : ` (code ${e.code}${e.reason ? `: ${e.reason}` : ""})`;
        finishLive(L, `the server closed the live transcription${why}`);
      }
    });
    ws.addEventListener("error", () => {
      if (!L.open && !L.closing) finishLive(L, "could not connect to /v1/realtime (does this server offer live transcription?)");
    });
  }

  function liveTurn(L, id) {
    let t = L.items.get(id);
    if (!t) {
      t = { id, text: "", final: false, node: h("p", { class: "live-turn", "data-item": id }) };
      L.items.set(id, t);
      L.order.push(t);
      L.turns.append(t.node);
    }
    return t;
  }
  function liveText(L) {
    return L.order.map((t) => t.text.trim()).filter(Boolean).join(" ");
  }
  function liveEvent(L, ev) {
    const id = typeof ev.item_id === "string" ? ev.item_id : "item";
    switch (ev.type) {
      case "conversation.item.input_audio_transcription.delta": {
        const t = liveTurn(L, id);
        if (t.final || typeof ev.delta !== "string") break;
        t.text += ev.delta;
        t.node.textContent = t.text.trim();
        t.node.classList.add("partial");
        break;
      }
      case "conversation.item.input_audio_transcription.completed": {
        const t = liveTurn(L, id);
        t.text = typeof ev.transcript === "string" ? ev.transcript : t.text;
        t.final = true;
        t.node.textContent = t.text.trim();
        t.node.classList.remove("partial");
        if (!t.text.trim()) { t.node.remove(); L.items.delete(id); L.order.splice(L.order.indexOf(t), 1); }
        break;
      }
      case "conversation.item.input_audio_transcription.failed": {
        const t = liveTurn(L, id);
        t.final = true;
        t.node.classList.remove("partial");
        t.node.classList.add("err");
        t.node.textContent = `(not transcribed: ${(ev.error && ev.error.message) || "failed"})`;
        t.text = "";
        break;
      }
      case "input_audio_buffer.committed":
        liveTurn(L, id); // the turn is closed; its final text follows
        if (L.commitSent) L.committed = true;
        break;
      case "input_audio_buffer.speech_started":
        L.speaking.hidden = false;
        L.b.node.dataset.speaking = "true";
        break;
      case "input_audio_buffer.speech_stopped":
        L.speaking.hidden = true;
        L.b.node.dataset.speaking = "false";
        break;
      case "error": {
        const code = ev.error && ev.error.code;
        if (L.commitSent && code === "input_audio_buffer_commit_empty") { L.committed = true; break; } // nothing was open
        const msg = (ev.error && ev.error.message) || "live transcription failed";
        showError(new ApiError(TYPE_STATUS[ev.error && ev.error.type] || 400, msg, code));
        if (L.commitSent) L.committed = true;
        break;
      }
      default:
        break;
    }
    L.b.node.dataset.turns = String(L.order.length);
    if (L.waiter) L.waiter();
    keepScrolled();
  }

  // Stop: the last audio, a commit, then wait for the turn's final text (at most 3 s).
  async function stopLive() {
    const L = state.live;
    if (!L || L.closing) return;
    L.closing = true;
    setStatus("Finishing the live transcript…");
    if (state.starting) await state.starting;
    if (state.recorder && state.recorder.owner === "live") {
      const r = state.recorder;
      await closeMic();
      if (L.resampler) { const y = L.resampler(new Float32Array(0), true); if (y.length) { L.out.push(y); L.outLen += y.length; } }
      void r;
    }
    if (L.open) {
      L.flushOut(true);
      L.commitSent = true;
      L.ws.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
      // Done when the commit was answered and every turn has its final text (or 3 s).
      await new Promise((resolve) => {
        const t = setTimeout(resolve, 3000);
        L.waiter = () => {
          if (!L.open || (L.committed && L.order.every((x) => x.final))) { clearTimeout(t); resolve(); }
        };
      });
      L.waiter = null;
    }
    finishLive(L, null);
  }

  function finishLive(L, problem) {
    if (state.live !== L) return;
    state.live = null;
    L.closing = true;
    if (state.recorder && state.recorder.owner === "live") closeMic();
    try { L.ws.close(1000); } catch (_) { /* closed */ }
    pressed(el.live, el["live-label"], false, "Live", "Live transcription: the text appears while you speak");
    L.speaking.hidden = true;
    const b = L.b;
    b.node.removeAttribute("aria-busy");
    for (const t of L.order) if (!t.final && t.text.trim()) t.node.classList.remove("partial"); // kept as it was
    const text = liveText(L);
    const secs = (performance.now() - L.started) / 1000;
    if (problem) {
      failBubble(b, new ApiError(500, problem), Boolean(text));
      showError(`Live transcription: ${problem}.`);
      setStatus("");
    } else {
      b.node.dataset.state = "done";
      setStatus(`Live transcript: ${plural(L.order.length, "turn")} in ${secs.toFixed(1)} s.`);
    }
    if (!text) { if (!problem) b.body.replaceChildren(h("p", { class: "dim", text: "(no speech heard)" })); return; }
    const it = {
      role: "transcript", model: L.model.id, name: "live", live: true, text,
      duration: L.sent / LIVE_RATE || null, language: null,
      segments: [], meta: `live · ${plural(L.order.length, "turn")} · ${secs.toFixed(1)} s`,
    };
    b.meta.textContent = it.meta;
    state.conv.items.push(it);
    saveConv();
    transcriptTools(b, it, null);
  }

  // ------------------------------------------------------------ wiring
  function newChat() {
    startConv(freshConv());
    clearError();
    setStatus("New conversation (the last one is in Chats).");
    el.message.focus();
  }

  function toggleSettings(open) {
    el.settings.hidden = !open;
    el["settings-button"].setAttribute("aria-expanded", String(open));
    if (open) el.temperature.focus();
    else saveSettings();
  }

  // Dictate: a click starts and a second click stops; held down (push to talk), releasing
  // it stops. The keyboard (Space, Enter) clicks.
  function wireDictate() {
    let press = null;
    el.dictate.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      if (state.recorder && state.recorder.owner === "dictate") { press = { stop: true }; return; }
      press = { t: performance.now() };
      startDictation();
    });
    const release = () => {
      const p = press;
      press = null;
      if (!p) return;
      if (p.stop || performance.now() - p.t > 600) stopDictation();
    };
    el.dictate.addEventListener("pointerup", release);
    el.dictate.addEventListener("pointercancel", release);
    el.dictate.addEventListener("click", (e) => {
      if (e.detail !== 0) return; // a pointer click was handled above
      if (state.recorder && state.recorder.owner === "dictate") stopDictation(); else startDictation();
    });
  }

  function init() {
    loadSettings();
    el.composer.addEventListener("submit", (e) => { e.preventDefault(); send(); });
    el.message.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
    });
    el.message.addEventListener("input", grow);
    el.stop.addEventListener("click", () => { stopAnswer(); el.message.focus(); });
    document.addEventListener("keydown", (e) => {
      if (e.key !== "Escape" || e.defaultPrevented) return;
      if (!el.settings.hidden) { toggleSettings(false); el["settings-button"].focus(); return; }
      if (state.busy) { stopAnswer(); return; }
      if (state.live) { stopLive(); return; }
      if (!el.chats.hidden && NARROW.matches) toggleChats(false);
    });
    // Settings close on a click outside them.
    document.addEventListener("pointerdown", (e) => {
      if (el.settings.hidden) return;
      if (el.settings.contains(e.target) || el["settings-button"].contains(e.target)) return;
      toggleSettings(false);
    });
    el["settings-button"].addEventListener("click", () => toggleSettings(el.settings.hidden));
    el.model.addEventListener("change", () => { storeSet(MODEL_STORE, el.model.value); showModelInfo(); clearError(); });
    el["stt-model"].addEventListener("change", () => { el["stt-model"].dataset.wanted = el["stt-model"].value; saveSettings(); });
    el.translate.addEventListener("change", () => { saveSettings(); updateTools(); });
    el.language.addEventListener("change", saveSettings);
    if (NARROW.addEventListener) NARROW.addEventListener("change", relabel);
    el.refresh.addEventListener("click", () => loadModels(false));
    el["new-chat"].addEventListener("click", newChat);
    el["chats-button"].addEventListener("click", () => toggleChats(el.chats.hidden));
    el["chats-close"].addEventListener("click", () => { toggleChats(false); el["chats-button"].focus(); });
    el["key-button"].addEventListener("click", () => {
      if (el.auth.hidden) {
        el.auth.hidden = false;
        el["key-button"].setAttribute("aria-expanded", "true");
        el["auth-message"].textContent = state.key ? "A key is stored for this server." : "No key is stored (a server started without --api-key needs none).";
        el["auth-message"].className = "auth-message";
        el["api-key"].focus();
      } else hideAuth();
    });
    // A key is kept only once the server accepted it.
    el["auth-form"].addEventListener("submit", async (e) => {
      e.preventDefault();
      const key = el["api-key"].value.trim();
      if (!key) { el["auth-message"].textContent = "Enter the key first."; el["api-key"].focus(); return; }
      if (await loadModels(false, key)) {
        state.key = key;
        storeSet(KEY_STORE, key);
        el["api-key"].value = "";
        clearError();
        setStatus("Key accepted. " + el.status.textContent);
        el.message.focus();
      }
    });
    el["forget-key"].addEventListener("click", () => {
      state.key = "";
      storeSet(KEY_STORE, null);
      el["api-key"].value = "";
      el["auth-message"].textContent = "The key was removed from this browser.";
      el["auth-message"].className = "auth-message";
    });
    el["error-close"].addEventListener("click", clearError);
    el["attach-image"].addEventListener("click", () => el["image-input"].click());
    el["attach-audio"].addEventListener("click", () => el["audio-input"].click());
    for (const input of [el["image-input"], el["audio-input"]]) {
      input.addEventListener("change", () => { addFiles(Array.from(input.files || [])); input.value = ""; });
    }
    el.mic.addEventListener("click", () => (state.recorder && state.recorder.owner === "mic" ? stopMic() : startMic()));
    wireDictate();
    el.live.addEventListener("click", () => (state.live ? stopLive() : startLive()));
    for (const input of [el.temperature, el["max-tokens"], el.system]) input.addEventListener("change", saveSettings);
    document.addEventListener("paste", (e) => {
      const files = Array.from((e.clipboardData && e.clipboardData.files) || []);
      if (files.length) { e.preventDefault(); addFiles(files); }
    });
    document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
    document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) document.body.classList.remove("dragging"); });
    document.addEventListener("drop", (e) => {
      e.preventDefault();
      document.body.classList.remove("dragging");
      addFiles(Array.from((e.dataTransfer && e.dataTransfer.files) || []));
    });
    setBusy(false);
    const last = storeGet(CURRENT_STORE);
    startConv((last && readConv(last)) || freshConv());
    if (window.matchMedia && window.matchMedia("(min-width: 1000px)").matches) toggleChats(true);
    grow();
    loadModels(false);
  }

  // For the tests and the curious: the pure parts, no state.
  window.mlxkUi = { renderMarkdown, resample, encodeWav, streamResampler, transcriptFile, htmlText };
  init();
})();
