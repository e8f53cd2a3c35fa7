// log-analyzer's page: ask, watch a job stream, read its evidence, open past jobs.
// Every piece of log or model text is set with textContent (never innerHTML): a log line
// holding <script> or <img onerror> stays text. Bidirectional controls in it are shown as
// escapes, long lines are folded. The API key lives in sessionStorage only.

const STAGES = ["query_loki", "flatten", "normalize", "call_llm"];
const KEY_STORE = "log-analyzer.key";
const $ = (selector) => document.querySelector(selector);
// Embeddings, overrides, isolates and marks: they reorder what is shown around them
// (`invoice\u202Egnp.exe` reads as `invoiceexe.png`), so they are shown as escapes instead.
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
const FOLD_CHARS = 240; // longer log text is folded to this many characters, with a control
const FOLD_SUMMARY_CHARS = 480; // the findings' summary, which quotes a template, folds later

const state = {
  jobId: null,
  lastSeq: 0,
  ended: false,
  controller: null,
  answer: "",
  window: null,
  renderQueued: false,
  evidence: null, // ids of the templates the model was given, once the result shows them
  invalid: new Set(), // cited ids the server found missing from that evidence
  verification: null, // the server's check of the finished answer (workers/llm/verify.py)
};
const CITATION = /\bT\d{1,4}\b/g; // as the server reads them (workers/llm/answer.py)

// --- small DOM helpers -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : shown(child));
  }
  return node;
}

