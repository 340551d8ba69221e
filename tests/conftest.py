import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A test-sized model (2 layers, width 64) with a locally trained tokenizer, saved like a real model dir."""
    import torch
    from transformers import Qwen2ForCausalLM

    from cpugrpo.train import data, models

    out = tmp_path_factory.mktemp("tiny-test-model")
    corpus = [f"<|user|>\n{p.question}\n<|assistant|>\n{p.solution}<|end|>" for p in data.mixed(600, "train")]
    tok = models.build_tokenizer(corpus, vocab_size=400)
    preset = models.Preset("test", 64, 2, 4, 2, 128, None, True, False)
    torch.manual_seed(0)
    cfg = preset.qwen2_config(len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=None)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def install_chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (CI runs `make test` as root on a fresh machine).
    Returns the binary's path; fails (never skips) with what went wrong and the manual fix."""
    import shutil
    import subprocess

    found = shutil.which("chromium")
    if found:
        return found
    fix = "install it by hand (as root: apt-get update && apt-get install -y chromium) and rerun"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(f"chromium is missing and cannot be installed from the tests (needs apt-get as root): {fix}",
                    pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]  # another apt run (another test session) holds the lock: wait
    for cmd in (["apt-get", *lock, "update"], ["apt-get", *lock, "install", "-y", "--no-install-recommends",
                                               "chromium"]):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(cmd)}` timed out after 20 min (no network?): {fix}", pytrace=False)
        if p.returncode != 0:
            tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
            pytest.fail(f"`{' '.join(cmd)}` failed with exit code {p.returncode} (no network?): {tail}. {fix}",
                        pytrace=False)
    found = shutil.which("chromium")
    if not found:
        pytest.fail(f"apt-get installed chromium but `chromium` is not on PATH: {fix}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def chromium():
    """Path of a headless-capable chromium; installed in the session set-up when missing (see install_chromium)."""
    return install_chromium()


@pytest.fixture(autouse=True)
def _results_dir(tmp_path, monkeypatch):
    """`cpugrpo train` records a row per run under $CPUGRPO_RESULTS_DIR (default results/): never the repo's."""
    monkeypatch.setenv("CPUGRPO_RESULTS_DIR", str(tmp_path / "results"))
