// Page logic: collect images (picker, drop, paste, camera), POST them to /api/predict one by
// one, and render the top classes as animated bars. Vanilla JS, no build step, no network
// access beyond this origin (CSP forbids it anyway).
"use strict";

const settings = {
  // The proxy's own limits, rendered into the page by its template.
  maxUploadBytes: Number(document.body.dataset.maxUploadBytes),
  maxPixels: Number(document.body.dataset.maxPixels),
  // A photo over the proxy's limits is sent as its centre square at most this many pixels a
  // side: the model sees a 32x32 centre square, so nothing it could use is lost. (Its colours
  // do change a little: the browser applies the photo's colour profile, which the proxy's
  // decoder does not, so a wide-gamut photo may score a little differently than through the API.)
  shrinkSide: 1024,
  // A photo within the limits is shrunk so too when its file is over this size and its sides
  // over shrinkSide: a 5 MB phone photo took about 8 s to upload at 5 Mbit/s, its 1024-pixel
  // square (some 200 KB) a third of a second.
  shrinkAboveBytes: 1 << 20,
  parallel: 4,
  liveIntervalMs: 500,
  // A request with no answer by then fails with Try again (a stuck or swamped server left its
  // card spinning for good): 30 s, plus the upload's time at 256 kbit/s (a 10 MiB photo: 6
  // minutes more), since the timer cannot tell a slow upload from a stuck server.
  answerBaseMs: 30000,
  uploadBytesPerMs: 32,
  // The proxy's limit is on the whole request body: the file plus its multipart headers.
  multipartOverheadBytes: 1024,
  // A best class under this probability is shown as a guess. The shipped model (version 5) put
  // 12 % of the 10,000 test images under 50 % and was right on 55 % of those, against 96 % of
  // the rest (docs/BENCHMARKS.md, "How sure the shipped model is"); a blank or off-topic
  // picture lands there too, since every answer is one of the ten classes.
  unsureBelow: 0.5,
};

const CLASS_HUES = {
  airplane: "#4f8cff", automobile: "#ff6b6b", bird: "#ffb020", cat: "#b36bff", deer: "#c98a4b",
  dog: "#ff8f4f", frog: "#3fbf6f", horse: "#8d6e63", ship: "#2bb3c0", truck: "#e0559b",
};

const PROTOCOLS = { grpc: "gRPC", rest: "REST" }; // how the proxy reaches the model server

const $ = (id) => document.getElementById(id);
const ui = {
  badge: $("model-badge"),
  badgeDetail: $("badge-detail"),
  dropzone: $("dropzone"),
  fileInput: $("file-input"),
  pick: $("pick-button"),
  cameraButton: $("camera-button"),
  clear: $("clear-button"),
  retryAll: $("retry-all-button"),
  results: $("results"),
  cameraPanel: $("camera-panel"),
  video: $("camera-video"),
  capture: $("capture-button"),
  liveToggle: $("live-toggle"),
  livePill: $("live-pill"),
  cameraMessage: $("camera-message"),
  inputMessage: $("input-message"),
  grid: $("grid"),
  empty: $("empty-state"),
  stats: $("stats"),
  announcer: $("announcer"),
  template: $("card-template"),
  classCloud: $("class-cloud"),
};

const state = {
  stream: null, cameraStarting: false, liveTimer: null, liveBusy: false, liveCard: null, liveKey: null,
  stoppedLiveCard: null, // a live card stopped while its frame was on the way: named once answered
  liveAgain: null, // Try again for the live card's last frame, if the server failed it
  liveSession: 0, // counts turns of continuous mode on or off: a frame answered after one is stale
  latencies: [], counter: 0, modelTimer: null, modelCheck: null, lastEarlyCheck: -Infinity,
  modelPolls: 0, // numbers each /api/model request: an answer overtaken by a newer one is dropped
  draggingInside: false, // a picture or text dragged within the page, not a file from outside
  badgeVersion: null, // the version the badge names: an answer from another one re-checks it
  cards: 0, // numbers the cards, for their names' ids
  actions: 0, announced: 0, // numbers each action (a drop, a capture) when it starts: see announce
  announcements: 0, // counts the announcer's writes, so a delayed one yields to a newer
  classes: [], // the served model's class names (/api/model), for the hint under a weak answer
};
// The request in flight for a card, so that Clear can cancel it.
const inflight = new WeakMap();
// How to send a card's image again, for the cards whose failure was the server's (not the
// file's): their own Try again, and the results' "Try N again" once the server is back.
const resend = new WeakMap();

// ---------- model badge ----------

// The proxy's error kinds (proxy/errors.py) that mean the model server, not the proxy, failed.
const MODEL_SERVER_KINDS = ["model_unavailable", "model_timeout", "model_error"];

