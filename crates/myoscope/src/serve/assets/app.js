// The clinic page: plain JavaScript, no framework, nothing fetched from outside this server.
// Flow: the diagnosis of the slide first (one request), then each photo's heat-map (one
// request per photo), so the progress bar reports real steps; a busy server (503) is retried
// after the Retry-After it names.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { files: [], model: null, limits: null, diagnosis: null, photos: [] };

function token() { return sessionStorage.getItem("myoscope-token") || ""; }

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function pct(p) { return (100 * p).toFixed(1) + " %"; }

function showError(msg) {
  const e = $("error");
  if (msg) { e.textContent = msg; e.classList.remove("hidden"); } else { e.textContent = ""; e.classList.add("hidden"); }
}

function progress(value, text) {
  $("progress-box").classList.remove("hidden");
  const p = $("progress");
  if (value === null) p.removeAttribute("value"); else p.value = value;
  $("status").textContent = text;
}

// One API call with upload progress; resolves with the parsed JSON, rejects with a message.
function call(method, path, form, onUpload) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    if (token()) xhr.setRequestHeader("Authorization", "Bearer " + token());
    if (onUpload) xhr.upload.onprogress = (e) => { if (e.lengthComputable) onUpload(e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
      if (xhr.status === 200) return resolve(body);
      const err = new Error(body && body.error ? body.error.message : "HTTP " + xhr.status);
      err.status = xhr.status;
      err.retryAfter = Number(xhr.getResponseHeader("Retry-After") || 0);
      reject(err);
    };
    xhr.onerror = () => reject(new Error("the server did not answer; is `myoscope serve` still running?"));
    xhr.send(form);
  });
}

async function callRetrying(method, path, makeForm, onUpload, label) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call(method, path, makeForm(), onUpload);
    } catch (e) {
      if (e.status === 401) { $("token-box").classList.remove("hidden"); throw e; }
      if (e.status !== 503 || attempt >= 20) throw e;
      const wait = Math.max(1, e.retryAfter || 2);
      progress(null, "The server is busy with other cases; " + label + " again in " + wait + " s…");
      await new Promise((r) => setTimeout(r, wait * 1000));
    }
  }
}

async function loadModel() {
  try {
    const m = await call("GET", "/v1/models", null);
    state.model = m.classifier;
    state.limits = m.limits;
    $("max-photos").textContent = m.limits.max_photos;
    const c = m.classifier;
    let figures = "no validation figures saved with this model";
    if (c.validation) {
      figures = c.validation.figures.map((f) => esc(f.label) + " " + f.value.toFixed(3) +
        (f.interval ? " (" + f.interval[0].toFixed(3) + "–" + f.interval[1].toFixed(3) + ")" : "")).join("; ") +
        " <span class=\"note\">(" + esc(c.validation.source) + ")</span>";
    }
    $("model").innerHTML = "Model <b>" + esc(c.name) + "</b> version <b>" + esc(c.version) + "</b> · " +
      esc(c.kind) + " (" + c.stages.map((s) => s.models).reduce((a, b) => a + b, 0) + " network(s), " +
      esc(c.architecture) + ") · " + (c.stages[0].classes.length === 2 ? "threshold " + c.threshold + " on " + esc(c.positive_group) :
      c.stages[0].classes.length + " classes, the most probable is called") + (c.hierarchy ? ", then the subtype" : "") +
      "<div class=\"figures\">Validation: " + figures + "</div>";
  } catch (e) {
    if (e.status === 401) { $("token-box").classList.remove("hidden"); $("model").textContent = "Enter the access token."; }
    else $("model").textContent = "Cannot read the model: " + e.message;
  }
}

