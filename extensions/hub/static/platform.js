// The platform admin's console (/hub/fedhub/platform): every action is one call to the
// tenancy API, /hub/api/fedhub/..., with the hub's cookie and its _xsrf token.
"use strict";

const root = document.getElementById("fedhub-platform");
const api = root.dataset.api;
const charts = JSON.parse(document.getElementById("console-data").textContent);

function say(text, ok) {
  const box = document.getElementById("console-message");
  box.textContent = text;
  box.className = "alert " + (ok ? "alert-success" : "alert-danger");
}

async function call(method, path, body) {
  const r = await fetch(api + path, {
    method,
    headers: { "X-XSRFToken": window.jhdata.xsrf_token, "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
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

function reasonOf(row, selector) {
  const reason = row.querySelector(selector).value.trim();
  return reason ? { reason } : {};
}

const actions = {
  suspend: (row) =>
    call("POST", "/tenants/" + row.dataset.tenant + "/suspend", reasonOf(row, ".suspend-reason")).then(() =>
      done(row.dataset.tenant + " suspended."),
    ),
  resume: (row) => call("POST", "/tenants/" + row.dataset.tenant + "/resume", {}).then(() => done(row.dataset.tenant + " resumed.")),
  approve: (row) =>
    call("POST", "/requests/" + row.dataset.request + "/approve", reasonOf(row, ".request-reason")).then(() =>
      done("Request " + row.dataset.request + " approved."),
    ),
  reject: (row) =>
    call("POST", "/requests/" + row.dataset.request + "/reject", reasonOf(row, ".request-reason")).then(() =>
      done("Request " + row.dataset.request + " rejected."),
    ),
};

root.addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-action]");
  if (!button) return;
  ev.preventDefault();
  actions[button.dataset.action](button.closest("tr")).catch(() => {});
});

if (window.Plotly && document.getElementById("revenue-chart")) {
  window.Plotly.newPlot(
    "revenue-chart",
    [
      { type: "bar", name: charts.last_period + " invoiced", x: charts.tenants, y: charts.last_month.map(Number), marker: { color: "#1565c0" } },
      { type: "bar", name: charts.period + " so far", x: charts.tenants, y: charts.this_month.map(Number), marker: { color: "#90caf9" } },
    ],
    { barmode: "group", margin: { l: 50, r: 20, t: 10, b: 40 }, yaxis: { title: { text: "USD" } }, legend: { orientation: "h" } },
    { displayModeBar: false, responsive: true },
  );
}
