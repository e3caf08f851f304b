// imgpipe's web page: upload images, follow their processing, show their variants, and
// act on them as their owner (download, reprocess, delete, signed render URLs).
// Plain DOM and fetch, no framework. Every request goes to the same /v1 API any client
// calls, with the API key the user gives (kept in this tab's sessionStorage). Text from the
// server is only ever set as textContent, never parsed as HTML.

const PAGE_SIZE = 12;
const UPLOADS_AT_ONCE = 3;
const UPLOAD_ATTEMPTS = 4;
const POLL_FIRST_MS = 500;
const POLL_MAX_MS = 5000;
const RETRY_MAX_MS = 30000;
const TERMINAL = new Set(["done", "partial", "failed"]);
const KEY_STORAGE = "imgpipe.apiKey";
const CONFIRM_MS = 4000;
const RENDER_DEBOUNCE_MS = 300;

// Every API path the page calls. tests/integration/test_web.py checks each one against the
// app's OpenAPI schema, so keep them literal.
const paths = {
  images: () => "/v1/images",
  image: (id) => `/v1/images/${encodeURIComponent(id)}`,
  variant: (id, name) =>
    `/v1/images/${encodeURIComponent(id)}/variants/${encodeURIComponent(name)}`,
  original: (id) => `/v1/images/${encodeURIComponent(id)}/original`,
  reprocess: (id) => `/v1/images/${encodeURIComponent(id)}/reprocess`,
  renderUrl: (id) => `/v1/images/${encodeURIComponent(id)}/render-url`,
};

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- the API ------------------------------------------------------------------------------

// A refused or failed request: the problem+json fields, or the closest we can say.
class ApiError extends Error {
  constructor(status, { title, detail, code }, retryAfterS = null) {
    super(detail || title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

// The key lives in this tab's sessionStorage; where storage is disabled, until the page
// is left.
let memoryKey = "";

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return memoryKey;
  }
}

function setApiKey(key) {
  memoryKey = key;
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage disabled: memoryKey it is.
  }
}

async function api(path, { method = "GET", body, headers = {} } = {}) {
  const request = new Headers({ Accept: "application/json", ...headers });
  const key = apiKey();
  if (key) request.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(path, { method, body, headers: request, credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, {
      title: "The server could not be reached",
      detail: `${error.message}. Check that imgpipe is running, then try again.`,
      code: "network_error",
    });
  }
  if (!response.ok) throw await problemOf(response);
  return response;
}

async function problemOf(response) {
  let problem = {};
  if ((response.headers.get("Content-Type") || "").includes("json")) {
    try {
      problem = await response.json();
    } catch {
      problem = {};
    }
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  const error = new ApiError(
    response.status,
    {
      title: problem.title || `HTTP ${response.status} ${response.statusText}`.trim(),
      detail: problem.detail || "The server refused the request.",
      code: problem.code || "http_error",
    },
    Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : null,
  );
  if (response.status === 401) auth.needed(error);
  return error;
}

// Worth sending again: the server was unreachable, busy, or asked us to come back.
function retryable(error) {
  return (
    error.status === 0 ||
    error.status === 429 ||
    error.status === 503 ||
    error.code === "idempotency_in_progress"
  );
}

function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// --- small DOM helpers --------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  return children.length ? fill(node, ...children) : node;
}