function escapeOf(char) {
  return `\\u${char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
}

// Text as text nodes, each bidirectional control in it as a marked escape (`\u202E`).
function shown(text) {
  const out = document.createDocumentFragment();
  const value = String(text);
  let last = 0;
  for (const match of value.matchAll(BIDI_CONTROLS)) {
    out.append(document.createTextNode(value.slice(last, match.index)));
    const mark = document.createElement("span");
    mark.className = "bidi";
    mark.title = "a bidirectional control character, shown as its escape";
    mark.textContent = escapeOf(match[0]);
    out.append(mark);
    last = match.index + match[0].length;
  }
  out.append(document.createTextNode(value.slice(last)));
  return out;
}

// The same for a plain string (status lines set with textContent).
function plain(text) {
  return String(text).replace(BIDI_CONTROLS, escapeOf);
}

// Where to fold `text` at `limit`: moved back to a space near it, and so that neither a
// `<redacted:kind>` marker, a cited id nor a surrogate pair is split.
function foldAt(text, limit) {
  let cut = limit;
  const space = text.lastIndexOf(" ", cut);
  if (space > cut - 40) cut = space;
  const open = text.lastIndexOf("<redacted:", cut);
  if (open >= 0 && text.indexOf(">", open) >= cut) cut = open;
  const code = text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
  return cut;
}

// Long log text folded to its first `limit` characters, with a control to show it whole
// (and fold it again); `render` turns a piece of text into nodes.
function foldable(text, render = withRedactions, limit = FOLD_CHARS) {
  const value = String(text ?? "");
  if (value.length <= limit) return render(value);
  const head = value.slice(0, foldAt(value, limit));
  const label = `show all ${value.length.toLocaleString()} characters`;
  const body = el("span", { class: "folded" }, render(head), el("span", { class: "more" }, "…"));
  const button = el("button", { type: "button", class: "unfold", "aria-expanded": "false" }, label);
  button.addEventListener("click", (event) => {
    event.stopPropagation(); // a history row opens its job on a click
    const open = button.getAttribute("aria-expanded") !== "true";
    body.className = open ? "unfolded" : "folded";
    body.replaceChildren(...(open ? [render(value)] : [render(head), el("span", { class: "more" }, "…")]));
    button.setAttribute("aria-expanded", String(open));
    button.textContent = open ? "fold" : label;
  });
  return el("span", { class: "fold" }, body, " ", button);
}

// Text with `<redacted:kind>` markers shown as such (still text, never markup).
function withRedactions(text) {
  const out = document.createDocumentFragment();
  const marker = /<redacted:[a-z_]+>/g;
  let last = 0;
  for (const match of String(text).matchAll(marker)) {
    out.append(shown(text.slice(last, match.index)));
    out.append(el("span", { class: "redacted", title: "redacted before it was stored" }, match[0]));
    last = match.index + match[0].length;
  }
  out.append(shown(String(text).slice(last)));
  return out;
}

function time(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "";
}

// --- the API ------------------------------------------------------------------------------

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { "X-API-Key": key } : {};
}

async function api(method, path, body) {
  const headers = { ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) $("#key-state").textContent = "the API needs a valid key";
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, ok: response.ok, data };
}

// --- asking -------------------------------------------------------------------------------

function utcInput(date) {
  return date.toISOString().slice(0, 19);
}

function pick(minutes) {
  const end = new Date();
  const start = new Date(end.getTime() - minutes * 60000);
  $("#f-start").value = utcInput(start);
  $("#f-end").value = utcInput(end);
  for (const button of document.querySelectorAll(".pick")) {
    button.classList.toggle("active", Number(button.dataset.minutes) === minutes);
  }
  loadNamespaces();
}

async function loadNamespaces() {
  const start = $("#f-start").value;
  const end = $("#f-end").value;
  if (!start || !end) return;
  const query = new URLSearchParams({ start: `${start}Z`, end: `${end}Z` });
  const { ok, data } = await api("GET", `/v1/namespaces?${query}`);
  if (!ok || !Array.isArray(data)) return;
  $("#namespaces").replaceChildren(...data.map((name) => el("option", { value: name })));
}

function clearErrors() {
  for (const node of document.querySelectorAll(".error")) node.textContent = "";
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// 422/403 answers name the field in `loc`: show the message beside it.
function showErrors(detail) {
  if (!Array.isArray(detail)) {
    $("#form-error").textContent = String(detail ?? "the request failed");
    return;
  }
  for (const problem of detail) {
    const loc = (problem.loc || []).filter((part) => part !== "body");
    let key = loc.join(".");
    let slot = document.querySelector(`.error[data-for="${CSS.escape(key)}"]`);
    while (!slot && loc.length > 1) {
      loc.pop();
      key = loc.join(".");
      slot = document.querySelector(`.error[data-for="${CSS.escape(key)}"]`);
    }
    if (!slot) slot = $("#form-error");
    // Several problems may name one field: show them all, not the last.
    slot.textContent = slot.textContent ? `${slot.textContent}; ${problem.msg}` : problem.msg;
    const input = document.querySelector(`[name="${CSS.escape(key)}"]`);
    if (input) input.setAttribute("aria-invalid", "true");
  }
}

function requestBody() {
  const value = (name) => document.querySelector(`[name="${name}"]`).value.trim();
  const filters = { namespace: value("filters.namespace") };
  for (const name of ["pod", "container", "node"]) {
    if (value(`filters.${name}`)) filters[name] = value(`filters.${name}`);
  }
  const body = {
    time_range: { start: `${value("time_range.start")}Z`, end: `${value("time_range.end")}Z` },
    filters,
  };
  if (value("log_filter")) body.log_filter = value("log_filter");
  if (value("question")) body.question = value("question");
  return body;
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const body = requestBody();
  const { status, data } = await api("POST", "/v1/jobs", body);
  if (status !== 202) {
    showErrors(data ? data.detail : `HTTP ${status}`);
    return;
  }
  openJob(data.job_id, body.time_range);
}

// --- watching a job -----------------------------------------------------------------------

function resetWatch(jobId) {
  if (state.controller) state.controller.abort();
  Object.assign(state, { jobId, lastSeq: 0, ended: false, answer: "", controller: null });
  Object.assign(state, { evidence: null, invalid: new Set(), verification: null });
  $("#watch").hidden = false;
  $("#job-title").textContent = `job ${jobId}`;
  setStatus("queued");
  $("#stages").replaceChildren(
    ...STAGES.map((stage) =>
      el("li", { id: `stage-${stage}` }, el("span", { class: "name" }, stage), el("span", { class: "info" }, "waiting")),
    ),
  );
  $("#findings").replaceChildren(el("p", { class: "muted" }, "waiting for normalize…"));
  $("#answer").replaceChildren();
  $("#answer-note").textContent = "";
  showCheck(null);
  $("#evidence tbody").replaceChildren();
  $("#evidence-note").textContent = "";
}

function setStatus(status) {
  const node = $("#job-status");
  node.textContent = status;
  node.className = `status ${status}`;
  $("#cancel").disabled = ["succeeded", "failed", "cancelled"].includes(status);
}

async function openJob(jobId, window) {
  resetWatch(jobId);
  history.replaceState(null, "", `#job=${encodeURIComponent(jobId)}`);
  showTab("ask");
  state.window = window || null;
  if (!state.window) {
    const { ok, data } = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
    if (!ok) {
      $("#form-error").textContent = data && data.detail ? String(data.detail) : "no such job";
      $("#watch").hidden = true;
      return;
    }
    state.window = data.request.time_range;
  }
  follow(jobId);
}