// Whether the default version is served; null when a newer poll started meanwhile (its answer,
// not this older one, sets the badge and the next poll).
async function refreshModel() {
  const poll = ++state.modelPolls;
  let response, body;
  try {
    // A hung request would stop the polling for good: each poll waits for the one before.
    // (A timer, not AbortSignal.timeout: Safari before 16 lacks it, and its TypeError read as
    // "Server unreachable" for good.)
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 10000);
    try {
      response = await fetch("/api/model", { headers: { Accept: "application/json" }, signal: controller.signal });
      body = await response.json();
    } finally {
      clearTimeout(timer);
    }
  } catch (error) {
    body = null;
  }
  if (poll !== state.modelPolls) return null;
  if (!response) {
    setBadge("down", "Server unreachable · retrying");
    return false;
  }
  if (!response.ok) {
    // The proxy's sentence says what is wrong: the model unknown to the model server (a
    // MODEL_NAME typo, no version folder yet) is not the model server being down, and a
    // proxy that is itself restarting (compose's nginx front answers for it) is neither.
    const kind = body && body.kind;
    const text = response.status === 404 ? "Model not found · retrying"
      : MODEL_SERVER_KINDS.includes(kind) ? "Model server unavailable · retrying"
      : "Service unavailable · retrying";
    setBadge("down", text, (body && body.error) || `HTTP ${response.status}`);
    return false;
  }
  try {
    if (!body) throw new Error(response.statusText);
    // The version a plain request goes to (the latest, or the proxy's MODEL_LABEL / _VERSION),
    // not the newest loaded one: during a canary those differ.
    const { serves, label, version, error: reason } = body.default;
    const live = body.versions.some((v) => v.state === "AVAILABLE");
    state.badgeVersion = serves;
    if (serves !== null) {
      const via = label ? ` (${label})` : "";
      setBadge("ok", `${body.name} · version ${serves}${via} · ${PROTOCOLS[body.protocol] || body.protocol}`);
    } else if (live) {
      const wanted = label ? `label ${label}` : version !== null ? `version ${version}` : "latest version";
      setBadge("down", `${body.name} · default ${wanted} not served`, reason);
    } else {
      setBadge("down", `${body.name} · no version available yet`);
    }
    renderClassCloud(body.classes);
    if (body.classes && body.classes.length) state.classes = body.classes;
    return serves !== null;
  } catch (error) {
    setBadge("down", "Model server unavailable · retrying");
    return false;
  }
}

// The badge and its detail (why the default is not served) are a live region: written only
// when they change, or a screen reader would read them again at every poll. The detail is
// shown under the badge: as a tooltip, touch screens and keyboards never reached it.
function setBadge(kind, text, detail = "") {
  const label = ui.badge.querySelector(".badge-text");
  if (ui.badge.classList.contains(kind) && label.textContent === text && ui.badgeDetail.textContent === detail) return;
  ui.badge.classList.remove("ok", "down");
  ui.badge.classList.add(kind);
  label.textContent = text;
  ui.badgeDetail.textContent = detail;
  ui.badgeDetail.hidden = !detail;
}

function renderClassCloud(classes) {
  if (!classes || !classes.length || ui.classCloud.childElementCount) return;
  for (const name of classes) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = name;
    chip.style.setProperty("--chip", CLASS_HUES[name] || "var(--accent)");
    ui.classCloud.append(chip);
  }
}

// One poll: every 30 s while the model is served, every 5 s while it is not.
async function watchModel() {
  clearTimeout(state.modelTimer);
  const ok = await refreshModel();
  if (ok === null) return; // overtaken: the newer poll schedules the next one
  // Again here: an early check may have set a timer while this poll's request was in flight,
  // and two timers would poll twice as often from then on.
  clearTimeout(state.modelTimer);
  state.modelTimer = setTimeout(watchModel, ok ? 30000 : 5000);
}

// A request whose outcome disagrees with the badge (a failure under a green one, a success
// under a red one, an answer from another version than it names) moves the next poll to now, at most once per 5 s: the badge should not
// stay green for 30 s while every request fails, nor be asked twice a second in live mode.
function checkModelSoon() {
  const now = performance.now();
  if (state.modelCheck || now - state.lastEarlyCheck < 5000) return;
  state.lastEarlyCheck = now;
  state.modelCheck = watchModel().finally(() => { state.modelCheck = null; });
}

// ---------- cards ----------

// A new card goes first (after the live camera card), or right after `after`: the cards of
// one batch keep their selection order, which is the order they are sent in.
function newCard(blob, name, after = null) {
  const node = ui.template.content.firstElementChild.cloneNode(true);
  setCardImage(node, blob);
  const nameNode = node.querySelector(".card-name");
  nameCard(node, name);
  // The card takes the focus after Try again: named by its file, not read as an empty item.
  nameNode.id = `card-name-${++state.cards}`;
  node.setAttribute("aria-labelledby", nameNode.id);
  node.classList.add("loading");
  ui.empty.hidden = true;
  ui.clear.disabled = false;
  const live = state.liveCard && state.liveCard.isConnected ? state.liveCard : null;
  if (after && after.isConnected) after.after(node);
  else if (live) live.after(node); // the live camera card stays first
  else ui.grid.prepend(node);
  return node;
}

function nameCard(card, name) {
  card.querySelector(".card-image").alt = `Uploaded image ${name}`;
  const nameNode = card.querySelector(".card-name");
  nameNode.textContent = name;
  nameNode.title = name; // shown cut short with "…" when long
}

// Shows `blob` as the card's picture, and the 32x32 square the model sees once it has loaded;
// a picture this browser cannot show (TIFF) gets a plain card. A live card's next frame
// replaces the handlers of the one before.
function setCardImage(card, blob) {
  const image = card.querySelector(".card-image");
  if (card.dataset.url) URL.revokeObjectURL(card.dataset.url);
  card.dataset.url = URL.createObjectURL(blob);
  image.removeAttribute("title");
  image.onload = () => {
    image.onload = null; // the still below loads into the same <img>
    drawThumb(blob, image, card.querySelector(".card-thumb"));
    if (blob.type === "image/gif") showFirstFrame(card, image, blob);
  };
  image.onerror = () => card.classList.add("no-preview");
  image.src = card.dataset.url;
}

// An animated GIF would play in the preview while its first frame is what gets classified (by
// the proxy as by the served graph): the preview shows that frame, still, at most
// settings.shrinkSide pixels a side. A card whose picture changed meanwhile is left alone.
async function showFirstFrame(card, image, blob) {
  const url = card.dataset.url;
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob); // an animated image's first frame
  } catch {
    return;
  }
  const scale = Math.min(1, settings.shrinkSide / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const still = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  if (!still || card.dataset.url !== url) return;
  URL.revokeObjectURL(url);
  card.dataset.url = URL.createObjectURL(still);
  image.src = card.dataset.url;
  image.title = "The animation's first frame: the one classified";
}

