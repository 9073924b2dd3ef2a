// signoff console: live queue (server-sent events), countdowns, keyboard shortcuts.
// Every string from the server goes into the page with textContent, never as HTML.
"use strict";

function countdown(iso) {
  const left = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (isNaN(left)) return "";
  if (left <= 0) return "expired";
  const d = Math.floor(left / 86400), h = Math.floor(left % 86400 / 3600);
  const m = Math.floor(left % 3600 / 60), s = left % 60;
  if (d > 0) return "in " + d + "d " + h + "h";
  if (h > 0) return "in " + h + "h " + m + "m";
  return "in " + m + "m " + String(s).padStart(2, "0") + "s";
}

function tick() {
  for (const el of document.querySelectorAll("[data-expires]")) {
    el.textContent = countdown(el.dataset.expires);
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function row(r) {
  const tr = document.createElement("tr");
  tr.dataset.request = r.id;
  const prio = document.createElement("span");
  prio.className = "priority " + r.priority;
  prio.textContent = r.priority;
  const first = cell("");
  first.appendChild(prio);
  tr.appendChild(first);
  const link = document.createElement("a");
  link.href = "/requests/" + encodeURIComponent(r.id);
  link.textContent = r.action;
  const action = cell("");
  action.appendChild(link);
  tr.appendChild(action);
  tr.appendChild(cell(r.summary, "text"));
  tr.appendChild(cell(r.agent, "text"));
  tr.appendChild(cell(r.confidence));
  const why = cell("", "text");
  const list = document.createElement("ul");
  list.className = "triggers";
  for (const t of r.triggers) {
    const li = document.createElement("li");
    li.textContent = t;
    list.appendChild(li);
  }
  why.appendChild(list);
  tr.appendChild(why);
  tr.appendChild(cell(r.quorum));
  tr.appendChild(cell(r.claim, "text claim"));
  const time = document.createElement("time");
  time.dataset.expires = r.expires_at;
  time.title = r.expires;
  time.textContent = countdown(r.expires_at);
  const expires = cell("");
  expires.appendChild(time);
  tr.appendChild(expires);
  return tr;
}

function choices(select, options) {
  const chosen = select.value;
  const keep = [select.options[0]];  // "all"
  select.replaceChildren(...keep);
  let found = chosen === "";
  for (const [value, shown] of options) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = shown;
    if (value === chosen) { option.selected = true; found = true; }
    select.appendChild(option);
  }
  if (!found) {
    const option = document.createElement("option");
    option.value = chosen;
    option.textContent = chosen;
    option.selected = true;
    select.appendChild(option);
  }
}

function showQueue(data) {
  const rows = document.getElementById("rows");
  rows.replaceChildren(...data.rows.map(row));
  document.getElementById("empty").hidden = data.rows.length > 0;
  document.getElementById("count-pending").textContent = data.counts.pending;
  document.getElementById("count-shown").textContent = data.counts.shown;
  for (const el of document.querySelectorAll("[data-priority-count]")) {
    el.textContent = data.counts.by_priority[el.dataset.priorityCount];
  }
  for (const select of document.querySelectorAll("select[data-filter]")) {
    choices(select, data.choices[select.dataset.filter]);
  }
}

function liveQueue() {
  const live = document.getElementById("live");
  const source = new EventSource("/events" + window.location.search);
  source.addEventListener("open", () => { live.textContent = "Live updates: on"; });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      window.location.reload();  // refused (signed out): the page itself says where to go
    } else {
      live.textContent = "Live updates: reconnecting…";
    }
  });
  source.addEventListener("queue", (event) => {
    showQueue(JSON.parse(event.data));
    live.textContent = "Live updates: on";
  });
  source.addEventListener("signed-out", () => {
    source.close();
    window.location.assign("/sign-in");
  });
  for (const select of document.querySelectorAll("select[data-filter]")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

function typing() {
  // whether the reviewer has started writing on this page: then a change elsewhere does not reload it under them
  const editor = document.getElementById("approved-payload");
  for (const id of ["reason", "amend-comment"]) {
    const el = document.getElementById(id);
    if (el && el.value.trim() !== "") return true;
  }
  return Boolean(editor && editor.value !== editor.defaultValue);
}

function liveRequest() {
  const live = document.getElementById("live-request");
  if (!live) return;
  const url = "/requests/" + encodeURIComponent(live.dataset.request) + "/events?version=" +
    encodeURIComponent(live.dataset.version);
  const source = new EventSource(url);
  for (const form of document.querySelectorAll("form")) {
    // this page's own vote (or sign-out) navigates by itself: a reload for the change it causes would cancel it
    form.addEventListener("submit", () => source.close());
  }
  source.addEventListener("request", (event) => {
    const state = JSON.parse(event.data);
    if (!typing()) {
      source.close();
      window.location.reload();  // nothing written yet: show the request as it is now
      return;
    }
    const status = document.getElementById("status");
    status.textContent = state.status;
    status.className = "status " + state.status;
    const changed = document.getElementById("changed");
    changed.textContent = "Changed since you opened this page: " + state.outcome + ". Reload to see it all.";
    changed.hidden = false;
  });
  source.addEventListener("signed-out", () => {
    source.close();
    window.location.assign("/sign-in");
  });
}

function shortcuts() {
  const form = document.getElementById("decide");
  if (!form) return;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target instanceof HTMLElement && (target.isContentEditable || target.closest("input, textarea, select"))) {
      return;
    }
    const reason = document.getElementById("reason");
    if (event.key === "a") {
      event.preventDefault();
      document.getElementById("approve").click();
    } else if (event.key === "e") {
      const box = document.getElementById("amend-box");
      if (!box) return;
      event.preventDefault();
      box.open = true;
      document.getElementById("approved-payload").focus();
    } else if (event.key === "r") {
      event.preventDefault();
      if (reason.value.trim() === "") {
        reason.focus();  // a rejection needs a reason: write it, then press Reject (or Enter on the button)
      } else {
        document.getElementById("reject").click();
      }
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  window.setInterval(tick, 1000);
  if (document.body.dataset.page === "queue") liveQueue();
  if (document.body.dataset.page === "request") liveRequest();
  shortcuts();
});