// Replace a node's children; null and undefined stand for "nothing here".
function fill(node, ...children) {
  node.replaceChildren(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function formatBytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function size(width, height) {
  return width && height ? `${width}×${height}` : "";
}

// Fill a problem box: title, detail, code (and hide it when there is no error).
function renderProblem(node, error, note = "") {
  if (!error) {
    node.hidden = true;
    fill(node);
    return;
  }
  fill(
    node,
    el("strong", { text: error.title }),
    " ",
    el("span", { text: error.detail }),
    " ",
    el("code", { class: "code", text: error.code }),
    note ? el("span", { class: "note", text: ` ${note}` }) : null,
  );
  node.hidden = false;
}

let announceTimer;
function announce(text) {
  const region = $("announcer");
  clearTimeout(announceTimer);
  region.textContent = "";
  announceTimer = setTimeout(() => {
    region.textContent = text;
  }, 50);
}

// Variant images are fetched (with the key) only when their card scrolls into view.
const pendingLoads = new WeakMap();
const observer =
  "IntersectionObserver" in window
    ? new IntersectionObserver(
        (entries) => {
          for (const entry of entries) {
            if (!entry.isIntersecting) continue;
            observer.unobserve(entry.target);
            const load = pendingLoads.get(entry.target);
            pendingLoads.delete(entry.target);
            if (load) load();
          }
        },
        { rootMargin: "300px" },
      )
    : null;

function whenVisible(node, load) {
  if (!observer) {
    load();
    return;
  }
  pendingLoads.set(node, load);
  observer.observe(node);
}

// --- one image card -----------------------------------------------------------------------

const cards = new Map(); // image id -> Card
const labels = new Map(); // image id -> the file name it was uploaded from (this session)

class Card {
  constructor(label) {
    this.label = label;
    this.id = null;
    this.status = null;
    this.removed = false;
    this.timer = null;
    this.delay = POLL_FIRST_MS;
    this.objectUrls = [];
    this.variants = new Map(); // name -> {node, frame, caption, loaded}
    this.original = null; // the resource's `original`, once known

    this.title = el("h3", { class: "card-title", text: label });
    this.statusNode = el("span", { class: "status" });
    this.progress = el("progress", { "aria-label": `Progress of ${label}` });
    this.facts = el("p", { class: "facts" });
    this.problem = el("div", { class: "problem", role: "alert", hidden: true });
    this.variantList = el("ul", { class: "variants", "aria-label": `Variants of ${label}` });
    this.dismiss = el("button", {
      type: "button",
      class: "dismiss",
      text: "Dismiss",
      "aria-label": `Dismiss ${label}`,
      hidden: true,
    });
    this.dismiss.addEventListener("click", () => {
      this.remove();
      $("images-title").focus();
    });
    this.node = el(
      "li",
      { class: "card", tabindex: "-1" },
      el(
        "div",
        { class: "card-head" },
        this.title,
        this.statusNode,
        this.progress,
      ),
      this.facts,
      this.problem,
      this.variantList,
      this.dismiss,
    );
    this.tools = null; // made when the server has accepted the image (ownerTools)
  }

  // The name shown: the uploaded file's name as the server kept it, so a reload keeps it.
  rename(label) {
    if (!label || label === this.label) return;
    this.label = label;
    this.title.textContent = label;
    this.progress.setAttribute("aria-label", `Progress of ${label}`);
    this.variantList.setAttribute("aria-label", `Variants of ${label}`);
    this.tools?.rename(label);
  }

  setStatus(status) {
    this.status = status;
    this.statusNode.textContent = status;
    this.statusNode.className = `status status-${status}`;
    this.progress.hidden = TERMINAL.has(status) || status === "rejected";
    this.node.setAttribute("aria-busy", String(!this.progress.hidden));
  }

  // Show a resource from GET /v1/images/{id} (or the 202 of an upload).
  show(image) {
    if (this.removed) return;
    if (!this.id) {
      this.id = image.id;
      cards.set(image.id, this);
    }
    const before = this.status;
    this.original = image.original || null;
    this.rename(image.original?.filename || labels.get(image.id));
    if (!this.tools) {
      this.tools = ownerTools(this);
      this.node.append(this.tools.node);
    }
    this.setStatus(image.status);
    this.renderFacts(image);
    for (const [name, variant] of Object.entries(image.variants || {})) {
      this.renderVariant(name, variant);
    }
    if (!TERMINAL.has(image.status)) {
      this.poll(this.delay);
      this.delay = Math.min(this.delay * 1.5, POLL_MAX_MS);
    } else if (before && !TERMINAL.has(before)) {
      const failed = Object.values(image.variants || {}).filter((v) => v.status === "failed");
      const note = failed.length ? `, ${failed.length} variant(s) failed` : "";
      announce(`${this.label}: ${image.status}${note}`);
    }
  }

  renderFacts(image) {
    const original = image.original || {};
    const parts = [
      original.format ? original.format.toUpperCase() : "",
      size(original.width, original.height),
      original.frames > 1 ? `${original.frames} frames` : "",
      formatBytes(original.bytes),
    ].filter(Boolean);
    const created = image.created_at ? new Date(image.created_at) : null;
    fill(
      this.facts,
      el("span", { text: `Original: ${parts.join(", ")}` }),
      created ? " · " : null,
      created ? el("time", { datetime: image.created_at, text: created.toLocaleString() }) : null,
      image.id !== this.label ? " · " : null,
      image.id !== this.label ? el("code", { class: "image-id", text: image.id }) : null,
    );
  }

  renderVariant(name, variant) {
    let item = this.variants.get(name);
    if (!item) {
      const frame = el("div", { class: "frame" }, el("span", { class: "placeholder" }));
      const caption = el("figcaption");
      const node = el("li", { class: "variant" }, el("figure", {}, frame, caption));
      item = { node, frame, caption, loaded: false };
      this.variants.set(name, item);
      this.variantList.append(node);
    }
    const details =
      variant.status === "done"
        ? [variant.format, size(variant.width, variant.height), formatBytes(variant.bytes)]
        : [variant.status, variant.attempts > 1 ? `attempt ${variant.attempts}` : ""];
    fill(
      item.caption,
      el("strong", { text: name }),
      el("span", { text: ` ${details.filter(Boolean).join(" · ")}` }),
      variant.error
        ? el(
            "span",
            { class: "variant-error" },
            el("code", { class: "code", text: variant.error.code }),
            ` ${variant.error.message}`,
          )
        : null,
    );
    item.node.className = `variant variant-${variant.status}`;
    if (variant.status !== "done" && item.loaded) {
      item.loaded = false; // made again (reprocess): show the new bytes when done
      fill(item.frame, el("span", { class: "placeholder" }));
    }
    if (variant.status === "done" && !item.loaded) {
      item.loaded = true;
      whenVisible(item.node, () => this.loadVariant(name, variant, item));
    }
  }

  async loadVariant(name, variant, item) {
    try {
      const response = await api(paths.variant(this.id, name), {
        headers: { Accept: "image/*" },
      });
      const blob = await response.blob();
      if (this.removed) return;
      const url = URL.createObjectURL(blob);
      this.objectUrls.push(url);
      const image = el("img", {
        src: url,
        alt: `${this.label}, ${name} variant`,
        width: variant.width,
        height: variant.height,
        decoding: "async",
      });
      const link = el(
        "a",
        { href: url, target: "_blank", rel: "noopener", title: `Open the ${name} variant` },
        image,
      );
      fill(item.frame, link);
    } catch (error) {
      fill(
        item.frame,
        el("span", { class: "frame-error", text: `Not shown: ${error.title} (${error.code})` }),
      );
    }
  }

  poll(delayMs) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delayMs);
  }

  async refresh() {
    if (this.removed) return;
    try {
      const image = await (await api(paths.image(this.id))).json();
      renderProblem(this.problem, null);
      this.show(image);
    } catch (error) {
      if (this.removed) return;
      if (error.status === 401 || error.status === 404) {
        renderProblem(this.problem, error, "Stopped checking this image.");
        this.progress.hidden = true;
        return;
      }
      const waitMs =
        error.retryAfterS !== null
          ? error.retryAfterS * 1000
          : Math.min(this.delay * 2, RETRY_MAX_MS);
      this.delay = Math.min(waitMs, RETRY_MAX_MS);
      renderProblem(this.problem, error, `Checking again in ${Math.ceil(waitMs / 1000)} s.`);
      this.poll(waitMs);
    }
  }

  reject(error) {
    this.setStatus("rejected");
    renderProblem(this.problem, error);
    this.dismiss.hidden = false;
  }

  remove() {
    this.removed = true;
    clearTimeout(this.timer);
    this.tools?.close();
    for (const item of this.variants.values()) observer?.unobserve(item.node);
    for (const url of this.objectUrls) URL.revokeObjectURL(url);
    this.node.remove();
    if (this.id && cards.get(this.id) === this) cards.delete(this.id);
    showEmptyState();
  }
}

