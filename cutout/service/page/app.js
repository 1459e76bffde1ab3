// Cutout upload page: plain JS, no build step, no external resources.
// Talks to the API next to it: api/models, api/remove (one photo), api/batch (zip of all).
"use strict";

const $ = (sel) => document.querySelector(sel);
const items = [];  // {file, card, url, resultUrl, state}
let busy = false;

function options() {
  const o = new URLSearchParams();
  const model = $("#model").value;
  if (model) o.set("model", model);
  if ($("#om").checked) o.set("om", "true");
  if ($("#ppm").checked) o.set("ppm", "true");
  const refine = $("#refine").value;
  if (refine !== "none") o.set("refine", refine);
  if (!$("#om").checked) {
    if ($("#decontaminate").checked) o.set("decontaminate", "true");
    const bg = $("#background").value;
    if (bg === "color") o.set("background", $("#color").value);
    else if (bg !== "transparent") o.set("background", bg);
  }
  return o;
}

function setStatus(text) { $("#status").textContent = text; }

function updateButtons() {
  const done = items.filter((it) => it.state === "done").length;
  $("#zip").disabled = busy || items.length === 0;
  $("#clear").disabled = busy || items.length === 0;
  $("#redo").disabled = busy || items.length === 0;
  if (!busy) setStatus(items.length ? `${done} of ${items.length} photos cut out.` : "No photos yet.");
}

async function errorText(resp) {
  try {
    const j = await resp.json();
    return j.message || JSON.stringify(j);
  } catch (e) {
    return `HTTP ${resp.status}`;
  }
}

function addFiles(fileList) {
  const files = Array.from(fileList).filter((f) => f.size > 0);
  for (const file of files) {
    const card = $("#card-template").content.firstElementChild.cloneNode(true);
    card.querySelector(".name").textContent = file.name;
    card.dataset.name = file.name;
    const url = URL.createObjectURL(file);
    card.querySelector(".orig").src = url;
    $("#cards").appendChild(card);
    items.push({ file, card, url, resultUrl: null, state: "waiting" });
  }
  processPending();
}

async function processOne(it) {
  const st = it.card.querySelector(".state");
  st.className = "state";
  st.textContent = "cutting out…";
  it.state = "working";
  const body = new FormData();
  body.append("file", it.file, it.file.name);
  const t0 = performance.now();
  let resp;
  try {
    resp = await fetch("api/remove?" + options().toString(), { method: "POST", body });
  } catch (e) {
    it.state = "error";
    st.className = "state error";
    st.textContent = "network error: " + e;
    return;
  }
  if (!resp.ok) {
    it.state = "error";
    st.className = "state error";
    st.textContent = await errorText(resp);
    return;
  }
  const blob = await resp.blob();
  if (it.resultUrl) URL.revokeObjectURL(it.resultUrl);
  it.resultUrl = URL.createObjectURL(blob);
  for (const img of it.card.querySelectorAll(".cut, .cut2")) img.src = it.resultUrl;
  const ext = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
  const a = it.card.querySelector(".download");
  a.href = it.resultUrl;
  a.download = it.file.name.replace(/\.[^.]*$/, "") + "." + ext;
  a.textContent = `Download ${ext.toUpperCase()}`;
  a.hidden = false;
  it.state = "done";
  it.card.classList.add("done");
  st.className = "state done";
  st.textContent = `done in ${((performance.now() - t0) / 1000).toFixed(1)} s (${(blob.size / 1024).toFixed(0)} KB)`;
}

async function processPending() {
  if (busy) return;
  busy = true;
  updateButtons();
  try {
    for (;;) {
      const it = items.find((x) => x.state === "waiting");
      if (!it) break;
      const n = items.filter((x) => x.state === "done" || x.state === "error").length + 1;
      setStatus(`Cutting out ${n} of ${items.length}…`);
      await processOne(it);
    }
  } finally {
    busy = false;
    updateButtons();
    refreshRuntime();
  }
}

async function refreshRuntime() {
  try {
    showRuntime((await (await fetch("api/models")).json()).runtime);
  } catch (e) { /* the line keeps its last text */ }
}