// SSE over fetch (EventSource cannot send the key header); reconnects with Last-Event-ID,
// and applies each event once, by its strictly increasing id.
async function follow(jobId) {
  while (!state.ended && state.jobId === jobId) {
    const controller = new AbortController();
    state.controller = controller;
    try {
      const headers = authHeaders();
      if (state.lastSeq) headers["Last-Event-ID"] = String(state.lastSeq);
      const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
        headers,
        signal: controller.signal,
      });
      if (!response.ok) {
        $("#answer-note").textContent = `(the stream answered HTTP ${response.status})`;
        return;
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          handleBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    if (!state.ended && state.jobId === jobId) await new Promise((r) => setTimeout(r, 1000));
  }
}

function handleBlock(block) {
  let id = null;
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") id = Number(value);
    else if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  let payload;
  try {
    payload = JSON.parse(data.join("\n"));
  } catch {
    return;
  }
  if (id === null) {
    // An error about the stream itself (not a job event).
    if (type === "error") $("#answer-note").textContent = plain(`(stream: ${payload.code}: ${payload.message})`);
    return;
  }
  if (id <= state.lastSeq) return; // already applied
  state.lastSeq = id;
  apply(type, payload.data || {});
}

function apply(type, data) {
  switch (type) {
    case "stage":
      return showStage(data);
    case "findings":
      return showFindings(data);
    case "token":
      state.answer += data.text;
      return queueAnswer();
    case "progress":
      return showProgress(data);
    case "retry":
      state.answer = "";
      renderAnswer();
      $("#answer").prepend(el("p", { class: "cleared" }, `The answer was restarted (${data.reason}); the text so far was discarded.`));
      return;
    case "result":
      // The evidence first: which ids may be links depends on it.
      showEvidence(data);
      state.invalid = new Set((data.citations && data.citations.invalid) || []);
      if (data.findings) showFindings(data.findings);
      state.answer = data.analysis || state.answer;
      state.verification = data.verification || null;
      showCheck(data);
      // A JSON answer that did not parse, or a server that refused the schema: say so.
      if (data.structured_note) $("#answer-note").textContent = plain(`(${data.structured_note})`);
      return renderAnswer();
    case "error":
      $("#answer-note").textContent = plain(`(${data.code}: ${data.message})`);
      return;
    case "cancelled":
      setStatus("cancelled");
      return;
    case "done":
      // A job that ended without a result (failed, cancelled) has no answer to check.
      if ($("#answer-check").classList.contains("pending")) showCheck({});
      state.ended = true;
      setStatus(data.status || "done");
      loadHistory();
      return;
    default:
      return;
  }
}

function showStage(data) {
  const item = document.getElementById(`stage-${data.stage}`);
  if (!item) return;
  setStatus("running");
  item.className = data.state === "finished" ? "finished" : "running";
  const parts = [];
  if (data.state === "finished") {
    for (const [name, value] of Object.entries(data.counts || {})) {
      if (typeof value === "number" && parts.length < 4) parts.push(`${name.replace(/_/g, " ")} ${value.toLocaleString()}`);
    }
    if (data.duration_ms !== undefined && data.duration_ms !== null) parts.push(`${Math.round(data.duration_ms)} ms`);
  } else {
    parts.push("running…");
  }
  item.querySelector(".info").textContent = parts.join(" · ");
}