// --- what an owner can do with an image ----------------------------------------------------

// Download the original, reprocess, delete, and the render URL builder, under one card.
function ownerTools(card) {
  const problem = el("div", { class: "problem", role: "alert", hidden: true });
  const download = el("button", { type: "button", text: "Download original" });
  const reprocess = el("button", { type: "button", text: "Reprocess" });
  const remove = el("button", { type: "button", class: "danger", text: "Delete" });
  const actions = el("div", { class: "actions", role: "group" }, download, reprocess, remove);
  const builder = renderBuilder(card);
  const node = el("div", { class: "tools" }, actions, problem, builder.node);
  let armed = null;

  // Whatever a button did before, the box says what the last one did.
  async function run(button, work) {
    button.disabled = true;
    try {
      await work();
      renderProblem(problem, null);
    } catch (error) {
      renderProblem(problem, error);
    } finally {
      button.disabled = false;
    }
  }

  download.addEventListener("click", () =>
    run(download, async () => {
      // The original needs the key, so a plain link cannot fetch it: fetch, then save.
      const response = await api(paths.original(card.id), { headers: { Accept: "*/*" } });
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: downloadName(card), hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    }),
  );

  reprocess.addEventListener("click", () =>
    run(reprocess, async () => {
      const image = await (await api(paths.reprocess(card.id), { method: "POST" })).json();
      card.delay = POLL_FIRST_MS;
      card.show(image);
      announce(`${card.label}: processing again`);
    }),
  );

  // Two presses within CONFIRM_MS: a slip of the mouse must not delete an image.
  remove.addEventListener("click", () => {
    if (!armed) {
      remove.textContent = "Press again to delete";
      armed = setTimeout(disarm, CONFIRM_MS);
      return;
    }
    disarm();
    run(remove, async () => {
      await api(paths.image(card.id), { method: "DELETE" });
      announce(`${card.label} deleted`);
      card.remove();
      $("images-title").focus();
    });
  });
  function disarm() {
    clearTimeout(armed);
    armed = null;
    remove.textContent = "Delete";
  }

  function rename(label) {
    actions.setAttribute("aria-label", `Actions for ${label}`);
    builder.rename(label);
  }
  rename(card.label);
  return {
    node,
    rename,
    close() {
      disarm();
      builder.close();
    },
  };
}

