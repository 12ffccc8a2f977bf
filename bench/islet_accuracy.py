"""Accuracy of the islet analysis per family of synthetic samples and per model, with the CPU
time per image: what a lab checking counts against manual counts wants to see.

    PYTHONPATH=$PWD/ops:$PWD .venv/bin/python bench/islet_accuracy.py            # 6 images a family
    PYTHONPATH=$PWD/ops:$PWD .venv/bin/python bench/islet_accuracy.py --images 2 --no-large

Families (services.islets.synthetic.FAMILIES; even images fully stained, odd ones weakly
stained and noisier): separated islets, clusters of 2, 3, 4 and 5 touching islets (necks 15-40 %
of the smaller diameter), lobed and elongated single islets. Two more are measured here only:
"cluster-3+spots" (a pale spot inside every clustered islet, a known weakness) and "large" (a
4000×3000 image at 1.5 µm/px with 2 clusters of 3 among 42 islets, as in issue 17).

Models: "classical" (the default) and "colour", the tiny ONNX demo network built on the spot
(services.islets.demo_models): a per-pixel colour rule without flat-fielding, there to show that
every model goes through the same measurement, not to compete.

Per family and model it prints: images whose count is exact, the mean absolute count error, the
mean and worst absolute IEQ error of each method, and CPU seconds per image (time.process_time:
model + measurement + quality flags, all threads; wall time is meaningless on a shared host).
Last, the CPU time of one 2048×1536 image with the classical model, stage by stage.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.islets import make_dtz_image, measure
from services.islets.classical import ClassicalModel
from services.islets.demo_models import colour_model
from services.islets.models import OnnxModel
from services.islets.quality import quality_flags
from services.islets.synthetic import FAMILIES, family_arguments

METHODS = ("ieq_ricordi", "ieq_sphere", "ieq_ellipsoid")
LARGE = {"size": (3000, 4000), "pixel_size_um": 1.5, "clusters": (3, 3)}


def extra_arguments(family: str, index: int) -> dict:
    """make_dtz_image arguments of the bench-only families."""
    if family == "cluster-3+spots":
        return family_arguments("cluster-3", index) | {"holes": 1}
    rng = np.random.default_rng(index)
    singles = tuple(float(d) for d in rng.uniform(60, 260, 36))
    return {"seed": 9000 + index, "diameters_um": singles, "uneven_illumination": 0.3} | LARGE


@dataclass
class Tally:
    exact: int = 0
    count_errors: list[int] = field(default_factory=list)
    ieq_errors: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})
    cpu_s: list[float] = field(default_factory=list)
    flagged: int = 0

    def add(self, truth: dict, result: dict, cpu_s: float) -> None:
        error = result["summary"]["islet_count"] - truth["islet_count"]
        self.exact += error == 0
        self.count_errors.append(abs(error))
        for method in METHODS:
            self.ieq_errors[method].append(abs(result["summary"][method] / truth[method] - 1.0))
        self.cpu_s.append(cpu_s)
        self.flagged += bool(result["quality_flags"])

    def row(self, family: str, model: str) -> str:
        images = len(self.cpu_s)
        ieq = " | ".join(
            f"{100 * statistics.mean(self.ieq_errors[m]):.1f} / {100 * max(self.ieq_errors[m]):.1f}" for m in METHODS
        )
        return (
            f"| {family} | {model} | {self.exact}/{images} | {statistics.mean(self.count_errors):.2f} | {ieq} "
            f"| {statistics.mean(self.cpu_s):.2f} | {self.flagged}/{images} |"
        )


def analyse(predict: Callable[[np.ndarray], np.ndarray], name: str, rgb: np.ndarray, pixel_size_um: float):
    """The shepherd's work for one image, minus decoding and the overlay: CPU seconds and result."""
    started = time.process_time()
    classes = predict(rgb)
    result = measure(classes, pixel_size_um=pixel_size_um, model=name)
    result["quality_flags"] = quality_flags(rgb, classes, result)
    return time.process_time() - started, result


def accuracy_table(models: dict, images: int, large: bool) -> list[str]:
    families = [*FAMILIES, "cluster-3+spots"] + (["large"] if large else [])
    header = [
        "| family | model | count exact | mean abs count error | Ricordi % mean / worst | sphere % | ellipsoid % "
        "| CPU s / image | flagged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for family in families:
        tallies = {name: Tally() for name in models}
        for index in range(images if family != "large" else min(images, 2)):
            arguments = family_arguments(family, index) if family in FAMILIES else extra_arguments(family, index)
            rgb, truth = make_dtz_image(**arguments)
            for name, predict in models.items():
                cpu_s, result = analyse(predict, name, rgb, truth["pixel_size_um"])
                tallies[name].add(truth, result, cpu_s)
        for name, tally in tallies.items():
            rows.append(tally.row(family, name))
            print(rows[-1], flush=True)
    return header + rows


def speed_2048(repeats: int = 5) -> str:
    """CPU seconds for one 2048×1536 image with the classical model, stage by stage (median)."""
    rgb, truth = make_dtz_image(
        seed=1,
        size=(1536, 2048),
        diameters_um=(70, 110, 160, 230, 90, 130, 180, 260, 75, 120),
        touching_pairs=3,
        clusters=(3, 4),
        uneven_illumination=0.3,
    )
    model = ClassicalModel()
    model.predict([rgb])  # warm-up
    stages: dict[str, list[float]] = {"model": [], "measure": [], "flags": []}
    for _ in range(repeats):
        started = time.process_time()
        classes = model.predict([rgb])[0]
        segmented = time.process_time()
        result = measure(classes, pixel_size_um=0.843)
        measured = time.process_time()
        quality_flags(rgb, classes, result)
        stages["model"].append(segmented - started)
        stages["measure"].append(measured - segmented)
        stages["flags"].append(time.process_time() - measured)
    medians = {stage: statistics.median(values) for stage, values in stages.items()}
    return (
        f"2048×1536, classical, {truth['islet_count']} islets: {sum(medians.values()):.3f} CPU-s per image "
        f"(model {medians['model']:.3f}, measurement {medians['measure']:.3f}, quality flags {medians['flags']:.3f}; "
        f"median of {repeats})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6, help="images per family (default 6)")
    parser.add_argument("--no-large", action="store_true", help="skip the 4000×3000 family")
    parser.add_argument("--no-onnx", action="store_true", help="classical model only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        classical = ClassicalModel()
        models = {"classical": lambda rgb: classical.predict([rgb])[0]}
        if not args.no_onnx:
            onnx = OnnxModel("colour", colour_model(Path(folder) / "colour.onnx"))
            models["colour (ONNX)"] = lambda rgb: onnx.predict([rgb])[0]
        table = accuracy_table(models, args.images, not args.no_large)
    print()
    print("\n".join(table))
    print()
    print(speed_2048())


if __name__ == "__main__":
    main()
