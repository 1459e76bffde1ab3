"""The shared session store: each (model, device) is loaded once per process.

Every node, every prompt, the command line and the HTTP API ask ``get_session`` and share
what it returns. Two threads asking for the same model at once load it once; asking for
two different models at once loads both in parallel (one lock per key).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import weights
from .catalog import BEN, BIREFNET, BRIA, CATALOG, ISNET, U2NET, Family, ModelSpec, get_spec

log = logging.getLogger("comfyui_cutout")

DEVICES = ("cpu", "gpu")
_GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
                  "CoreMLExecutionProvider")


def _ort():
    import onnxruntime  # imported on first use: pack import stays cheap

    return onnxruntime


def session_options():
    """CPU settings chosen by measurement, one option at a time (docs/models.md, "Session tuning").

    Kept: all graph optimisations, sequential execution, the memory arena, onnxruntime's own
    thread count (one per core) unless ``CUTOUT_ORT_THREADS`` says otherwise. Changed: worker
    threads do not spin while waiting (the cores are shared, as with torch in ComfyUI).
    """
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    threads = os.environ.get("CUTOUT_ORT_THREADS")
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    return opts


def providers_for(device: str) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "gpu":
        raise ValueError(f"unknown device '{device}'; expected one of {DEVICES}")
    available = _ort().get_available_providers()
    gpu = [p for p in _GPU_PROVIDERS if p in available]
    if not gpu:
        log.warning("Cutout: GPU asked for, but this onnxruntime has no GPU provider (has %s); "
                    "running on the CPU. Install onnxruntime-gpu instead of onnxruntime for CUDA.",
                    ", ".join(available))
    return gpu[:1] + ["CPUExecutionProvider"]


@dataclass
class ModelSession:
    """A loaded network plus what is needed to feed and read it."""

    name: str
    family: Family
    path: Path
    inner: object  # onnxruntime.InferenceSession
    providers: list[str]
    input_name: str = field(init=False)

    def __post_init__(self):
        self.input_name = self.inner.get_inputs()[0].name
        self._output_name = self.inner.get_outputs()[0].name
        self._run_lock = threading.Lock()

    def run(self, batch: np.ndarray, should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Raw first output for a prepared ``[B,3,S,S]`` float32 batch.

        onnxruntime's ``run`` is thread-safe, but two concurrent runs on a 2-core CPU only
        fight over the cores; one at a time keeps latency predictable.

        ``should_stop`` (ComfyUI's Cancel) is polled every ``STOP_POLL_S`` while the network
        runs; when it says so, onnxruntime is told to stop (``RunOptions.terminate``) and
        ``RunCancelled`` is raised: a BiRefNet frame that takes seconds on a CPU need not
        finish before Cancel takes effect.
        """
        feed = {self.input_name: batch}
        with self._run_lock:
            if should_stop is None:
                out = self.inner.run([self._output_name], feed)[0]
                check_output(out, self.name)
                return out
            if should_stop():
                raise RunCancelled(self.name)
            options = _ort().RunOptions()
            done = threading.Event()
            stopped = threading.Event()

            def watch():
                while not done.wait(STOP_POLL_S):
                    if should_stop():
                        stopped.set()
                        options.terminate = True
                        return

            watcher = threading.Thread(target=watch, name="cutout-cancel-watch", daemon=True)
            watcher.start()
            try:
                out = self.inner.run([self._output_name], feed, options)[0]
            except Exception:
                if stopped.is_set():
                    raise RunCancelled(self.name) from None
                raise
            finally:
                done.set()
                watcher.join()
        check_output(out, self.name)
        return out


STOP_POLL_S = 0.05


class RunCancelled(Exception):
    """The network run was stopped on request (``ModelSession.run``'s ``should_stop``)."""


class SessionStore:
    def __init__(self):
        self._sessions: dict[tuple[str, str], ModelSession] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self.load_count: dict[tuple[str, str], int] = {}

    def get(self, model: str, device: str = "cpu", progress=None) -> ModelSession:
        key = (model, device)
        found = self._sessions.get(key)
        if found is not None:
            return found
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._sessions.get(key)
            if found is None:
                found = self._load(model, device, progress)
                self._sessions[key] = found
                self.load_count[key] = self.load_count.get(key, 0) + 1
            return found

    def providers_in_use(self) -> dict[str, str]:
        """``"model (device)" -> provider`` of every loaded session (what onnxruntime really runs on)."""
        return {f"{m} ({d})": s.providers[0] for (m, d), s in list(self._sessions.items()) if s.providers}

    def loaded(self, model: str, device: str = "cpu") -> bool:
        """True when (model, device) is already loaded (no file access, no hashing)."""
        return (model, device) in self._sessions

    def clear(self) -> None:
        with self._guard:
            self._sessions.clear()

    def _load(self, model: str, device: str, progress) -> ModelSession:
        spec, path = locate(model, progress)
        ort = _ort()
        wanted = providers_for(device)
        try:
            try:
                inner = ort.InferenceSession(str(path), sess_options=session_options(), providers=wanted)
            except Exception:
                if spec is None or not spec.is_variant:
                    raise
                log.warning("Cutout: built variant %s could not be loaded; building it again", path)
                path = weights.ensure_variant(spec, progress=progress, rebuild=True)
                inner = ort.InferenceSession(str(path), sess_options=session_options(), providers=wanted)
        except Exception as e:  # a non-ONNX or damaged file must not take the server down
            raise weights.ModelNotAvailableError(
                f"model '{model}' at {path} could not be loaded by onnxruntime ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:300]}); replace the file or delete it to download it again"
            ) from None
        used = inner.get_providers()
        if device == "gpu" and used[0] == "CPUExecutionProvider":
            log.warning("Cutout: model '%s' fell back to the CPU (providers in use: %s)", model, used)
        log.info("Cutout: loaded model '%s' from %s on %s", model, path, used[0])
        if spec is None:
            check_io(inner, model, path)
        family = spec.family if spec is not None else guess_family(inner, path.stem)
        return ModelSession(model, family, path, inner, used)