function downloadName(card) {
  return card.original?.filename || `${card.id}.${card.original?.format || "bin"}`;
}

function choice(name, values, selected) {
  return el(
    "select",
    { name },
    ...values.map((value) => el("option", { value, selected: value === selected, text: value })),
  );
}

function field(label, control) {
  return el("label", { class: "field" }, el("span", { text: label }), control);
}

// Size, fit, crop and format -> a URL the server signs for this image (POST render-url),
// previewed as it changes. The URL works without a key until it expires, so it can go in
// an <img> anywhere; the signing key never reaches the page.
function renderBuilder(card) {
  // max: the render route's limit (render_options.MAX_DIMENSION); the server decides.
  const width = el("input", { type: "number", name: "w", min: 1, max: 8192, value: 400 });
  const height = el("input", { type: "number", name: "h", min: 1, max: 8192, value: 300 });
  const fit = choice("fit", ["inside", "cover", "contain", "fill"], "cover");
  const crop = choice("crop", ["centre", "attention", "entropy", "face"], "centre");
  const format = choice("format", ["auto", "webp", "avif", "jpeg", "png"], "webp");
  const form = el(
    "form",
    { class: "render-form" },
    field("Width", width),
    field("Height", height),
    field("Fit", fit),
    field("Crop", crop),
    field("Format", format),
  );
  const preview = el("img", { class: "render-preview", decoding: "async", hidden: true });
  const url = el("input", { type: "text", class: "render-url", readonly: true, spellcheck: "false" });
  const copy = el("button", { type: "button", text: "Copy URL", disabled: true });
  const expiry = el("p", { class: "hint" });
  const problem = el("div", { class: "problem", role: "alert", hidden: true });
  const node = el(
    "details",
    { class: "render-builder" },
    el("summary", { text: "Render URL" }),
    form,
    problem,
    // The URL above the preview: a preview of another size must not move the copy button.
    el("div", { class: "render-out" }, el("div", { class: "row" }, url, copy), expiry, preview),
  );
  let timer = null;
  let generation = 0;

  function options() {
    const chosen = { fit: fit.value, format: format.value };
    if (width.value) chosen.w = width.value;
    if (height.value) chosen.h = height.value;
    crop.disabled = fit.value !== "cover"; // the other fits keep the whole picture
    if (!crop.disabled) chosen.crop = crop.value;
    return chosen;
  }

  async function update() {
    const mine = ++generation;
    try {
      const response = await api(paths.renderUrl(card.id), {
        method: "POST",
        body: JSON.stringify({ options: options() }),
        headers: { "Content-Type": "application/json" },
      });
      const signed = await response.json();
      if (mine !== generation) return;
      renderProblem(problem, null);
      url.value = signed.url;
      copy.disabled = false;
      preview.hidden = false;
      preview.src = signed.path; // same origin, so the page's CSP allows it
      const until = new Date(signed.expires_at).toLocaleString();
      expiry.textContent = `Anyone with this URL gets this render, without a key, until ${until}.`;
    } catch (error) {
      if (mine !== generation) return;
      renderProblem(problem, error);
      url.value = "";
      copy.disabled = true;
      preview.hidden = true;
      expiry.textContent = "";
    }
  }

  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(update, RENDER_DEBOUNCE_MS);
  });
  node.addEventListener("toggle", () => {
    if (node.open && !url.value) update();
  });
  preview.addEventListener("error", () => {
    if (preview.hidden) return;
    expiry.textContent = "The preview did not load; open the URL to see the server's answer.";
  });
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(url.value);
      announce("Render URL copied");
      copy.textContent = "Copied";
      setTimeout(() => {
        copy.textContent = "Copy URL";
      }, 2000);
    } catch {
      url.select(); // no clipboard access: leave it selected for Ctrl+C
      announce("Copy the selected URL with Ctrl+C");
    }
  });

  return {
    node,
    rename(label) {
      preview.alt = `Render preview of ${label}`;
      url.setAttribute("aria-label", `Signed render URL for ${label}`);
      copy.setAttribute("aria-label", `Copy the render URL for ${label}`);
    },
    close() {
      clearTimeout(timer);
      generation += 1;
    },
  };
}

