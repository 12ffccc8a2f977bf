"""Model registry and backends: classical, ONNX (tiny networks built here), torch if installed."""

import logging

import numpy as np
import pytest

from services.islets import (
    MODELS_DIR_ENV,
    ModelError,
    SegmentationModel,
    UnknownModelError,
    analyse_image,
    available_models,
    clear_model_cache,
    get_model,
    make_dtz_image,
)
from services.islets.demo_models import colour_model, failing_model
from services.islets.models import OnnxModel, torch_available


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def sample():
    return make_dtz_image(seed=5, diameters_um=(80, 125, 175, 230), exocrine_clumps=4)


def test_classical_is_the_only_model_without_a_models_folder():
    assert available_models() == ["classical"]


def test_models_folder_onnx_files_are_listed_by_stem(models_dir):
    colour_model(models_dir / "unet-b.onnx")
    colour_model(models_dir / "unet-a.onnx")
    (models_dir / "README.txt").write_text("not a model")
    (models_dir / "classical.onnx").write_bytes(b"")  # cannot shadow the built-in model
    (models_dir / "net.pt").write_bytes(b"")
    expected = ["classical", "unet-a", "unet-b"] + (["torch:net"] if torch_available() else [])
    assert available_models() == expected


def test_classical_model_is_loaded_once_and_kept():
    model = get_model("classical")
    assert isinstance(model, SegmentationModel)
    assert model.name == "classical" and model.device == "cpu"
    assert get_model("classical") is model


@pytest.mark.parametrize("name", ["classical", "colour"])
@pytest.mark.parametrize("image", [np.zeros((8, 8), dtype=np.uint8), np.zeros((8, 8, 3), dtype=np.float32)])
def test_models_refuse_what_is_not_an_rgb_image(models_dir, name, image):
    colour_model(models_dir / "colour.onnx")
    with pytest.raises(ModelError) as caught:
        get_model(name).predict([image])
    assert str(caught.value).startswith(f"The model '{name}' failed while predicting: it expects H×W×3 uint8 RGB")


def test_unknown_model_lists_the_known_ones(models_dir):
    colour_model(models_dir / "unet.onnx")
    with pytest.raises(UnknownModelError) as caught:
        get_model("resnet")
    assert str(caught.value) == "Unknown model 'resnet'; the known models are: classical, unet."
    with pytest.raises(UnknownModelError):
        analyse_image(np.zeros((8, 8, 3), dtype=np.uint8), model="resnet")


def test_onnx_model_segments_a_synthetic_sample(models_dir, sample, caplog):
    colour_model(models_dir / "colour.onnx")
    with caplog.at_level(logging.INFO, logger="services.islets"):
        model = get_model("colour")
    assert model.device == "cpu"  # no GPU on the test machine; CUDA would give "cuda:0"
    assert "on cpu" in caplog.text  # the device choice is logged
    assert get_model("colour") is model  # kept warm
    rgb, truth = sample
    result = analyse_image(rgb, model="colour")
    assert result["summary"]["model"] == "colour"
    assert result["summary"]["islet_count"] == truth["islet_count"]
    # a crude colour rule, so a looser tolerance than the classical model's: 10 %
    assert result["summary"]["ieq_sphere"] == pytest.approx(truth["ieq_sphere"], rel=0.10)


def test_onnx_batch_of_different_sizes_equals_one_at_a_time(models_dir, sample):
    model = OnnxModel("colour", colour_model(models_dir / "colour.onnx"), max_batch=2)
    rgb, _truth = sample
    images = [rgb, rgb[:301, :457], rgb[100:400, 50:350], rgb[:301, :457].copy()]
    together = model.predict(images)
    assert [c.shape for c in together] == [i.shape[:2] for i in images]
    for image, classes in zip(images, together, strict=True):
        assert np.array_equal(classes, model.predict([image])[0])
    assert set(np.unique(together[0])) == {0, 1, 2}


def test_onnx_tiles_join_without_seams(models_dir, sample):
    path = colour_model(models_dir / "colour.onnx")
    rgb, _truth = sample
    whole = OnnxModel("colour", path, tile_px=4096).predict([rgb])[0]
    tiled = OnnxModel("colour", path, tile_px=256, margin_px=8).predict([rgb])[0]
    assert np.array_equal(whole, tiled)  # 1×1 conv: tiling must change nothing


def test_fixed_size_network_input_is_resized_and_back(models_dir, sample):
    model = OnnxModel("fixed", colour_model(models_dir / "fixed.onnx", height=256, width=256))
    assert model.fixed_size == (256, 256)
    rgb, truth = sample
    (classes,) = model.predict([rgb])
    assert classes.shape == rgb.shape[:2]
    # Down to 256 px and back loses edge detail only: the islet share stays within 5 % of the
    # full-resolution answer of the same colour rule.
    full = OnnxModel("full", colour_model(models_dir / "full.onnx")).predict([rgb])[0]
    assert np.count_nonzero(classes == 2) == pytest.approx(np.count_nonzero(full == 2), rel=0.05)
    assert np.count_nonzero(full == 2) > 0.02 * full.size


def test_a_model_failing_at_run_time_raises_a_clear_error(models_dir):
    failing_model(models_dir / "broken.onnx")
    model = get_model("broken")
    with pytest.raises(ModelError) as caught:
        model.predict([np.zeros((32, 32, 3), dtype=np.uint8)])
    message = str(caught.value)
    assert message.startswith("The model 'broken' failed while predicting: ") and message.endswith(".")
    assert "\n" not in message


def test_a_model_with_the_wrong_output_raises_a_clear_error(models_dir):
    colour_model(models_dir / "two.onnx", channels_out=2)
    with pytest.raises(ModelError, match=r"returned shape \(1, 2, 16, 16\); N×3×H×W logits were expected"):
        get_model("two").predict([np.zeros((16, 16, 3), dtype=np.uint8)])


def test_a_corrupt_model_file_raises_a_clear_error_and_is_not_cached(models_dir):
    (models_dir / "corrupt.onnx").write_bytes(b"this is not protobuf")
    with pytest.raises(ModelError) as caught:
        get_model("corrupt")
    assert str(caught.value).startswith("The model file corrupt.onnx could not be loaded: ")
    colour_model(models_dir / "corrupt.onnx")  # replaced by a good file: the next call loads it
    assert get_model("corrupt").predict([np.zeros((4, 4, 3), dtype=np.uint8)])[0].shape == (4, 4)


def test_torch_backend(models_dir, sample):
    torch = pytest.importorskip("torch")
    from services.islets.demo_models import COLOUR_BIAS, COLOUR_WEIGHTS

    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(COLOUR_WEIGHTS))
        conv.bias.copy_(torch.from_numpy(COLOUR_BIAS))
    torch.jit.save(torch.jit.script(conv), str(models_dir / "colour.pt"))
    colour_model(models_dir / "colour.onnx")
    assert "torch:colour" in available_models()
    model = get_model("torch:colour")
    assert model.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    rgb, _truth = sample
    assert np.array_equal(model.predict([rgb])[0], get_model("colour").predict([rgb])[0])
