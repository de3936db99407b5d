// The page of `rrdnet serve`: uploads, progress, the before/after view and the light sliders.
// Plain JavaScript, no build step; every picture comes from the server's API (serve.py).
"use strict";

const MAPS = [
  ["illumination", "illumination L"],
  ["illumination_adjusted", "adjusted illumination"],
  ["reflectance", "reflectance R"],
  ["noise", "noise N"],
  ["denoised_away", "what the denoising removed"],
];
const POLL_MS = 250;

const state = { info: null, photos: new Map(), order: [], selected: null, polling: null };
const $ = (id) => document.getElementById(id);

function showMessage(text) {
  const message = $("message");
  message.textContent = text;
  message.hidden = !text;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body.error) return body.error;
  } catch (ignored) { /* not JSON: fall through */ }
  return `${response.status} ${response.statusText}`;
}

function megabytes(bytes) {
  return `${+(bytes / 1e6).toFixed(1)} MB`;
}

// ------------------------------------------------------------------------------------- photos

function card(photo) {
  let element = document.getElementById(`card-${photo.key}`);
  if (!element) {
    element = document.createElement("div");
    element.className = "card";
    element.id = `card-${photo.key}`;
    element.tabIndex = 0;
    element.innerHTML = '<img alt=""><div class="name"></div><progress max="1" value="0"></progress><div class="state"></div>';
    element.addEventListener("click", () => select(photo.key));
    element.addEventListener("keydown", (event) => { if (event.key === "Enter") select(photo.key); });
    $("photos").appendChild(element);
  }
  return element;
}

function render(photo) {
  const element = card(photo);
  element.dataset.status = photo.status;
  element.classList.toggle("failed", photo.status === "failed");
  element.classList.toggle("selected", state.selected === photo.key);
  element.querySelector(".name").textContent = photo.name;
  element.querySelector(".name").title = photo.name;
  const progress = element.querySelector("progress");
  const text = element.querySelector(".state");
  progress.hidden = !["uploading", "queued", "fitting"].includes(photo.status);
  if (photo.status === "uploading") {
    progress.removeAttribute("value");
    text.textContent = "uploading…";
  } else if (photo.status === "queued") {
    progress.value = 0;
    text.textContent = photo.queue_position ? `waiting (${photo.queue_position} ahead)` : "waiting";
  } else if (photo.status === "fitting") {
    progress.value = photo.steps ? photo.step / photo.steps : 0;
    text.textContent = `fitting: step ${photo.step} of ${photo.steps}`;
  } else if (photo.status === "done") {
    text.textContent = `done in ${photo.seconds.toFixed(1)} s`;
  } else {
    text.textContent = photo.error;
  }
  const image = element.querySelector("img");
  const wanted = photo.id ? `/api/photos/${photo.id}/thumbnail.jpg?${photo.status === "done" ? "done" : "input"}` : "";
  image.hidden = !wanted;
  if (wanted && image.getAttribute("src") !== wanted) image.src = wanted;
}

function merge(photo, update) {
  const wasDone = photo.status === "done";
  Object.assign(photo, update);
  if (photo.status === "done" && !wasDone && photo.brightness_setting === null) {
    photo.slider = photo.brightness;
  }
  render(photo);
  if (photo.status === "done" && !wasDone && (state.selected === null || state.selected === photo.key)) {
    select(photo.key);
  }
}

