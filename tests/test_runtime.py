"""hw/runtime.py: the commit id recorded with every measurement ties a dirty tree to its exact diff."""

import re
import subprocess

from cpugrpo.hw.runtime import git_commit


def _git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_git_commit_is_the_sha_when_clean_and_names_the_diff_when_dirty(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-q", "-m", "first")
    sha = _git(repo, "rev-parse", "HEAD")
    assert git_commit(str(repo)) == sha  # clean

    (repo / "new.txt").write_text("untracked\n")
    assert git_commit(str(repo)) == sha  # untracked files are ignored (documented)

    (repo / "a.py").write_text("x = 2\n")
    dirty = git_commit(str(repo))
    assert re.fullmatch(re.escape(sha) + r"\+diff\.[0-9a-f]{12}", dirty), dirty
    assert git_commit(str(repo)) == dirty  # the same diff, the same id
    (repo / "sub").mkdir()
    assert git_commit(str(repo / "sub")) == dirty  # from anywhere in the tree

    (repo / "a.py").write_text("x = 3\n")
    other = git_commit(str(repo))
    assert other.startswith(sha + "+diff.") and other != dirty  # another diff, another id
    _git(repo, "add", "a.py")
    assert git_commit(str(repo)) == other  # staged or not: the same change against HEAD

    (repo / "a.py").write_text("x = 2\n")
    assert git_commit(str(repo)) == dirty  # back to the first edit: its id again
    (repo / "a.py").write_text("x = 1\n")
    assert git_commit(str(repo)) == sha  # back to HEAD's content: clean again


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(str(tmp_path)) is None
