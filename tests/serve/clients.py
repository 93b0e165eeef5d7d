"""Drives a running `mosaic serve` as its users' clients do: the official `openai` client
(plain, raw streaming, and the `.stream()` helper that merges annotation deltas), LangChain's
`ChatOpenAI`, a bounded load test, and the web page in headless Chromium (Playwright on the
system's Chromium). Exits non-zero with the reason on the first failure.

usage: clients.py BASE_URL KEY QUESTION EXPECTED_WORD ARTIFACT_DIR
"""

import base64
import concurrent.futures
import json
import struct
import sys
import threading
import time
import urllib.error
import urllib.request

BASE, KEY, QUESTION, EXPECTED, ARTIFACTS = sys.argv[1:6]


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def markers_match(content, annotations):
    for a in annotations:
        c = a["url_citation"] if isinstance(a, dict) else a.url_citation
        start = c["start_index"] if isinstance(c, dict) else c.start_index
        end = c["end_index"] if isinstance(c, dict) else c.end_index
        url = c["url"] if isinstance(c, dict) else c.url
        marker = content[start:end]  # Python indexes code points, as the API counts them
        check(marker.startswith("[") and marker.endswith("]"), f"annotation spans a marker: {marker!r}")
        check(url.startswith(BASE + "/v1/sources/"), f"absolute deep link: {url}")


def official_client():
    from openai import OpenAI

    client = OpenAI(base_url=BASE + "/v1", api_key=KEY)
    models = [m.id for m in client.models.list()]
    check(models == ["mosaic", "mosaic-chat"], f"models: {models}")

    reply = client.chat.completions.create(model="mosaic", messages=[{"role": "user", "content": QUESTION}])
    message = reply.choices[0].message
    check(EXPECTED in message.content, f"answer holds {EXPECTED!r}: {message.content!r}")
    check(message.annotations, "annotations parsed by the client")
    check(message.annotations[0].type == "url_citation", "url_citation annotations")
    markers_match(message.content, message.annotations)

    # Raw streaming.
    content, annotation_deltas, sources = "", 0, 0
    stream = client.chat.completions.create(
        model="mosaic", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True})
    usage = None
    for chunk in stream:
        extra = chunk.model_extra or {}
        if "event" in extra:
            check(extra["event"]["type"] == "source", "source events")
            sources += 1
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            if (choice.delta.model_extra or {}).get("annotations"):
                annotation_deltas += 1
    check(content == message.content, "the stream carries the same answer")
    check(annotation_deltas == 1, f"one annotations delta, got {annotation_deltas}")
    check(sources >= 1, "source events in the stream")
    check(usage is not None and usage.total_tokens > 0, "usage chunk")

    # The stream helper accumulates deltas into a final message (it fails on split annotations).
    with client.chat.completions.stream(model="mosaic", messages=[{"role": "user", "content": QUESTION}]) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    final_message = final.choices[0].message
    check(final_message.content == message.content, "helper's final content")
    check(final_message.annotations and len(final_message.annotations) == len(message.annotations),
          "helper's final annotations, merged once")
    markers_match(final_message.content, final_message.annotations)

    # Embeddings: the client asks for base64 by default and decodes it.
    emb = client.embeddings.create(model="mosaic", input=["glass frogs", "ferry dividend"])
    check(len(emb.data) == 2 and len(emb.data[0].embedding) == 384, "embeddings")
    floats = client.embeddings.create(model="mosaic", input="glass frogs", encoding_format="float")
    diff = max(abs(a - b) for a, b in zip(floats.data[0].embedding, emb.data[0].embedding))
    check(diff == 0.0, f"float and base64 agree ({diff})")
    print("openai client: ok")


def langchain():
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=BASE + "/v1", api_key=KEY, model="mosaic", temperature=0)
    reply = llm.invoke(QUESTION)
    check(EXPECTED in reply.content, f"LangChain answer: {reply.content!r}")
    streamed = "".join(chunk.content for chunk in llm.stream(QUESTION) if isinstance(chunk.content, str))
    check(streamed == reply.content, "LangChain stream")
    print("langchain: ok")


def request(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def load_test():
    stop = threading.Event()
    health = []

    def watch():
        while not stop.is_set():
            health.append(request("/healthz"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        searches = list(pool.map(lambda i: request("/v1/search", {"query": f"ferry dividend {i % 7}"}), range(200)))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        chats = list(pool.map(lambda i: request("/v1/chat/completions", {
            "model": "mosaic", "messages": [{"role": "user", "content": QUESTION}]}), range(20)))
    stop.set()
    watcher.join()
    for name, codes in (("searches", searches), ("chats", chats)):
        bad = [c for c in codes if c not in (200, 429)]
        check(not bad, f"{name}: only 200 and deliberate 429, got {bad}")
        check(codes.count(200) > 0, f"{name}: some succeed")
    check(health and all(c == 200 for c in health), f"/healthz kept answering: {set(health)}")
    print(f"load: searches {searches.count(200)} ok / {searches.count(429)} 429, "
          f"chats {chats.count(200)} ok / {chats.count(429)} 429, healthz {len(health)} ok")


def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        tab = browser.new_page()
        errors = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(BASE + "/")
        tab.fill("#key", KEY)
        tab.dispatch_event("#key", "change")
        tab.fill("#question", QUESTION)
        tab.click("#ask-form button")
        tab.wait_for_selector(".answer[data-done=true]", timeout=120_000)
        answer = tab.inner_text(".answer")
        check(EXPECTED in answer, f"the page shows the answer: {answer!r}")
        links = tab.query_selector_all(".answer a.cite")
        timed = [a for a in links if "#t=" in (a.get_attribute("href") or "")]
        check(timed, f"a time citation in the answer: {[a.get_attribute('href') for a in links]}")
        href = timed[0].get_attribute("href")
        start = float(href.split("#t=")[1].split(",")[0])
        check(start > 1.0, f"the cited sentence starts after the recording's opening: {href}")
        timed[0].click()
        tab.wait_for_function(
            "start => { const p = document.getElementById('player');"
            " return p.readyState >= 1 && Math.abs(p.currentTime - start) < 0.75; }",
            arg=start, timeout=30_000)
        current = tab.evaluate("document.getElementById('player').currentTime")
        tab.screenshot(path=f"{ARTIFACTS}/page.png", full_page=True)
        check(not errors, f"no script errors: {errors}")
        browser.close()
        print(f"page: cited start {start:.1f} s, player at {current:.2f} s")


if __name__ == "__main__":
    official_client()
    langchain()
    load_test()
    page()
    print("all clients ok")