async function upload(file) {
  const key = `local${state.order.length}`;
  const photo = {
    key, id: null, name: file.name, status: "uploading", step: 0, steps: 0,
    brightness_setting: null, slider: null, denoise: null,
  };
  state.photos.set(key, photo);
  state.order.push(key);
  render(photo);
  if (state.info && file.size > state.info.upload_bytes) {
    // The server would refuse it too; saying so here spares sending it.
    const error = `${file.name}: file is larger than this server's upload limit of ${megabytes(state.info.upload_bytes)}; refused`;
    merge(photo, { status: "failed", error });
    showMessage(error);
    return;
  }
  let response;
  try {
    response = await fetch(`/api/photos?name=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" },
    });
  } catch (error) {
    merge(photo, { status: "failed", error: `${file.name}: upload failed (${error.message})` });
    showMessage(photo.error);
    return;
  }
  if (!response.ok) {
    merge(photo, { status: "failed", error: await errorText(response) });
    showMessage(photo.error);
    return;
  }
  merge(photo, await response.json());
  startPolling();
}

async function uploadAll(files) {
  showMessage("");
  for (const file of files) await upload(file);
}

function startPolling() {
  if (state.polling === null) state.polling = setInterval(poll, POLL_MS);
}

async function poll() {
  const waiting = [...state.photos.values()].filter((photo) => photo.id && ["queued", "fitting"].includes(photo.status));
  if (!waiting.length) {
    clearInterval(state.polling);
    state.polling = null;
    return;
  }
  let response;
  try {
    response = await fetch(`/api/photos?ids=${waiting.map((photo) => photo.id).join(",")}`);
  } catch (error) {
    return; // the next poll tries again
  }
  if (!response.ok) return;
  const byId = new Map(waiting.map((photo) => [photo.id, photo]));
  for (const update of (await response.json()).photos) {
    const photo = byId.get(update.id);
    if (photo) merge(photo, update);
  }
  updateLinks();
}

// ------------------------------------------------------------------------------------- viewer

function query(photo) {
  const parts = [];
  if (photo.brightness_setting !== null) parts.push(`brightness=${photo.brightness_setting}`);
  if (photo.denoise !== null) parts.push(`denoise=${photo.denoise}`);
  return parts.join("&");
}

function select(key) {
  const photo = state.photos.get(key);
  if (!photo || photo.status !== "done") {
    if (photo && photo.status === "failed") showMessage(photo.error);
    return;
  }
  state.selected = key;
  for (const other of state.photos.values()) render(other);
  $("viewer").hidden = false;
  $("before").src = `/api/photos/${photo.id}/before.jpg`;
  $("brightness").value = photo.slider;
  $("brightness-value").textContent = (+photo.slider).toFixed(2);
  showDenoise(photo);
  relight("preview");
  updateLinks();
  refreshPanels();
}

function selected() {
  return state.selected === null ? null : state.photos.get(state.selected);
}

function showDenoise(photo) {
  const setting = photo.denoise === null ? (state.info ? String(state.info.denoise) : "auto") : photo.denoise;
  $("denoise-value").textContent = /^[0-9.]+$/.test(setting) ? `${setting}×` : setting;
  if (photo.denoise !== null) $("denoise").value = photo.denoise === "off" ? 0 : photo.denoise;
}

// One request at a time: a slider moved meanwhile asks again, with its latest value, when the
// answer arrives, so the picture never lags behind by more than one render.
const relighting = { busy: false, again: null, version: 0 };

async function relight(size) {
  const photo = selected();
  if (!photo) return;
  if (relighting.busy) {
    relighting.again = relighting.again === "preview" ? "preview" : size;
    return;
  }
  relighting.busy = true;
  const started = performance.now();
  try {
    const settings = query(photo);
    const response = await fetch(`/api/photos/${photo.id}/preview.jpg?size=${size}${settings ? "&" + settings : ""}`);
    if (!response.ok) {
      showMessage(await errorText(response));
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const after = $("after");
    await new Promise((resolve) => {
      after.onload = after.onerror = resolve;
      const old = after.src;
      after.src = url;
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    });
    const milliseconds = performance.now() - started;
    relighting.version += 1;
    after.dataset.version = relighting.version;
    after.dataset.size = size;
    after.dataset.milliseconds = milliseconds.toFixed(1);
    $("light").textContent = response.headers.get("X-Light") || "";
    $("timing").textContent = `relit in ${Math.round(milliseconds)} ms`;
  } catch (error) {
    showMessage(`relight failed (${error.message})`);
  } finally {
    relighting.busy = false;
    const again = relighting.again;
    relighting.again = null;
    if (again) relight(again);
  }
}

function updateLinks() {
  const photo = selected();
  const download = $("download");
  if (photo) {
    const settings = query(photo);
    download.href = `/api/photos/${photo.id}/download${settings ? "?" + settings : ""}`;
  }
  download.setAttribute("aria-disabled", String(!photo));
  const done = [...state.photos.values()].filter((item) => item.status === "done");
  const zip = $("zip");
  zip.href = "/api/zip?" + done.map((item) =>
    `p=${item.id}:${item.brightness_setting ?? ""}:${item.denoise ?? ""}`).join("&");
  zip.setAttribute("aria-disabled", String(done.length < 1));
  zip.textContent = `Download all (zip, ${done.length})`;
}

function refreshPanels() {
  const photo = selected();
  if (!photo) return;
  const settings = query(photo);
  if (!$("maps").hidden) {
    const maps = $("maps");
    if (!maps.children.length) {
      for (const [name, caption] of MAPS) {
        const figure = document.createElement("figure");
        figure.innerHTML = `<img alt="${caption}" data-map="${name}"><figcaption>${caption}</figcaption>`;
        maps.appendChild(figure);
      }
    }
    for (const image of maps.querySelectorAll("img")) {
      image.src = `/api/photos/${photo.id}/maps/${image.dataset.map}.jpg?${settings}`;
    }
  }
  if (!$("sheet").hidden) $("sheet-image").src = `/api/photos/${photo.id}/sheet.png?${settings}`;
}

function toggle(button, panel) {
  const open = panel.hidden;
  panel.hidden = !open;
  button.setAttribute("aria-expanded", String(open));
  refreshPanels();
}

function setSplit(percent) {
  $("before").style.clipPath = `inset(0 ${100 - percent}% 0 0)`;
  $("divider").style.left = `${percent}%`;
}

// ------------------------------------------------------------------------------------- wiring

function wire() {
  const drop = $("drop");
  $("files").addEventListener("change", (event) => {
    uploadAll([...event.target.files]);
    event.target.value = "";
  });
  for (const kind of ["dragenter", "dragover"]) {
    document.addEventListener(kind, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    uploadAll([...event.dataTransfer.files]);
  });

  $("split").addEventListener("input", (event) => setSplit(+event.target.value));

  const brightness = $("brightness");
  brightness.addEventListener("input", () => {
    const photo = selected();
    if (!photo) return;
    photo.slider = photo.brightness_setting = +brightness.value;
    $("brightness-value").textContent = (+brightness.value).toFixed(2);
    relight("drag");
  });
  const denoise = $("denoise");
  denoise.addEventListener("input", () => {
    const photo = selected();
    if (!photo) return;
    photo.denoise = +denoise.value === 0 ? "off" : String(+denoise.value);
    showDenoise(photo);
    relight("drag");
  });
  $("brightness-auto").addEventListener("click", () => {
    const photo = selected();
    if (!photo) return;
    photo.brightness_setting = null;
    photo.slider = photo.brightness;
    brightness.value = photo.slider;
    $("brightness-value").textContent = (+photo.slider).toFixed(2);
    settled();
  });
  $("denoise-auto").addEventListener("click", () => {
    const photo = selected();
    if (!photo) return;
    photo.denoise = "auto";
    showDenoise(photo);
    settled();
  });
  // Let go: the sharper preview, the links and the open panels follow the new light.
  const settled = () => { relight("preview"); updateLinks(); refreshPanels(); };
  brightness.addEventListener("change", settled);
  denoise.addEventListener("change", settled);

  $("show-maps").addEventListener("click", (event) => toggle(event.target, $("maps")));
  $("show-sheet").addEventListener("click", (event) => toggle(event.target, $("sheet")));
  setSplit(50);
  updateLinks();
}

async function start() {
  wire();
  try {
    const response = await fetch("/api/info");
    state.info = await response.json();
    $("limits").textContent =
      `Up to ${megabytes(state.info.upload_bytes)} and ${+(state.info.pixels / 1e6).toFixed(1)} megapixels a photo; ` +
      `${state.info.fits} fitted at a time, the others wait their turn.`;
  } catch (error) {
    showMessage(`cannot reach the server (${error.message})`);
  }
}

start();
