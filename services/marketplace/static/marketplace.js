// The storefront's pages (/services/marketplace/...): each reads and writes through the
// service's JSON API (api/v1/...) with the HubOAuth cookie and the _xsrf token the page
// was given, and shows the API's own message when it refuses. Text goes in as text
// (textContent); the one HTML inserted is an asset's description_html, which the API
// renders from Markdown with raw HTML off.
"use strict";

const body = document.body;
const API = body.dataset.api;
const PREFIX = body.dataset.prefix;
const TENANT = body.dataset.tenant;
const MAY_BUY = Boolean(body.dataset.mayBuy); // the caller's permission; the API still decides
const PLATFORM_ADMIN = Boolean(body.dataset.platformAdmin); // marks statements paid (the API decides)

function say(text, ok) {
  const box = document.getElementById("market-message");
  box.textContent = text;
  box.className = "alert " + (ok ? "alert-success" : "alert-danger");
}

function quiet() {
  document.getElementById("market-message").className = "alert d-none";
}

// One API call: the JSON answer, or an Error carrying the API's message and status.
async function call(method, path, payload, headers) {
  const h = Object.assign({ "X-XSRFToken": body.dataset.xsrf }, headers || {});
  const init = { method, headers: h, credentials: "same-origin" };
  if (payload !== undefined) {
    h["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  let r;
  try {
    r = await fetch(API + path, init);
  } catch (e) {
    throw Object.assign(new Error("The marketplace did not answer; try again."), { status: 0 });
  }
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) {
    const message = (answer.error && answer.error.message) || r.statusText || "refused";
    throw Object.assign(new Error(message), { status: r.status, code: answer.error && answer.error.code });
  }
  return answer;
}

// el("td", {class: "x"}, "text", child, ...): an element with attributes and children
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function row(...cells) {
  return el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))));
}

function stars(rating, count) {
  if (!count) return "no ratings yet";
  const full = Math.round(rating);
  return "★".repeat(full) + "☆".repeat(5 - full) + " " + Number(rating).toFixed(1);
}

function price(a) {
  if (Number(a.price) === 0) return "Free";
  const per = a.pricing === "monthly" ? " a month" : "";
  return a.price + " " + a.currency + per + (a.per_seat ? " per seat" : "");
}

