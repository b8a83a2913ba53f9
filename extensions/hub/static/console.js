// The tenant admin's console (/hub/fedhub/console): every action is one call to the
// tenancy API, /hub/api/fedhub/..., with the hub's cookie and its _xsrf token; the page
// reloads to show the result, or shows the API's error message.
"use strict";

const root = document.getElementById("fedhub-console");
const tenant = root.dataset.tenant;
const api = root.dataset.api;
const charts = JSON.parse(document.getElementById("console-data").textContent);

function say(text, ok) {
  const box = document.getElementById("console-message");
  box.textContent = text;
  box.className = "alert " + (ok ? "alert-success" : "alert-danger");
}

// One API call; resolves to the JSON answer, or shows the error and rejects.
async function call(method, path, body, contentType) {
  const headers = { "X-XSRFToken": window.jhdata.xsrf_token };
  let payload = body;
  if (body !== undefined && !contentType) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  const r = await fetch(api + path, { method, headers, body: payload, credentials: "same-origin" });
  const answer = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (!r.ok) {
    const message = (answer.error && answer.error.message) || answer.message || r.statusText;
    say(message, false);
    throw new Error(message);
  }
  return answer;
}

function done(text) {
  say(text, true);
  window.setTimeout(() => window.location.reload(), 600);
}

const T = "/tenants/" + encodeURIComponent(tenant);

// -- buttons in table rows ---------------------------------------------------------
const actions = {
  "remove-member": (row) =>
    call("DELETE", T + "/members/" + encodeURIComponent(row.dataset.user)).then(() => done("Removed.")),
  "resend-invitation": (row) =>
    call("POST", T + "/invitations/" + row.dataset.invitation + "/resend", {}).then(() => done("Sent again.")),
  "revoke-invitation": (row) =>
    call("DELETE", T + "/invitations/" + row.dataset.invitation).then(() => done("Revoked.")),
  "add-team-member": (row) =>
    call("PUT", T + "/teams/" + row.dataset.team + "/members/" + encodeURIComponent(row.querySelector(".team-user").value), {})
      .then(() => done("Added to the team.")),
  "remove-team-member": (row) =>
    call("DELETE", T + "/teams/" + row.dataset.team + "/members/" + encodeURIComponent(row.querySelector(".team-user").value))
      .then(() => done("Removed from the team.")),
  "set-team-quota": (row) => {
    let quotas;
    try {
      quotas = JSON.parse(row.querySelector(".team-quota").value || "{}");
    } catch (e) {
      return say('Quotas are JSON, e.g. {"servers": 1}', false);
    }
    return call("PATCH", T + "/teams/" + row.dataset.team, { quotas }).then(() => done("Quotas set."));
  },
  "delete-team": (row) => call("DELETE", T + "/teams/" + row.dataset.team).then(() => done("Team deleted.")),
  "approve-request": (row) => decide(row, "approve"),
  "reject-request": (row) => decide(row, "reject"),
  "withdraw-request": (row) =>
    call("POST", "/requests/" + row.dataset.request + "/withdraw", {}).then(() => done("Withdrawn.")),
};

function decide(row, verdict) {
  const reason = row.querySelector(".request-reason").value.trim();
  const body = reason ? { reason } : {};
  return call("POST", "/requests/" + row.dataset.request + "/" + verdict, body).then(() =>
    done(verdict === "approve" ? "Approved." : "Rejected."),
  );
}

root.addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-action]");
  if (!button) return;
  ev.preventDefault();
  actions[button.dataset.action](button.closest("tr")).catch(() => {});
});

root.addEventListener("change", (ev) => {
  if (!ev.target.classList.contains("member-role")) return;
  const user = ev.target.closest("tr").dataset.user;
  call("PATCH", T + "/members/" + encodeURIComponent(user), { role: ev.target.value })
    .then(() => done("Role changed."))
    .catch(() => {});
});

// -- forms ---------------------------------------------------------------------------
function onSubmit(id, handler) {
  document.getElementById(id).addEventListener("submit", (ev) => {
    ev.preventDefault();
    handler(new FormData(ev.target)).catch(() => {});
  });
}

onSubmit("invite-form", (f) =>
  call("POST", T + "/invitations", {
    email: f.get("email"),
    role: f.get("role"),
    days: Number(f.get("days") || 7),
  }).then(() => done("Invitation sent to " + f.get("email") + ".")),
);

onSubmit("team-form", (f) => {
  const body = { name: f.get("name") };
  if (f.get("lead")) body.lead = f.get("lead");
  const quotas = {};
  for (const [key, value] of f.entries()) {
    if (key.startsWith("quota-") && value !== "") quotas[key.slice(6)] = Number(value);
  }
  if (Object.keys(quotas).length) body.quotas = quotas;
  return call("POST", T + "/teams", body).then(() => done("Team " + body.name + " created."));
});

onSubmit("tier-form", (f) =>
  call("POST", "/requests", { kind: "tier_change", tenant, payload: { tier: f.get("tier") } }).then(() =>
    done("Tier change requested: a platform admin will decide."),
  ),
);

onSubmit("branding-form", async (f) => {
  const body = {};
  for (const key of ["display_name", "primary_colour", "support_url"]) body[key] = f.get(key) || null;
  await call("PUT", T + "/branding", body);
  const logo = f.get("logo");
  if (logo && logo.size) await call("PUT", T + "/branding/logo", logo, logo.type);
  done("Branding saved.");
});

// -- charts (plotly.js from the hub, when the plotly package is installed) -------------
if (window.Plotly && document.getElementById("usage-chart")) {
  const rows = charts.usage.filter((r) => r.allowed > 0);
  window.Plotly.newPlot(
    "usage-chart",
    [
      {
        type: "bar",
        orientation: "h",
        y: rows.map((r) => r.limit),
        x: rows.map((r) => (100 * r.used) / r.allowed),
        text: rows.map((r) => r.used + " of " + r.allowed + " " + r.unit),
        hovertemplate: "%{text}<extra></extra>",
        marker: { color: rows.map((r) => (r.used >= r.allowed ? "#c62828" : "#1565c0")) },
      },
    ],
    {
      margin: { l: 230, r: 20, t: 10, b: 40 },
      xaxis: { title: { text: "% of the tier's limit" }, range: [0, 110] },
      shapes: [{ type: "line", x0: 100, x1: 100, yref: "paper", y0: 0, y1: 1, line: { dash: "dot" } }],
    },
    { displayModeBar: false, responsive: true },
  );
  const months = charts.costs.map((c) => c.period);
  const lines = [
    {
      type: "bar",
      name: "amount",
      x: months,
      y: charts.costs.map((c) => Number(c.total)),
      text: charts.costs.map((c) => c.basis),
      marker: { color: charts.costs.map((c) => (c.basis === "estimate" ? "#90caf9" : "#1565c0")) },
    },
    {
      type: "scatter",
      mode: "lines",
      name: "tier base fee",
      x: months,
      y: months.map(() => Number(charts.monthly_price)),
      line: { dash: "dot", color: "#555" },
    },
  ];
  if (charts.budget) {
    lines.push({
      type: "scatter",
      mode: "lines",
      name: "budget",
      x: months,
      y: months.map(() => Number(charts.budget)),
      line: { color: "#c62828" },
    });
  }
  window.Plotly.newPlot(
    "cost-chart",
    lines,
    { margin: { l: 50, r: 20, t: 10, b: 40 }, yaxis: { title: { text: "USD" } }, legend: { orientation: "h" } },
    { displayModeBar: false, responsive: true },
  );
}
