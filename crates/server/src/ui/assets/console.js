// Meridian console: live rows (server-sent events), log streaming, confirmations.
// The page works without this script; it adds live updates and log following.
"use strict";

function rowByKey(tbody, key) {
  for (const tr of tbody.rows) {
    if (tr.dataset.key === key) return tr;
  }
  return null;
}

function parseRow(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  // A <tr> parsed alone inside <template> keeps its element.
  const tr = t.content.querySelector("tr");
  return tr;
}

function startLive(tbody) {
  const status = tbody.closest("main").querySelector("[data-live-status]");
  const say = (text) => { if (status) status.textContent = text; };
  let added = 0;
  const source = new EventSource(tbody.dataset.live);
  source.addEventListener("open", () => {
    tbody.dataset.liveState = "connected";
    document.body.dataset.live = "connected";
  });
  source.addEventListener("row", (ev) => {
    const change = JSON.parse(ev.data);
    const current = rowByKey(tbody, change.key);
    if (change.type === "DELETED") {
      if (current) {
        current.classList.add("gone");
        current.setAttribute("aria-label", change.key + " (deleted)");
      }
      return;
    }
    const fresh = parseRow(change.html);
    if (!fresh) return;
    if (current) {
      fresh.classList.add("changed");
      current.replaceWith(fresh);
      setTimeout(() => fresh.classList.remove("changed"), 2000);
    } else if (change.type === "ADDED") {
      added += 1;
      say(added + (added === 1 ? " new object" : " new objects") + " since this page loaded: reload to see them.");
    }
  });
  source.addEventListener("expired", (ev) => {
    source.close();
    say("Live updates stopped (" + ev.data + "): reload the page.");
  });
  source.addEventListener("end", () => {
    source.close();
    say("Live updates ended: reload the page to resume.");
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) say("Live updates stopped: reload the page.");
  });
}

async function errorText(response) {
  const text = await response.text();
  if ((response.headers.get("content-type") || "").startsWith("text/html")) {
    const doc = new DOMParser().parseFromString(text, "text/html");
    const e = doc.querySelector(".error");
    if (e) return e.textContent;
  }
  return text || response.statusText;
}

function startLogs(controls) {
  const main = controls.closest("main");
  const out = main.querySelector("[data-log-output]");
  const state = main.querySelector("[data-log-state]");
  let abort = null;
  const run = async () => {
    if (abort) abort.abort();
    abort = new AbortController();
    const follow = controls.querySelector("[name=follow]").checked;
    const tail = controls.querySelector("[name=tailLines]").value;
    const container = controls.querySelector("[name=container]").value;
    const params = new URLSearchParams();
    if (follow) params.set("follow", "true");
    if (tail) params.set("tailLines", tail);
    params.set("container", container);
    out.textContent = "";
    state.textContent = "Connecting to the node's agent…";
    try {
      const response = await fetch(controls.dataset.log + "?" + params, {
        signal: abort.signal, credentials: "same-origin",
      });
      if (!response.ok) {
        state.textContent = await errorText(response);
        return;
      }
      state.textContent = follow ? "Following." : "";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.append(decoder.decode(value, { stream: true }));
        if (atEnd) out.scrollTop = out.scrollHeight;
      }
      state.textContent = follow ? "The log ended (the instance stopped)." : "";
    } catch (e) {
      if (e.name !== "AbortError") state.textContent = "The log stream broke: " + e.message;
    }
  };
  controls.querySelector("[data-log-start]").addEventListener("click", run);
  run();
}

// Pages made of several regions (the estate, a node): a change in the watched objects
// fetches the page again (at most every 3 s) and replaces each region whose content
// changed, in place, so nothing else moves.
function startRefresh(container) {
  const status = container.querySelector("[data-live-status]");
  const say = (text) => { if (status) status.textContent = text; };
  let timer = null;
  let last = 0;
  const refresh = async () => {
    timer = null;
    last = Date.now();
    let doc;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) {
        say("Live updates could not refresh this page: " + await errorText(response));
        return;
      }
      doc = new DOMParser().parseFromString(await response.text(), "text/html");
    } catch (e) {
      say("Live updates could not refresh this page: " + e.message);
      return;
    }
    for (const region of container.querySelectorAll("[data-region]")) {
      const fresh = doc.querySelector('[data-region="' + region.dataset.region + '"]');
      if (!fresh || fresh.innerHTML === region.innerHTML) continue;
      region.innerHTML = fresh.innerHTML;
      region.classList.add("changed");
      setTimeout(() => region.classList.remove("changed"), 2000);
    }
    for (const button of container.querySelectorAll("button[data-confirm]")) confirmFirst(button);
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  };
  const schedule = () => {
    if (timer) return;
    timer = setTimeout(refresh, Math.max(300, 3000 - (Date.now() - last)));
  };
  for (const url of container.dataset.refresh.split(" ").filter(Boolean)) {
    const source = new EventSource(url);
    source.addEventListener("open", () => { document.body.dataset.live = "connected"; });
    source.addEventListener("row", schedule);
    source.addEventListener("expired", (ev) => {
      source.close();
      say("Live updates stopped (" + ev.data + "): reload the page.");
    });
    source.addEventListener("end", () => {
      source.close();
      say("Live updates ended: reload the page to resume.");
    });
  }
}

function confirmFirst(button) {
  if (button.dataset.confirmBound) return;
  button.dataset.confirmBound = "1";
  button.form.addEventListener("submit", (ev) => {
    if (!window.confirm(button.dataset.confirm)) ev.preventDefault();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tbody of document.querySelectorAll("tbody[data-live]")) startLive(tbody);
  for (const controls of document.querySelectorAll("[data-log]")) startLogs(controls);
  for (const container of document.querySelectorAll("[data-refresh]")) startRefresh(container);
  for (const button of document.querySelectorAll("button[data-confirm]")) confirmFirst(button);
});