// The first paragraph of a Markdown description without its marks, for a card
function plain(markdown) {
  return (markdown || "").split(/\n\s*\n/)[0].replace(/[*_`#>]+/g, "").trim();
}

function day(iso) {
  return iso ? iso.slice(0, 10) : "";
}

function assetLink(slug, text) {
  return el("a", { href: PREFIX + "asset/" + encodeURIComponent(slug) }, text || slug);
}

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// -- Browse ------------------------------------------------------------------------------
const FILTERS = ["q", "type", "category", "licence", "min_price", "max_price", "min_rating", "sort"];

async function browse() {
  const form = document.getElementById("search-form");
  const params = new URLSearchParams(window.location.search);
  for (const name of FILTERS) if (params.has(name)) form.elements[name].value = params.get(name);
  let offset = Number(params.get("offset")) || 0;

  async function show() {
    const q = new URLSearchParams();
    for (const name of FILTERS) {
      const v = form.elements[name].value.trim();
      if (v) q.set(name, v);
    }
    if (offset) q.set("offset", String(offset));
    history.replaceState(null, "", "?" + q.toString());
    q.set("limit", "12");
    const results = document.getElementById("results");
    let page;
    try {
      page = await call("GET", "search?" + q.toString());
    } catch (e) {
      results.replaceChildren();
      return say("Search refused: " + e.message, false);
    }
    quiet();
    results.replaceChildren(...page.assets.map(card));
    document.getElementById("no-results").classList.toggle("d-none", page.assets.length > 0);
    const prev = document.getElementById("prev-page");
    const next = document.getElementById("next-page");
    prev.disabled = offset === 0;
    next.disabled = page.next_offset === null;
    prev.onclick = () => { offset = Math.max(0, offset - 12); show(); };
    next.onclick = () => { offset = page.next_offset; show(); };
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    offset = 0;
    show();
  });
  await show();
}

function card(a) {
  const state = a.state === "listed" ? null : el("span", { class: "badge text-bg-warning ms-2" }, a.state);
  return el("div", { class: "col-md-6 col-xl-4", "data-slug": a.slug },
    el("div", { class: "card market-card" },
      el("div", { class: "card-body" },
        el("h2", { class: "h5 card-title" }, assetLink(a.slug, a.name), state),
        el("div", { class: "small text-muted mb-2" },
          a.asset_type + (a.category ? " · " + a.category : "") + " · by " + a.publisher),
        el("p", { class: "card-text" }, plain(a.description).slice(0, 160)),
        el("div", { class: "d-flex justify-content-between" },
          el("span", { class: "market-stars" }, stars(a.rating, a.rating_count),
            a.rating_count ? el("span", { class: "text-muted" }, " (" + a.rating_count + ")") : null),
          el("strong", { class: "market-price" }, price(a))))));
}

// -- Asset -------------------------------------------------------------------------------
async function asset() {
  const slug = document.getElementById("asset").dataset.slug;
  const key = newKey(); // one purchase per page view, however often Buy is clicked
  let a;
  try {
    a = await call("GET", "assets/" + encodeURIComponent(slug));
  } catch (e) {
    return say(e.message, false);
  }
  document.getElementById("asset-name").textContent = a.name;
  document.getElementById("asset-type").textContent = a.asset_type + (a.category ? " · " + a.category : "");
  const state = document.getElementById("asset-state");
  state.textContent = a.state;
  state.className = "badge " + (a.state === "listed" ? "text-bg-success" : "text-bg-warning");
  document.getElementById("asset-publisher").textContent = "published by " + a.publisher;
  document.getElementById("asset-rating").textContent = stars(a.rating, a.rating_count);
  document.getElementById("asset-rating-count").textContent = a.rating_count ? "(" + a.rating_count + (a.rating_count === 1 ? " review)" : " reviews)") : "";
  document.getElementById("asset-description").innerHTML = a.description_html; // safe: see the header
  document.getElementById("asset-tags").replaceChildren(
    ...a.tags.map((t) => el("span", { class: "badge text-bg-light me-1" }, t)));
  document.getElementById("asset-price").textContent = price(a);
  document.getElementById("asset-pricing").textContent = a.pricing === "monthly" ? "charged each month while active" : "paid once";
  document.getElementById("asset-licence").textContent = a.licence;
  document.getElementById("asset-licence-text").textContent = a.licence_text || "";
  document.querySelector("#versions tbody").replaceChildren(...a.versions.map((v) =>
    el("tr", { "data-version": v.version },
      el("td", {}, v.version), el("td", {}, v.state + (v.review_note ? " (" + v.review_note + ")" : "")),
      el("td", {}, el("code", { class: "market-sha" }, v.sha256)),
      el("td", {}, v.filename + " (" + v.size + " bytes)"), el("td", {}, v.changelog), el("td", {}, day(v.created_at)))));
  // the button works before licences() shows it
  const buy = document.getElementById("buy");
  buy.addEventListener("click", async () => {
    buy.disabled = true;
    try {
      const p = await call("POST", "assets/" + encodeURIComponent(slug) + "/purchase", {}, { "Idempotency-Key": key });
      say("Bought: " + p.reference + (Number(p.amount) ? " for " + p.amount + " " + p.currency : "") + ".", true);
      const held = await licences(a);
      await reviews(a, held);
    } catch (e) {
      say(e.message, false);
      buy.disabled = false;
    }
  });
  const mine = await licences(a);
  await reviews(a, mine);
}

// The caller's tenant's licences for this asset, shown in the buy card; the Buy button for
// another tenant's asset the caller's tenant holds no licence for, if the caller holds the
// buying permission (the API decides again, and the page shows its refusal).
async function licences(a) {
  const box = document.getElementById("licence-state");
  let held = [];
  try {
    held = (await call("GET", "entitlements")).entitlements.filter((e) => e.asset === a.slug);
  } catch (e) {
    box.textContent = e.message;
  }
  const active = held.filter((e) => e.state === "active");
  box.replaceChildren(...held.map((e) =>
    el("div", { class: "licence", "data-state": e.state },
      el("span", { class: "badge " + (e.state === "active" ? "text-bg-success" : "text-bg-secondary") }, e.state),
      " ", el("code", { class: "licence-reference" }, e.reference),
      e.username ? " for " + e.username : " for " + e.tenant)));
  if (a.publisher === TENANT) box.append(el("div", { class: "text-muted" }, "Your organisation publishes this asset."));
  const canOffer = a.state === "listed" && a.publisher !== TENANT && active.length === 0;
  document.getElementById("buy").classList.toggle("d-none", !(canOffer && MAY_BUY));
  document.getElementById("buy-note").classList.toggle("d-none", !(canOffer && MAY_BUY));
  document.getElementById("ask-buyer").classList.toggle("d-none", !(canOffer && !MAY_BUY));
  document.getElementById("buy").textContent = Number(a.price) === 0 ? "Get it (free)" : "Buy for " + (TENANT || "your organisation");
  return active;
}

async function reviews(a, mine) {
  const list = document.getElementById("reviews");
  let got;
  try {
    got = await call("GET", "assets/" + encodeURIComponent(a.slug) + "/reviews");
  } catch (e) {
    return list.replaceChildren(el("p", { class: "text-danger" }, e.message));
  }
  const items = got.reviews || [];
  list.replaceChildren(...(items.length ? items.map((r) => review(a, r)) : [el("p", { class: "text-muted" }, "No reviews yet.")]));
  const form = document.getElementById("review-form");
  form.classList.toggle("d-none", mine.length === 0);
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      await call("POST", "assets/" + encodeURIComponent(a.slug) + "/reviews",
        { stars: Number(form.elements.stars.value), text: form.elements.text.value });
      say("Thank you for your review.", true);
      form.classList.add("d-none");
      await reviews(a, []);
    } catch (e) {
      say(e.message, false);
    }
  };
}

function review(a, r) {
  const node = el("div", { class: "market-review mb-3", "data-review": r.id },
    el("div", {}, el("span", { class: "market-stars" }, "★".repeat(r.stars) + "☆".repeat(5 - r.stars)),
      " ", el("strong", {}, r.username), el("span", { class: "text-muted" }, " (" + r.tenant + ") " + day(r.created_at))),
    el("div", {}, r.text));
  if (r.answer) {
    node.append(el("div", { class: "market-answer mt-1" }, el("strong", {}, a.publisher + " answered: "), r.answer));
  } else if (a.publisher === TENANT) {
    const input = el("input", { class: "form-control form-control-sm", maxLength: 4000, placeholder: "Answer once, as the publisher" });
    const send = el("button", { class: "btn btn-sm btn-outline-secondary", type: "button" }, "Answer");
    send.onclick = async () => {
      try {
        await call("POST", "assets/" + encodeURIComponent(a.slug) + "/reviews/" + r.id + "/answer", { text: input.value });
        say("Answer posted.", true);
        await reviews(a, []);
      } catch (e) {
        say(e.message, false);
      }
    };
    node.append(el("div", { class: "input-group mt-1" }, input, send));
  }
  return node;
}

// -- My licences -------------------------------------------------------------------------
// Each licence with its reference; for buyers, Upgrade when the asset lists a newer
// version than the licence's, and Refund on an active licence (the API decides on the
// refund window and answers with its message).
async function myLicences() {
  let got;
  try {
    got = (await call("GET", "entitlements")).entitlements;
  } catch (e) {
    return say(e.message, false);
  }
  const newest = await newestVersions(got.filter((e) => e.state === "active").map((e) => e.asset));
  document.getElementById("no-licences").classList.toggle("d-none", got.length > 0);
  document.querySelector("#licences tbody").replaceChildren(...got.map((e) => {
    const copy = el("button", { class: "btn btn-sm btn-outline-secondary copy-reference", type: "button" }, "Copy");
    copy.onclick = () => copyText(e.reference, copy);
    const actions = el("td", { class: "text-nowrap" });
    if (MAY_BUY && e.state === "active") {
      const latest = newest[e.asset];
      if (latest && latest !== e.version) {
        actions.append(action("btn-outline-primary upgrade", "Upgrade to " + latest, async () => {
          const up = await call("POST", "assets/" + encodeURIComponent(e.asset) + "/upgrade");
          return "Upgraded: " + up.reference + ".";
        }), " ");
      }
      actions.append(confirmed("btn-outline-danger refund", "Refund", "Confirm the refund", async () => {
        const r = await call("POST", "purchases/" + e.purchase + "/refund", { reason: "asked in the storefront" });
        return "Refunded purchase " + r.id + (r.credit_note ? " (credit note " + r.credit_note + ")" : "") + ".";
      }));
    }
    return el("tr", { "data-reference": e.reference, "data-asset": e.asset },
      el("td", {}, assetLink(e.asset)), el("td", {}, e.asset_type), el("td", { class: "licence-version" }, e.version),
      el("td", { class: "licence-state" }, e.state), el("td", {}, e.username || e.tenant), el("td", {}, day(e.created_at)),
      el("td", {}, el("code", { class: "reference me-2" }, e.reference), copy), actions);
  }));
}

// The newest listed version of each asset (what an upgrade moves to), from GET assets/<slug>
async function newestVersions(slugs) {
  const out = {};
  await Promise.all([...new Set(slugs)].map(async (slug) => {
    try {
      const listed = (await call("GET", "assets/" + encodeURIComponent(slug))).versions.filter((v) => v.state === "listed");
      if (listed.length) out[slug] = listed[listed.length - 1].version;
    } catch (e) { /* delisted or gone: no upgrade offered */ }
  }));
  return out;
}

// A button that runs one API call, says its answer and redraws the page
function action(cls, text, run) {
  const b = el("button", { class: "btn btn-sm " + cls, type: "button" }, text);
  b.onclick = async () => {
    b.disabled = true;
    try {
      const done = await run();
      await PAGES[body.dataset.page]();
      say(done, true);
    } catch (e) {
      say(e.message, false);
      b.disabled = false;
    }
  };
  return b;
}

// The same, asked twice: the first click turns the button into its confirmation
function confirmed(cls, text, confirmText, run) {
  const b = action(cls, text, run);
  const go = b.onclick;
  b.onclick = () => {
    b.textContent = confirmText;
    b.onclick = go;
  };
  return b;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch (e) { // no clipboard (an insecure origin): select the text for Ctrl-C
    const range = document.createRange();
    range.selectNodeContents(button.previousSibling);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    button.textContent = "Selected: press Ctrl-C";
  }
}

// -- Publisher ---------------------------------------------------------------------------
async function publisher() {
  let own, sales, payouts;
  try {
    [own, sales, payouts] = await Promise.all([call("GET", "assets"), call("GET", "sales"), call("GET", "payouts")]);
  } catch (e) {
    document.getElementById("publisher").classList.add("d-none");
    return say("This page is for publishers. " + e.message, false);
  }
  document.getElementById("no-assets").classList.toggle("d-none", own.assets.length > 0);
  document.querySelector("#own-assets tbody").replaceChildren(...own.assets.map((a) => {
    const actions = el("td", { class: "text-nowrap" },
      el("a", { class: "btn btn-sm btn-outline-primary new-version", href: PREFIX + "publish?asset=" + encodeURIComponent(a.slug) }, "New version"));
    if (a.state !== "delisted") {
      actions.append(" ", confirmed("btn-outline-danger delist", "Delist", "Confirm: delist", async () => {
        await call("POST", "assets/" + encodeURIComponent(a.slug) + "/delist", { note: "delisted by the publisher" });
        return "Delisted " + a.slug + ": no new sales; licences sold keep working.";
      }));
    }
    return el("tr", { "data-slug": a.slug }, el("td", {}, assetLink(a.slug, a.name)), el("td", {}, a.asset_type),
      el("td", { class: "asset-state" }, a.state), el("td", {}, price(a)), el("td", {}, stars(a.rating, a.rating_count)),
      el("td", {}, a.downloads), el("td", {}, a.review_note || ""), actions);
  }));
  document.querySelector("#sales tbody").replaceChildren(...sales.sales.map((s) =>
    el("tr", { "data-purchase": s.purchase }, el("td", {}, day(s.created_at)), el("td", {}, assetLink(s.asset)),
      el("td", {}, s.buyer), el("td", {}, s.kind), el("td", { class: "text-end" }, s.gross),
      el("td", { class: "text-end" }, s.share_percent + " %"), el("td", { class: "text-end sale-amount" }, s.amount))));
  document.querySelector("#payouts tbody").replaceChildren(...payouts.statements.map((p) =>
    el("tr", { "data-period": p.period }, el("td", {}, p.period), el("td", { class: "statement-state" }, p.state || ""),
      el("td", { class: "text-end" }, p.gross + " " + (p.currency || "")),
      el("td", { class: "text-end statement-amount" }, p.amount + " " + (p.currency || "")),
      el("td", { class: "text-end" }, (p.lines || []).length))));
}

// -- Review queue ------------------------------------------------------------------------
async function queue() {
  let pending;
  try {
    pending = (await call("GET", "assets?state=pending_review")).pending;
  } catch (e) {
    return say(e.message, false);
  }
  document.getElementById("queue-empty").classList.toggle("d-none", pending.length > 0);
  document.getElementById("queue").replaceChildren(...pending.map(submission));
}

function submission(item) {
  const a = item.asset, v = item.version;
  const note = el("input", { class: "form-control review-note", maxLength: 2000, placeholder: "Note (a rejection needs one)" });
  const decide = (decision) => async () => {
    try {
      await call("POST", "assets/" + encodeURIComponent(a.slug) + "/review", { version: v.version, decision, note: note.value });
      say((decision === "approve" ? "Approved " : "Rejected ") + a.slug + "@" + v.version + ".", true);
      node.remove();
    } catch (e) {
      say(e.message, false);
    }
  };
  const approve = el("button", { class: "btn btn-success approve", type: "button" }, "Approve");
  const reject = el("button", { class: "btn btn-outline-danger reject", type: "button" }, "Reject");
  approve.onclick = decide("approve");
  reject.onclick = decide("reject");
  const node = el("section", { class: "card card-body mb-3 submission", "data-slug": a.slug, "data-version": v.version },
    el("h2", { class: "h5" }, a.name + " ", el("span", { class: "text-muted" }, a.slug + "@" + v.version)),
    el("div", { class: "small text-muted" }, a.asset_type + " · " + a.publisher + " · " + price(a) + " · " + a.licence),
    el("div", { class: "small" }, "SHA-256 ", el("code", { class: "market-sha" }, v.sha256), " · ", v.filename, " (" + v.size + " bytes)"),
    v.changelog ? el("div", { class: "small" }, "Changelog: " + v.changelog) : null,
    el("p", { class: "mt-2 mb-1 market-plain" }, a.description),
    item.source !== null ? el("pre", { class: "market-source" }, el("code", { class: "source" }, item.source))
      : el("p", { class: "text-muted" }, "A binary file: its type and size were checked at upload."),
    el("div", { class: "input-group mt-2" }, note, approve, reject));
  return node;
}

// -- Publish -----------------------------------------------------------------------------
// A new asset (POST assets), or with ?asset=<slug> a new version of it (POST .../versions).
// The file is read here and sent as content_base64; the API checks it all.
async function publish() {
  const form = document.getElementById("publish-form");
  const slug = new URLSearchParams(window.location.search).get("asset");
  let kind = () => form.elements.asset_type.value;
  if (slug) {
    let a;
    try {
      a = await call("GET", "assets/" + encodeURIComponent(slug));
    } catch (e) {
      form.classList.add("d-none");
      return say(e.message, false);
    }
    document.getElementById("publish-title").textContent = "New version of " + a.name;
    document.getElementById("publish-intro").textContent = "Versions are immutable (SHA-256); the new one waits for review, "
      + "buyers keep the version they licensed and may upgrade. Versions so far: " + a.versions.map((v) => v.version + " (" + v.state + ")").join(", ") + ".";
    document.getElementById("asset-fields").remove();
    form.elements.version.value = "";
    kind = () => a.asset_type;
  }
  const datasetFields = document.getElementById("dataset-fields");
  const licenceText = document.getElementById("licence-text-box");
  const redraw = () => {
    datasetFields.classList.toggle("d-none", kind() !== "dataset");
    if (!slug) licenceText.classList.toggle("d-none", form.elements.licence.value !== "custom");
  };
  form.addEventListener("change", redraw);
  redraw();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = document.getElementById("publish-button");
    button.disabled = true;
    try {
      const file = form.elements.file.files[0];
      if (!file) throw new Error("Choose the file to publish.");
      const payload = {
        version: form.elements.version.value.trim(),
        changelog: form.elements.changelog.value,
        filename: file.name,
        content_base64: base64(new Uint8Array(await file.arrayBuffer())),
      };
      if (kind() === "dataset") {
        const label = form.elements.label_column.value.trim();
        if (label) payload.label_column = label;
        const partition = form.elements.partition.value.trim();
        if (partition) payload.partition = partition.startsWith("{") ? parsed(partition, "partition") : partition;
      }
      let done;
      if (slug) {
        const v = await call("POST", "assets/" + encodeURIComponent(slug) + "/versions", payload);
        done = slug + "@" + v.version;
      } else {
        const e = form.elements;
        const licence = e.licence.value === "custom" ? { custom: e.licence_text.value } : e.licence.value;
        Object.assign(payload, {
          name: e.name.value.trim(), slug: e.slug.value.trim() || null, asset_type: e.asset_type.value, category: e.category.value.trim() || null,
          description: e.description.value, tags: e.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
          licence, price: e.price.value.trim() || "0", pricing: e.pricing.value, per_seat: e.per_seat.checked,
        });
        const a = await call("POST", "assets", payload);
        done = a.slug + "@" + a.versions[0].version;
      }
      form.classList.add("d-none");
      say("Submitted " + done + " for review. ", true);
      document.getElementById("market-message").append(el("a", { href: PREFIX + "publisher", id: "back-to-publisher" }, "Back to Publisher"));
    } catch (e) {
      say(e.message, false);
      button.disabled = false;
    }
  });
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function parsed(text, name) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(name + " is a partitioner's name or a JSON object: " + e.message);
  }
}

// -- Payouts (platform admins) -----------------------------------------------------------
async function payouts() {
  let statements;
  try {
    statements = (await call("GET", "payouts")).statements;
  } catch (e) {
    return say(e.message, false);
  }
  document.getElementById("no-payouts").classList.toggle("d-none", statements.length > 0);
  document.querySelector("#all-payouts tbody").replaceChildren(...statements.map((p) => {
    const paid = el("td", { class: "statement-paid" });
    if (p.state === "paid") {
      paid.append(day(p.paid_at) + " by " + p.paid_by + ": ", el("code", {}, p.paid_reference));
    } else if (PLATFORM_ADMIN) { // offered until paid: the API refuses an open statement and says why
      const reference = el("input", { class: "form-control form-control-sm paid-reference", maxLength: 200, placeholder: "transfer reference" });
      const mark = action("btn-outline-success mark-paid", "Mark paid", async () => {
        const out = await call("POST", "payouts/" + p.id + "/paid", { reference: reference.value });
        return "Statement " + out.id + " of " + out.tenant + " (" + out.period + ") is paid: " + out.paid_reference + ".";
      });
      paid.append(el("div", { class: "input-group input-group-sm" }, reference, mark));
    }
    return el("tr", { "data-statement": p.id, "data-tenant": p.tenant, "data-period": p.period },
      el("td", {}, p.tenant), el("td", {}, p.period), el("td", { class: "statement-state" }, p.state),
      el("td", { class: "text-end" }, p.gross + " " + p.currency),
      el("td", { class: "text-end statement-amount" }, p.amount + " " + p.currency),
      el("td", { class: "text-end" }, p.platform_fee + " " + p.currency),
      el("td", { class: "text-end" }, (p.lines || []).length), paid);
  }));
}

const PAGES = { browse, asset, licences: myLicences, publisher, publish, review: queue, payouts };
PAGES[body.dataset.page]().catch((e) => say(e.message, false));
