"""Muon's Newton-Schulz step for one preset's matrices: the direct iteration against the Gram form, in one run.

For every distinct shape of the hidden matrices that go to Muon (textbook.mu.optim.route_parameters), on random
momenta with singular values from 1 down to 1e-4: milliseconds per matrix (best of interleaved repeats, fp32,
5 steps), the error of each against the direct iteration in float64, and the sum over all of the preset's
matrices, i.e. the Newton-Schulz time of one optimizer step. torch.optim.Muon's own bf16 iteration is listed for
its error (and its time, which on a CPU without native bf16 is the slow path muon.py avoids).

    python benchmarks/newton_schulz.py                    # mu-small, CPU threads as torch chooses
    python benchmarks/newton_schulz.py --preset mu-330m --repeats 3
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import torch

import textbook.mu.muon as muon
from textbook.mu.config import preset
from textbook.mu.model import Mu
from textbook.mu.optim import route_parameters

COEFFICIENTS = (3.4445, -4.775, 2.0315)


def momentum(rows: int, cols: int) -> torch.Tensor:
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, k, dtype=torch.float64))
    return ((u * torch.logspace(0, -4, k, dtype=torch.float64)) @ v.T).float()


def run(g: torch.Tensor, form: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    muon.GRAM_ASPECT = 2 if form == "gram" else float("inf")
    return muon.orthogonalise(g, COEFFICIENTS, 5, 1e-7, dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mu-small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="also time torch's bf16 iteration (very slow without native bf16)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    with torch.device("meta"):
        model = Mu(preset(args.preset))
    shapes = Counter(tuple(p.shape) for _, p in route_parameters(model)["muon"])
    forms = ["direct", "gram"]
    rows = []
    for shape, count in sorted(shapes.items()):
        g = momentum(*shape)
        exact = run(g.double(), "direct", torch.float64)
        best = {form: float("inf") for form in forms}
        for _ in range(args.repeats):  # interleaved, so a noisy second hits both forms
            for form in forms:
                start = time.perf_counter()
                run(g, form)
                best[form] = min(best[form], time.perf_counter() - start)
        error = {form: float((run(g, form).double() - exact).norm() / exact.norm()) for form in forms}
        bf16 = run(g, "direct", torch.bfloat16)
        error["bf16"] = float((bf16.double() - exact).norm() / exact.norm())
        if args.bf16:
            start = time.perf_counter()
            run(g, "direct", torch.bfloat16)
            best["bf16"] = time.perf_counter() - start
        rows.append({"shape": list(shape), "count": count, "ms": {k: v * 1e3 for k, v in best.items()}, "error": error})
    print(f"{args.preset}: {sum(shapes.values())} matrices to Muon, fp32, 5 steps; error relative to float64")
    print(f"{'shape':>14} {'n':>3} {'direct ms':>10} {'gram ms':>8} {'speed-up':>8} {'err direct':>11} {'err gram':>9} {'err bf16':>9}")
    for r in rows:
        ms, e = r["ms"], r["error"]
        print(f"{str(tuple(r['shape'])):>14} {r['count']:>3} {ms['direct']:>10.1f} {ms['gram']:>8.1f} {ms['direct'] / ms['gram']:>7.2f}x "
              f"{e['direct']:>11.1e} {e['gram']:>9.1e} {e['bf16']:>9.1e}")
    total = {form: sum(r["count"] * r["ms"][form] for r in rows) for form in forms}
    print(f"one optimizer step's Newton-Schulz: direct {total['direct']:.0f} ms, gram {total['gram']:.0f} ms "
          f"({total['direct'] / total['gram']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "threads": torch.get_num_threads(), "shapes": rows, "total_ms": total}, f, indent=1)


if __name__ == "__main__":
    main()