// On a phone the results sit below the inputs and the camera: bring a new card into view.
// With the camera on, only just (and again once the answer has grown the card): scrolled to
// the top, the card took the preview being aimed out of view.
function reveal(card) {
  const top = card.getBoundingClientRect().top;
  if (top >= 0 && top <= window.innerHeight * 0.6) return;
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  card.scrollIntoView({ block: state.stream ? "nearest" : "start", behavior: still ? "auto" : "smooth" });
}

// The 32x32 center crop the model sees, drawn pixelated in the corner of the preview.
async function drawThumb(blob, image, canvas) {
  if (!image.naturalWidth) return;
  await drawScaledSquare(blob, image, 32, canvas);
}

// The centre square of a picture, `side` pixels a side. Scaled by createImageBitmap, off the
// main thread: drawn straight from the <img>, each 12-megapixel photo was decoded on the main
// thread, and ten dropped at once froze the page (and its round-trip figures) for seconds.
// The <img> itself where this browser cannot.
async function drawScaledSquare(blob, image, side, canvas = document.createElement("canvas")) {
  const width = image.naturalWidth, height = image.naturalHeight; // EXIF orientation applied
  const scale = side / Math.min(width, height);
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(blob, {
      resizeWidth: Math.max(side, Math.round(width * scale)),
      resizeHeight: Math.max(side, Math.round(height * scale)),
      resizeQuality: "high",
    });
  } catch {
    return drawCentreSquare(image, width, height, side, canvas);
  }
  try {
    return drawCentreSquare(bitmap, bitmap.width, bitmap.height, side, canvas);
  } finally {
    bitmap.close();
  }
}

// The centre square of a picture or video frame (the part the proxy crops and the model sees),
// drawn `side` pixels a side, transparency over white as the proxy flattens it.
function drawCentreSquare(source, width, height, side, canvas = document.createElement("canvas")) {
  const square = Math.min(width, height);
  canvas.width = canvas.height = side;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, side, side);
  context.imageSmoothingQuality = "high";
  context.drawImage(source, (width - square) / 2, (height - square) / 2, square, square, 0, 0, side, side);
  return canvas;
}

function showResult(card, result, body) {
  card.classList.remove("loading", "failed");
  card.querySelector(".card-error").hidden = true;
  card.querySelector(".card-retry").hidden = true;
  const bars = card.querySelector(".bars");
  bars.hidden = false;
  // The rows of the card's last answer (the live camera card's, twice a second) move to the new
  // values; rebuilt, the bars grew from zero at every answer and never reached them.
  let rows = [...bars.children];
  if (rows.length !== result.top.length) {
    rows = result.top.map(() => barRow());
    bars.replaceChildren(...rows);
  }
  rows.forEach((row, i) => fillRow(row, result.top[i]));
  requestAnimationFrame(() => requestAnimationFrame(() => {
    rows.forEach((row, i) => {
      row.querySelector(".bar-fill").style.width = `${(result.top[i].probability * 100).toFixed(1)}%`;
    });
  }));
  // The proxy's own work: the time its client took to send the upload is not the server's.
  const serverMs = body.elapsed_ms - ((body.timing_ms && body.timing_ms.receive) || 0);
  const sent = card.dataset.sent ? ` · ${card.dataset.sent}` : "";
  card.querySelector(".card-meta").textContent =
    `model v${body.model.version} · ${serverMs.toFixed(0)} ms server time${sent}`;
  const best = result.top[0];
  const unsure = best.probability < settings.unsureBelow;
  card.classList.toggle("unsure", unsure);
  const hint = card.querySelector(".card-hint");
  hint.hidden = !unsure;
  hint.textContent = unsure ? unsureHint() : "";
  const guess = unsure ? " (a guess)" : "";
  return { ok: true, label: best.label, guess: unsure, text: `${result.filename}: ${best.label}, ${percent(best.probability)}${guess}` };
}

// Why a weak answer is a guess: every answer is one of the model's classes, whatever the picture.
function unsureHint() {
  const names = state.classes;
  const known = names.length > 1 ? ` It only knows ${listed(names)}.` : "";
  return `Just a guess: answers under ${Math.round(settings.unsureBelow * 100)}% were right about half the time.${known}`;
}

// An empty row (its bar at zero); fillRow writes a class into it.
function barRow() {
  const row = document.createElement("li");
  row.className = "bar-row";
  // A screen reader reads the meter alone ("truck, 45.3%"): the text beside it, for the eye,
  // was read too, each probability three times.
  const label = document.createElement("span");
  label.className = "bar-label";
  label.setAttribute("aria-hidden", "true");
  const value = document.createElement("span");
  value.className = "bar-value";
  value.setAttribute("aria-hidden", "true");
  const track = document.createElement("span");
  track.className = "bar-track";
  track.setAttribute("role", "meter");
  track.setAttribute("aria-valuemin", "0");
  track.setAttribute("aria-valuemax", "100");
  const fill = document.createElement("span");
  fill.className = "bar-fill";
  track.append(fill);
  row.append(label, value, track);
  return row;
}

function fillRow(row, entry) {
  row.querySelector(".bar-label").textContent = entry.label;
  row.querySelector(".bar-value").textContent = percent(entry.probability);
  const track = row.querySelector(".bar-track");
  track.setAttribute("aria-label", entry.label);
  track.setAttribute("aria-valuenow", (entry.probability * 100).toFixed(1));
  track.setAttribute("aria-valuetext", percent(entry.probability)); // ">99.9%", not "100"
}

