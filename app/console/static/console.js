// The ops console's only script (served by the API; no CDN, no framework).
// 1. Live numbers: an element with data-source="URL" data-every="N" refreshes, every N
//    seconds, each [data-live="dotted.path"] on the page from that JSON document.
// 2. Forms with data-confirm ask before they post (cancel).
// 3. A job's timeline follows a stream once the server names one (followTimeline below).
"use strict";

function lookup(data, path) {
  return path.split(".").reduce((node, key) => (node == null ? undefined : node[key]), data);
}

function formatAge(seconds) {
  if (seconds == null) return "–";
  const s = Math.floor(seconds);
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

function render(element, value) {
  const format = element.dataset.format;
  if (value === undefined) value = element.dataset.default;
  if (value === undefined) return;
  if (format === "age") element.textContent = formatAge(value);
  else if (format === "clock") element.textContent = String(value).slice(11, 19);
  else element.textContent = value == null ? "–" : String(value);
}

function startLive(source) {
  const url = source.dataset.source;
  const every = Math.max(2, Number(source.dataset.every || 5)) * 1000;
  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) {
        window.location.assign("/console/login?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      document.querySelectorAll("[data-live]").forEach((el) => render(el, lookup(data, el.dataset.live)));
      source.classList.remove("stale");
    } catch (error) {
      source.classList.add("stale");
    }
    window.setTimeout(refresh, every);
  }
  window.setTimeout(refresh, every);
}

// The job page follows its timeline live: #timeline's data-stream-url is the console's
// session-authenticated twin of GET /v1/jobs/{id}/events/stream (SSE). Timeline events are
// appended as they happen, a `job` event updates the status, `end` closes the stream (an
// EventSource would otherwise reconnect, resuming with Last-Event-ID).
function appendTimelineRow(table, event) {
  const body = table.tBodies[0];
  if (body.querySelector(`tr[data-event-id="${event.id}"]`)) return;
  const row = body.insertRow();
  row.dataset.eventId = event.id;
  const data = event.data && Object.keys(event.data).length ? JSON.stringify(event.data) : "";
  for (const text of [event.id, String(event.created_at || "").replace("T", " ").slice(0, 19), event.type,
                      event.status || "", event.message || "", data]) {
    row.insertCell().textContent = text;
  }
}

function followTimeline(table) {
  const url = table.dataset.streamUrl;
  if (!url || !window.EventSource) return;
  const source = new EventSource(url, { withCredentials: true });
  source.onmessage = (message) => appendTimelineRow(table, JSON.parse(message.data));
  source.addEventListener("job", (message) => {
    const job = JSON.parse(message.data);
    const status = document.getElementById("job-status");
    if (status && job.status) {
      status.textContent = job.status;
      status.className = `status status-${job.status}`;
    }
  });
  source.addEventListener("end", () => source.close());
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-source]").forEach(startLive);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  const timeline = document.getElementById("timeline");
  if (timeline) followTimeline(timeline);
});