async function downloadZip() {
  if (!items.length) return;
  busy = true;
  updateButtons();
  setStatus(`Preparing a zip of ${items.length} photos…`);
  try {
    const body = new FormData();
    for (const it of items) body.append("file", it.file, it.file.name);
    const resp = await fetch("api/batch?" + options().toString(), { method: "POST", body });
    if (!resp.ok) {
      busy = false;
      updateButtons();
      setStatus("Zip failed: " + (await errorText(resp)));
      return;
    }
    const blob = await resp.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "cutouts.zip";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 10000);
    busy = false;
    updateButtons();
    setStatus(`Zip of ${items.length} photos downloaded (${(blob.size / 1024).toFixed(0)} KB).`);
  } finally {
    busy = false;
    $("#zip").disabled = items.length === 0;
  }
}

function clearAll() {
  for (const it of items) {
    URL.revokeObjectURL(it.url);
    if (it.resultUrl) URL.revokeObjectURL(it.resultUrl);
    it.card.remove();
  }
  items.length = 0;
  updateButtons();
}

function redoAll() {
  for (const it of items) {
    it.state = "waiting";
    it.card.classList.remove("done");
    const st = it.card.querySelector(".state");
    st.className = "state";
    st.textContent = "waiting…";
  }
  processPending();
}

async function loadModels() {
  const sel = $("#model");
  try {
    const resp = await fetch("api/models");
    const data = await resp.json();
    for (const m of data.models) {
      const opt = document.createElement("option");
      opt.value = m.name;
      const usable = m.installed || m.downloadable;
      opt.textContent = m.name + (m.installed ? "" : m.downloadable ? " (downloads on first use)" : " (not installed)");
      opt.disabled = !usable;
      opt.title = m.description;
      if (m.name === data.default) opt.selected = true;
      sel.appendChild(opt);
    }
    applyFeatures(data.features || {});
    showRuntime(data.runtime);
  } catch (e) {
    setStatus("Could not list models: " + e);
  }
}

// Which onnxruntime build runs the models, and on which provider each loaded model really runs.
function showRuntime(rt) {
  const el = $("#runtime");
  if (!el || !rt) return;
  if (rt.error) { el.textContent = rt.error; return; }
  const inUse = Object.entries(rt.in_use || {}).map(([m, p]) => `${m} on ${p}`);
  el.textContent = `${(rt.distributions || []).join(", ") || "onnxruntime"} ${rt.version || ""}` +
    ` · providers: ${(rt.available_providers || []).join(", ")}` +
    ` · in use: ${inUse.length ? inUse.join("; ") : "no model loaded yet"}`;
}

// Options this server cannot do (a build without Mask Refine / Composite Background) are greyed out.
function applyFeatures(f) {
  const refine = f.refine || ["none"];
  for (const opt of $("#refine").options) {
    opt.disabled = !refine.includes(opt.value);
    if (opt.disabled) opt.textContent += " (not in this build)";
  }
  const backgrounds = f.backgrounds || ["transparent", "colour"];
  for (const opt of $("#background").options) {
    const key = opt.value === "color" ? "colour" : opt.value;
    opt.disabled = !backgrounds.includes(key);
    if (opt.disabled) opt.textContent += " (not in this build)";
  }
  const dc = $("#decontaminate");
  dc.disabled = !f.decontaminate;
  dc.checked = !!f.decontaminate;  // on by default where available, as on the nodes
  if (dc.disabled) dc.parentElement.title = "needs Composite Background, not in this build";
}

function setupDrop() {
  const drop = $("#drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => addFiles(e.dataTransfer.files));
  $("#files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  // a drop that misses the zone must not navigate away from the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

function setupColor() {
  const apply = () => document.documentElement.style.setProperty("--solid", $("#color").value);
  $("#color").addEventListener("input", apply);
  apply();
}

async function loadLimits() {
  try {
    const spec = await (await fetch("api/openapi.json")).json();
    const m = /Limits on this server: ([^.]*)\./.exec(spec.info.description);
    if (m) $("#limits").textContent = "Limits: " + m[1] + ".";
  } catch (e) { /* optional */ }
}

$("#zip").addEventListener("click", downloadZip);
$("#clear").addEventListener("click", clearAll);
$("#redo").addEventListener("click", redoAll);
setupDrop();
setupColor();
loadModels();
loadLimits();
updateButtons();