// --- uploads ------------------------------------------------------------------------------

const uploadQueue = [];
let uploading = 0;

function addFiles(fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const profiles = $("profiles").value.trim();
  for (const file of files) {
    const card = new Card(file.name || "upload");
    card.setStatus("uploading");
    $("images").prepend(card.node);
    uploadQueue.push({ file, profiles, card, key: idempotencyKey() });
  }
  showEmptyState();
  announce(`Uploading ${files.length} file(s)`);
  pumpUploads();
}

function pumpUploads() {
  while (uploading < UPLOADS_AT_ONCE && uploadQueue.length) {
    const job = uploadQueue.shift();
    uploading += 1;
    upload(job).finally(() => {
      uploading -= 1;
      pumpUploads();
    });
  }
}

// POST /v1/images with an Idempotency-Key, so a retry after a lost answer never makes a
// second image.
async function upload({ file, profiles, card, key }) {
  const body = new FormData();
  body.append("file", file, file.name);
  if (profiles) body.append("profiles", profiles);
  for (let attempt = 1; !card.removed; attempt += 1) {
    try {
      const response = await api(paths.images(), {
        method: "POST",
        body,
        headers: { "Idempotency-Key": key },
      });
      const image = await response.json();
      labels.set(image.id, card.label);
      renderProblem(card.problem, null);
      if (cards.has(image.id)) {
        card.remove(); // the list already shows it
      } else {
        card.show(image);
      }
      return;
    } catch (error) {
      if (!retryable(error) || attempt >= UPLOAD_ATTEMPTS) {
        card.reject(error);
        return;
      }
      const waitS = error.retryAfterS ?? 2 ** attempt;
      renderProblem(card.problem, error, `Trying again in ${waitS} s.`);
      await sleep(waitS * 1000);
    }
  }
}

