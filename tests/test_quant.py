"""int8 variants: deterministic build, agreement with the float model, catalog gating, cache keyed by source md5."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")

from cutout import models, pipeline  # noqa: E402
from cutout.imaging.model_io import from_model_output, to_model_input  # noqa: E402
from cutout.models import catalog, quantize, session as session_mod, weights  # noqa: E402

EMBEDDED = weights.EMBEDDED_DIR / "u2netp.onnx"


def _photos():
    skimage_data = pytest.importorskip("skimage.data")

    return [torch.from_numpy(skimage_data.astronaut().astype(np.float32) / 255.0),
            torch.from_numpy(skimage_data.coffee().astype(np.float32) / 255.0)]


def _masks(model_path, photos):
    import onnxruntime as ort

    s = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    out = []
    for p in photos:
        x = to_model_input(p.unsqueeze(0), 320, catalog.IMAGENET_MEAN, catalog.IMAGENET_STD)
        raw = s.run([s.get_outputs()[0].name], {s.get_inputs()[0].name: x})[0]
        out.append(from_model_output(raw, p.shape[0], p.shape[1], False)[0])
    return out


_BUILT = {}


@pytest.fixture
def built(tmp_path_factory):
    """Two independent builds of u2netp-int8 (made once per test run)."""
    if not _BUILT:
        spec = catalog.get_spec("u2netp-int8")
        d = tmp_path_factory.mktemp("variants")
        _BUILT["ab"] = (quantize.build_variant(EMBEDDED, spec.recipe, d / "a.onnx"),
                        quantize.build_variant(EMBEDDED, spec.recipe, d / "b.onnx"))
    return _BUILT["ab"]


def test_builder_is_deterministic(built):
    a, b = built
    assert hashlib.md5(a.read_bytes()).hexdigest() == hashlib.md5(b.read_bytes()).hexdigest()
    assert a.stat().st_size < EMBEDDED.stat().st_size / 2  # int8 weights


def test_variant_is_int8_keeps_only_d0_and_agrees_with_float(built):
    import onnx

    m = onnx.load(str(built[0]))
    assert [o.name for o in m.graph.output] == ["1959"]
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    photos = _photos()
    for q, f in zip(_masks(built[0], photos), _masks(EMBEDDED, photos)):
        assert (q - f).abs().mean().item() < 0.02
        assert ((q > 0.5) == (f > 0.5)).float().mean().item() > 0.97


def test_variant_runs_through_the_pipeline_and_is_cached_in_download_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CUTOUT_MODELS_DIR", str(tmp_path))
    session_mod.STORE.clear()
    img = _photos()[1][:200, :300].unsqueeze(0)
    rgba, mask = pipeline.remove_background(img, "u2netp-int8")
    assert rgba.shape == (1, 200, 300, 4) and mask.shape == (1, 200, 300)
    files = list(tmp_path.glob("u2netp.int8-*.onnx"))
    spec = catalog.get_spec("u2netp-int8")
    assert [f.name for f in files] == [f"u2netp.int8-{catalog.get_spec('u2netp').md5[:8]}-{spec.recipe.digest}.onnx"]
    session_mod.STORE.clear()


def test_only_variants_that_pass_the_bar_are_offered(monkeypatch):
    assert "u2netp-int8" in models.model_choices()
    failing = dataclasses.replace(catalog.get_spec("u2netp-int8"), name="u2netp-bad", passes_bar=False)
    monkeypatch.setitem(catalog.CATALOG, "u2netp-bad", failing)
    names = models.model_choices()
    assert "u2netp-bad" not in names
    assert not catalog.CATALOG["u2net-int8"].passes_bar or "u2net-int8" in names


def _write_source_copy(path, tag):
    """u2netp with a different metadata string: same network, different md5."""
    import onnx

    m = onnx.load(str(EMBEDDED))
    m.doc_string = f"test copy {tag}"
    onnx.save(m, str(path))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cached_variant_is_rebuilt_when_the_source_hash_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("CUTOUT_MODELS_DIR", str(tmp_path))
    calls = []
    real = quantize.build_variant
    monkeypatch.setattr(quantize, "build_variant", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    base0 = catalog.get_spec("u2netp")
    md5_1 = _write_source_copy(tmp_path / "testbase.onnx", 1)
    base = dataclasses.replace(base0, name="testbase", md5=md5_1, embedded=False, url="https://invalid.invalid/x")
    var = dataclasses.replace(catalog.get_spec("u2netp-int8"), name="testbase-int8", derived_from="testbase")
    monkeypatch.setitem(catalog.CATALOG, "testbase", base)
    monkeypatch.setitem(catalog.CATALOG, "testbase-int8", var)

    p1 = weights.ensure_variant(var, allow_download=False)
    assert p1.name == f"testbase.int8-{md5_1[:8]}-{var.recipe.digest}.onnx" and len(calls) == 1
    assert weights.ensure_variant(var, allow_download=False) == p1 and len(calls) == 1  # cached

    md5_2 = _write_source_copy(tmp_path / "testbase.onnx", 2)  # new weights arrive
    assert md5_2 != md5_1
    monkeypatch.setitem(catalog.CATALOG, "testbase", dataclasses.replace(base, md5=md5_2))
    p2 = weights.ensure_variant(var, allow_download=False)
    assert p2.name == f"testbase.int8-{md5_2[:8]}-{var.recipe.digest}.onnx" and len(calls) == 2
    assert not p1.exists()  # the stale build is removed

    p2.write_bytes(b"not an onnx file")  # a damaged cache is rebuilt when loading fails
    session_mod.STORE.clear()
    s = session_mod.get_session("testbase-int8")
    assert s.path == p2 and len(calls) == 3 and p2.stat().st_size > 1000
    session_mod.STORE.clear()


def test_a_changed_recipe_is_a_new_cache_file():
    spec = catalog.get_spec("u2netp-int8")
    other = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, float_sensitive=3))
    md5 = catalog.get_spec("u2netp").md5
    assert weights.variant_filename(spec, md5) != weights.variant_filename(other, md5)
    assert weights.variant_filename(spec, md5).startswith(f"u2netp.int8-{md5[:8]}-")  # the stale clean-up's glob
    assert spec.recipe.digest == dataclasses.replace(spec.recipe).digest  # stable