// The model is still on the prompt: say how far it got and when its first token is due.
function showProgress(data) {
  const info = document.querySelector(`#stage-${data.stage} .info`);
  if (!info) return;
  const read = data.server
    ? `prompt ${data.server.processed.toLocaleString()} / ${data.server.total.toLocaleString()} tokens read`
    : `reading a ${data.prompt_tokens.toLocaleString()}-token prompt`;
  info.textContent = `${read} · ${Math.round(data.elapsed_s)} s (first token due within ${Math.round(data.deadline_s)} s)`;
}

// A cited template id: a link to its evidence row only when the model was given that
// template. Until the result shows the evidence, an id is plain text; after it, an id not in
// the evidence (one the model made up) is struck through, never a link.
function citeLink(id) {
  if (state.evidence === null) {
    return el("span", { class: "cite pending", title: "checked against the evidence when the answer is complete" }, id);
  }
  if (!state.evidence.has(id) || state.invalid.has(id)) {
    return el("span", { class: "cite invalid", title: "not in the evidence the model was given" }, id);
  }
  const link = el("a", { class: "cite", href: `#ev-${id}` }, id);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    const row = document.getElementById(`ev-${id}`);
    if (!row) return;
    for (const other of document.querySelectorAll("tr.target")) other.classList.remove("target");
    row.classList.add("target");
    row.scrollIntoView({ block: "center" });
  });
  return link;
}

// --- the check of the answer against the evidence -------------------------------------------
// The server gives each sentence holding an unsupported claim as [start, end) offsets in code
// points; the answer is rendered with these two marks inserted there, and every piece of text
// between them is set inside <mark class="unsupported">.
const OPEN_MARK = "\uE000";
const CLOSE_MARK = "\uE001";
let inUnsupported = false;

function withMarks(text, render) {
  const out = document.createDocumentFragment();
  for (const part of String(text).split(/([\uE000\uE001])/)) {
    if (part === OPEN_MARK) inUnsupported = true;
    else if (part === CLOSE_MARK) inUnsupported = false;
    else if (part && inUnsupported) {
      out.append(el("mark", { class: "unsupported", title: "not found in the evidence, the findings or the request" }, render(part)));
    } else if (part) out.append(render(part));
  }
  return out;
}

function markedAnswer(text, verification) {
  const chars = Array.from(String(text).replace(/[\uE000\uE001]/g, ""));
  const spans = (verification && verification.unsupported_spans) || [];
  for (const span of [...spans].sort((a, b) => b.start - a.start)) {
    chars.splice(span.end, 0, CLOSE_MARK);
    chars.splice(span.start, 0, OPEN_MARK);
  }
  return chars.join("");
}

// Beside the heading: pending while the answer streams, then the verdict and its score.
function showCheck(result) {
  const node = $("#answer-check");
  const check = result && result.verification;
  if (!result) {
    node.className = "check pending";
    node.textContent = "pending: checked against the evidence when the answer is complete";
    return;
  }
  if (!check) {
    node.className = "check";
    node.textContent = result.model_status === "answered" ? "not checked" : "";
    return;
  }
  const claims = check.claims || [];
  const found = claims.filter((claim) => claim.supported).length;
  const score = `grounding ${check.grounding.toFixed(2)}: ${claims.length ? `${found} of ${claims.length} claims found in the evidence` : "no concrete claims"}`;
  const label = { verified: "✔ verified", partly_supported: "◐ partly supported", unverified: "✖ unverified" }[check.verdict] || check.verdict;
  node.className = `check ${check.verdict}`;
  node.textContent = `${label} (${score})`;
}

// Text with template ids (T12) as links to their evidence row (see citeLink).
function withCitations(text) {
  return withMarks(text, citationsIn);
}

