"""The runtime of a chapter: seeds, device, versions, Colab, and quiet libraries.

Every chapter calls :func:`setup` once, right after its setup cell (see
``book/getting_started.ipynb``). It is the only place where the companion package
sets global state on purpose.
"""

from __future__ import annotations

import os
import platform
import random
import socket
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Environment",
    "pick_device",
    "in_colab",
    "processor_name",
    "cpu_kind",
    "hub_reachable",
    "seed_everything",
    "setup",
]

#: Host that ``from_pretrained`` would contact for a hub name.
HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class Environment:
    """What :func:`setup` found: the device, library versions and where we run."""

    device: torch.device
    seed: int
    in_colab: bool
    online: bool
    versions: dict[str, str]
    threads: int

    @property
    def on_gpu(self) -> bool:
        """True when chapters will run on CUDA or Apple MPS."""
        return self.device.type in ("cuda", "mps")

    def summary(self) -> str:
        """One short line: versions, device, where we run.

        >>> env = setup(verbose=False)
        >>> "torch" in env.summary()
        True
        """
        libs = " | ".join(f"{k} {v}" for k, v in self.versions.items())
        where = "Colab" if self.in_colab else platform.system()
        hub = "hub reachable" if self.online else "offline (hub not reachable)"
        return f"{libs} | device {describe_device(self.device, self.threads)} | {where}, {hub} | seed {self.seed}"


def in_colab() -> bool:
    """True inside Google Colab (the ``google.colab`` module is importable)."""
    if "google.colab" in sys.modules:
        return True
    try:
        import importlib.util

        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device available: CUDA, then Apple MPS, then CPU.

    ``prefer`` forces one ("cpu", "cuda", "mps"); the environment variable
    ``BOOK_DEVICE`` does the same without editing a chapter.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    choice = prefer or os.environ.get("BOOK_DEVICE")
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} was asked for, but torch sees no CUDA GPU")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {choice!r} was asked for, but Apple MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device, threads: int | None = None) -> str:
    """A readable name: the GPU's model, or the CPU with its thread count."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({threads or torch.get_num_threads()} threads)"


def processor_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_kind() -> str:
    """The CPU's name and the vector units PyTorch uses on it, e.g. ``"AMD EPYC, AVX512, bf16"``.

    Machines sold under one name differ in what matters for speed: the widest vector
    instructions (AVX2 or AVX-512) and native bf16 (AVX-512 BF16 or AMX tiles).
    Benchmark records are named by this, not by the name alone.
    """
    parts = [processor_name(), torch.backends.cpu.get_cpu_capability()]
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        parts.append("AMX")
    elif getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        parts.append("bf16")
    return ", ".join(parts)


def hub_reachable(timeout: float = 1.0) -> bool:
    """True when a TCP connection to the Hugging Face hub opens within ``timeout`` seconds.

    The book never needs the hub; this only tells the reader which alternatives
    (hub checkpoints, SST-2) they could switch to.
    """
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (all devices)."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def library_versions() -> dict[str, str]:
    """Versions of the libraries the book depends on (``"-"`` when one is missing)."""
    names = ["companion", "torch", "transformers", "datasets"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name if name != "companion" else "transformers-in-practice")
        except metadata.PackageNotFoundError:
            found[name] = "-"
    found["python"] = platform.python_version()
    return found


def quiet_libraries() -> None:
    """Silence progress bars and warnings that would make stored outputs unstable."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|torch|datasets)\.")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass


def setup(seed: int = 0, device: str | None = None, quiet: bool = True, verbose: bool = True) -> Environment:
    """Prepare a chapter: seed everything, pick the device, quiet the libraries, report.

    Prints one line with versions and the device; on a CPU it adds a line saying
    what will be slow. Returns an :class:`Environment` the chapter can consult
    (``env.device``, ``env.on_gpu``).

    >>> env = setup(seed=1, device="cpu", verbose=False)
    >>> env.device.type, env.seed
    ('cpu', 1)
    """
    if quiet:
        quiet_libraries()
    seed_everything(seed)
    env = Environment(
        device=pick_device(device),
        seed=seed,
        in_colab=in_colab(),
        online=hub_reachable(),
        versions=library_versions(),
        threads=torch.get_num_threads(),
    )
    if verbose:
        print(env.summary())
        if not env.on_gpu:
            print(
                "Running on the CPU: the theory chapters take seconds, the training chapters "
                "use reduced settings and take several minutes. In Colab choose Runtime > "
                "Change runtime type > GPU to go faster."
            )
    return env
