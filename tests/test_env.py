"""companion.env: seeds, device choice, the one-line summary."""

from __future__ import annotations

import pytest
import torch

from companion.env import Environment, library_versions, pick_device, seed_everything, setup


def test_setup_seeds_torch_and_numpy_repeatably() -> None:
    import numpy as np

    setup(seed=3, verbose=False)
    a = (torch.rand(4), np.random.rand(2))
    setup(seed=3, verbose=False)
    b = (torch.rand(4), np.random.rand(2))
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all()


def test_setup_reports_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    env = setup(seed=0, device="cpu")
    out = capsys.readouterr().out.splitlines()
    assert isinstance(env, Environment)
    assert "torch" in out[0] and "device cpu" in out[0] and "seed 0" in out[0]
    assert any("CPU" in line for line in out[1:]), "a CPU reader is told what will be slow"


def test_pick_device_honours_choice_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pick_device_refuses_missing_cuda() -> None:
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pick_device("cuda")


def test_negative_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        seed_everything(-1)


def test_versions_name_the_libraries() -> None:
    versions = library_versions()
    assert versions["torch"].startswith("2.")
    assert versions["transformers"].startswith("5.")
    assert versions["companion"] != "-"


def test_in_colab_follows_the_google_colab_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from companion.env import in_colab

    assert in_colab() is False
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert in_colab() is True


def test_cpu_kind_names_the_processor_and_its_vector_units() -> None:
    from companion.env import cpu_kind, processor_name

    kind = cpu_kind()
    assert kind.startswith(processor_name())
    assert kind.split(", ")[1] == torch.backends.cpu.get_cpu_capability()