function citationsIn(text) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const match of String(text).matchAll(CITATION)) {
    out.append(withRedactions(text.slice(last, match.index)));
    out.append(citeLink(match[0]));
    last = match.index + match[0].length;
  }
  out.append(withRedactions(String(text).slice(last)));
  return out;
}

function showFindings(findings) {
  const box = $("#findings");
  const parts = [el("p", { class: "summary" }, foldable(findings.summary || "", withCitations, FOLD_SUMMARY_CHARS))];
  const causes = findings.probable_causes || [];
  if (causes.length) {
    parts.push(
      el(
        "ul",
        {},
        ...causes.map((cause) =>
          el("li", {}, citeLink(cause.template_id), ` (${cause.confidence}) `, foldable(cause.template), el("br"),
            el("span", { class: "muted" }, (cause.reasons || []).join("; "))),
        ),
      ),
    );
  }
  const timeline = findings.timeline || [];
  if (timeline.length) {
    parts.push(el("p", { class: "muted" }, "Onsets:"));
    parts.push(el("ul", {}, ...timeline.map((t) => el("li", {}, `${time(t.first_seen)} `, citeLink(t.template_id), ` ${t.level}`))));
  }
  box.replaceChildren(...parts);
}

// A small, safe Markdown: paragraphs, lists, headings, fenced code, **bold**, `code`.
function queueAnswer() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    renderAnswer();
  });
}

function inline(text) {
  const out = document.createDocumentFragment();
  const pattern = /\*\*([^*]+)\*\*|`([^`]+)`/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out.append(withCitations(text.slice(last, match.index)));
    out.append(match[1] !== undefined ? el("strong", {}, withCitations(match[1])) : el("code", {}, withMarks(match[2], shown)));
    last = match.index + match[0].length;
  }
  out.append(withCitations(text.slice(last)));
  return out;
}

function renderAnswer() {
  const blocks = [];
  let list = null;
  let code = null;
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) blocks.push(el("p", {}, inline(paragraph.join(" "))));
    paragraph = [];
  };
  inUnsupported = false;
  const check = state.verification;
  for (const line of markedAnswer(state.answer, check).split("\n")) {
    if (line.trim().startsWith("```")) {
      if (code) {
        blocks.push(el("pre", {}, withMarks(code.join("\n"), shown)));
        code = null;
      } else {
        flush();
        list = null;
        code = [];
      }
      continue;
    }
    if (code) {
      code.push(line);
      continue;
    }
    const item = line.match(/^\s*(?:[-*]|\d+\.)\s+(.*)$/);
    const heading = line.match(/^#{1,6}\s+(.*)$/);
    if (item) {
      flush();
      if (!list) {
        list = el("ul");
        blocks.push(list);
      }
      list.append(el("li", {}, inline(item[1])));
    } else if (heading) {
      flush();
      list = null;
      blocks.push(el("h3", {}, inline(heading[1])));
    } else if (!line.trim()) {
      flush();
      list = null;
    } else {
      list = null;
      paragraph.push(line.trim());
    }
  }
  flush();
  if (code) blocks.push(el("pre", {}, withMarks(code.join("\n"), shown)));
  inUnsupported = false;
  const notes = [...$("#answer").querySelectorAll(".cleared")];
  if (check && check.verdict === "unverified") {
    // The text stays readable on demand, under a notice; the findings above are what to trust.
    const why = (check.reasons || []).join("; ");
    $("#answer").replaceChildren(
      ...notes,
      el("p", { class: "notice unverified" }, `The model's text did not match the evidence${why ? ` (${why})` : ""}. The findings above are computed from the logs.`),
      el("details", { class: "unverified" }, el("summary", {}, "Show the model's text anyway"), ...blocks),
    );
    return;
  }
  $("#answer").replaceChildren(...notes, ...blocks);
}

