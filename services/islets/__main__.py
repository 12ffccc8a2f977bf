"""Command line for operators and the demo (inside the shepherd container, or with the venv):

    python -m services.islets models                         # which models a job may name
    python -m services.islets analyse sample.png --out out/  # result.json, overlay.png, islets.csv
    python -m services.islets selfcheck [--model NAME]       # synthetic samples vs. ground truth
    python -m services.islets synthetic sample.png --seed 3  # a synthetic sample + its truth JSON

Exit status: 0 fine, 1 the self-check found the model off, 2 bad input (one-line message).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from services.islets import (
    IsletsError,
    analyse_image,
    available_models,
    encode_png,
    get_model,
    islets_csv,
    load_image,
    make_dtz_image,
    render_overlay,
)

# The self-check samples: separated islets of every Ricordi class, noise, uneven light, ellipses.
SELFCHECK_SAMPLES = (
    {"seed": 1},
    {"seed": 2, "diameters_um": (60, 85, 125, 175, 225, 275, 325, 400), "noise": 8, "uneven_illumination": 0.5},
    {"seed": 3, "ellipticity": 0.4, "exocrine_clumps": 6},
)
SELFCHECK_TOLERANCE = 0.05


def command_models(_args: argparse.Namespace) -> int:
    for name in available_models():
        print(name)
    return 0


def command_analyse(args: argparse.Namespace) -> int:
    rgb = load_image(Path(args.image).read_bytes(), max_pixels=args.max_pixels)
    started = time.perf_counter()
    result = analyse_image(rgb, pixel_size_um=args.pixel_size, model=args.model, min_diameter_um=args.min_diameter)
    elapsed = time.perf_counter() - started
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result, indent=1))
        (out / "overlay.png").write_bytes(render_overlay(rgb, result))
        (out / "islets.csv").write_text(islets_csv(result))
    print(json.dumps(result["summary"], indent=1))
    print(f"{rgb.shape[1]}×{rgb.shape[0]} px analysed in {elapsed:.1f} s", file=sys.stderr)
    return 0


def command_selfcheck(args: argparse.Namespace) -> int:
    model = get_model(args.model)
    print(f"model {model.name} on {model.device}")
    failures = 0
    for sample in SELFCHECK_SAMPLES:
        rgb, truth = make_dtz_image(**sample)
        summary = analyse_image(rgb, model=args.model)["summary"]
        errors = {key: summary[key] / truth[key] - 1 for key in ("ieq_sphere", "ieq_ellipsoid", "ieq_ricordi")}
        good = summary["islet_count"] == truth["islet_count"] and all(
            abs(error) <= SELFCHECK_TOLERANCE for error in errors.values()
        )
        failures += not good
        verdict = "ok  " if good else "OFF "
        counts = f"islets {summary['islet_count']}/{truth['islet_count']}"
        print(f"{verdict} seed {sample['seed']}: {counts}, " + ", ".join(f"{k} {e:+.1%}" for k, e in errors.items()))
    return 1 if failures else 0


def command_synthetic(args: argparse.Namespace) -> int:
    rgb, truth = make_dtz_image(seed=args.seed, touching_pairs=args.pairs, pixel_size_um=args.pixel_size)
    path = Path(args.output)
    path.write_bytes(encode_png(rgb))
    path.with_suffix(".truth.json").write_text(json.dumps(truth, indent=1))
    print(f"{path} ({rgb.shape[1]}×{rgb.shape[0]} px, {truth['islet_count']} islets, {truth['ieq_sphere']:.2f} IEQ)")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m services.islets", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the model names").set_defaults(run=command_models)
    analyse = commands.add_parser("analyse", help="analyse one image file")
    analyse.add_argument("image")
    analyse.add_argument("--pixel-size", type=float, default=0.843, help="µm per pixel (default 0.843)")
    analyse.add_argument("--model", default="classical")
    analyse.add_argument("--min-diameter", type=float, default=50.0, help="µm (default 50)")
    analyse.add_argument("--max-pixels", type=int, default=200_000_000)
    analyse.add_argument("--out", help="folder for result.json, overlay.png, islets.csv")
    analyse.set_defaults(run=command_analyse)
    check = commands.add_parser("selfcheck", help="measure synthetic samples and compare with their truth")
    check.add_argument("--model", default="classical")
    check.set_defaults(run=command_selfcheck)
    synthetic = commands.add_parser("synthetic", help="write a synthetic DTZ sample PNG and its truth JSON")
    synthetic.add_argument("output")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--pairs", type=int, default=1, help="touching pairs (default 1)")
    synthetic.add_argument("--pixel-size", type=float, default=0.843)
    synthetic.set_defaults(run=command_synthetic)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (IsletsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
