"""Span values render as text: no Markdown, HTML or Plotly link made of span data, anywhere.

Anyone who can send a span picks its task, model, prompt version, failure reason, error
type, call id, service name and attributes. The corpus (``tests/support/hostile_spans.py``)
puts Markdown images and links, backtick breakouts, HTML, ``javascript:`` URLs, Plotly
``<a href>`` and Slack ``<url|x>``/``<!channel>`` into each, through the real write path.
Every page is checked twice: by Streamlit's AppTest (what the app hands the renderers is
escaped) and by a real Chromium on the running dashboard, next to a loopback "pixel"
server that must receive nothing and a network log that must show no request leaving it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from chromium import DevTools, click, free_port, hover, serving, wait_until
from hostile_spans import PixelServer, pixel_server, write_hostile_store
from streamlit.testing.v1 import AppTest

from llmlens.collector import escape
from llmlens.collector.alerts import add_rule, check_alerts
from llmlens.collector.store import open_store
from llmlens.dashboard import APP_PATH, dashboard_command

PAGES = ("overview", "cost", "latency", "failures", "traces", "alerts")


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    st.cache_data.clear()
    st.cache_resource.clear()
    yield


@pytest.fixture
def pixel() -> Iterator[PixelServer]:
    with pixel_server() as server:
        yield server


@pytest.fixture
def hostile(sqlite_url: str, pixel: PixelServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A store of hostile calls, and an alert that fired for their tasks (webhooks off)."""
    monkeypatch.setenv("LLMLENS_DB_URL", sqlite_url)
    store = open_store(sqlite_url)
    values = write_hostile_store(store, pixel.origin)
    add_rule(store, name="failures", metric="failure_rate", threshold=0.1, window_minutes=120, min_calls=1)
    assert check_alerts(store, send=False)
    return values


def _markdown_sources(at: AppTest) -> list[str]:
    """Everything on the page Streamlit renders as Markdown, as the app handed it over."""
    sources = [str(e.value) for e in (*at.markdown, *at.caption, *at.title, *at.subheader, *at.header,
                                       *at.info, *at.warning, *at.success, *at.error)]
    for metric in at.metric:
        sources += [metric.label, metric.value, metric.proto.help]
    sources += [expander.label for expander in at.expander]
    return sources


