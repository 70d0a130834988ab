"""`reconciler plan` on a real git repository with two commits: route-level diffs, checked against golden files.

The scenario (tests/plan_golden/base → head): files renamed and keys reordered (no change), a route added with
a header match, timeout and retries, a 90/10 split and a timeout on an existing route, a catch-all moved to
another subset, a VirtualService removed, a new upstream cluster, and new endpoints.
Regenerate with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler.cli.main import main

GOLDEN = Path(__file__).parents[1] / "plan_golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
FORMATS = {"text": "expected.txt", "markdown": "expected.md", "json": "expected.json"}


def _git(repo: Path, *args: str) -> str:
    # Only what git needs: a variable another test left in os.environ must not change the commits' SHAs,
    # which the golden files show (seen once: a whole run produced other SHAs).
    env = {
        "PATH": os.environ["PATH"],
        "GIT_AUTHOR_NAME": "Reviewer",
        "GIT_AUTHOR_EMAIL": "reviewer@example.test",
        "GIT_COMMITTER_NAME": "Reviewer",
        "GIT_COMMITTER_EMAIL": "reviewer@example.test",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo),
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit_tree(repo: Path, source: Path, message: str) -> None:
    for child in repo.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    shutil.copytree(source, repo, dirs_exist_ok=True)
    # Staged from an empty index, so every file is hashed: git's stat cache could take a rewritten file of the
    # same size, mtime (copytree keeps it) and recycled inode for unchanged, and commit the old content.
    _git(repo, "read-tree", "--empty")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan-repo")
    _git(path, "init", "-q", "-b", "main")
    commit_tree(path, GOLDEN / "base", "base")
    commit_tree(path, GOLDEN / "head", "head")
    return path


def run_plan(repo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["plan", "--repo", str(repo), "--base", "main~1", "--head", "main", *extra])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_plan_matches_golden(repo: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    code, output = run_plan(repo, capsys, "--format", fmt)
    assert code == 0
    expected = GOLDEN / FORMATS[fmt]
    if UPDATE:
        expected.write_text(output)
    assert output == expected.read_text()


def test_plan_json_is_route_level(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, output = run_plan(repo, capsys, "--format", "json")
    plan = json.loads(output)
    fleets = {f["name"]: f for f in plan["fleets"]}
    # Every fleet gets every cluster, so the internal fleet changes too, but none of its routes does.
    assert fleets["internal"]["status"] == "changed"
    assert fleets["internal"]["routes"] == []
    changes = {(r["hosts"], r["match"]): r for r in fleets["public"]["routes"]}
    cart = changes[("shop.example.com", "prefix /cart")]
    assert cart["change"] == "changed"
    assert cart["before"]["action"] == "→ shop.internal:80 (blue)"
    assert cart["after"]["action"] == "→ shop.internal:80 (blue) 90%, shop.internal:80 (green) 10%"
    assert cart["after"]["policies"]["route.timeout"] == "5s"
    assert changes[("shop.example.com", "prefix /pay, header x-beta = yes")]["change"] == "added"
    assert changes[("docs.example.com", "prefix /")]["change"] == "removed"
    assert "outbound|8443||payments.internal" in fleets["public"]["clusters"]["added"]
    assert plan["blastRadius"] == {
        "fleets": 2,
        "fleetsTotal": 2,
        "hosts": 2,
        "hostsTotal": 3,
        "routes": 4,
        "routesTotal": 5,
    }


def test_renaming_files_and_reordering_keys_is_no_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _git(tmp_path, "init", "-q", "-b", "main")
    commit_tree(tmp_path, GOLDEN / "base", "base")
    (tmp_path / "services" / "shop.yaml").rename(tmp_path / "moved-upstreams.yaml")
    fleets = tmp_path / "fleets.yaml"
    documents = list(yaml.safe_load_all(fleets.read_text()))
    fleets.write_text(yaml.safe_dump_all(reversed(documents), sort_keys=True))  # other order, sorted keys
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "rename and reorder")
    code, output = run_plan(tmp_path, capsys, "--format", "json")
    plan = json.loads(output)
    assert code == 0, output
    assert [f["status"] for f in plan["fleets"]] == ["unchanged", "unchanged"]
    assert plan["blastRadius"]["routes"] == 0


def test_an_invalid_head_exits_1_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _git(tmp_path, "init", "-q", "-b", "main")
    commit_tree(tmp_path, GOLDEN / "base", "base")
    routes = tmp_path / "routes" / "shop.yaml"
    routes.write_text(routes.read_text().replace("prefix: /cart", "regex: '(cart'"))
    _git(tmp_path, "commit", "-q", "-am", "break a regex")
    code, output = run_plan(tmp_path, capsys)
    assert code == 1
    assert "head revision is invalid" in output
    assert "invalid-regex" in output


def test_an_unknown_revision_is_a_usage_error(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "--repo", str(repo), "--base", "no-such-branch"])
    assert code == 2
    assert "no-such-branch" in capsys.readouterr().err