def locate(model: str, progress=None) -> tuple[ModelSpec | None, Path]:
    """Catalog models are verified by hash; other ONNX files the user put in models/rembg are taken as they are."""
    from .. import comfy_glue

    stem = model[:-5] if model.endswith(".onnx") else model
    if stem in CATALOG:
        spec = get_spec(stem)
        return spec, weights.resolve(spec, progress=progress)
    # A model is a dropdown entry, never a path: a plain name, or a sub-folder entry exactly as
    # ComfyUI lists it (ONNX only, no '..'); anything else is an unknown model.
    plain = bool(model) and not any(c in model for c in "/\\\x00") and stem not in ("", ".", "..")
    if plain:
        for d in weights.search_dirs():
            candidate = d / f"{stem}.onnx"
            if candidate.is_file():
                return None, candidate
    if (model.lower().endswith(".onnx") and ".." not in model.replace("\\", "/").split("/")
            and model in comfy_glue.comfy_model_files()):
        for d in weights.search_dirs():
            if (d / model).is_file():
                return None, d / model
    get_spec(model)  # raises UnknownModelError with the list of names
    raise AssertionError("unreachable")


class ModelIncompatibleError(weights.ModelNotAvailableError):
    """A user's own ONNX file that is not a segmentation network (wrong inputs or outputs)."""


def _known(d) -> bool:
    return isinstance(d, int) and d > 0


def check_io(inner, model: str, path) -> None:
    """Refuse, at load time, an ONNX file that cannot be a subject-mask network.

    Expected: one image input ``[B,3,H,W]`` and a first output ``[B,1,h,w]`` or ``[B,h,w]``.
    A classifier (``[B,1000]``) or a network taking two inputs would otherwise fail on every
    image with an error from deep inside (``AxisError: axis 2 …``).
    """
    def refuse(what: str):
        raise ModelIncompatibleError(
            f"model '{model}' ({path}) {what}; expected a segmentation network with one image input "
            "[B,3,H,W] and a mask output [B,1,H,W] (as U²-Net, IS-Net or BiRefNet exported for rembg)")

    inputs, outputs = inner.get_inputs(), inner.get_outputs()
    if len(inputs) != 1:
        refuse(f"takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)})")
    shape = list(inputs[0].shape or [])
    if len(shape) != 4 or (_known(shape[1]) and shape[1] != 3):
        refuse(f"takes input '{inputs[0].name}' of shape {shape}")
    if "float" not in str(inputs[0].type):
        refuse(f"takes input '{inputs[0].name}' of type {inputs[0].type}")
    if not outputs:
        refuse("has no outputs")
    out = list(outputs[0].shape or [])  # [] = not declared: check_output looks at the real one
    if out and len(out) not in (3, 4) or (len(out) == 4 and _known(out[1]) and out[1] < 1):
        refuse(f"gives output '{outputs[0].name}' of shape {out}")


def check_output(raw, model: str) -> None:
    """The same check on an actual output (shapes an ONNX file declares can be symbolic)."""
    shape = getattr(raw, "shape", ())
    if len(shape) not in (3, 4) or 0 in shape:
        raise ModelIncompatibleError(
            f"model '{model}' gave an output of shape {list(shape)}; expected a mask [B,1,H,W] or [B,H,W] "
            "(is it a segmentation network?)")


_NAME_HINTS = (("birefnet", BIREFNET), ("rmbg", BRIA), ("bria", BRIA), ("ben2", BEN), ("ben_", BEN),
               ("ben-", BEN), ("u2net", U2NET), ("silueta", U2NET), ("isnet", ISNET))


def guess_family(inner, stem: str = "") -> Family:
    """For a user's own ONNX file (rembg's ``*_custom`` sessions): the normalisation and output reading
    from its name (``BiRefNet-…`` / ``RMBG…`` / ``BEN2…`` / ``u2net…`` / ``isnet…``, as rembg's custom
    sessions are chosen by hand), else from the input size (320 -> U²-Net, other -> IS-Net). The square
    input size is always read from the graph; a dynamic size falls back to the family's own."""
    shape = inner.get_inputs()[0].shape
    size = shape[-1] if isinstance(shape[-1], int) and shape[-1] > 0 else None
    low = stem.lower()
    for hint, fam in _NAME_HINTS:
        if hint in low:
            return fam if size in (None, fam.size) else replace(fam, name=f"{fam.name}-{size}", size=size)
    if size in (None, 320):
        return U2NET
    return Family(f"custom-{size}", size, ISNET.mean, ISNET.std, logits=False)


STORE = SessionStore()


def get_session(model: str, device: str = "cpu", progress=None) -> ModelSession:
    return STORE.get(model, device, progress)
