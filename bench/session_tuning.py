"""onnxruntime session options on this CPU: each setting against the default, interleaved.

    python bench/session_tuning.py [--model u2netp] [--reps 15]

Every configuration gets its own session; the runs go round-robin (A/B/C/.../A/B/C...) on the
same prepared 320×320 input, so a busy neighbour slows all of them alike. Prints the median
time per run and the ratio to ``default`` (onnxruntime's defaults: all graph optimisations,
one intra-op thread per core, sequential execution, memory arena on, spinning on).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cutout  # noqa: E402
from cutout.models import catalog, session as session_mod, weights  # noqa: E402


def configs(ort):
    def make(**kw):
        o = ort.SessionOptions()
        o.log_severity_level = 3
        for k, v in kw.items():
            if k == "config":
                for ck, cv in v.items():
                    o.add_session_config_entry(ck, cv)
            else:
                setattr(o, k, v)
        return o

    L = ort.GraphOptimizationLevel
    return {
        "default": (make(), False),
        "pack (session_options())": (session_mod.session_options(), False),
        "opt BASIC": (make(graph_optimization_level=L.ORT_ENABLE_BASIC), False),
        "opt EXTENDED": (make(graph_optimization_level=L.ORT_ENABLE_EXTENDED), False),
        "intra 1 thread": (make(intra_op_num_threads=1), False),
        "intra 2 threads": (make(intra_op_num_threads=2), False),
        "parallel, inter 2": (make(execution_mode=ort.ExecutionMode.ORT_PARALLEL, inter_op_num_threads=2), False),
        "no memory arena": (make(enable_cpu_mem_arena=False), False),
        "no spinning": (make(config={"session.intra_op.allow_spinning": "0"}), False),
        "io_binding, preallocated output": (make(), True),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args(argv)
    import onnxruntime as ort

    path = weights.resolve(catalog.get_spec(a.model), allow_download=False)
    x = np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)
    runners = {}
    for name, (opts, binding) in configs(ort).items():
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        iname, oname = s.get_inputs()[0].name, s.get_outputs()[0].name
        if binding:
            b = s.io_binding()
            xo = ort.OrtValue.ortvalue_from_numpy(x)
            out = ort.OrtValue.ortvalue_from_numpy(np.empty((1, 1, 320, 320), np.float32))
            b.bind_ortvalue_input(iname, xo)
            b.bind_ortvalue_output(oname, out)
            runners[name] = (lambda s=s, b=b: s.run_with_iobinding(b))
        else:
            runners[name] = (lambda s=s, i=iname, o=oname: s.run([o], {i: x}))
        runners[name]()
    times = {k: [] for k in runners}
    for _ in range(a.reps):
        for k, f in runners.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["default"])
    print(f"{a.model} ({path.name}), median of {a.reps} interleaved runs\n")
    print("| setting | s/run | vs default |")
    print("|---|---|---|")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"| {k} | {m:.4f} | {base / m:.2f}× |")


if __name__ == "__main__":
    main()
