// Mosaic's page: ask (streamed, with clickable citations), search, similar media, ingest.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = localStorage.getItem("mosaic-key") || "";
keyInput.addEventListener("change", () => {
  localStorage.setItem("mosaic-key", keyInput.value.trim());
  loadSources();
});

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = keyInput.value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

// A same-origin link with the key as a query parameter (media elements send no headers).
function withKey(url) {
  const key = keyInput.value.trim();
  if (!key) return url;
  const u = new URL(url, location.href);
  u.searchParams.set("key", key);
  return u.toString();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

// Tabs.
for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => {
    for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b === button);
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.id === button.dataset.tab);
    if (button.dataset.tab === "ingest") loadSources();
  });
}

// Opens a citation: a time plays the recording or video from there, a page opens the document.
function openLink(url, title) {
  const u = new URL(url, location.href);
  const fragment = u.hash.slice(1);
  u.hash = "";
  const time = /^t=([\d.]+)/.exec(fragment);
  if (time) {
    const start = parseFloat(time[1]);
    const player = $("player");
    $("viewer").hidden = false;
    $("viewer-title").textContent = title || "";
    const src = withKey(u.toString());
    const seek = () => {
      player.currentTime = start;
      player.dataset.seekedTo = String(start);
      player.play().catch(() => {});
    };
    if (player.dataset.src === src && player.readyState >= 1) {
      seek();
    } else {
      player.dataset.src = src;
      player.addEventListener("loadedmetadata", seek, { once: true });
      player.src = src;
      player.load();
    }
    return;
  }
  window.open(withKey(u.toString()) + (fragment ? "#" + fragment : ""), "_blank", "noopener");
}
$("viewer-close").addEventListener("click", () => {
  $("player").pause();
  $("viewer").hidden = true;
});

function citeLink(text, url, title) {
  const a = el("a", { class: "cite", href: url, title: title || url }, text);
  a.addEventListener("click", (event) => {
    event.preventDefault();
    openLink(url, title);
  });
  return a;
}

// The answer with each annotated marker as a link (indices count code points).
function renderAnswer(node, content, annotations) {
  node.textContent = "";
  const chars = Array.from(content);
  let at = 0;
  const sorted = (annotations || []).slice().sort((a, b) => a.url_citation.start_index - b.url_citation.start_index);
  for (const a of sorted) {
    const c = a.url_citation;
    if (c.start_index < at) continue;
    node.append(chars.slice(at, c.start_index).join(""));
    node.append(citeLink(chars.slice(c.start_index, c.end_index).join(""), c.url, c.title));
    at = c.end_index;
  }
  node.append(chars.slice(at).join(""));
}

// Ask: a streamed chat completion.
const history = [];
$("ask-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("question").value = "";
  const answer = el("div", { class: "answer" }, "…");
  const sources = el("ol", { class: "sources" });
  const turn = el("div", { class: "turn" }, el("div", { class: "question" }, question), answer, sources);
  $("conversation").append(turn);
  history.push({ role: "user", content: question });
  let content = "";
  let annotations = [];
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ model: "mosaic", stream: true, messages: history }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let done = false;
    while (!done) {
      const { value, done: finished } = await reader.read();
      if (finished) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") { done = true; break; }
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.event && chunk.event.type === "source") {
            const d = chunk.event.data;
            sources.append(el("li", {}, citeLink(d.source.name, d.source.url, d.source.name)));
          }
          for (const choice of chunk.choices || []) {
            if (choice.delta && choice.delta.content) {
              content += choice.delta.content;
              answer.textContent = content;
            }
            if (choice.delta && choice.delta.annotations) annotations = choice.delta.annotations;
          }
        }
      }
    }
    renderAnswer(answer, content, annotations);
    answer.dataset.done = "true";
    history.push({ role: "assistant", content });
  } catch (error) {
    answer.textContent = "";
    answer.append(el("span", { class: "error" }, error.message));
    history.pop();
  }
});

