// The chat page: sessions, streamed replies, tool activity, the memory panel.
// It speaks LocalGPT's native API (sessions and their SSE stream) with a bearer key kept in
// localStorage, asked for once when the server answers 401.
"use strict";

const $ = (id) => document.getElementById(id);
// turn: the reply being streamed, { abort: AbortController, sessionId, text }, or null.
const state = { sessions: [], current: localStorage.getItem("localgpt.session"), turn: null, loading: null };
const EMBEDDING_MODEL = "local/all-minilm-l6-v2";

// --- HTTP --------------------------------------------------------------------------------

function headers(json = false) {
  const h = {};
  const token = localStorage.getItem("localgpt.token");
  if (token) h.Authorization = `Bearer ${token}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function askToken() {
  return new Promise((resolve) => {
    const dialog = $("token-dialog");
    dialog.addEventListener("close", () => {
      const value = $("token").value.trim();
      if (value) localStorage.setItem("localgpt.token", value);
      resolve();
    }, { once: true });
    dialog.showModal();
  });
}

async function api(path, { method = "GET", body, signal } = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const resp = await fetch(path, {
      method, signal, headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 401) { await askToken(); continue; }
    if (!resp.ok) {
      let message = resp.statusText;
      try { message = (await resp.json()).error.message || message; } catch { /* not JSON */ }
      throw new Error(`HTTP ${resp.status}: ${message}`);
    }
    return resp;
  }
  throw new Error("no valid API key");
}

const json = async (path, options) => (await api(path, options)).json();

// --- sessions ----------------------------------------------------------------------------

async function loadSessions() {
  state.sessions = await json("/api/sessions");
  const nav = $("sessions");
  nav.replaceChildren(...state.sessions.map((s) => {
    const item = document.createElement("div");
    item.className = "session" + (s.id === state.current ? " active" : "");
    item.dataset.id = s.id;
    const title = document.createElement("span");
    title.className = "title";
    // A chat's title is saved with its first turn; until then, that turn's message.
    title.textContent = s.title || (s.id === state.turn?.sessionId && state.turn.text) || "New chat";
    const remove = document.createElement("button");
    remove.className = "delete";
    remove.type = "button";
    remove.title = "Delete";
    remove.textContent = "×";
    remove.addEventListener("click", async (event) => {
      event.stopPropagation();
      try {
        await api(`/api/sessions/${s.id}`, { method: "DELETE" });
        if (state.current === s.id) await selectSession(null);
        await loadSessions();
      } catch (error) { showError(error); }
    });
    item.append(title, remove);
    item.addEventListener("click", () => selectSession(s.id));
    return item;
  }));
  markBusy();
}

// Disables the delete button of the session that is answering (the server would refuse: 409).
function markBusy() {
  for (const el of document.querySelectorAll(".session")) {
    const remove = el.querySelector(".delete");
    remove.disabled = el.dataset.id === state.turn?.sessionId;
    remove.title = remove.disabled ? "Stop the reply to delete this chat" : "Delete";
  }
}

// Leaves the reply being streamed: it is stopped, and its code no longer touches the page.
function leaveTurn() {
  const turn = state.turn;
  if (!turn) return;
  state.turn = null;
  turn.abort.abort();
  streaming(false);
  setStatus("");
  markBusy();
}

function selectSession(id) {
  if (id && state.turn && id === state.current) return state.loading;
  leaveTurn();
  state.current = id;
  if (id) localStorage.setItem("localgpt.session", id);
  else localStorage.removeItem("localgpt.session");
  $("messages").replaceChildren();
  document.querySelectorAll(".session").forEach((el) => el.classList.toggle("active", el.dataset.id === id));
  state.loading = id ? showSession(id) : null;
  return state.loading;
}

async function showSession(id) {
  let session;
  try {
    session = await json(`/api/sessions/${id}`);
  } catch (error) {
    if (state.current === id) showError(error);
    return;
  }
  if (state.current !== id) return; // another session was picked meanwhile
  pickModel(session.model);
  $("messages").replaceChildren();
  renderHistory(session.messages);
}

// The session's model, or the server's default (listed first) for a session without one.
function pickModel(model) {
  const select = $("model");
  if (model && ![...select.options].some((o) => o.value === model)) select.append(new Option(model, model));
  select.value = model || select.options[0]?.value || "";
}

function renderHistory(messages) {
  const tools = {};
  for (const m of messages) {
    if (m.role === "user") addMessage("user", typeof m.content === "string" ? m.content : JSON.stringify(m.content));
    else if (m.role === "assistant") {
      if (m.content) addMessage("assistant", m.content);
      for (const call of m.tool_calls || []) tools[call.id] = toolBox(call.function.name, call.function.arguments);
    } else if (m.role === "tool" && tools[m.tool_call_id]) {
      finishTool(tools[m.tool_call_id], m.content);
    } else if (m.role === "system" && m.content.startsWith("Summary of the earlier conversation")) {
      addMessage("assistant", `*${m.content}*`);
    }
  }
  scrollDown();
}

// --- messages ----------------------------------------------------------------------------

function addMessage(role, text) {
  const el = document.createElement("div");
  el.className = `message ${role}`;
  if (role === "assistant") el.innerHTML = Markdown.render(text);
  else el.textContent = text;
  $("messages").append(el);
  return el;
}

function showError(error) {
  addMessage("error", `Error: ${error.message}`);
  scrollDown();
}

function toolBox(name, args) {
  const box = document.createElement("details");
  box.className = "tool";
  const summary = document.createElement("summary");
  summary.textContent = `⚙ ${name} …`;
  const pre = document.createElement("div");
  pre.className = "args";
  pre.textContent = args;
  box.append(summary, pre);
  $("messages").append(box);
  return box;
}

function briefly(output) {
  try {
    const parsed = JSON.parse(output);
    if (Array.isArray(parsed)) return `${parsed.length} result${parsed.length === 1 ? "" : "s"}`;
  } catch { /* plain text */ }
  return (output || "").split("\n")[0].slice(0, 80);
}

function finishTool(box, output, failed = false) {
  const summary = box.querySelector("summary");
  const first = briefly(output);
  summary.textContent = summary.textContent.replace(" …", failed ? " ✗ " : " ✓ ") + first;
  const out = document.createElement("div");
  out.className = "output";
  out.textContent = output;
  box.append(out);
}

const scrollDown = () => { const m = $("messages"); m.scrollTop = m.scrollHeight; };
const setStatus = (text) => { $("status").textContent = text; };

function streaming(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
  $("input").disabled = on;
}

// --- sending -----------------------------------------------------------------------------

async function* events(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new Error(`the connection broke before the reply finished (${error.message})`);
      }
      if (chunk.done) return;
      buffer += decoder.decode(chunk.value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) yield JSON.parse(data);
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // a no-op once the stream ended; frees it otherwise
  }
}

async function send(text) {
  const turn = { abort: new AbortController(), sessionId: state.current, text };
  state.turn = turn;
  const live = () => state.turn === turn; // false once the user went to another session
  streaming(true);
  markBusy();
  await state.loading; // the session's history is shown before the new message
  if (!live()) return;
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.classList.add("typing");
  scrollDown();
  setStatus("thinking…");
  const tools = {};
  let content = "", frame = 0, finished = false;
  const paint = () => { frame = 0; reply.innerHTML = Markdown.render(content); scrollDown(); };
  try {
    const resp = await api("/api/chat/stream", {
      method: "POST", signal: turn.abort.signal,
      body: { message: text, session_id: turn.sessionId || undefined, model: $("model").value || undefined },
    });
    for await (const event of events(resp)) {
      if (!live()) break;
      if (event.type === "session") {
        turn.sessionId = event.session_id;
        if (state.current !== event.session_id) { // a new chat: list it now
          state.current = event.session_id;
          localStorage.setItem("localgpt.session", state.current);
          loadSessions().catch(showError);
        }
        markBusy();
      } else if (event.type === "content") {
        content += event.delta;
        setStatus("");
        if (!frame) frame = requestAnimationFrame(paint);
      } else if (event.type === "tool_start") {
        setStatus(`running ${event.name}…`);
        tools[event.id] = toolBox(event.name, event.arguments);
        $("messages").append(reply); // the answer continues below the tool
      } else if (event.type === "tool_end" && tools[event.id]) {
        finishTool(tools[event.id], event.output, event.error);
      } else if (event.type === "error") {
        throw new Error(event.message || event.error?.error?.message || "the model failed");
      } else if (event.type === "done") {
        finished = true;
        const u = event.usage;
        setStatus(u ? `${u.prompt_tokens} tokens in, ${u.completion_tokens} out` : "");
      }
    }
    if (!finished && live()) throw new Error("the reply ended before it finished");
  } catch (error) {
    if (!live()) { /* the page shows another session now */ }
    else if (error.name === "AbortError") setStatus("stopped");
    else { addMessage("error", `Error: ${error.message}`); setStatus(""); }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    if (live()) {
      paint();
      reply.classList.remove("typing");
      if (!content) reply.remove();
      state.turn = null;
      streaming(false);
      $("input").focus();
    }
    loadSessions().catch(showError);
  }
}

// --- models and memory -------------------------------------------------------------------

async function loadModels() {
  const models = (await json("/v1/models")).data.filter((m) => m.id !== EMBEDDING_MODEL);
  const select = $("model");
  select.replaceChildren(...models.map((m) => new Option(m.id, m.id)));
  select.addEventListener("change", async () => {
    if (!state.current) return; // a new session gets the model with its first message
    try {
      await api(`/api/sessions/${state.current}/model`, { method: "POST", body: { model: select.value } });
    } catch (error) { showError(error); }
  });
}

async function searchMemory(query) {
  const { results } = await json(`/api/memory/search?q=${encodeURIComponent(query)}&limit=10`);
  $("memory-file").hidden = true;
  const list = $("memory-results");
  list.hidden = false;
  if (!results.length) { list.textContent = "No matches."; return; }
  list.replaceChildren(...results.map((r) => {
    const hit = document.createElement("div");
    hit.className = "hit";
    const where = document.createElement("div");
    where.className = "where";
    where.textContent = `${r.path}:${r.start_line}-${r.end_line}`;
    const snippet = document.createElement("div");
    snippet.className = "snippet";
    snippet.textContent = r.snippet;
    hit.append(where, snippet);
    hit.addEventListener("click", () => openHit(r));
    return hit;
  }));
}

async function openHit(hit) {
  const start = Math.max(1, hit.start_line - 5);
  const file = await json(`/api/memory/file?path=${encodeURIComponent(hit.path)}&start=${start}&end=${hit.end_line + 5}`);
  $("memory-results").hidden = true;
  $("memory-file").hidden = false;
  $("memory-file-name").textContent = `${file.path} (lines ${hit.start_line}-${hit.end_line})`;
  $("memory-file-lines").replaceChildren(...file.lines.map((text, i) => {
    const no = file.start_line + i;
    const line = document.createElement("span");
    line.className = "line" + (no >= hit.start_line && no <= hit.end_line ? " hit-line" : "");
    const number = document.createElement("span");
    number.className = "no";
    number.textContent = no;
    line.append(number, text);
    return line;
  }));
  document.querySelector(".hit-line")?.scrollIntoView({ block: "center" });
}

// --- wiring ------------------------------------------------------------------------------

function wire() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("input").value.trim();
    if (!text || state.turn) return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => state.turn?.abort.abort());
  // A new chat is made by its first message (with the picked model), so none is left empty.
  $("new-chat").addEventListener("click", () => { selectSession(null); $("input").focus(); });
  const toggle = (open) => { $("memory").hidden = !open; $("memory-toggle").setAttribute("aria-expanded", String(open)); };
  $("memory-toggle").addEventListener("click", () => toggle($("memory").hidden));
  $("memory-close").addEventListener("click", () => toggle(false));
  $("memory-back").addEventListener("click", () => { $("memory-file").hidden = true; $("memory-results").hidden = false; });
  $("memory-search").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("memory-query").value.trim();
    if (query) searchMemory(query).catch((e) => { $("memory-results").textContent = e.message; });
  });
}

// --- the heartbeat -----------------------------------------------------------------------

const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

async function loadHeartbeat() {
  let status;
  try {
    status = await json("/api/heartbeat/status");
  } catch {
    return; // gateway mode, or a key that may not see it: nothing to show
  }
  const box = $("heartbeat");
  const last = status.last_run;
  const parts = [`Heartbeat: ${status.enabled ? "every " + status.interval : "off"}`];
  if (status.running) parts.push("running now");
  const line = document.createElement("div");
  line.textContent = parts.join(", ");
  const rows = [line];
  if (last) {
    const run = document.createElement("div");
    run.className = "outcome-" + last.outcome;
    run.textContent = `last: ${last.outcome} at ${clock(last.started)} (${last.seconds.toFixed(1)} s)`;
    run.title = last.detail || "";
    rows.push(run);
  }
  if (status.next_run) {
    const next = document.createElement("div");
    next.textContent = `next: ${clock(status.next_run)}`;
    rows.push(next);
  }
  box.replaceChildren(...rows);
  box.hidden = !status.enabled && !last;
}

async function start() {
  wire();
  try {
    await loadModels();
    await loadSessions();
    if (state.current && state.sessions.some((s) => s.id === state.current)) await selectSession(state.current);
    else selectSession(null);
  } catch (error) {
    showError(error);
  }
  // Typing is possible once the chat shown is settled: a message sent earlier would be
  // wiped by the first selectSession().
  $("input").disabled = false;
  $("input").focus();
  loadHeartbeat(); // after the sessions: a key, if one is needed, has been asked for
  setInterval(loadHeartbeat, 60000);
}

start();
