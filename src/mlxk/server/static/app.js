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
  const TARGET_RATE = 16000;
  const AUDIO_FORMATS = ["wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "webm", "aiff"];

  const $ = (id) => document.getElementById(id);
  const el = {};
  for (const id of [
    "model", "refresh", "model-info", "new-chat", "key-button", "auth", "auth-message",
    "auth-form", "api-key", "forget-key", "log", "empty", "error", "error-title",
    "error-message", "error-close", "attachments", "composer", "message", "attach-image",
    "image-input", "attach-audio", "audio-input", "mic", "mic-label", "rec", "rec-time",
    "rec-level", "temperature", "max-tokens", "system", "send", "status",
  ]) el[id] = $(id);

  const state = {
    key: storeGet(KEY_STORE) || "",
    models: [],
    history: [], // OpenAI chat messages of this conversation (without the system prompt)
    attachments: [], // {kind: "image"|"audio", name, blob, url, format, seconds}
    busy: false,
    abort: null,
    recorder: null,
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
        if (text.trim()) message = text.trim().slice(0, 500);
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

  function showError(err) {
    const d = typeof err === "string" ? { title: "", message: err } : describe(err);
    el["error-title"].textContent = d.title;
    el["error-message"].textContent = d.message;
    el.error.hidden = false;
    if (err instanceof ApiError && err.status === 401) askForKey(err.message);
    return d;
  }
  function clearError() { el.error.hidden = true; }

  // ------------------------------------------------------------ API
  function api(path, init) {
    const opts = Object.assign({}, init || {});
    const headers = new Headers(opts.headers || {});
    if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
    opts.headers = headers;
    return fetch(path, opts);
  }

  // ------------------------------------------------------------ API key
  function askForKey(serverMessage) {
    el.auth.hidden = false;
    el["key-button"].setAttribute("aria-expanded", "true");
    el["auth-message"].textContent = state.key
      ? `The server did not accept the API key (401: ${serverMessage}). Enter the right key.`
      : "This server needs an API key. Enter it to use the models " +
        "(mlxk serve --api-key KEY was given one).";
    el["auth-message"].className = "auth-message " + (state.key ? "bad" : "ask");
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
  function hintFor(m) {
    const caps = m.capabilities || [];
    switch (kindOf(m)) {
      case "stt":
        return "Speech to text: record or attach audio, then Send — the transcript streams in segment by segment, with timestamps and progress.";
      case "other":
        return "Not a chat model (embeddings): use it through the API.";
      default:
        if (caps.includes("vision") && caps.includes("audio")) return "Chat with text, images and audio.";
        if (caps.includes("vision")) return "Chat; attach images to ask about them.";
        if (caps.includes("audio")) return "Chat; record or attach audio.";
        return "Text chat.";
    }
  }

  function showModelInfo() {
    const m = current();
    el["model-info"].replaceChildren();
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

  async function loadModels(quiet) {
    if (!quiet) setStatus("Loading the model list…");
    let res;
    try {
      res = await api("/v1/models");
    } catch (e) {
      showError(e);
      setStatus("");
      return false;
    }
    if (!res.ok) {
      const err = await apiError(res);
      if (!quiet || err.status === 401) showError(err);
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
      const caps = (m.capabilities || []).filter((c) => c !== "text-generation").join(", ");
      const opt = h("option", { value: m.id, text: caps ? `${m.id} — ${caps}` : m.id });
      if (kindOf(m) === "other") opt.disabled = true;
      el.model.append(opt);
    }
    const usable = state.models.filter((m) => kindOf(m) !== "other");
    if (wanted && usable.some((m) => m.id === wanted)) el.model.value = wanted;
    else if (usable.length) el.model.value = usable[0].id;
    showModelInfo();
    if (!quiet) {
      setStatus(state.models.length
        ? `${state.models.length} model${state.models.length === 1 ? "" : "s"} on this server.`
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
    a.url = URL.createObjectURL(a.blob);
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

  function userBubble(text, atts) {
    const body = h("div", { class: "body" });
    if (text) body.append(h("p", { class: "plain", text }));
    const media = h("div", { class: "media" });
    for (const a of atts) {
      if (a.kind === "image") media.append(h("img", { src: a.url, alt: `attached image ${a.name}` }));
      else media.append(h("figure", { class: "clip" },
        h("audio", { controls: true, src: a.url, preload: "metadata", "aria-label": `audio ${a.name}` }),
        h("figcaption", { text: a.seconds ? `${a.name} · ${a.seconds.toFixed(1)} s` : a.name })));
    }
    if (media.childElementCount) body.append(media);
    const node = h("article", { class: "msg user" },
      h("header", {}, h("span", { class: "who", text: "You" })), body);
    logAppend(node);
    return node;
  }

  function assistantBubble(model, kind) {
    const meta = h("span", { class: "meta" });
    const body = h("div", { class: kind === "transcript" ? "body" : "body md" });
    const node = h("article", {
      class: `msg assistant ${kind || ""}`.trim(), "data-state": "pending", "aria-busy": "true",
    }, h("header", {}, h("span", { class: "who", text: model }),
      kind === "transcript" ? h("span", { class: "tag", text: "transcript" }) : null, meta), body,
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
    storeSet(SETTINGS_STORE, JSON.stringify({ temperature: s.temperature, max_tokens: s.max_tokens, system: s.system }));
  }
  function loadSettings() {
    try {
      const s = JSON.parse(storeGet(SETTINGS_STORE) || "{}");
      if (typeof s.temperature === "number") el.temperature.value = String(s.temperature);
      if (typeof s.max_tokens === "number") el["max-tokens"].value = String(s.max_tokens);
      if (typeof s.system === "string") el.system.value = s.system;
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

  async function chat(model, text, atts) {
    const s = settings();
    const content = await contentFor(text, atts);
    const turn = { role: "user", content };
    const userNode = userBubble(text, atts);
    const b = assistantBubble(model.id);
    const earlier = adaptHistory(state.history, model);
    state.history.push(turn);
    const messages = (s.system ? [{ role: "system", content: s.system }] : []).concat(earlier.messages, [turn]);
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
      paint();
      if (!reply) b.body.append(h("p", { class: "dim", text: "(empty answer)" }));
      state.history.push({ role: "assistant", content: reply });
      b.node.dataset.state = "done";
      const secs = (performance.now() - t0) / 1000;
      const meta = [];
      if (usage) meta.push(`${usage.completion_tokens} tokens`);
      meta.push(`${secs.toFixed(1)} s`);
      if (usage && first) {
        const gen = (performance.now() - first) / 1000;
        if (gen > 0 && usage.completion_tokens > 1) meta.push(`${((usage.completion_tokens - 1) / gen).toFixed(1)} tok/s`);
      }
      if (finish === "length") meta.push("cut at max tokens");
      b.meta.textContent = meta.join(" · ");
      setStatus(`Answered in ${secs.toFixed(1)} s.${note}`);
    } catch (err) {
      if (frame) cancelAnimationFrame(frame);
      if (err && err.name === "AbortError") {
        paint();
        b.body.append(h("p", { class: "dim", text: "(stopped)" }));
        b.node.dataset.state = "stopped";
        state.history.push({ role: "assistant", content: reply });
        setStatus("Stopped.");
      } else {
        if (reply) { // the stream broke midway: keep what came as the answer
          paint();
          state.history.push({ role: "assistant", content: reply });
        } else { // refused: not part of the conversation, or it would poison every next request
          state.history.splice(state.history.indexOf(turn), 1);
          userNode.classList.add("unsent");
          userNode.querySelector("header").append(h("span", { class: "tag warn", text: "not sent" }));
        }
        failBubble(b, err, Boolean(reply));
        showError(err);
        setStatus("");
      }
    } finally {
      b.node.removeAttribute("aria-busy");
      state.abort = null;
      setBusy(false);
      loadModels(true); // "loaded" changed
    }
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
      const li = h("li", { "data-id": id },
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

  async function transcribe(model, prompt, a) {
    userBubble("", [a]);
    const b = assistantBubble(model.id, "transcript");
    const form = new FormData();
    const name = a.name && a.name.includes(".") ? a.name : `${a.name || "audio"}.${a.format || "wav"}`;
    form.append("file", a.blob, name);
    form.append("model", model.id);
    form.append("response_format", "json");
    form.append("stream", "true");
    if (prompt) form.append("prompt", prompt);
    const ctrl = new AbortController();
    state.abort = ctrl;
    setStatus(model.loaded ? `Transcribing ${a.name}…` : `Loading ${model.id} and transcribing…`);
    const t0 = performance.now();
    const v = transcriptView(b);
    let language = null;
    try {
      const res = await api("/v1/audio/transcriptions", {
        method: "POST", body: form, signal: ctrl.signal, headers: { Accept: "text/event-stream" },
      });
      if (!res.ok) throw await apiError(res);
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
              ? `Transcribing ${a.name}: ${v.done.toFixed(1)} s of ${v.duration.toFixed(1)} s…`
              : `Transcribing ${a.name}…`);
          } else if (ev.type === "transcript.text.done") {
            if (typeof ev.language === "string") language = ev.language;
            v.finish(ev);
            finished = true;
            break;
          }
        }
        if (!finished) throw new ApiError(500, "the transcript stream ended before it was done");
      } else {
        const t = await res.json();
        if (typeof t.language === "string") language = t.language;
        v.whole(t);
      }
      b.body.append(h("button", {
        type: "button", class: "small", text: "Use as message",
        onclick: () => { el.message.value = v.text.trim(); el.message.focus(); },
      }));
      const secs = (performance.now() - t0) / 1000;
      const facts = [language, v.duration !== null ? `${v.duration.toFixed(1)} s audio` : null,
        v.seen ? `${v.seen} segment${v.seen === 1 ? "" : "s"}` : null, `${secs.toFixed(1)} s`].filter(Boolean);
      b.meta.textContent = facts.join(" · ");
      b.node.dataset.state = "done";
      setStatus(`Transcribed in ${secs.toFixed(1)} s.`);
      return true;
    } catch (err) {
      const partial = Boolean(v.text.trim()) || v.seen > 0;
      v.stop();
      if (err && err.name === "AbortError") {
        if (!partial) b.body.replaceChildren();
        b.body.append(h("p", { class: "dim", text: "(stopped)" }));
        b.node.dataset.state = "stopped";
        setStatus("Stopped.");
      } else {
        failBubble(b, err, partial); // broke midway: what came stays, the error below it
        showError(err);
        setStatus("");
      }
      return false;
    } finally {
      b.node.removeAttribute("aria-busy");
      state.abort = null;
    }
  }

  async function transcribeAll(model, prompt, atts) {
    const audio = atts.filter((a) => a.kind === "audio");
    if (!audio.length) {
      showError(`${model.id} is a speech-to-text model: record (Record button) or attach an audio file, then Send.`);
      return false;
    }
    if (audio.length < atts.length) showError(`${model.id} takes audio only; the images were left out.`);
    setBusy(true);
    try {
      for (const a of audio) if (!(await transcribe(model, prompt, a))) return false;
      return true;
    } finally {
      setBusy(false);
      loadModels(true);
    }
  }

  // ------------------------------------------------------------ sending
  function setBusy(busy) {
    state.busy = busy;
    el.send.textContent = busy ? "Stop" : "Send";
    el.send.classList.toggle("stop", busy);
    el.send.setAttribute("aria-label", busy ? "Stop the answer" : "Send");
    document.body.classList.toggle("busy", busy);
  }

  async function send() {
    if (state.busy) { if (state.abort) state.abort.abort(); return; }
    if (state.recorder) await stopRecording();
    const model = current();
    if (!model) { showError("No model selected: the model list is empty or could not be loaded."); return; }
    const text = el.message.value.trim();
    const atts = state.attachments.slice();
    if (!text && !atts.length) { el.message.focus(); return; }
    clearError();
    saveSettings();
    el.message.value = "";
    state.attachments = [];
    renderAttachments();
    if (kindOf(model) === "stt") {
      if (!(await transcribeAll(model, text, atts)) && !atts.some((a) => a.kind === "audio")) {
        el.message.value = text; // nothing was sent: give the text back
        state.attachments = atts;
        renderAttachments();
      }
      return;
    }
    await chat(model, text, atts);
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

  async function startRecording() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("The browser offers no microphone here: recording needs https or a localhost address (http://127.0.0.1:PORT). Attach an audio file instead.");
      return;
    }
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) { showError("This browser has no Web Audio; attach an audio file instead."); return; }
    clearError();
    el.mic.disabled = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (e) {
      el.mic.disabled = false;
      showError(micError(e));
      return;
    }
    const ctx = new Ctx();
    const r = { stream, ctx, chunks: [], node: null, started: 0, rate: ctx.sampleRate, peak: 0, timer: 0, via: "" };
    const onChunk = (f32) => {
      r.chunks.push(f32);
      let sum = 0;
      for (let i = 0; i < f32.length; i++) sum += f32[i] * f32[i];
      r.peak = Math.max(r.peak * 0.6, Math.sqrt(sum / Math.max(1, f32.length)));
    };
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
          r.node.port.onmessage = (e) => { if (e.data instanceof Float32Array) onChunk(e.data); };
          r.via = "AudioWorklet";
        } catch (_) { r.node = null; }
      }
      if (!r.node) { // older browsers: the deprecated ScriptProcessorNode
        r.node = ctx.createScriptProcessor(4096, 1, 1);
        r.node.onaudioprocess = (e) => onChunk(new Float32Array(e.inputBuffer.getChannelData(0)));
        r.via = "ScriptProcessor";
      }
      source.connect(r.node);
      r.node.connect(sink);
      r.source = source;
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      ctx.close().catch(() => {});
      el.mic.disabled = false;
      showError(`Recording could not start: ${e.message || e}`);
      return;
    }
    r.started = performance.now();
    r.timer = setInterval(() => {
      const secs = (performance.now() - r.started) / 1000;
      el["rec-time"].textContent = `${secs.toFixed(1)} s`;
      const db = 20 * Math.log10(Math.max(1e-5, r.peak));
      el["rec-level"].style.width = `${Math.max(2, Math.min(100, ((db + 60) / 60) * 100))}%`;
    }, 100);
    state.recorder = r;
    el.mic.disabled = false;
    el.mic.setAttribute("aria-pressed", "true");
    el.mic.classList.add("recording");
    el["mic-label"].textContent = "Stop";
    el.mic.title = "Stop recording";
    el.rec.hidden = false;
    el["rec-time"].textContent = "0.0 s";
    setStatus(`Recording (${r.rate} Hz, ${r.via})… press Stop when done.`);
  }

  async function stopRecording() {
    const r = state.recorder;
    if (!r) return;
    state.recorder = null;
    clearInterval(r.timer);
    if (r.node && r.node.port) {
      await new Promise((resolve) => {
        const done = setTimeout(resolve, 500);
        r.node.port.onmessage = (e) => {
          if (e.data === "flushed") { clearTimeout(done); resolve(); } else if (e.data instanceof Float32Array) r.chunks.push(e.data);
        };
        r.node.port.postMessage("flush");
      });
    }
    r.stream.getTracks().forEach((t) => t.stop());
    try { r.source.disconnect(); r.node.disconnect(); } catch (_) { /* already gone */ }
    r.ctx.close().catch(() => {});
    el.mic.setAttribute("aria-pressed", "false");
    el.mic.classList.remove("recording");
    el["mic-label"].textContent = "Record";
    el.mic.title = "Record from the microphone";
    el.rec.hidden = true;
    let total = 0;
    for (const c of r.chunks) total += c.length;
    if (!total) { showError("The microphone delivered no sound."); setStatus(""); return; }
    const pcm = new Float32Array(total);
    let at = 0;
    for (const c of r.chunks) { pcm.set(c, at); at += c.length; }
    const mono16k = resample(pcm, r.rate, TARGET_RATE);
    const wav = encodeWav(mono16k, TARGET_RATE);
    const seconds = mono16k.length / TARGET_RATE;
    const stamp = new Date().toTimeString().slice(0, 8).replace(/:/g, "");
    addAttachment({ kind: "audio", name: `recording-${stamp}.wav`, blob: new Blob([wav], { type: "audio/wav" }), format: "wav", seconds });
    setStatus(`Recorded ${seconds.toFixed(1)} s: ${r.rate} Hz → 16 kHz mono 16-bit WAV, ${fmtBytes(wav.byteLength)}. Send it, or record more.`);
  }

  // ------------------------------------------------------------ wiring
  function newChat() {
    if (state.busy && state.abort) state.abort.abort();
    state.history = [];
    for (const n of Array.from(el.log.querySelectorAll(".msg"))) n.remove();
    el.empty.hidden = false;
    clearError();
    setStatus("New conversation.");
    el.message.focus();
  }

  function init() {
    loadSettings();
    el.composer.addEventListener("submit", (e) => { e.preventDefault(); send(); });
    el.message.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
      if (e.key === "Escape" && state.busy && state.abort) state.abort.abort();
    });
    el.model.addEventListener("change", () => { storeSet(MODEL_STORE, el.model.value); showModelInfo(); clearError(); });
    el.refresh.addEventListener("click", () => loadModels(false));
    el["new-chat"].addEventListener("click", newChat);
    el["key-button"].addEventListener("click", () => {
      if (el.auth.hidden) {
        el.auth.hidden = false;
        el["key-button"].setAttribute("aria-expanded", "true");
        el["auth-message"].textContent = state.key ? "A key is stored for this server." : "No key is stored (a server started without --api-key needs none).";
        el["auth-message"].className = "auth-message";
        el["api-key"].focus();
      } else hideAuth();
    });
    el["auth-form"].addEventListener("submit", async (e) => {
      e.preventDefault();
      const key = el["api-key"].value.trim();
      if (!key) { el["auth-message"].textContent = "Enter the key first."; el["api-key"].focus(); return; }
      state.key = key;
      storeSet(KEY_STORE, key);
      el["api-key"].value = "";
      if (await loadModels(false)) { clearError(); setStatus("Key accepted. " + el.status.textContent); el.message.focus(); }
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
    el.mic.addEventListener("click", () => (state.recorder ? stopRecording() : startRecording()));
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
    loadModels(false);
  }

  // For the tests and the curious: the pure parts, no state.
  window.mlxkUi = { renderMarkdown, resample, encodeWav };
  init();
})();
