// The review queue for admins: images moderation held for review, each with its thumbnail
// and two buttons. Shown only when GET /v1/me says the caller is an admin (an admin key in
// this tab, or single-user mode); for anyone else the section stays hidden. Plain DOM and fetch, like app.js, and
// text from the server only ever set as textContent.

const KEY_STORAGE = "imgpipe.apiKey"; // the key app.js keeps for this tab
const REFRESH_MS = 15000;

// Every API path this script calls. tests/integration/test_web.py checks each one
// against the app's OpenAPI schema, so keep them literal.
const paths = {
  queue: () => "/v1/admin/moderation?status=review&limit=50",
  decide: (id) => `/v1/admin/images/${encodeURIComponent(id)}/moderation`,
};

const $ = (id) => document.getElementById(id);
const thumbnails = new Map(); // image id -> blob: URL, revoked when the card goes

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

async function call(path, { method = "GET", body } = {}) {
  const headers = new Headers({ Accept: "application/json" });
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  if (body !== undefined) headers.set("Content-Type", "application/json");
  return fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
  });
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function showThumbnail(img, url, imageId) {
  if (!url) return;
  const response = await call(url);
  if (!response.ok) return;
  const blobUrl = URL.createObjectURL(await response.blob());
  thumbnails.set(imageId, blobUrl);
  img.src = blobUrl;
}

function forget(imageId) {
  const blobUrl = thumbnails.get(imageId);
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  thumbnails.delete(imageId);
}

async function decide(item, decision, card) {
  const reason = card.querySelector("input").value.trim() || null;
  for (const button of card.querySelectorAll("button")) button.disabled = true;
  const response = await call(paths.decide(item.image.id), {
    method: "POST",
    body: { decision, reason },
  });
  const status = card.querySelector(".review-status");
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      // not JSON: the status line says enough
    }
    status.textContent = `${problem.title || response.statusText} ${problem.code || ""}`;
    for (const button of card.querySelectorAll("button")) button.disabled = false;
    return;
  }
  const done = decision === "approve" ? "approved" : "rejected";
  $("announcer").textContent = `Image ${item.image.id} ${done}.`;
  forget(item.image.id);
  card.remove();
  if (!$("review-list").children.length) $("review-empty").hidden = false;
}

function card(item) {
  const moderation = item.image.moderation;
  const labels = moderation.labels.map((l) => `${l.name} ${l.score.toFixed(2)}`).join(", ");
  const img = el("img", { alt: `Image ${item.image.id}`, width: "150", height: "150" });
  const reasonId = `reason-${item.image.id}`;
  const node = el(
    "li",
    { class: "card review-card" },
    img,
    el(
      "div",
      {},
      el("p", { class: "card-title", text: `${item.image.id} (owner ${item.owner})` }),
      el("p", { class: "facts", text: labels || "no labels" }),
      el("label", { for: reasonId, text: "Reason " }),
      el("input", { id: reasonId, type: "text", autocomplete: "off" }),
      el("button", { type: "button", "data-decision": "approve", text: "Approve" }),
      el("button", { type: "button", "data-decision": "reject", text: "Reject" }),
      el("p", { class: "review-status hint", role: "status" }),
    ),
  );
  for (const button of node.querySelectorAll("button")) {
    button.addEventListener("click", () => decide(item, button.dataset.decision, node));
  }
  showThumbnail(img, item.thumbnail, item.image.id);
  return node;
}

async function load() {
  const section = $("review");
  let response;
  try {
    // Ask who we are first: a non-admin key never calls an admin route (no 403 to log).
    const me = await call("/v1/me");
    if (!me.ok || !(await me.json()).admin) {
      section.hidden = true; // not an admin key, or no key yet (401)
      return;
    }
    response = await call(paths.queue());
  } catch {
    return; // the server is away: app.js says so; try again on the next round
  }
  if (!response.ok) {
    section.hidden = true; // not an admin key (403), or no key yet (401)
    return;
  }
  const page = await response.json();
  for (const imageId of thumbnails.keys()) forget(imageId);
  const list = $("review-list");
  list.replaceChildren(...page.items.map(card));
  $("review-empty").hidden = page.items.length > 0;
  section.hidden = false;
}

function start() {
  $("review-refresh").addEventListener("click", load);
  // app.js stores a newly typed key on submit; look again once it has.
  $("auth-form")?.addEventListener("submit", () => setTimeout(load, 500));
  setInterval(() => {
    if (document.visibilityState === "visible") load();
  }, REFRESH_MS);
  load();
}

start();
