// The moderation pipeline's upload page (notebook 06). Plain JavaScript, no build step.
//
// 1. POST {api}/uploads with JSON {user_id, filename, image: base64}: 202 {job_id, status_url},
//    or 4xx {error, message}, which the page shows as it is.
// 2. GET {api}/jobs/{job_id} every POLL_MS until the job is decided or failed (or POLL_LIMIT_MS
//    passes), showing its status, decision, analyzer results and timeline.
//
// The API lives on another origin than this page, so the browser enforces CORS: the POST's
// preflight is answered by API Gateway (the template's Cors), and every answer must carry
// Access-Control-Allow-Origin from the function, or the page sees only "Failed to fetch".
"use strict";

const POLL_MS = 400;
const POLL_LIMIT_MS = 120000;
const TERMINAL = new Set(["decided", "failed"]);

function apiUrl() {
  const fromQuery = new URLSearchParams(window.location.search).get("api");
  const configured = (window.MODERATION_CONFIG || {}).apiUrl;
  const url = fromQuery || configured || "";
  return url.replace(/\/+$/, "");
}

const $ = (id) => document.getElementById(id);

function setState(state) {
  document.body.dataset.state = state;
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// fetch() that turns a network or CORS refusal into a sentence (the browser hides which it was).
async function call(url, options) {
  try {
    return await fetch(url, options);
  } catch (error) {
    throw new Error(`Could not reach the API at ${url} (${error.message}): it is down, or the browser ` +
                    "refused the answer because it had no Access-Control-Allow-Origin for this page.");
  }
}

async function errorText(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return `${response.status} ${body.error || ""}: ${body.message || text}`.replace(" :", ":");
  } catch (_) {
    return `${response.status}: ${text || response.statusText}`;
  }
}

function renderJob(job, startedAt) {
  $("job").hidden = false;
  $("job-id").textContent = job.job_id;
  $("status").textContent = job.status;
  $("elapsed").textContent = `(${((performance.now() - startedAt) / 1000).toFixed(1)} s)`;
  const decision = $("decision");
  decision.textContent = job.decision || (job.status === "failed" ? "none (failed)" : "pending");
  decision.className = "decision" + (job.decision ? ` decision-${job.decision}` : "");

  const results = $("results");
  results.replaceChildren();
  const moderation = (job.results || {}).moderation;
  const custom = (job.results || {}).custom;
  const rows = [];
  if (moderation) {
    rows.push(["managed moderation", `${moderation.top_category || "no label"} ` +
               `(max confidence ${Number(moderation.max_confidence || 0).toFixed(1)})`]);
  }
  if (custom) {
    rows.push(["custom model", `unsafe probability ${Number(custom.unsafe_probability).toFixed(3)}` +
               (custom.model ? ` (${custom.model})` : "")]);
  }
  if (job.error) rows.push(["error", typeof job.error === "string" ? job.error : JSON.stringify(job.error)]);
  for (const [name, value] of rows) {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    results.append(term, detail);
  }

  const body = $("timeline").tBodies[0];
  body.replaceChildren();
  const timeline = job.timeline || [];
  const first = timeline.length ? Number(timeline[0].at) : 0;
  for (const event of timeline) {
    const row = body.insertRow();
    row.insertCell().textContent = event.stage;
    row.insertCell().textContent = (Number(event.at) - first).toFixed(3);
    row.insertCell().textContent = event.by || "";
  }
}

async function poll(api, jobId, startedAt) {
  const deadline = performance.now() + POLL_LIMIT_MS;
  for (;;) {
    const response = await call(`${api}/jobs/${encodeURIComponent(jobId)}`, {cache: "no-store"});
    if (!response.ok) throw new Error(await errorText(response));
    const job = await response.json();
    renderJob(job, startedAt);
    if (TERMINAL.has(job.status)) return job;
    if (performance.now() > deadline) {
      throw new Error(`Job ${jobId} is still ${job.status} after ${POLL_LIMIT_MS / 1000} s; try again later.`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function upload(event) {
  event.preventDefault();
  clearError();
  $("job").hidden = true;
  const api = apiUrl();
  const file = $("image").files[0];
  if (!api) return showError("No API URL: publish the page with publish_site(), or add ?api=<url> to the address.");
  if (!file) return showError("Pick an image first.");
  $("upload").disabled = true;
  setState("uploading");
  const startedAt = performance.now();
  try {
    const image = await readAsBase64(file);
    const response = await call(`${api}/uploads`, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({user_id: $("user-id").value, filename: file.name, image}),
    });
    if (response.status !== 202) {
      showError(await errorText(response));
      setState("rejected");
      return;
    }
    const accepted = await response.json();
    setState("polling");
    const job = await poll(api, accepted.job_id, startedAt);
    setState(job.status);
  } catch (error) {
    showError(error.message);
    setState("error");
  } finally {
    $("upload").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-url").textContent = apiUrl() || "not configured";
  $("upload-form").addEventListener("submit", upload);
});
