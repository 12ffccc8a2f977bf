"""python -m services.islets: the operator commands (in-process through main(), and once as a
real subprocess for the exit status and the one-line error)."""

import json
import subprocess
import sys

from PIL import Image

from services.islets.__main__ import main


def test_synthetic_then_analyse_writes_the_three_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["synthetic", "sample.png", "--seed", "4", "--pairs", "0"]) == 0
    truth = json.loads((tmp_path / "sample.truth.json").read_text())
    capsys.readouterr()
    assert main(["analyse", "sample.png", "--out", "out"]) == 0
    assert json.loads(capsys.readouterr().out)["islet_count"] == truth["islet_count"]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(result["islets"]) == truth["islet_count"]
    with Image.open(tmp_path / "out" / "overlay.png") as overlay, Image.open(tmp_path / "sample.png") as sample:
        assert overlay.size == sample.size
    assert (tmp_path / "out" / "islets.csv").read_text().count("\n") == 1 + truth["islet_count"]


def test_selfcheck_passes_for_the_classical_model(capsys):
    assert main(["selfcheck"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "model classical on cpu"
    assert len(lines) == 4 and all(line.startswith("ok ") for line in lines[1:])


def test_unknown_model_is_exit_2_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv("ISLETNET_MODELS_DIR", raising=False)
    assert main(["selfcheck", "--model", "nope"]) == 2
    assert capsys.readouterr().err == "error: Unknown model 'nope'; the known models are: classical.\n"


def test_models_lists_classical_first(capsys):
    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "classical"


def test_bad_image_as_a_real_process(tmp_path):
    (tmp_path / "notes.png").write_text("not really a picture")
    done = subprocess.run(
        [sys.executable, "-m", "services.islets", "analyse", "notes.png"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr == "error: The file is not an image (PNG, JPEG or TIFF expected).\n"