function timelineBar(item) {
  const bar = el("div", { class: "timeline", title: `${time(item.first_seen)} → ${time(item.last_seen)}` });
  if (!state.window) return bar;
  const start = Date.parse(state.window.start);
  const span = Date.parse(state.window.end) - start;
  if (!(span > 0)) return bar;
  const from = Math.max(0, (Date.parse(item.first_seen) - start) / span);
  const to = Math.min(1, (Date.parse(item.last_seen) - start) / span);
  const mark = el("div", { class: `span level-${item.level}` });
  mark.style.left = `${(from * 100).toFixed(2)}%`;
  mark.style.width = `${(Math.max(to - from, 0) * 100).toFixed(2)}%`;
  bar.append(mark);
  return bar;
}

function showEvidence(result) {
  state.evidence = new Set((result.evidence || []).map((item) => item.template_id));
  const rows = (result.evidence || []).map((item) =>
    el(
      "tr",
      { id: `ev-${item.template_id}` },
      el("td", {}, item.template_id),
      el("td", { class: `level-${item.level}` }, item.level),
      el("td", {}, `${item.estimated ? "~" : ""}${item.count.toLocaleString()}`),
      el("td", {}, timelineBar(item)),
      el("td", { class: "seen" }, time(item.first_seen), el("br"), time(item.last_seen)),
      el("td", {}, (item.pods || []).slice(0, 3).join(", ")),
      el("td", { class: "template" }, foldable(item.template),
        ...(item.examples || []).slice(0, 2).map((example) => el("span", { class: "example" }, foldable(example)))),
    ),
  );
  $("#evidence tbody").replaceChildren(...rows);
  const omitted = result.evidence_omitted || 0;
  $("#evidence-note").textContent = `(${rows.length} templates the model saw${omitted ? `; ${omitted} left out to fit its context` : ""})`;
}

async function cancel() {
  if (!state.jobId) return;
  const { ok } = await api("DELETE", `/v1/jobs/${encodeURIComponent(state.jobId)}`);
  if (ok) setStatus("cancelled");
}

// --- history ------------------------------------------------------------------------------

async function loadHistory() {
  const { ok, data } = await api("GET", "/v1/jobs");
  if (!ok || !Array.isArray(data)) return;
  const rows = data.map((job) => {
    const row = el(
      "tr",
      { "data-job": job.job_id },
      el("td", { class: "seen" }, time(job.created_at)),
      el("td", { class: `status ${job.status}` }, job.status),
      el("td", {}, job.namespace),
      el("td", { class: "seen" }, `${time(job.time_range.start)} → ${time(job.time_range.end)}`),
      el("td", {}, job.model || ""),
      el("td", {}, job.tokens_generated ?? ""),
      el("td", {}, job.ttft_s ? `${job.ttft_s.toFixed(2)} s` : ""),
      el("td", { class: "template" }, foldable(job.cause || "")),
    );
    row.addEventListener("click", () => openJob(job.job_id, job.time_range));
    return row;
  });
  $("#history tbody").replaceChildren(...rows);
}

function showTab(name) {
  $("#ask").hidden = name !== "ask";
  $("#history").hidden = name !== "history";
  $("#nav-ask").classList.toggle("active", name === "ask");
  $("#nav-history").classList.toggle("active", name === "history");
  if (name === "history") loadHistory();
}

// --- start --------------------------------------------------------------------------------

function start() {
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    $("#api-key").value = "";
    $("#key-state").textContent = key ? "key set for this tab" : "no key";
    loadNamespaces();
  });
  $("#key-state").textContent = sessionStorage.getItem(KEY_STORE) ? "key set for this tab" : "";
  for (const button of document.querySelectorAll(".pick")) {
    button.addEventListener("click", () => pick(Number(button.dataset.minutes)));
  }
  $("#f-start").addEventListener("change", loadNamespaces);
  $("#f-end").addEventListener("change", loadNamespaces);
  $("#ask-form").addEventListener("submit", submit);
  $("#cancel").addEventListener("click", cancel);
  $("#nav-ask").addEventListener("click", () => showTab("ask"));
  $("#nav-history").addEventListener("click", () => showTab("history"));
  pick(60);
  const match = location.hash.match(/^#job=([0-9a-f]+)$/);
  if (match) openJob(match[1]);
}

start();