function hitItem(hit, extra) {
  const item = el("li", {});
  const name = hit.source.uri.split("/").pop();
  item.append(citeLink(decodeURIComponent(name), hit.url, name));
  if (hit.thumbnail) item.append(el("img", { src: withKey(hit.thumbnail), alt: name, loading: "lazy" }));
  item.append(el("div", { class: "meta" }, extra));
  return item;
}

function describe(anchor) {
  if (!anchor) return "";
  const clock = (ms) => {
    const s = Math.floor(ms / 1000);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  };
  switch (anchor.kind) {
    case "time": return clock(anchor.start_ms) + "–" + clock(anchor.end_ms);
    case "frame": return "at " + clock(anchor.at_ms);
    case "span": return anchor.page ? "p. " + anchor.page : "";
    default: return "";
  }
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const list = $("search-results");
  list.textContent = "";
  try {
    const body = await api("/v1/search", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ query: $("query").value, top_k: 10 }),
    });
    if (!body.hits.length) list.append(el("li", {}, "no results"));
    for (const hit of body.hits) {
      const item = hitItem(hit, hit.modality + " " + describe(hit.anchor) + " · score " + hit.score.toFixed(3));
      if (hit.text) item.append(el("div", { class: "snippet" }, hit.text.slice(0, 300)));
      for (const more of hit.more || []) {
        item.append(el("div", { class: "meta" }, "also ", citeLink(describe(more.anchor) || "another passage", more.url, "")));
      }
      list.append(item);
    }
  } catch (error) {
    list.append(el("li", { class: "error" }, error.message));
  }
});

$("similar-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const list = $("similar-results");
  list.textContent = "";
  const form = new FormData();
  form.append("file", $("similar-file").files[0]);
  try {
    const body = await api("/v1/similar", { method: "POST", headers: headers(), body: form });
    if (!body.hits.length) list.append(el("li", {}, "nothing similar"));
    for (const hit of body.hits) {
      const first = (hit.matches || [])[0] || {};
      const item = hitItem(
        { source: hit.source, url: first.url || hit.url, thumbnail: first.thumbnail },
        hit.source.media_type + " · score " + hit.score.toFixed(3),
      );
      for (const m of hit.matches || []) {
        if (describe(m.anchor)) item.append(el("div", { class: "meta" }, citeLink(describe(m.anchor), m.url, "")));
      }
      list.append(item);
    }
  } catch (error) {
    list.append(el("li", { class: "error" }, error.message));
  }
});

$("ingest-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  for (const file of $("ingest-files").files) form.append("file", file);
  const box = $("job");
  box.textContent = "uploading…";
  try {
    const job = await api("/v1/ingest", { method: "POST", headers: headers(), body: form });
    watchJob(job.id);
  } catch (error) {
    box.textContent = "";
    box.append(el("span", { class: "error" }, error.message));
  }
});

async function watchJob(id) {
  const box = $("job");
  for (;;) {
    let job;
    try {
      job = await api("/v1/jobs/" + id, { headers: headers() });
    } catch (error) {
      box.textContent = error.message;
      return;
    }
    box.textContent = "";
    box.append(
      el("div", {}, "job " + job.status + ": " + job.files_done + "/" + job.files_total + " files" + (job.current ? " · " + job.current : "")),
      el("progress", { max: Math.max(job.files_total, 1), value: job.files_done }),
    );
    for (const f of job.failed) box.append(el("div", { class: "error" }, f.uri.split("/").pop() + ": " + f.error));
    if (job.status === "done" || job.status === "failed") {
      loadSources();
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function loadSources() {
  const list = $("sources");
  try {
    const body = await api("/v1/sources", { headers: headers() });
    list.textContent = "";
    for (const s of body.data) {
      list.append(el("li", {}, citeLink(s.name, s.url, s.name), el("span", { class: "meta" }, " " + s.media_type + " · " + s.status + (s.error ? " · " + s.error : ""))));
    }
  } catch (error) {
    list.textContent = error.message;
  }
}