def _chart_strings(at: AppTest) -> list[str]:
    """Every string of every Plotly figure on the page (labels, names, hover text, titles)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for chart in at.get("plotly_chart"):
        walk(json.loads(chart.proto.spec))
    return found


def _open(page: str) -> AppTest:
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    if page != "overview":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_hands_span_values_to_markdown_and_plotly_escaped(hostile: dict[str, str], page: str) -> None:
    at = _open(page)
    markdown = "\n".join(_markdown_sources(at))
    charts = "\n".join(_chart_strings(at))
    for value in hostile.values():
        assert value not in markdown
    # Plotly reads tags and entities, not Markdown: no tag at all comes from data.
    assert "<" not in charts
    if page in ("overview", "cost", "latency"):
        for task in (hostile["task"], hostile["task_html"], hostile["task_slack"]):
            assert escape.plotly(task) in charts


def test_the_traces_page_shows_a_hostile_call_as_text(hostile: dict[str, str]) -> None:
    at = _open("traces")
    metrics = {m.label: m for m in at.metric}
    assert metrics["Status"].value == escape.markdown("provider_error")
    assert metrics["Status"].proto.help == escape.markdown(hostile["failure_reason"])
    # The call id sits in a code block (text), not in Markdown backticks it could close.
    assert any(hostile["call_id"] in block.value for block in at.code)
    assert not any(hostile["call_id"] in source for source in _markdown_sources(at))
    calls = at.dataframe[0].value  # table cells are text: the values read as they are
    assert hostile["task"] in set(calls["task"])
    assert hostile["failure_reason"] in set(calls["failure_reason"])
    assert any(hostile["response_id"] in str(block.value) for block in at.json)


def test_the_alerts_page_lists_messages_with_the_task_as_it_is(hostile: dict[str, str]) -> None:
    events = _open("alerts").dataframe[1].value
    assert any(hostile["task_slack"] in message for message in events["message"])


def test_alert_webhooks_quote_span_values_so_chat_renders_no_link_or_mention(
        sqlite_url: str, pixel: PixelServer) -> None:
    store = open_store(sqlite_url)
    values = write_hostile_store(store, pixel.origin)
    add_rule(store, name="failures <b>&", metric="failure_rate", threshold=0.1, window_minutes=120, min_calls=1,
             webhook_url=f"{pixel.origin}/hook")
    fired = check_alerts(store)
    payloads = [json.loads(body) for method, path, body in pixel.requests if path == "/hook"]
    assert len(payloads) == len(fired) >= 2
    texts = {payload["task"]: payload["text"] for payload in payloads}
    assert set(texts) >= {values["task"], values["task_slack"]}
    for task, text in texts.items():
        # Slack's control sequences (<url|x>, <!channel>) need < and >: none is left.
        assert "<" not in text and ">" not in text
        # Each value sits whole inside one inline code span, where neither Slack nor
        # Mattermost renders Markdown, links or mentions.
        assert text.count("`") == 4
        quoted = text.split("`")[3]
        assert quoted.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("@\u200b", "@") == task
    slack = texts[values["task_slack"]]
    assert "&lt;!channel&gt;" in slack and "@here" not in slack and "@\u200bhere" in slack
    assert all(payload["unfurl_links"] is False and payload["unfurl_media"] is False for payload in payloads)
    assert "`failures &lt;b&gt;&amp;`" in slack
    # What is recorded (the Alerts view, `llmlens alerts check`) is the plain message.
    assert any(values["task_slack"] in alert.message for alert in fired)


# --- the real browser ------------------------------------------------------------------------

# Links and images pointing anywhere but the dashboard's own navigation and headings.
_FOREIGN = """(() => {
  const out = [];
  for (const a of document.querySelectorAll('a')) {
    const href = a.getAttribute('href') || a.getAttribute('xlink:href') || '';
    if (!href.startsWith('#') && !href.startsWith(location.origin)) out.push(href);
  }
  for (const e of document.querySelectorAll('img, image, iframe, video, audio, source')) {
    out.push(e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('xlink:href') || '(inline)');
  }
  return out;
})()"""
_CHARTS = "document.querySelectorAll('.js-plotly-plot .main-svg').length"
_RUNNING = "document.querySelector('[data-testid=\"stStatusWidget\"]') !== null"
_SKELETONS = "document.querySelectorAll('[data-testid=\"stSkeleton\"]').length"
# What each page must show before it counts as drawn: headings, and its number of charts.
_DRAWN = {"overview": ("By task", 3), "cost": ("By prompt version", 5), "latency": ("Per request, by model", 3),
          "failures": ("Failure reasons", 4), "traces": ("Attempt 1", 0), "alerts": ("Recent events", 0)}


def _page_text(browser: DevTools) -> str:
    # textContent, not innerText: it includes the text Plotly draws in SVG. The invisible
    # word joiners that keep Markdown from linking a URL are not part of what a person reads.
    return str(browser.evaluate("document.body ? document.body.textContent : ''") or "").replace("\u2060", "")


def _drawn(browser: DevTools, page: str) -> bool:
    heading, charts = _DRAWN[page]
    return (heading in _page_text(browser) and int(browser.evaluate(_CHARTS)) >= charts
            and not browser.evaluate(_RUNNING) and int(browser.evaluate(_SKELETONS)) == 0)


@pytest.mark.browser
def test_a_browser_on_every_page_of_a_hostile_store_requests_nothing_a_span_named(
        hostile: dict[str, str], pixel: PixelServer, browser: DevTools, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LLMLENS_DB_URL": os.environ["LLMLENS_DB_URL"], "HOME": str(tmp_path)}
    with serving(dashboard_command(port=port), port, env, tmp_path) as url:
        for page in PAGES:
            browser.goto(url if page == "overview" else f"{url}/{page}")
            wait_until(lambda page=page: _drawn(browser, page), 120, f"the {page} page")
            assert browser.evaluate(_FOREIGN) == [], page
            if page in ("overview", "cost", "latency"):
                # Plotly drew the names as their own characters.
                text = _page_text(browser)
                assert hostile["task_html"] in text and hostile["model"] in text, page
            if page == "traces":
                text = _page_text(browser)
                assert hostile["call_id"] in text and "provider_error" in text
                # The failure reason's tooltip: hover it so its Markdown is rendered.
                assert hover(browser, '[data-testid="stMetric"] [data-testid="stTooltipIcon"]')
                wait_until(lambda: hostile["failure_reason"] in _page_text(browser), 30, "the reason's tooltip")
                assert browser.evaluate(_FOREIGN) == []
                # The calls' and the tasks' dropdowns draw their options.
                assert click(browser, '[data-testid="stMain"] [data-testid="stSelectbox"] button[aria-label="Open"]')
                wait_until(lambda: hostile["model"] in _page_text(browser), 30, "the calls' options")
                assert click(browser, '[data-testid="stSidebar"] [data-testid="stMultiSelect"] [role="combobox"]')
                wait_until(lambda: hostile["task_html"] in _page_text(browser), 30, "the tasks' options")
                assert browser.evaluate(_FOREIGN) == []
        # A page with an open dropdown still loads what it fetches: end on a known state.
        browser.goto(url)
        wait_until(lambda: _drawn(browser, "overview"), 120, "the overview page")
    assert pixel.requests == []
    dashboard = f"http://127.0.0.1:{port}/"
    assert [u for u in browser.requested if not u.startswith((dashboard, f"ws://127.0.0.1:{port}/"))] == []
    assert not [u for u in browser.requested if "cid.png" in u]