// `retry`: for a failure of the server, not of the file, a button that sends the image again.
function showError(card, message, retry = null) {
  card.classList.remove("loading");
  card.classList.add("failed");
  const name = card.querySelector(".card-name").textContent;
  // The proxy names the file in its errors (a batch must say which image failed), a long name
  // shortened; the card already shows the name above the message.
  const named = [`${name}: `, `${proxyShortName(name)}: `].find((prefix) => message.startsWith(prefix));
  const bare = named ? message.slice(named.length) : message;
  const text = bare.charAt(0).toUpperCase() + bare.slice(1); // the proxy's start in lower case
  const error = card.querySelector(".card-error");
  error.textContent = text;
  error.hidden = false;
  const button = card.querySelector(".card-retry");
  button.hidden = !retry;
  button.onclick = retry;
  button.setAttribute("aria-label", `Try ${name} again`);
  card.querySelector(".bars").replaceChildren();
  card.querySelector(".bars").hidden = true; // no empty "Top classes" list for a screen reader
  card.querySelector(".card-hint").hidden = true;
  card.classList.remove("unsure");
  card.querySelector(".card-meta").textContent = "";
  return { ok: false, text: `${name}: ${text}`, name, error: text };
}

// A filename as the proxy's error sentences write it (proxy/api.py, _short_name): its start
// and its extension, 80 characters in all.
function proxyShortName(name, keep = 80) {
  const chars = [...name]; // Python counts code points, as this does
  return chars.length <= keep ? name : `${chars.slice(0, keep - 20).join("")}…${chars.slice(-19).join("")}`;
}

// One polite announcement per action (a drop of several files, a captured frame), not one per
// card: each would cut off the one before it. `action` (from newAction, taken when the action
// started): an action whose answers come after a newer one's were read stays silent, so the
// last thing read is about the newest action; its cards show the rest. Its failures, `late`,
// are read all the same: a card that failed out of sight would otherwise never be heard of.
// The live camera card's changes (action LIVE) are read whatever their order: they come twice
// a second, and counted as actions they silenced the answers of a drop made just before.
const newAction = () => ++state.actions;
const LIVE = "live";
function announce(lines, action = newAction(), late = []) {
  if (action !== LIVE) {
    if (action < state.announced) {
      if (!late.length) return;
      lines = late;
    }
    state.announced = Math.max(action, state.announced);
  }
  // A full stop before the next line goes: "…TIFF).; 2 images" read badly.
  const kept = lines.filter(Boolean);
  const last = kept.length - 1;
  const text = kept.map((line, i) => (i < last ? line.replace(/\.$/, "") : line)).join("; ");
  // The same words again (Try again failing as before) are no change to a screen reader:
  // emptied first, and written a moment later, they are read again.
  const turn = ++state.announcements;
  if (ui.announcer.textContent !== text) {
    ui.announcer.textContent = text;
    return;
  }
  ui.announcer.textContent = "";
  setTimeout(() => {
    if (turn === state.announcements) ui.announcer.textContent = text;
  }, 150);
}

// A few outcomes are read out one by one; a large batch as a count and its failures, so that a
// screen reader is not kept busy for a minute by forty results that the cards show anyway.
// `failuresOnly`: what is read of an action answered after a newer one (announce's `late`).
const SPOKEN_ONE_BY_ONE = 5;
function spoken(outcomes, failuresOnly = false) {
  const failed = outcomes.filter((o) => !o.ok);
  if (outcomes.length <= SPOKEN_ONE_BY_ONE) return sameErrorsOnce(failuresOnly ? failed : outcomes);
  const summary = `${outcomes.length} images: ${outcomes.length - failed.length} classified, ${failed.length} failed`;
  return [summary, ...sameErrorsOnce(failed).slice(0, SPOKEN_ONE_BY_ONE)];
}

// Failures with the same words are read once, after their names: in an outage every image of
// a drop failed with one sentence, and it was read once per image.
function sameErrorsOnce(outcomes) {
  const lines = new Map();
  for (const outcome of outcomes) {
    const key = outcome.error ? `error:${outcome.error}` : Symbol("own line");
    const line = lines.get(key) || { names: [], outcome };
    line.names.push(outcome.name);
    lines.set(key, line);
  }
  return [...lines.values()].map(({ names, outcome }) =>
    names.length > 1 ? `${listed(names)}: ${outcome.error}` : outcome.text);
}

// An action's outcomes read out, after `before` (a note about the same drop); answered after a
// newer action was read, only its failures are.
function announceOutcomes(outcomes, action, before = []) {
  const late = outcomes.some((o) => !o.ok) ? [...before, ...spoken(outcomes, true)] : [];
  announce([...before, ...spoken(outcomes)], action, late);
}