function setUpDropZone() {
  const zone = $("drop-zone");
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  zone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    addFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not make the browser leave the page to show it.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (hasFiles(event) && !zone.contains(event.target)) event.preventDefault();
    });
  }
}

// --- the list of recent images ------------------------------------------------------------

let nextCursor = null;
let listGeneration = 0;

async function loadImages({ more = false } = {}) {
  const generation = more ? listGeneration : ++listGeneration;
  if (!more) {
    for (const card of Array.from(cards.values())) card.remove();
    nextCursor = null;
  }
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (more && nextCursor) query.set("cursor", nextCursor);
  const list = $("images");
  list.setAttribute("aria-busy", "true");
  $("more").disabled = true;
  try {
    const page = await (await api(`${paths.images()}?${query}`)).json();
    if (generation !== listGeneration) return;
    renderProblem($("list-problem"), null);
    let first = null;
    for (const image of page.items) {
      if (cards.has(image.id)) continue;
      const card = new Card(labels.get(image.id) || image.id);
      list.append(card.node);
      card.show(image);
      first = first || card;
    }
    nextCursor = page.next_cursor;
    $("more").hidden = !nextCursor;
    // "Load more" keeps the keyboard where the new images start.
    if (more && first) first.node.focus();
  } catch (error) {
    if (generation !== listGeneration) return;
    renderProblem($("list-problem"), error);
  } finally {
    if (generation === listGeneration) {
      list.setAttribute("aria-busy", "false");
      $("more").disabled = false;
      showEmptyState();
    }
  }
}

function showEmptyState() {
  const list = $("images");
  const busy = list.getAttribute("aria-busy") === "true";
  $("empty").hidden = busy || !$("list-problem").hidden || list.children.length > 0;
}

// --- the API key --------------------------------------------------------------------------

const auth = {
  update() {
    const key = apiKey();
    $("forget-key").hidden = !key;
    if (key) {
      $("auth").hidden = false;
      $("auth-message").textContent = "This tab sends an API key with every request.";
    }
  },

  // A 401: show the key field, and say why.
  needed(error) {
    const hadKey = Boolean(apiKey());
    $("auth").hidden = false;
    $("auth-message").textContent = hadKey
      ? `The server refused this key: ${error.detail}`
      : `This server needs an API key: ${error.detail}`;
    if (document.activeElement === document.body || document.activeElement === null) {
      $("api-key").focus();
    }
  },

  setUp() {
    $("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) return;
      setApiKey(key);
      $("api-key").value = "";
      auth.update();
      announce("API key set for this tab");
      loadImages();
    });
    $("forget-key").addEventListener("click", () => {
      setApiKey("");
      auth.update();
      $("auth-message").textContent = "The key is forgotten.";
      $("api-key").focus();
      loadImages();
    });
    auth.update();
  },
};

// --- start --------------------------------------------------------------------------------

function start() {
  auth.setUp();
  setUpDropZone();
  $("upload-form").addEventListener("submit", (event) => event.preventDefault());
  $("files").addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = ""; // the same file may be chosen again
  });
  $("refresh").addEventListener("click", () => loadImages());
  $("more").addEventListener("click", () => loadImages({ more: true }));
  loadImages();
}

start();
