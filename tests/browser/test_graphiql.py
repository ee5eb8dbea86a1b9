"""GraphiQL in headless Chromium with no network but loopback: a demo user runs a query, and
subscribes to changes and sees one made by another client.

`make test` installs Debian's `chromium` when it is missing (as root, with apt-get); only
where that cannot be done does this test skip, and it says so.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser.cdp import BrowserError, Chromium, find_chromium
from tests.servers import Server, serve

QUERY = "{ viewer { user { name } } }"
RESULT_EDITOR = "document.querySelector('.result-window .CodeMirror')"
# The editor (query, variables, headers) whose text contains a word, or null.
EDITOR_WITH = (
    "Array.from(document.querySelectorAll('.graphiql-editor .CodeMirror'))"
    ".map(e => e.CodeMirror.getValue()).find(v => v.includes({word})) || null"
)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("graphiql"), "--demo") as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "chromium is not installed and could not be installed here "
            "(`make test` installs it with apt-get when run as root): "
            "the GraphiQL browser test did not run"
        )
    chromium = Chromium(executable)
    try:
        chromium.open_page()
        yield chromium
    finally:
        chromium.close()


def test_a_demo_user_runs_a_query_with_no_network(
    demo_server: Server, browser: Chromium, tmp_path: Path
) -> None:
    # The browser reaches nothing but this machine's loopback.
    with pytest.raises(BrowserError, match="ERR_"):
        browser.navigate("https://registry.npmjs.org/graphiql")

    browser.navigate(f"{demo_server.url}/graphql")
    browser.wait_for("document.querySelector('[data-demo-user=\"assessor\"]') !== null")
    browser.wait_for("document.querySelector('.graphiql-query-editor .CodeMirror') !== null")
    browser.evaluate("document.querySelector('[data-demo-user=\"assessor\"]').click()")
    headers = json.loads(browser.wait_for(EDITOR_WITH.format(word="'Bearer ey'")))
    assert headers["Authorization"].startswith("Bearer ey")

    browser.evaluate(
        "document.querySelector('.graphiql-query-editor .CodeMirror')"
        f".CodeMirror.setValue({json.dumps(QUERY)})"
    )
    browser.evaluate("document.querySelector('.graphiql-execute-button').click()")
    answer = browser.wait_for(
        f"(() => {{ const r = {RESULT_EDITOR}; const v = r && r.CodeMirror.getValue();"
        " return v && v.includes('viewer') ? v : null; })()"
    )
    assert json.loads(answer) == {
        "data": {"viewer": {"user": {"name": "Alex Stone"}}},
        "extensions": {"cost": 2},
    }

    screenshot = tmp_path / "graphiql.png"
    browser.screenshot(screenshot)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("CASELOAD_SCREENSHOT_DIR"):
        shutil.copy(screenshot, Path(os.environ["CASELOAD_SCREENSHOT_DIR"]) / screenshot.name)

    loaded = [u for u in browser.requested_urls() if not u.startswith("data:")]
    assert f"{demo_server.url}/graphiql/static/graphiql.min.js" in loaded
    assert all(u.startswith(f"{demo_server.url}/") for u in loaded[1:]), loaded
    assert not browser.console_problems()
    # The page asked the server for the token; the server logged no token.
    assert headers["Authorization"].split()[1] not in demo_server.log_text()


SUBSCRIPTION = "subscription { changes { action subject { ... on Learner { name } } } }"


def test_graphiql_subscribes_and_sees_a_change_made_elsewhere(
    demo_server: Server, browser: Chromium
) -> None:
    browser.navigate(f"{demo_server.url}/graphql")
    browser.wait_for("document.querySelector('[data-demo-user=\"admin\"]') !== null")
    browser.wait_for("document.querySelector('.graphiql-query-editor .CodeMirror') !== null")
    browser.evaluate("document.querySelector('[data-demo-user=\"admin\"]').click()")
    headers = json.loads(browser.wait_for(EDITOR_WITH.format(word="'Bearer ey'")))
    browser.evaluate(
        "document.querySelector('.graphiql-query-editor .CodeMirror')"
        f".CodeMirror.setValue({json.dumps(SUBSCRIPTION)})"
    )
    time.sleep(1)  # GraphiQL parses the document a moment after it changes
    browser.evaluate("document.querySelector('.graphiql-execute-button').click()")
    # Another client changes a learner the admin sees, over HTTP.
    auth = {"Authorization": headers["Authorization"]}
    found = httpx.post(
        f"{demo_server.url}/graphql",
        json={"query": "{ learners(first: 1) { edges { node { id } } } }"},
        headers=auth,
    ).json()
    learner = found["data"]["learners"]["edges"][0]["node"]["id"]
    rename = 'mutation($id: ID!) { updateLearner(input: {learnerId: $id, name: "Seen Live"}) '
    rename += "{ __typename } }"
    for _ in range(20):  # until the subscription has started, the first renames may pass it by
        changed = httpx.post(
            f"{demo_server.url}/graphql",
            json={"query": rename, "variables": {"id": learner}},
            headers=auth,
        ).json()
        assert changed["data"]["updateLearner"]["__typename"] in ("LearnerUpdated",), changed
        try:
            answer = browser.wait_for(
                f"(() => {{ const r = {RESULT_EDITOR}; const v = r && r.CodeMirror.getValue();"
                " return v && v.includes('Seen Live') ? v : null; })()",
                timeout=3,
            )
            break
        except BrowserError:
            continue
    else:
        shown = browser.evaluate(
            f"(() => {{ const r = {RESULT_EDITOR}; return r && r.CodeMirror.getValue(); }})()"
        )
        raise AssertionError(f"GraphiQL showed no event: {shown!r} {browser.console_problems()}")
    event = json.loads(answer)["data"]["changes"]
    assert event == {"action": "LEARNER_UPDATED", "subject": {"name": "Seen Live"}}
    assert not browser.console_problems()
