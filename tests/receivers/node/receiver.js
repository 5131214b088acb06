// A cometjobs webhook receiver as README's guide writes it (Node, no framework):
// verify the raw body bytes, deduplicate on webhook-id, order by seq, never leave a
// terminal state, answer 2xx to whatever verified (even events it ignores).
// The suite drives it with real deliveries (tests/test_receivers.py).
const http = require("node:http");
const { Webhook } = require("standardwebhooks");

const wh = new Webhook(process.env.WEBHOOK_SECRET); // "whsec_..." as cometjobs gives it
const TERMINAL = new Set(["succeeded", "failed", "canceled", "timed_out"]);
const seen = { accepted: [], rejected: 0, ignored: 0, duplicates: 0, jobs: {} };
const handled = new Set();

function onEvent(event) {
  const job = seen.jobs[event.data.id] ?? { seq: 0, status: null };
  if (event.seq <= job.seq || TERMINAL.has(job.status)) {
    seen.ignored += 1; // an older event (a retry or redelivery), or after the end
    return;
  }
  seen.jobs[event.data.id] = { seq: event.seq, status: event.data.status };
}

http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/seen") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify(seen));
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const raw = Buffer.concat(chunks).toString("utf8"); // the exact bytes; never JSON.stringify(JSON.parse(...))
    let event;
    try {
      event = wh.verify(raw, req.headers); // Node lowercases header names
    } catch (err) {
      seen.rejected += 1;
      res.writeHead(401);
      return res.end();
    }
    const id = req.headers["webhook-id"];
    if (handled.has(id)) {
      seen.duplicates += 1;
    } else {
      handled.add(id);
      seen.accepted.push({ id: event.id, type: event.type, seq: event.seq, job: event.data.id });
      onEvent(event);
    }
    res.writeHead(204);
    res.end();
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
