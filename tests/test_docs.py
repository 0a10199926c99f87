"""The README for a newcomer and its generated lines: short, no machine paths, blocks current."""

from __future__ import annotations

import re

from helpers import REPO, load_script

rehearse = load_script(REPO / "scripts" / "rehearse_aariz.py", "rehearse_aariz")


def test_readme_is_short_and_links_only_existing_pages():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 150
    assert text.startswith("# cephalo\n")
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (REPO / target).exists(), target


def test_no_machine_specific_paths_in_readme_and_docs():
    # an absolute path; `.dvc/tmp/lock` (a path inside the project) is none
    pattern = re.compile(r"(?<![\w.-])(/tmp/|/work/|/root/|/home/)[A-Za-z]")
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        hits = [ln for ln in path.read_text().splitlines() if pattern.search(ln)]
        assert hits == [], (path, hits[:3])


def test_readme_rehearsal_block_is_the_recorded_run(tmp_path):
    """The README's rehearsal line is written from docs/results/rehearsal-aariz.json, never typed."""
    summary = REPO / rehearse.SUMMARY_DOC
    assert rehearse.sync_readme(summary, REPO / "README.md", check=True) == 0
    copy = tmp_path / "README.md"
    copy.write_text((REPO / "README.md").read_text().replace(" min** wall time", " min** of wall time"))
    assert rehearse.sync_readme(summary, copy, check=True) == 1
    assert rehearse.sync_readme(summary, copy, check=False) == 0
    assert copy.read_text() == (REPO / "README.md").read_text()
