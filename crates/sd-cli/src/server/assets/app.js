// The page's logic: read /api/v1/info, submit a job, follow its events, show the results.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // { id, source: EventSource }
let eventCount = 0;
let strengthTouched = false;

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) {
      const { param, message } = body.error;
      return param && !message.startsWith(param) ? `${param}: ${message}` : message;
    }
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function loadInfo() {
  const response = await fetch("/api/v1/info");
  if (!response.ok) {
    showError(await errorMessage(response));
    return;
  }
  const info = await response.json();
  const m = info.model;
  $("model").textContent = `${m.name} · ${m.width}×${m.height}` + (info.safety_check && m.safety_checker ? " · safety checker on" : "");
  const select = $("scheduler");
  for (const s of info.schedulers) {
    const option = document.createElement("option");
    option.value = s.name;
    option.textContent = s.label;
    select.appendChild(option);
  }
  $("steps").max = info.limits.max_steps;
  $("image_count").max = info.limits.max_images;
  $("img2img").hidden = !m.image_to_image;
}

function number(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

async function buildRequest() {
  const request = {
    prompt: $("prompt").value,
    negative_prompt: $("negative_prompt").value,
    steps: number("steps"),
    guidance_scale: number("guidance_scale"),
    seed: number("seed"),
    scheduler: $("scheduler").value || undefined,
    image_count: number("image_count"),
    preview_every: number("preview_every"),
  };
  const image = $("image").files[0];
  const mask = $("mask").files[0];
  if (image) {
    request.image = await readAsDataUrl(image);
    // With a mask the server repaints from noise (strength 1) unless the user set one.
    if (!mask || strengthTouched) request.strength = number("strength");
  }
  if (mask) {
    request.mask = await readAsDataUrl(mask);
  }
  return request;
}

function setRunning(running) {
  $("generate").disabled = running;
  $("cancel").disabled = !running;
}

function setStatus(text) {
  $("status").textContent = text;
}

function follow(job) {
  const source = new EventSource(`/api/v1/jobs/${job.id}/events`);
  current = { id: job.id, source };
  const finish = () => {
    source.close();
    current = null;
    setRunning(false);
  };
  source.addEventListener("queued", (e) => {
    const j = JSON.parse(e.data);
    setStatus(`Queued: place ${j.position}.`);
  });
  source.addEventListener("running", (e) => {
    const j = JSON.parse(e.data);
    eventCount += 1;
    $("progress").dataset.events = String(eventCount);
    if (j.total) {
      const eta = j.eta_s !== undefined ? `, ${j.eta_s.toFixed(1)} s left` : "";
      setStatus(`Step ${j.step} of ${j.total} · ${j.it_per_s.toFixed(2)} it/s${eta}`);
      $("progress").max = j.total;
      $("progress").value = j.step;
    }
    if (j.preview) {
      $("preview").src = j.preview;
      $("preview").hidden = false;
    }
  });
  source.addEventListener("done", (e) => {
    const j = JSON.parse(e.data);
    finish();
    $("progress").value = $("progress").max;
    setStatus(`Done: ${j.images.length} image(s) in ${j.seconds.toFixed(2)} s.`);
    showError((j.warnings || []).map((w) => `warning: ${w}`).join("\n"));
    showResults(j);
  });
  source.addEventListener("failed", (e) => {
    const j = JSON.parse(e.data);
    finish();
    setStatus("Failed.");
    showError(j.error ? j.error.message : "the job failed");
  });
  source.addEventListener("cancelled", (e) => {
    const j = JSON.parse(e.data);
    finish();
    setStatus(`Cancelled after ${j.step || 0} step(s).`);
  });
  source.onerror = () => {
    if (current && current.source === source && source.readyState === EventSource.CLOSED) {
      finish();
      setStatus("Lost the connection to the server.");
    }
  };
}

function showResults(job) {
  const gallery = $("gallery");
  for (const image of job.images) {
    const card = document.createElement("figure");
    card.className = "result";
    if (image.url) {
      const img = document.createElement("img");
      img.src = image.url;
      img.alt = image.file_name;
      card.appendChild(img);
      const link = document.createElement("a");
      link.className = "download";
      link.href = `${image.url}?download=1`;
      link.download = image.file_name;
      link.textContent = `Download ${image.file_name}`;
      card.appendChild(link);
    } else {
      const note = document.createElement("p");
      note.className = "error";
      note.textContent = "Withheld by the safety checker.";
      card.appendChild(note);
    }
    const params = document.createElement("pre");
    params.textContent = image.parameters;
    card.appendChild(params);
    gallery.prepend(card);
  }
}

async function generate(event) {
  event.preventDefault();
  showError("");
  setRunning(true);
  setStatus("Submitting…");
  try {
    const response = await fetch("/api/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(await buildRequest()),
    });
    if (!response.ok) {
      showError(await errorMessage(response));
      setStatus("Idle.");
      setRunning(false);
      return;
    }
    follow(await response.json());
  } catch (e) {
    showError(String(e));
    setStatus("Idle.");
    setRunning(false);
  }
}

async function cancel() {
  if (!current) return;
  const response = await fetch(`/api/v1/jobs/${current.id}/cancel`, { method: "POST" });
  if (!response.ok) showError(await errorMessage(response));
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("strength").addEventListener("input", () => { strengthTouched = true; });
  $("random-seed").addEventListener("click", () => {
    $("seed").value = String(Math.floor(Math.random() * 4294967296));
  });
  loadInfo().catch((e) => showError(String(e)));
});
