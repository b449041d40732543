"""A new user's first day, as docs/quickstart.md tells it: every command of the quickstart, in
its order, on a CSV the project never saw (the subjects of 5,000 posts of 20 Newsgroups, 80% of
the labels blank: missing, empty or whitespace), with the files connector. The test plays the annotators
(it answers the outbox's tasks with the posts' true topics, as a Label Studio export in the
inbox) and reads the round report in headless Chromium, as a user would open it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tests.support.browser import rendered, screenshot

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "docs" / "quickstart.md"
ARTIFACTS = ROOT / "tests" / "artifacts"


def quickstart_commands() -> list[str]:
    """Every line of the quickstart's ```bash blocks, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", QUICKSTART.read_text(encoding="utf-8"), re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip()]


def user_csv(data_dir: Path, path: Path, n: int = 5000) -> dict[int, str]:
    """The user's file: ``doc_id, body, topic``; 80% of topics blank. Returns the true topics."""
    posts = pl.read_parquet(data_dir / "20news_test.parquet").head(n)
    # each post's subject line: real, short texts (the embedding of 5,000 long posts alone
    # would take minutes on two cores), near-duplicates included (replies keep the subject)
    body = posts["text"].str.extract(r"(?m)^Subject:[ \t]*(.*)$").fill_null("").str.strip_chars()
    body = pl.Series([b if b else t[:80] for b, t in zip(body, posts["text"], strict=True)])
    u = np.random.default_rng(0).random(n)
    topic = [
        lab if x >= 0.8 else (None if x < 0.4 else "" if x < 0.6 else "   ")
        for lab, x in zip(posts["label"], u, strict=True)
    ]
    pl.DataFrame({"doc_id": posts["id"] + 1000, "body": body, "topic": topic}).write_csv(path)
    return dict(zip((posts["id"] + 1000).to_list(), posts["label"].to_list(), strict=True))


def answer_outbox(project: Path, truth: dict[int, str]) -> int:
    """The annotators: every task of the outbox answered with the true topic, exported as
    Label Studio JSON into the inbox (the format of docs/files_connector.md)."""
    export = []
    for f in sorted((project / "annotations" / "example" / "outbox").glob("tasks-*.json")):
        for n, task in enumerate(json.loads(f.read_text(encoding="utf-8"))):
            choice = {"choices": [truth[int(task["data"]["id"])]]}
            result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": choice}]
            answer = {"completed_by": {"email": f"ann{n % 3}@example.com"}, "result": result}
            export.append({"id": len(export) + 1, "data": task["data"], "annotations": [answer]})
    inbox = project / "annotations" / "example" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "project-1-export.json").write_text(json.dumps(export), encoding="utf-8")
    return len(export)


def run(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One quickstart command as a user types it (``curation`` on the PATH)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["COLUMNS"] = "100"
    done = subprocess.run(
        shlex.split(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stdout + done.stderr, cmd
    return done


@pytest.mark.slow
def test_the_quickstart_on_a_csv_with_most_labels_blank(tmp_path: Path, data_dir: Path) -> None:
    truth = user_csv(data_dir, tmp_path / "my_texts.csv")
    commands = quickstart_commands()
    assert (
        commands[0].startswith("curation init") and sum(c.startswith("curation run") for c in commands) == 3
    )
    cwd, out, runs = tmp_path, {}, 0
    for cmd in commands:
        if cmd.startswith("cd "):
            cwd = cwd / cmd[3:]
            continue
        out[cmd] = run(cmd, cwd).stdout
        if cmd == "curation run loops/example.yaml":
            runs += 1
            if runs == 1:  # the annotators answer between the rounds (quickstart, step 4)
                answered = answer_outbox(cwd, truth)
                assert answered == 100
    project = cwd
    check(project, out, truth)


def check(project: Path, out: dict[str, str], truth: dict[int, str]) -> None:
    """What each step of the quickstart promised."""
    report = json.loads((project / ".curation" / "check" / "report.json").read_text())
    # blank labels are no errors: the only broken rows are one subject given two topics
    # (a thread cross-posted to two groups), quarantined as conflicting duplicates
    assert report["rows"] == report["valid"] + report["quarantined"] == 5000
    assert report["by_check"] == {"conflicting_duplicate": report["quarantined"]}
    assert "would select" in out["curation run loops/example.yaml --dry-run"]
    history = out["curation history --loop loops/example.yaml"]
    assert "example/round-1" in history and "example/round-2" in history

    curated = pl.read_parquet(project / "curated.parquet")
    assert len(curated) == 5000 and curated["doc_id"].dtype == pl.Int64
    given = curated["given_label"].str.strip_chars().replace("", None).drop_nulls()
    sources = dict(curated.group_by("label_source").len().iter_rows())
    assert sources["original"] == len(given) > 900  # the review answers confirmed the given labels
    assert sources["annotator"] >= 80  # the label tasks of round 1, answered
    assert curated["topic"].null_count() == 5000 - len(given) - sources["annotator"]
    answered = curated.filter(pl.col("label_source") == "annotator")
    assert all(truth[i] == lab for i, lab in zip(answered["doc_id"], answered["topic"], strict=True))
    first = pl.read_csv(project / "round-1.csv")
    assert len(first) == 5000 and first.filter(pl.col("label_source") == "annotator").is_empty()

    page = project / "rounds" / "example" / "round-2" / "report.html"
    dom: dict[str, Any] = rendered(page.read_text(encoding="utf-8"), project)
    assert all(i["ok"] and i["width"] > 0 for i in dom["images"]) and len(dom["images"]) >= 3
    assert len(dom["tables"]["selection"]) == 100
    assert [r["round"] for r in dom["tables"]["curve"]] == ["1", "2"]
    shot = ARTIFACTS / "first_day_report.png"
    screenshot(page, shot, project, height=5000)
    assert shot.stat().st_size > 50_000
