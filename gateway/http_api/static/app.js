// The Tab Agent page: upload a song, follow its job over Server-Sent Events, practise with its
// tab in the player (running or done), the video, downloads.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "tabagent-api-key";
const DRAFT_SECONDS = 5;   // a running job's draft tab is refreshed at most this often
let current = null;   // { id, source: EventSource, parts: {name: part}, duration, status, draftAt, draftTimer }

function keyRequired() {
  const meta = document.querySelector('meta[name="tabagent-auth"]');
  return !!meta && meta.content === "required";
}

function apiKey() {
  return $("api-key").value.trim();
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!resp.ok) {
    let message = resp.statusText;
    try {
      const body = await resp.json();
      message = body.error ? body.error.message : JSON.stringify(body);
    } catch (_) { /* not JSON */ }
    const err = new Error(`${resp.status}: ${message}`);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// Warnings of the job (the separator's fallback first: it shapes everything after it).
function showWarnings(warnings) {
  const box = $("warnings");
  const list = [...(warnings || [])].sort((a, b) => (b.startsWith("separator") ? 1 : 0) - (a.startsWith("separator") ? 1 : 0));
  box.innerHTML = "";
  for (const w of list) {
    const p = document.createElement("p");
    if (w.startsWith("separator")) {
      const strong = document.createElement("strong");
      strong.textContent = "Separation fell back to DSP: ";
      p.append(strong);
    }
    p.append(w);
    box.appendChild(p);
  }
  box.hidden = !list.length;
}

function formatSize(n) {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

// -- uploading ---------------------------------------------------------------------------

function uploadForm() {
  const file = $("file").files[0];
  if (!file) throw new Error("choose an audio file first");
  const parts = [...document.querySelectorAll("input[name=part]:checked")].map((c) => c.value);
  if (!parts.length) throw new Error("choose at least one part");
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("parts", parts.join(","));
  for (const part of parts) {
    const tuning = $(`tuning-${part}`).value.trim();
    if (tuning) form.append("tuning", `${part}=${tuning}`);
    const capo = Number($(`capo-${part}`).value || 0);
    if (capo) form.append("capo", `${part}=${capo}`);
  }
  form.append("video", $("video-on").checked ? "true" : "false");
  if ($("style").value) form.append("style", $("style").value);
  if ($("size").value) form.append("size", $("size").value);
  if ($("title").value.trim()) form.append("title", $("title").value.trim());
  form.append("stems", $("stems").checked ? "true" : "false");
  return form;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const button = $("submit");
  button.disabled = true;
  try {
    const resp = await api("/v1/jobs", { method: "POST", body: uploadForm() });
    const job = await resp.json();
    openJob(job);
    refreshJobs();
  } catch (err) {
    showError(`Upload refused: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

// -- following a job -----------------------------------------------------------------------

function setStatus(status, detail = "") {
  $("job-status").textContent = status;
  $("job-status").dataset.status = status;
  $("job-detail").textContent = detail;
  $("cancel").hidden = !(status === "queued" || status === "running");
}

function stageRow(key) {
  let row = document.querySelector(`#stages [data-stage="${CSS.escape(key)}"]`);
  if (!row) {
    row = document.createElement("div");
    row.className = "stage";
    row.dataset.stage = key;
    row.innerHTML = `<span class="stage-name"></span><progress max="1" value="0"></progress><span class="stage-text"></span>`;
    row.querySelector(".stage-name").textContent = key;
    $("stages").appendChild(row);
  }
  return row;
}

function onProgress(p) {
  const key = p.part ? `${p.stage}:${p.part}` : p.stage;
  const row = stageRow(key);
  const total = p.total_seconds || (current && current.duration) || 0;
  const bar = row.querySelector("progress");
  if (total) {
    bar.max = total;
    bar.value = Math.min(total, p.done_seconds);
  } else {
    bar.removeAttribute("value");
  }
  row.dataset.done = p.done_seconds;
  row.querySelector(".stage-text").textContent =
    total ? `${p.done_seconds.toFixed(1)} / ${total.toFixed(1)} s` : `${p.done_seconds.toFixed(1)} s`;
}

function partBox(name) {
  let part = current.parts[name];
  if (!part) {
    part = current.parts[name] = TabView.newPart(name, null);
    const box = document.createElement("div");
    box.className = "part";
    box.innerHTML = `<h4></h4><pre class="part-tab"></pre>`;
    box.dataset.part = name;
    box.querySelector("h4").textContent = name;
    $("live-tab").appendChild(box);
  }
  return part;
}

function drawPart(part) {
  const box = document.querySelector(`#live-tab [data-part="${CSS.escape(part.name)}"]`);
  const tuning = part.tuning ? ` (${part.tuning.name}, capo ${part.tuning.capo})` : "";
  box.querySelector("h4").textContent =
    `${part.name}${tuning}: ${part.notes.length} notes, final to ${part.finalUntil.toFixed(1)} s`;
  box.querySelector(".part-tab").textContent = TabView.render(part);
}

function onPart(data) {
  const part = partBox(data.part);
  part.tuning = data.tuning;
  drawPart(part);
}

// Another gateway took the job over (or this one restarted it): the song runs again from
// its start, so what the earlier attempt drew is dropped rather than doubled.
function onRestart(data) {
  current.parts = {};
  $("live-tab").innerHTML = "";
  $("stages").innerHTML = "";
  showWarnings([`Restarted (attempt ${data.attempt}): ${data.reason}`]);
}

function onNotes(data) {
  const part = partBox(data.part);
  part.notes.push(...data.notes);
  part.finalUntil = Math.max(part.finalUntil, data.final_until);
  drawPart(part);
  scheduleDraft();
}

// -- the tab player ------------------------------------------------------------------------------

async function loadPlayer() {
  if (!current) return;
  const id = current.id;
  try {
    const data = await (await api(`/v1/jobs/${id}/player`)).json();
    if (!current || current.id !== id) return;
    $("player").hidden = false;
    showWarnings(data.warnings);
    await TabPlayer.show($("player"), data);
  } catch (err) {
    if (err.status === 409) return;   // queued: nothing to play yet
    const box = $("pl-message");
    box.textContent = `Tab player: ${err.message}`;
    box.hidden = false;
    $("player").hidden = false;
  }
}

// While the job runs, the player shows a draft of what is final so far, refreshed now and
// then (never in the middle of playing: it would jump).
function scheduleDraft() {
  if (!current || current.status === "done" || current.draftTimer) return;
  const wait = Math.max(0, DRAFT_SECONDS * 1000 - (Date.now() - (current.draftAt || 0)));
  current.draftTimer = setTimeout(async () => {
    if (!current) return;
    current.draftTimer = null;
    if (current.status === "done") return;
    if (TabPlayer.playing()) { scheduleDraft(); return; }
    current.draftAt = Date.now();
    await loadPlayer();
  }, wait);
}

async function showResult(job) {
  $("result").hidden = false;
  $("live").hidden = true;   // the finished tab is in the player (and tab.txt below), shown once
  showWarnings(job.warnings);
  const list = $("artifacts");
  list.innerHTML = "";
  let video = null;
  for (const a of job.artifacts) {
    const url = new URL(a.url, location.href);
    url.searchParams.set("download", "1");
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = url.pathname + url.search;
    link.download = a.name;
    link.textContent = a.name;
    li.append(link, ` (${formatSize(a.size)}, ${a.content_type})`);
    list.appendChild(li);
    if (a.name === "video.mp4") video = a;
  }
  const player = $("video");
  player.hidden = !video;
  $("no-video").hidden = !!video;
  if (video) player.src = video.url;
  const tab = job.artifacts.find((a) => a.name === "tab.txt");
  if (tab) {
    try {
      $("tab-txt").textContent = await (await api(tab.url)).text();
    } catch (err) {
      showError(`Could not load tab.txt: ${err.message}`);
    }
  }
}

function onEnd(kind, job) {
  if (current && current.source) current.source.close();
  if (current) {
    current.status = kind;
    clearTimeout(current.draftTimer);
    current.draftTimer = null;
  }
  const detail = job.error ? job.error.message : `${job.seconds.toFixed(1)} s of audio in ${job.wall_seconds.toFixed(1)} s`;
  setStatus(kind, detail);
  if (kind === "done") {
    showResult(job);
    loadPlayer();
  }
  refreshJobs();
}

function openJob(job) {
  if (current && current.source) current.source.close();
  if (current) clearTimeout(current.draftTimer);
  if (current && current.id !== job.id) TabPlayer.pause();
  current = { id: job.id, parts: {}, duration: job.duration || 0, source: null, status: job.status,
              draftAt: 0, draftTimer: null };
  $("job").hidden = false;
  $("job-id").textContent = job.id;
  $("stages").innerHTML = "";
  $("live-tab").innerHTML = "";
  $("live").hidden = false;
  $("result").hidden = true;
  $("player").hidden = true;
  $("pl-message").hidden = true;
  showWarnings(job.warnings);
  $("tab-txt").textContent = "";
  $("video").removeAttribute("src");
  setStatus(job.status);
  $("job").scrollIntoView({ behavior: "smooth", block: "start" });
  const source = new EventSource(job.links.events);
  current.source = source;
  const parse = (handler) => (ev) => {
    if (!current || current.source !== source) return;
    handler(JSON.parse(ev.data));
  };
  source.addEventListener("status", parse((d) => {
    setStatus(d.status);
    current.status = d.status;
    if (d.status === "running") scheduleDraft();
  }));
  source.addEventListener("progress", parse(onProgress));
  source.addEventListener("part", parse(onPart));
  source.addEventListener("notes", parse(onNotes));
  source.addEventListener("restart", parse(onRestart));
  for (const kind of ["done", "failed", "cancelled"]) {
    source.addEventListener(kind, parse((d) => onEnd(kind, d)));
  }
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED && current && current.source === source) {
      showError("Lost the job's event stream; open the job again from the list.");
    }
  };
}

async function cancelJob() {
  if (!current) return;
  try {
    await api(`/v1/jobs/${current.id}`, { method: "DELETE" });
  } catch (err) {
    showError(`Cancel failed: ${err.message}`);
  }
}

// -- the job list ----------------------------------------------------------------------------

async function refreshJobs() {
  const body = document.querySelector("#jobs tbody");
  if (keyRequired() && !apiKey()) {
    body.innerHTML = "";
    $("jobs-note").textContent = "Enter the API key to see jobs.";
    return;
  }
  try {
    const list = await (await api("/v1/jobs?limit=20")).json();
    body.innerHTML = "";
    for (const job of list.jobs) {
      const tr = document.createElement("tr");
      tr.dataset.job = job.id;
      const cells = [job.title || job.filename || job.id, job.status, new Date(job.created_at).toLocaleString()];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      const actions = document.createElement("td");
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = "Open";
      open.addEventListener("click", () => openJob(job));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = job.status === "queued" || job.status === "running" ? "Cancel" : "Delete";
      remove.addEventListener("click", async () => {
        try {
          await api(`/v1/jobs/${job.id}`, { method: "DELETE" });
        } catch (err) {
          showError(err.message);
        }
        refreshJobs();
      });
      actions.append(open, remove);
      tr.appendChild(actions);
      body.appendChild(tr);
    }
    $("jobs-note").textContent = list.total > list.jobs.length ? `${list.jobs.length} of ${list.total} shown` : "";
  } catch (err) {
    $("jobs-note").textContent = err.status === 401 ? "Enter the API key to see jobs." : err.message;
  }
}

window.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = localStorage.getItem(KEY_STORE) || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(KEY_STORE, apiKey());
    refreshJobs();
  });
  $("upload-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancelJob);
  $("refresh").addEventListener("click", refreshJobs);
  refreshJobs();
});