const listed = (names) => `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;

// Three significant digits, as the proxy's own 413 message prints the limit.
const mebibytes = (bytes) => String(Number((bytes / 2 ** 20).toPrecision(3)));
// One decimal, as the bars and meters; the ends say so rather than round to 100 % or 0 %.
const percent = (p) => (p >= 0.9995 ? ">99.9%" : p < 0.0005 ? "<0.1%" : `${(p * 100).toFixed(1)}%`);

// ---------- talking to the proxy ----------

// `signal` aborts the request: Clear (the error goes on as it is) or the answer's timeout.
async function predict(blob, name, signal) {
  const form = new FormData();
  form.append("file", blob, name);
  const started = performance.now();
  let response;
  try {
    response = await fetch("/api/predict", { method: "POST", body: form, signal });
  } catch (error) {
    throw abortedBy(signal) || new Error("The proxy cannot be reached. Is the server running?");
  }
  let body;
  try {
    body = await response.json();
  } catch (error) {
    // An HTML page from a front in between (a TLS proxy's 413 or 502): its status still says
    // what happened, so a 413 is shrunk and sent again as the proxy's own would be.
    const aborted = abortedBy(signal);
    if (aborted) throw aborted;
    throw Object.assign(new Error(unparsedAnswerText(response.status)), { status: response.status });
  }
  if (!response.ok) {
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.status = response.status;
    error.kind = body.kind;
    throw error;
  }
  state.latencies.push(performance.now() - started);
  if (state.latencies.length > 50) state.latencies.shift();
  return body;
}

// The sentence for an answer that is not the proxy's JSON.
function unparsedAnswerText(status) {
  if (status === 413) return `Too large for the server in front of the proxy (HTTP 413): choose a smaller image, or a JPEG.`;
  if ([502, 503, 504].includes(status)) {
    return `The service is unavailable for the moment (HTTP ${status}). Try again in a moment.`;
  }
  return `Unexpected answer from the server (HTTP ${status}).`;
}

// Why an aborted request stopped, as the error to throw; null when it was not aborted.
function abortedBy(signal) {
  if (!signal || !signal.aborted) return null;
  if (signal.reason && signal.reason.name === "TimeoutError") {
    const seconds = Math.round(signal.reason.waitedMs / 1000);
    return new Error(`No answer from the server within ${seconds} s: it may be overloaded. Try again in a moment.`);
  }
  return signal.reason;
}

const answerTimeoutMs = (blob) => settings.answerBaseMs + blob.size / settings.uploadBytesPerMs;

// Cards on the page (how many wait or failed), and the page's round trips: request sent to
// answer read, for the last 50 answered requests. A card's own "server time" is the proxy's.
function updateStats() {
  const cards = [...ui.grid.children];
  const count = (name) => cards.filter((card) => card.classList.contains(name)).length;
  const retryable = failedByServer().length;
  ui.retryAll.hidden = retryable < 2; // one card has its own Try again
  ui.retryAll.textContent = `Try ${retryable} again`;
  const parts = [`${cards.length} image${cards.length === 1 ? "" : "s"}`];
  if (count("loading")) parts.push(`${count("loading")} in progress`);
  if (count("failed")) parts.push(`${count("failed")} failed`);
  const n = state.latencies.length;
  if (n) {
    const sorted = [...state.latencies].sort((a, b) => a - b);
    const median = (sorted[(n - 1) >> 1] + sorted[n >> 1]) / 2;
    const last = state.latencies[n - 1].toFixed(0);
    // No-break spaces keep "83 ms" and "of 6" whole when a phone wraps the line.
    parts.push(n === 1 ? `round trip ${last}\u00a0ms` : `round trip: last ${last}\u00a0ms, median ${median.toFixed(0)}\u00a0ms of\u00a0${n}`);
  }
  ui.stats.textContent = parts.join(" · ");
}

// The answers that say the request is at fault (bad image, too large, unsupported type, a URL
// or header the front refuses): sending it again cannot help. Anything else (no version served
// yet, the server down or slow) can pass. By the proxy's kind, or by status: a front's own page
// has no kind, and the proxy's generic kind "http" (a request Werkzeug refused) says nothing.
const REQUEST_ERROR_KINDS = ["bad_request", "bad_image", "too_large", "unsupported_media"];
const REQUEST_ERROR_STATUSES = [400, 413, 414, 415, 431];
const isRequestError = (error) =>
  REQUEST_ERROR_KINDS.includes(error.kind) || REQUEST_ERROR_STATUSES.includes(error.status);

// Classifies into `card`; returns {ok, label, text}: text is for the screen-reader announcement
// (empty when Clear removed the card before it was sent or answered). `again`: what Try again
// runs after a failure of the server; a file's first sending passes its whole path, so a
// format or size the proxy then refuses still gets the page's conversion.
async function classifyOne(blob, name, card, again = () => classifyOne(blob, name, card)) {
  if (!card.isConnected) return { ok: false, text: "" }; // cleared while queued: not sent
  const controller = new AbortController();
  const waitedMs = answerTimeoutMs(blob);
  const timer = setTimeout(
    () => controller.abort(Object.assign(new DOMException("no answer in time", "TimeoutError"), { waitedMs })),
    waitedMs,
  );
  inflight.set(card, controller);
  showWaiting(card);
  updateStats();
  let outcome;
  try {
    const body = await predict(blob, name, controller.signal);
    if (!card.isConnected) return { ok: false, text: "" };
    outcome = showResult(card, body.results[0], body);
    if (card === state.liveCard) state.liveAgain = null;
    const stale = String(body.model.version) !== String(state.badgeVersion);
    if (stale || ui.badge.classList.contains("down")) checkModelSoon();
  } catch (error) {
    if (!card.isConnected) return { ok: false, text: "" };
    const requestError = isRequestError(error);
    // The live camera card retries by itself with the next frame; stopped, it offers Try
    // again for its last one (nameAsCapture).
    if (card === state.liveCard) state.liveAgain = requestError ? null : again;
    const retry = requestError || card === state.liveCard ? null : () => retryCard(again, card);
    if (retry) resend.set(card, again);
    else resend.delete(card);
    outcome = { ...showError(card, error.message, retry), status: error.status };
    if (!requestError && !ui.badge.classList.contains("down")) checkModelSoon();
  } finally {
    clearTimeout(timer);
    if (inflight.get(card) === controller) inflight.delete(card);
  }
  updateStats();
  return outcome;
}

// A card sent (or queued to be sent) again: the spinner, not its old failure and Try again
// under it. The live card keeps its reason up while the next frame is sent (twice a second,
// it would only flash); it is never in `resend`, so "Try N again" never queues it.
function showWaiting(card) {
  card.classList.add("loading");
  card.classList.remove("failed");
  card.querySelector(".card-retry").hidden = true;
  if (card !== state.liveCard) card.querySelector(".card-error").hidden = true;
}

const failedByServer = () => [...ui.grid.children].filter((card) => card.classList.contains("failed") && resend.has(card));

// "Try N again": every card the server failed (it was down, or overloaded), a few at a time as
// a drop is sent; the results panel keeps the focus of the button about to hide.
async function retryAll() {
  const cards = failedByServer();
  if (!cards.length) return;
  ui.results.focus();
  const action = newAction();
  const jobs = cards.map((card) => resend.get(card));
  // Queued from now on, not failed: neither this button nor their own Try again sends them
  // a second time while they wait for a free slot.
  for (const card of cards) {
    resend.delete(card);
    showWaiting(card);
  }
  updateStats();
  const outcomes = await runLimited(jobs, settings.parallel);
  const kept = outcomes.filter((outcome, i) => outcome.text && cards[i].isConnected);
  if (kept.length) announceOutcomes(kept, action);
}

// Try again: the button about to hide keeps no focus, so the card takes it (and reads out the
// outcome when it comes).
async function retryCard(again, card) {
  card.focus();
  const action = newAction();
  const outcome = await again();
  if (outcome.text) announceOutcomes([outcome], action);
}

function inputMessage(text) {
  ui.inputMessage.textContent = text;
  ui.inputMessage.hidden = !text;
  if (text) ui.clear.disabled = false; // Clear also dismisses the note
}

const isImage = (file) => file.type.startsWith("image/") || file.type === "";

// `earlier`: a note about the same drop that this one must not hide.
async function classifyFiles(fileList, earlier = "") {
  const action = newAction();
  const all = [...fileList];
  const files = all.filter(isImage);
  const skipped = all.filter((file) => !isImage(file)).map((file) => file.name || file.type);
  const skippedNote = skipped.length
    ? `Skipped ${skipped.join(", ")}: not ${skipped.length === 1 ? "an image" : "images"} (use JPEG, PNG, GIF, BMP, WebP or TIFF).`
    : "";
  const note = [earlier, skippedNote].filter(Boolean).join(" ");
  inputMessage(note);
  const announcements = note ? [note] : []; // a live region shown with its text is often not read
  if (!files.length) {
    announce(announcements, action);
    return;
  }
  let previous = null;
  const cards = [];
  const jobs = files.map((file) => {
    const name = file.name || `pasted-${++state.counter}.png`;
    const card = newCard(file, name, previous);
    previous = card;
    cards.push(card);
    return () => classifyFile(file, name, card);
  });
  reveal(cards[0]);
  updateStats();
  const outcomes = await runLimited(jobs, settings.parallel);
  // Cards that Clear removed meanwhile, answered or not, are not spoken of.
  const kept = outcomes.filter((outcome, i) => outcome.text && cards[i].isConnected);
  if (!kept.length) return;
  updateStats();
  announceOutcomes(kept, action, announcements);
}

// Sends the file as it is when the proxy takes it and it is light. A photo over the proxy's byte
// or pixel limit (a 48-megapixel phone photo), or over a megabyte and 1024 pixels a side, is
// first shrunk here, if this browser can draw it (not TIFF; a heavy one within the limits then
// goes whole); so is one the proxy refuses with 413 under its lower limits (a large WebP or
// 16-bit PNG decodes at more bytes a pixel), once. A format the proxy does not read (415) but
// this browser shows (AVIF, SVG; HEIC in Safari) is sent again as a JPEG of its centre square.
async function classifyFile(file, name, card) {
  const image = card.querySelector(".card-image");
  const tooLarge = file.size + settings.multipartOverheadBytes > settings.maxUploadBytes;
  const size = await shownSize(image);
  const overLimits = tooLarge || Boolean(size && size.width * size.height > settings.maxPixels);
  const heavy =
    size && file.size > settings.shrinkAboveBytes && Math.min(size.width, size.height) > settings.shrinkSide;
  if (!overLimits && heavy) {
    const square = await centreSquare(file, image, size);
    if (!card.isConnected) return { ok: false, text: "" };
    if (square) return classifySquare(square, size, "shrunk here", name, card);
  }
  let status = 413;
  if (!overLimits) {
    const outcome = await classifyOne(file, name, card, () => classifyFile(file, name, card));
    status = outcome.status;
    if (![413, 415].includes(status) || !size || !card.isConnected) return outcome;
  }
  if (!card.isConnected) return { ok: false, text: "" };
  if (!size) return showError(card, `Too large: the limit is ${mebibytes(settings.maxUploadBytes)} MiB per image.`);
  const square = await centreSquare(file, image, size);
  if (!square) return showError(card, "This image is too large for this browser to shrink before upload.");
  return classifySquare(square, size, status === 415 ? "converted to JPEG here" : "shrunk here", name, card);
}

function classifySquare(square, size, how, name, card) {
  card.dataset.sent = `sent as ${square.side}×${square.side}: the centre square of ${size.width}×${size.height}, ${how}`;
  return classifyOne(square.blob, name, card);
}

// The picture's size as shown (EXIF orientation applied); null when the browser cannot show it.
function shownSize(image) {
  const size = () => ({ width: image.naturalWidth, height: image.naturalHeight });
  if (image.complete) return Promise.resolve(image.naturalWidth ? size() : null);
  return new Promise((resolve) => {
    image.addEventListener("load", () => resolve(size()), { once: true });
    image.addEventListener("error", () => resolve(null), { once: true });
  });
}

// The centre square the model sees (the proxy crops the same one), at most settings.shrinkSide
// a side, as a JPEG with transparency over white, as the proxy flattens it. Only the square:
// a panorama's whole width could pass a canvas's size limit.
async function centreSquare(file, image, { width, height }) {
  const side = Math.min(width, height, settings.shrinkSide);
  const canvas = await drawScaledSquare(file, image, side);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  return blob && { blob, side };
}

// Runs the jobs `limit` at a time; their results in job order.
async function runLimited(jobs, limit) {
  const results = new Array(jobs.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, jobs.length) }, async () => {
    while (next < jobs.length) {
      const index = next++;
      results[index] = await jobs[index]();
    }
  });
  await Promise.all(workers);
  return results;
}

// ---------- inputs: picker, drop, paste ----------

function wireInputs() {
  ui.pick.addEventListener("click", () => ui.fileInput.click());
  ui.dropzone.addEventListener("click", () => ui.fileInput.click());
  ui.dropzone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      ui.fileInput.click();
    }
  });
  ui.fileInput.addEventListener("change", () => {
    classifyFiles(ui.fileInput.files);
    ui.fileInput.value = "";
  });

  let depth = 0;
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    ui.dropzone.classList.add("dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) ui.dropzone.classList.remove("dragging");
  });
  // Every drop is the page's: a link or a picture dragged from another tab would otherwise
  // make the browser open it in place of this page, and the results would be gone.
  window.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("dragstart", () => { state.draggingInside = true; });
  document.addEventListener("dragend", () => { state.draggingInside = false; });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    ui.dropzone.classList.remove("dragging");
    if (state.draggingInside) { // a result picture or some text moved by mistake
      state.draggingInside = false; // in case its dragend never reaches the document
      return;
    }
    const transfer = event.dataTransfer;
    const folders = droppedFolders(transfer);
    if (folders.length) {
      const note = `${folders.join(", ")}: a folder cannot be dropped. Open it and drop or choose the images inside.`;
      const files = [...transfer.files].filter((file) => !folders.includes(file.name));
      if (files.length) classifyFiles(files, note); // which shows and announces the note too
      else {
        inputMessage(note);
        announce([note]);
      }
    } else if (transfer && transfer.files.length) classifyFiles(transfer.files);
    else if (transfer && transfer.types.length) {
      const note = "That was a link or text, not a file: save the picture to your device first, then drop or choose the file.";
      inputMessage(note);
      announce([note]);
    }
  });

  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? [...event.clipboardData.items] : [];
    // Browsers call every pasted picture "image.png": number those so cards can be told apart.
    const named = (file) => /^(image\.\w+)?$/.test(file.name)
      ? new File([file], `pasted-${++state.counter}.${(file.type.split("/")[1] || "png").split("+")[0]}`, { type: file.type })
      : file;
    const files = items.filter((i) => i.kind === "file").map((i) => i.getAsFile()).filter(Boolean).map(named);
    if (files.length) {
      event.preventDefault();
      classifyFiles(files);
    } else if (items.length) { // a copied link or text: the page has no text field to take it
      const note = "That was a link or text, not a picture: copy the picture itself (right-click it, Copy image), or save it and choose the file.";
      inputMessage(note);
      announce([note]);
    }
  });

  ui.clear.addEventListener("click", clearResults);
  ui.retryAll.addEventListener("click", retryAll);
}

// The names of dropped folders: the browser lists them among the files, and reading one fails
// as if the proxy could not be reached.
function droppedFolders(transfer) {
  if (!transfer || !transfer.items) return [];
  return [...transfer.items]
    .filter((item) => item.kind === "file" && item.webkitGetAsEntry)
    .map((item) => item.webkitGetAsEntry())
    .filter((entry) => entry && entry.isDirectory)
    .map((entry) => entry.name);
}

const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");

function clearResults() {
  for (const card of ui.grid.querySelectorAll(".card")) {
    if (card === state.liveCard) continue;
    if (inflight.has(card)) inflight.get(card).abort();
    URL.revokeObjectURL(card.dataset.url);
    card.remove();
  }
  if (!ui.grid.childElementCount) {
    ui.empty.hidden = false;
    ui.clear.disabled = true; // a disabled button drops the focus: the next input takes it
    ui.dropzone.focus();
  }
  state.latencies = [];
  ui.stats.textContent = "";
  ui.retryAll.hidden = true;
  inputMessage("");
  announce(["Results cleared."]);
}

// ---------- camera ----------

function cameraMessage(text) {
  ui.cameraMessage.textContent = text;
  ui.cameraMessage.hidden = !text;
}

async function toggleCamera() {
  if (state.stream) {
    stopCamera();
    return;
  }
  if (state.cameraStarting) return; // pressed again while the permission prompt is open
  cameraMessage("");
  inputMessage(""); // a note about an earlier drop is not about the camera
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    cameraMessage("The camera needs a secure page: open this site via https:// or http://localhost, in a browser with camera support.");
    return;
  }
  state.cameraStarting = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 960 } },
      audio: false,
    });
  } catch (error) {
    cameraMessage(cameraErrorText(error));
    return;
  } finally {
    state.cameraStarting = false;
  }
  if (document.hidden) { // the page was left while the prompt was open: no camera behind it
    stream.getTracks().forEach((track) => track.stop());
    cameraMessage("The camera was not turned on because you left the page. Press Use camera to turn it on.");
    return;
  }
  state.stream = stream;
  // A camera unplugged, taken by another application or its permission revoked ends the track:
  // without this the panel stayed open on a frozen frame that continuous mode kept sending.
  stream.getVideoTracks().forEach((track) =>
    track.addEventListener("ended", () => {
      if (state.stream !== stream) return; // stopped by the page itself
      closeCamera("The camera stopped (unplugged, or taken by another application). Press Use camera to turn it on again.");
    }),
  );
  ui.video.srcObject = state.stream;
  await ui.video.play().catch(() => {});
  if (state.stream !== stream) return; // stopped meanwhile (a press, or the page was left)
  ui.cameraPanel.hidden = false;
  ui.cameraButton.setAttribute("aria-expanded", "true");
  ui.cameraButton.lastChild.textContent = " Stop camera";
  ui.capture.focus();
}

function cameraErrorText(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera permission was denied. Allow camera access for this site in your browser settings, then try again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found on this device. You can still choose, drop or paste images.";
    case "NotReadableError":
      return "The camera is busy in another application. Close it there and try again.";
    default:
      return `The camera could not start (${(error && error.message) || "unknown error"}).`;
  }
}

function stopCamera() {
  setLive(false);
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  ui.video.srcObject = null;
  ui.cameraPanel.hidden = true;
  ui.cameraButton.setAttribute("aria-expanded", "false");
  ui.cameraButton.lastChild.textContent = " Use camera";
}

// The centre square of the frame, the part the model classifies (the proxy crops the same
// square), at most FRAME_SIDE pixels a side: a 1280x960 frame took up to 1.6 s to encode.
const FRAME_SIDE = 512;
function grabFrame() {
  const video = ui.video;
  if (!video.videoWidth) return Promise.resolve(null);
  const side = Math.min(video.videoWidth, video.videoHeight, FRAME_SIDE);
  const canvas = drawCentreSquare(video, video.videoWidth, video.videoHeight, side);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

async function captureOnce() {
  const blob = await grabFrame();
  if (!blob) return;
  inputMessage(""); // a note about an earlier drop is not about this frame
  const action = newAction();
  const name = `camera-${++state.counter}.jpg`;
  const card = newCard(blob, name);
  reveal(card);
  const outcome = await classifyOne(blob, name, card);
  if (state.stream && card.isConnected) reveal(card); // grown by its answer: the bars in view too
  if (outcome.text) announceOutcomes([outcome], action);
}

async function liveTick() {
  if (state.liveBusy) return;
  state.liveBusy = true;
  const session = state.liveSession;
  try {
    const blob = await grabFrame();
    // Continuous mode or the camera may have been turned off while the frame was encoded.
    if (!blob || session !== state.liveSession) return;
    const first = !state.liveCard || !state.liveCard.isConnected;
    if (first) {
      state.liveCard = newCard(blob, "Live camera");
      state.liveCard.classList.add("live");
      reveal(state.liveCard);
    } else {
      setCardImage(state.liveCard, blob);
    }
    // Twice a second: announce only a change (another top class, failing, recovering), and
    // nothing once continuous mode was turned off, or off and on again, meanwhile.
    // Try again, offered once continuous mode is off, sends the frame under the card's name then.
    const card = state.liveCard;
    const again = () => classifyOne(blob, card.querySelector(".card-name").textContent, card);
    // An older frame's Try again is not for this one: stopped while this frame is on its
    // way, the card offers this frame's own, once answered (classifyOne, nameAsCapture).
    state.liveAgain = null;
    const outcome = await classifyOne(blob, "Live camera", card, again);
    if (session !== state.liveSession) return;
    if (first && card.isConnected) reveal(card); // grown by its answer: the bars in view too
    const key = outcome.ok ? `${outcome.label}${outcome.guess ? " (a guess)" : ""}` : "failed";
    if (key !== state.liveKey) announce([outcome.text], LIVE);
    state.liveKey = key;
  } finally {
    state.liveBusy = false;
    if (state.stoppedLiveCard) nameAsCapture(state.stoppedLiveCard); // its frame answered
    state.stoppedLiveCard = null;
  }
}

// A stopped live card stays as its last frame's result, named as a capture: every one was
// "Live camera", one more of the same name in the list each time. Not while its frame is on
// the way: the proxy's answer names the file as it was sent.
function nameAsCapture(card) {
  const name = `camera-${++state.counter}.jpg`;
  nameCard(card, name);
  // Its last frame failed on the server: Try again, as any capture has. While live it had
  // none (the next frame was its retry), and stopped it stayed failed until Clear.
  const button = card.querySelector(".card-retry");
  const again = state.liveAgain;
  state.liveAgain = null;
  if (!again || !card.classList.contains("failed") || !button.hidden) return;
  button.onclick = () => retryCard(again, card);
  button.setAttribute("aria-label", `Try ${name} again`);
  button.hidden = false;
  resend.set(card, again);
  updateStats();
}

function setLive(on) {
  state.liveSession += 1;
  state.liveKey = null;
  ui.liveToggle.checked = on;
  ui.livePill.hidden = !on;
  clearInterval(state.liveTimer);
  state.liveTimer = on ? setInterval(liveTick, settings.liveIntervalMs) : null;
  if (!on && state.liveCard) {
    if (state.liveBusy) state.stoppedLiveCard = state.liveCard;
    else nameAsCapture(state.liveCard);
    state.liveCard.classList.remove("live");
    state.liveCard = null;
  }
}

function wireCamera() {
  ui.cameraButton.addEventListener("click", toggleCamera);
  ui.capture.addEventListener("click", captureOnce);
  ui.liveToggle.addEventListener("change", () => setLive(ui.liveToggle.checked));
  // Leaving the page turns the camera off (its light too), not only continuous mode.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden || !state.stream) return;
    closeCamera("The camera was turned off when you left the page. Press Use camera to turn it on again.");
  });
}

// The camera turned off by something other than its button (the page left, the camera gone):
// focus inside the panel moves to the button, which the hidden panel would drop to the page.
function closeCamera(message) {
  const hadFocus = ui.cameraPanel.contains(document.activeElement);
  stopCamera();
  if (hadFocus) ui.cameraButton.focus();
  cameraMessage(message);
}

// ---------- start ----------

$("limit-mib").textContent = mebibytes(settings.maxUploadBytes);
if (/Mac|iPhone|iPad/.test(navigator.platform)) $("paste-key").textContent = "⌘";
wireInputs();
wireCamera();
watchModel();