function choose(files) {
  const images = Array.from(files).filter((f) => /\.(jpe?g|png|tiff?)$/i.test(f.name) || /^image\//.test(f.type));
  images.sort((a, b) => a.name.localeCompare(b.name));
  state.files = images;
  const max = state.limits ? state.limits.max_photos : 6;
  const list = $("chosen");
  list.innerHTML = "";
  images.forEach((f) => {
    const li = document.createElement("li");
    li.textContent = f.name + " (" + (f.size / 1024).toFixed(0) + " KiB)";
    list.appendChild(li);
  });
  showError(null);
  if (images.length === 0 && files.length > 0) showError("None of the chosen files is a JPEG, PNG or TIFF photo.");
  else if (images.length > max) showError("Choose at most " + max + " photos of one slide (" + images.length + " chosen).");
  $("go").disabled = images.length === 0 || images.length > max;
}

function form(files, fields) {
  const f = new FormData();
  files.forEach((file) => f.append("photo", file, file.name));
  Object.entries(fields || {}).forEach(([k, v]) => f.append(k, v));
  return f;
}

function renderDiagnosis(d) {
  const m = state.model;
  const [lo, hi] = m.uncertainty_band;
  const rows = (obj) => Object.entries(obj).sort((a, b) => b[1] - a[1])
    .map(([k, v]) => "<tr><td>" + esc(k) + "</td><td class=\"num\">" + pct(v) + "</td></tr>").join("");
  let html = "<div class=\"call\" id=\"call\" data-call=\"" + esc(d.call) + "\">" + esc(d.call) +
    (d.uncertain ? "<span class=\"uncertain\" id=\"uncertain\">UNCERTAIN: second look advised</span>" : "") + "</div>";
  const twoGroups = Object.keys(d.group_probabilities).length === 2;
  html += "<p>P(" + esc(d.positive_group) + ") = <b id=\"p-positive\">" + d.positive_probability.toFixed(3) +
    "</b> over " + d.images + " photo(s); " + (twoGroups ? "called at threshold " + d.threshold :
    "called as the most probable of " + Object.keys(d.group_probabilities).length + " classes") +
    "; uncertain when P(" + esc(d.positive_group) + ") is between " + lo + " and " + hi + ".</p>";
  html += "<div class=\"bar\" title=\"probability, threshold and uncertainty band\"><div class=\"band\" style=\"left:" + 100 * lo +
    "%;width:" + 100 * (hi - lo) + "%\"></div><div class=\"fill\" style=\"width:" + 100 * d.positive_probability +
    "%\"></div>" + (twoGroups ? "<div class=\"threshold\" style=\"left:" + 100 * d.threshold + "%\"></div>" : "") + "</div>";
  html += "<h3>Step 1: group</h3><table>" + rows(d.group_probabilities) + "</table>";
  if (Object.keys(d.subtype_probabilities).length > 0) {
    html += "<h3>Step 2: subtype within " + esc(d.call) + "</h3><table>" + rows(d.subtype_probabilities) + "</table>";
  }
  if (d.subtype) html += "<p>Most probable subtype: <b id=\"subtype\">" + esc(d.subtype) + "</b></p>";
  $("diagnosis").innerHTML = html;
  $("result").classList.remove("hidden");
}

function renderPhoto(i, p, error) {
  let box = $("photo-" + i);
  if (!box) {
    box = document.createElement("div");
    box.className = "photo";
    box.id = "photo-" + i;
    $("photo-list").appendChild(box);
  }
  let html = "<h3>" + esc(p.name) + "</h3>";
  if (p.width) {
    html += "<p>" + p.width + "×" + p.height + " px; this photo alone: " +
      Object.entries(p.group_probabilities).map(([k, v]) => esc(k) + " " + pct(v)).join(", ") + "</p>";
  }
  if (error) html += "<div class=\"error\">" + esc(error) + "</div>";
  const h = p.heat_map;
  if (h) {
    html += "<div class=\"pics\">" +
      "<figure><img class=\"heatmap-overlay\" alt=\"heat-map overlay\" src=\"" + h.overlay + "\"><figcaption>Heat-map of " + esc(h.class) + " (" + esc(h.method) + " Grad-CAM)</figcaption></figure>" +
      "<figure><img class=\"heatmap-focused\" alt=\"AI-focused\" src=\"" + h.focused + "\"><figcaption>AI-focused</figcaption></figure>" +
      "<figure><img class=\"heatmap-unfocused\" alt=\"AI-unfocused\" src=\"" + h.unfocused + "\"><figcaption>AI-unfocused</figcaption></figure></div>";
  } else if (!error) {
    html += "<p class=\"note\">heat-map pending…</p>";
  }
  box.innerHTML = html;
  $("photos-result").classList.remove("hidden");
}

async function diagnose() {
  const files = state.files.slice();
  const slide = $("slide").value.trim() || "slide";
  $("go").disabled = true;
  showError(null);
  $("result").classList.add("hidden");
  $("photos-result").classList.add("hidden");
  $("photo-list").innerHTML = "";
  state.diagnosis = null;
  state.photos = [];
  const steps = files.length + 1;
  try {
    progress(0, "Uploading " + files.length + " photo(s)…");
    const slideResult = await callRetrying("POST", "/v1/diagnose?heat_maps=false", () => form(files, { slide }),
      (f) => progress(100 * f / steps * 0.5, f < 1 ? "Uploading… " + Math.round(100 * f) + " %" : "Diagnosing the slide…"),
      "diagnosing");
    state.diagnosis = slideResult.diagnosis;
    state.slide = slide;
    renderDiagnosis(slideResult.diagnosis);
    slideResult.photos.forEach((p, i) => { state.photos[i] = p; renderPhoto(i, p); });
    const cls = slideResult.diagnosis.call;
    for (let i = 0; i < files.length; i++) {
      progress(100 * (i + 1) / steps, "Heat-map " + (i + 1) + " of " + files.length + " (" + files[i].name + ")…");
      try {
        const r = await callRetrying("POST", "/v1/explain", () => form([files[i]], { class: cls }), null, "drawing the heat-map");
        state.photos[i].heat_map = r[0].heat_map;
        renderPhoto(i, state.photos[i]);
      } catch (e) {
        state.photos[i].error = e.message;
        renderPhoto(i, state.photos[i], e.message);
      }
    }
    progress(100, "Done: " + files.length + " photo(s) of slide " + slide + ".");
  } catch (e) {
    progress(0, "Stopped.");
    showError(e.message);
  } finally {
    $("go").disabled = state.files.length === 0;
  }
}

// A self-contained HTML report of the case: pictures inline, no scripts, opens offline.
function reportHtml() {
  const d = state.diagnosis, m = state.model;
  const when = new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC";
  const table = (obj) => "<table>" + Object.entries(obj).sort((a, b) => b[1] - a[1])
    .map(([k, v]) => "<tr><td>" + esc(k) + "</td><td style=\"text-align:right\">" + pct(v) + "</td></tr>").join("") + "</table>";
  let h = "<!doctype html><html><head><meta charset=\"utf-8\"><title>myoscope case " + esc(state.slide) + "</title>" +
    "<style>body{font-family:sans-serif;max-width:900px;margin:1em auto;color:#222}td{padding:2px 12px 2px 0}" +
    "img{width:260px;border:1px solid #ccc;margin-right:6px}.u{background:#ffb300;padding:2px 6px;font-weight:bold}" +
    ".photo{break-inside:avoid;margin-bottom:1em}</style></head><body>";
  h += "<h1>myoscope case report: slide " + esc(state.slide) + "</h1><p>" + when + "</p>";
  h += "<h2>Diagnosis</h2><p style=\"font-size:1.4em\"><b>" + esc(d.call) + "</b>" + (d.uncertain ? " <span class=\"u\">UNCERTAIN: second look advised</span>" : "") + "</p>";
  const twoGroups = Object.keys(d.group_probabilities).length === 2;
  h += "<p>P(" + esc(d.positive_group) + ") = " + d.positive_probability.toFixed(3) + " over " + d.images + " photo(s); " +
    (twoGroups ? "called at threshold " + d.threshold : "called as the most probable class") +
    "; uncertainty band " + m.uncertainty_band[0] + "–" + m.uncertainty_band[1] + ".</p>";
  h += "<h3>Step 1: group</h3>" + table(d.group_probabilities);
  if (Object.keys(d.subtype_probabilities).length > 0) h += "<h3>Step 2: subtype within " + esc(d.call) + "</h3>" + table(d.subtype_probabilities);
  if (d.subtype) h += "<p>Most probable subtype: <b>" + esc(d.subtype) + "</b></p>";
  h += "<h2>Model</h2><p>" + esc(m.name) + ", version " + esc(m.version) + " (" + esc(m.kind) + ", " + esc(m.architecture) + ", input " + m.input_size + " px, " + m.grid + "×" + m.grid + " patches), myoscope " + esc(m.server_version) + ".</p>";
  if (m.validation) {
    h += "<p>Validation (" + esc(m.validation.source) + "):</p><ul>" + m.validation.figures.map((f) => "<li>" + esc(f.label) + ": " + f.value.toFixed(3) +
      (f.interval ? " (95% interval " + f.interval[0].toFixed(3) + "–" + f.interval[1].toFixed(3) + ")" : "") + "</li>").join("") + "</ul>";
  }
  h += "<h2>Photos</h2>";
  state.photos.forEach((p) => {
    h += "<div class=\"photo\"><h3>" + esc(p.name) + "</h3><p>" + p.width + "×" + p.height + " px; " +
      Object.entries(p.group_probabilities).map(([k, v]) => esc(k) + " " + pct(v)).join(", ") + "</p>";
    if (p.heat_map) h += "<img src=\"" + p.heat_map.overlay + "\" alt=\"overlay\"><img src=\"" + p.heat_map.focused + "\" alt=\"AI-focused\"><img src=\"" + p.heat_map.unfocused + "\" alt=\"AI-unfocused\"><p>Heat-map of " + esc(p.heat_map.class) + " (" + esc(p.heat_map.method) + " Grad-CAM); AI-focused / AI-unfocused: above / below the map's median.</p>";
    if (p.error) h += "<p>Heat-map not drawn: " + esc(p.error) + "</p>";
    h += "</div>";
  });
  h += "<p><i>Decision support for a pathologist, not a diagnosis on its own.</i></p></body></html>";
  return h;
}

function downloadReport() {
  if (!state.diagnosis) return;
  const blob = new Blob([reportHtml()], { type: "text/html" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "myoscope-" + state.slide.replace(/[^A-Za-z0-9_.-]/g, "_") + ".html";
  a.id = "report-link";
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function init() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files); });
  $("photos").addEventListener("change", (e) => choose(e.target.files));
  $("folder").addEventListener("change", (e) => {
    choose(e.target.files);
    const first = e.target.files[0];
    if (first && first.webkitRelativePath) $("slide").value = first.webkitRelativePath.split("/")[0];
  });
  $("go").addEventListener("click", diagnose);
  $("report").addEventListener("click", downloadReport);
  $("print").addEventListener("click", () => window.print());
  $("token-save").addEventListener("click", () => {
    sessionStorage.setItem("myoscope-token", $("token").value.trim());
    $("token-box").classList.add("hidden");
    loadModel();
  });
  loadModel();
}

init();
