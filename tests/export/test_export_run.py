"""End to end on a real (1-epoch) training run: the export CLI, agreement with Keras, TFLite,
the predict CLI and the model card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from polling import eventually

tf = pytest.importorskip("tensorflow")

from export.config import MIN_PIXELS_AGREEMENT, MIN_SERVING_DEFAULT_AGREEMENT  # noqa: E402

pytestmark = pytest.mark.slow  # a real training run and exports, TFLite included

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def exported(tiny_run_dir, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("export") / "cifar10"
    done = run_cli("-m", "export", "--run-dir", str(tiny_run_dir), "--base-path", str(base))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {base / '1'}" in done.stdout
    assert "\n  TTA: auto chose " in done.stdout  # why the level, and what it serves
    # A new base path is fine (the first version), but it is said: it may be a typo.
    assert f"note: {base.resolve()} did not exist and was created" in done.stderr
    return base


def test_cli_publishes_next_version_and_refuses_overwrite(exported, tiny_run_dir):
    assert (exported / "1" / "saved_model.pb").is_file()
    again = run_cli(
        "-m", "export", "--run-dir", str(tiny_run_dir), "--base-path", str(exported),
        "--version", "1",
    )  # fmt: skip
    assert again.returncode == 1
    assert "version 1 already exists" in again.stderr


def test_skip_if_published_adds_no_copy_of_the_newest_version(exported, tiny_run_dir, tmp_path):
    """The trainer image re-runs train-then-export: once its run has finished and been
    published, a re-run must not add the same model again as a new version."""
    import shutil

    from export.info import weights_digest

    base = tmp_path / "cifar10"
    shutil.copytree(exported, base)
    info_file = base / "1" / "assets" / "model_info.json"
    info = json.loads(info_file.read_text())
    assert info["source_weights_sha256"] == weights_digest(tiny_run_dir)

    export = ("-m", "export", "--run-dir", str(tiny_run_dir), "--base-path", str(base))
    skipped = run_cli(*export, "--skip-if-published")
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "already exported from these weights; nothing published" in skipped.stdout
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["1"]

    # Rolled back (DEPLOY.md: renamed away): a re-run must not bring the model back either.
    (base / "1").rename(base / ".rollback-1")
    rolled_back = run_cli(*export, "--skip-if-published", "--keep", "1")
    assert rolled_back.returncode == 0, rolled_back.stderr[-2000:]
    assert "published and rolled back" in rolled_back.stdout
    assert "nothing published, so --keep did nothing" in rolled_back.stderr
    assert not [p for p in base.iterdir() if p.name.isdigit()]

    info_file = base / ".rollback-1" / "assets" / "model_info.json"
    info_file.write_text(json.dumps({**info, "source_weights_sha256": "other weights"}))
    newer = run_cli(*export, "--skip-if-published")
    assert newer.returncode == 0 and f"wrote {base / '2'}" in newer.stdout  # 1 stays retired
    assert "did not exist" not in newer.stderr
    again = run_cli(*export)  # without the flag a re-export is always possible, and said to be one
    assert again.returncode == 0 and f"wrote {base / '3'}" in again.stdout
    assert f"note: {base / '2'} was already exported from these weights" in again.stderr


def test_auto_tta_is_the_level_the_rule_picks_and_records_its_accuracy(exported, tiny_run_dir):
    from export.tta import choose_tta

    meta = json.loads((tiny_run_dir / "meta.json").read_text())
    info = json.loads((exported / "1" / "assets" / "model_info.json").read_text())
    recorded = [meta["test_accuracy"], meta["test_accuracy_flip"], meta["test_accuracy_tta"]]
    assert info["tta"] == choose_tta(meta)  # the rule itself: tests/export/test_signatures.py
    assert info["expected_test_accuracy"] == recorded[info["tta"]]


def test_agreement_with_keras_on_a_sample(exported, tiny_run_dir, cifar_sample):
    from export.evaluation import agreement
    from training.run_model import load_for_inference

    model, _ = load_for_inference(tiny_run_dir)
    result = agreement(exported / "1", model, cifar_sample.per_class(10))
    assert result["images"] == 100
    assert result["pixels_agreement"] >= MIN_PIXELS_AGREEMENT
    assert result["serving_default_agreement"] >= MIN_SERVING_DEFAULT_AGREEMENT


def test_evaluate_saved_model_reports_both_signatures(exported, cifar_sample, tmp_path):
    from export.evaluation import evaluate_saved_model
    from training.data import load_dataset

    for split, sample in (("train", cifar_sample.per_class(1)), ("test", cifar_sample)):
        for name, data, label in zip(sample.names, sample.data, sample.labels):
            file = tmp_path / "tree" / split / sample.class_names[label] / Path(name).name
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
    dataset = load_dataset(tmp_path / "tree", cache_dir=None)
    report = evaluate_saved_model(exported / "1", dataset)
    assert report["test_images"] == report["serving_default_images"] == len(cifar_sample)
    # JPEG decoding in the graph is bit-identical to Pillow's: the same answers either way.
    assert report["serving_default_accuracy"] == report["pixels_accuracy"]
    assert report["pixels_accuracy"] > 0.1


def test_a_saved_model_scores_labelled_photos_without_training_images(
    exported, cifar_sample, tmp_path
):
    """`evaluate <SavedModel> --data my_photos/` with test/<class>/ alone (two of the ten
    classes): it asked for train/ images of every class, needed only for their names."""
    from export.encoded import read_encoded
    from export.evaluation import evaluate_saved_model, evaluate_saved_model_on_files
    from training.data import load_dataset

    chosen = ("cat", "ship")
    names = cifar_sample.class_names

    def write(root: Path, sample, keep) -> None:
        for split, name, data, label in sample:
            if keep(split, names[label]):
                file = root / split / names[label] / Path(name).name
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_bytes(data)

    tests = [
        ("test", *row) for row in zip(cifar_sample.names, cifar_sample.data, cifar_sample.labels)
    ]
    one = cifar_sample.per_class(1)
    trains = [("train", *row) for row in zip(one.names, one.data, one.labels)]
    write(tmp_path / "photos", tests, lambda split, cls: cls in chosen)
    done = run_cli("-m", "training.evaluate", str(exported), "--data", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["test_images"] == report["serving_default_images"] == 60
    # Beside the JSON, one sentence a person reads (on stderr: stdout stays JSON).
    said = f"on 60 test images of {tmp_path / 'photos'}: {report['pixels_accuracy']:.2%} through"
    assert said in done.stderr and "through serving_default" in done.stderr
    # The same test files in a whole data set (a training image of every class beside them):
    write(
        tmp_path / "whole", [*trains, *tests], lambda split, cls: split == "train" or cls in chosen
    )
    direct = evaluate_saved_model(exported / "1", load_dataset(tmp_path / "whole", cache_dir=None))
    assert direct["test_images"] == 60
    assert report["pixels_accuracy"] == pytest.approx(direct["pixels_accuracy"], abs=1e-9)
    assert report["serving_default_accuracy"] == direct["serving_default_accuracy"]
    # A file that is not an image is left out and named; the rest are still scored.
    (tmp_path / "photos" / "test" / "cat" / "notes.jpg").write_text("not an image")
    done = run_cli("-m", "training.evaluate", str(exported), "--data", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr[-2000:]
    again = json.loads(done.stdout[done.stdout.index("{") :])
    assert again["test_images"] == 60 and len(again["skipped"]) == 1
    assert "skipped, not a readable image: " in done.stderr and "notes.jpg" in done.stderr
    (tmp_path / "photos" / "test" / "spaceship").mkdir()
    (tmp_path / "photos" / "test" / "spaceship" / "a.jpg").write_bytes(cifar_sample.data[0])
    with pytest.raises(ValueError, match=r"classes \['spaceship'\] are not among the model's"):
        evaluate_saved_model_on_files(exported / "1", read_encoded(tmp_path / "photos", "test"))


def test_tflite_models_agree_with_keras(tiny_run_dir, cifar_sample, tmp_path):
    from export.tflite import export_tflite, tflite_probabilities
    from training.data import decode_image_file
    from training.inference import predict_logits
    from training.run_model import load_for_inference

    model, _ = load_for_inference(tiny_run_dir)
    images = np.stack([decode_image_file(d, 32) for d in cifar_sample.data[::3]])
    report = export_tflite(model, tmp_path, images[:50], images, cifar_sample.labels[::3])
    keras_probabilities = tf.nn.softmax(predict_logits(model, images)).numpy()
    float_fb = (tmp_path / report["float32"]["file"]).read_bytes()
    int8_fb = (tmp_path / report["int8"]["file"]).read_bytes()
    float32 = tflite_probabilities(float_fb, images)
    np.testing.assert_allclose(float32, keras_probabilities, atol=1e-4)
    int8 = tflite_probabilities(int8_fb, images)
    # A barely trained model has near-ties, so top-1 flips easily; the probabilities stay close.
    assert np.mean(np.abs(int8 - keras_probabilities)) < 0.02
    assert report["int8"]["bytes"] < report["float32"]["bytes"] / 3
    assert json.loads((tmp_path / "tflite" / "report.json").read_text()) == report


# What each way of decoding says of a text file and of a 45-megapixel PNG.
PREDICT_MODES = {
    "page": ([], "this file is not an image we can read (use JPEG, PNG, GIF, BMP, WebP or TIFF)",
             "the image has too many pixels (9000x5000); the limit is 40 megapixels"),
    "serving_default": (["--serving-default"],
                        "not an image this model reads (JPEG, PNG, GIF, BMP or WebP)",
                        "image is 9000x5000 = 45.0 megapixels; the limit is 40 megapixels"),
}  # fmt: skip


@pytest.mark.parametrize("mode", PREDICT_MODES)
def test_predict_cli_prints_top3(exported, cifar_sample, tmp_path, mode):
    flags, not_an_image, too_big = PREDICT_MODES[mode]
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(cifar_sample.data[0])
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    big = tmp_path / "big.png"  # over the 40-megapixel limit, refused from its header
    Image.new("RGB", (9000, 5000), (1, 2, 3)).save(big)
    gone = tmp_path / "gone.jpg"
    done = run_cli(
        "-m", "export.predict", *flags, str(photo), str(junk), str(big), str(tmp_path),
        str(gone), "--model", str(exported),
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"model: {exported / '1'}")
    assert lines[1] == str(photo)
    top = [line.split() for line in lines[2:5]]
    assert all(name in cifar_sample.class_names for name, _ in top)
    shares = [float(p.rstrip("%")) for _, p in top]
    assert shares == sorted(shares, reverse=True)
    guess = ["  (a guess: the best class is under 50%)"] if shares[0] < 50 else []
    assert lines[5:] == guess
    assert done.returncode == 1
    assert f"{gone}: cannot classify: no such file\n" in done.stderr
    assert f"{junk}: cannot classify: {not_an_image}\n" in done.stderr
    assert f"{big}: cannot classify: {too_big}\n" in done.stderr  # not in tf's assertion frame
    assert f"{tmp_path}: cannot classify: a folder, not an image\n" in done.stderr
    assert "InitializeLog" not in done.stderr  # TensorFlow's start-up lines stay out of sight


def test_predict_marks_a_weak_best_class_as_a_guess_as_the_page_does():
    import re

    from export.config import GUESS_BELOW
    from export.predict import format_top

    script = (Path(__file__).resolve().parents[2] / "proxy/static/app.js").read_text()
    assert float(re.search(r"unsureBelow: ([0-9.]+),", script).group(1)) == GUESS_BELOW
    names = ["cat", "dog", "ship"]
    sure = format_top("a.jpg", np.array([0.1, 0.7, 0.2]), names, 2)
    assert sure.splitlines() == ["a.jpg", "  dog           70.00%", "  ship          20.00%"]
    weak = format_top("b.jpg", np.array([0.35, 0.33, 0.32]), names, 1)
    assert weak.splitlines()[1:] == [
        "  cat           35.00%",
        "  (a guess: the best class is under 50%)",
    ]


def test_predict_says_a_missing_file_before_loading_the_model(exported, tmp_path):
    done = run_cli("-m", "export.predict", str(tmp_path / "gone.jpg"), "--model", str(exported))
    assert (done.returncode, done.stdout) == (1, "")  # no "model: ..." line: it never loaded
    assert done.stderr == f"{tmp_path / 'gone.jpg'}: cannot classify: no such file\n"


def test_predict_cli_turns_a_phone_photo_upright_as_the_page_does(exported, tmp_path):
    """A phone stores a portrait photo sideways with an EXIF orientation tag: `make predict`
    classified it sideways (TensorFlow's decoders ignore the tag) while the page, whose proxy
    applies the tag, classified it upright. Lossless PNGs, so upright and tagged decode alike."""
    upright = np.zeros((48, 32, 3), np.uint8)
    upright[:24] = (250, 220, 30)  # a yellow top half over a dark blue one
    upright[24:] = (20, 30, 120)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the stored pixels are turned 90 degrees anticlockwise
    sideways = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    sideways.save(tmp_path / "phone.png", exif=exif)

    def shares(*flags: str) -> list[list[str]]:
        done = run_cli("-m", "export.predict", *flags, "-k", "10", "--model", str(exported),
                       str(tmp_path / "upright.png"), str(tmp_path / "phone.png"))  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()[1:]
        return [lines[1:11], lines[12:22]]  # the upright's rows, the phone photo's

    upright_rows, phone_rows = shares()
    assert phone_rows == upright_rows
    upright_rows, phone_rows = shares("--serving-default")
    assert phone_rows != upright_rows  # the check can tell: sideways pixels score otherwise


def version_recording(base: Path, n: int, accuracy: float) -> Path:
    """A stand-in version folder holding only the accuracy its export recorded."""
    from export.config import INFO_ASSET

    info = base / str(n) / INFO_ASSET
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"expected_test_accuracy": accuracy}))
    return base / str(n)


def test_exporting_a_less_accurate_run_warns_how_to_roll_back(tmp_path):
    from export.export_run import Displaced, ExportResult, accuracy_drop_warning

    def version(n: int, accuracy: float) -> Path:
        return version_recording(tmp_path, n, accuracy)

    shipped, smoke_test, better = version(4, 0.9091), version(5, 0.124), version(6, 0.93)
    was_4 = Displaced(4, 0.9091)
    warning = accuracy_drop_warning(ExportResult(smoke_test, 0, {}, was_4))
    assert "12.40% test accuracy, below version 4's 90.91%" in warning
    # DEPLOY.md's rollback, which keeps the number used (export/publish.py)
    assert f"move it away (mv -T {smoke_test} {tmp_path / '.rollback-5'};" in warning
    assert "or pin version 4" in warning
    assert accuracy_drop_warning(ExportResult(better, 0, {}, was_4)) is None
    # --version 3 beside a newer 4: not served, so nothing to warn about.
    assert accuracy_drop_warning(ExportResult(version(3, 0.1), 0, {}, was_4)) is None
    assert accuracy_drop_warning(ExportResult(shipped, 0, {}, None)) is None


def test_the_rollback_advice_never_leaves_the_server_without_a_version(tmp_path):
    """After --keep 1 removed the displaced version, 'remove the new one' once was the advice
    though no other version was left: following it unloaded everything (404s)."""
    from export.export_run import Displaced, ExportResult, accuracy_drop_warning

    smoke_test = version_recording(tmp_path, 5, 0.124)
    was_4 = Displaced(4, 0.9091, "runs/bench-fast-0")
    alone = accuracy_drop_warning(ExportResult(smoke_test, 0, {}, was_4))
    assert "Version 4 is gone and no other version is left" in alone
    assert "export runs/bench-fast-0 again" in alone and "pin" not in alone
    # Version 4 taken away by someone else meanwhile, 3 still there:
    version_recording(tmp_path, 3, 0.85)
    older = accuracy_drop_warning(ExportResult(smoke_test, 0, {}, was_4))
    assert "would serve version 3 under the default latest policy" in older


def test_model_card_states_the_served_accuracy(exported, tiny_run_dir, tmp_path):
    import shutil

    from export.model_card import served_accuracy, write_card

    base = tmp_path / "cifar10"
    shutil.copytree(exported, base)
    card = write_card(tiny_run_dir, base)
    text = card.read_text()
    meta = json.loads((tiny_run_dir / "meta.json").read_text())
    info = json.loads((base / "1" / "assets" / "model_info.json").read_text())
    assert served_accuracy(text) == pytest.approx(info["expected_test_accuracy"], abs=5e-5)
    for needle in ("CIFAR-10 (JPEG q75 mirror)", meta["command"], f"{meta['params']:,}", "seed 0"):
        assert needle in text
    assert (base / "curves.png").is_file() and "![curves](curves.png)" in text
    # Rendering Markdown needs no TensorFlow: it once took seconds of start-up to import it.
    code = (
        "import sys; from export.model_card import main;"
        f"main(['--run-dir', {str(tiny_run_dir)!r}, '--base-path', {str(base)!r}]);"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_model_card_serves_the_exported_models_own_figure():
    """The card's served line is the SavedModel's measured figure where the export measured
    it, and says whose figure it is either way."""
    from export.model_card import served_figure

    meta = {"test_accuracy": 0.90, "test_accuracy_flip": 0.9104, "test_images": 10000}
    report = {"savedmodel": {"pixels_accuracy": 0.9101, "test_images": 10000}}
    figure, source = served_figure(meta, 1, report)
    assert figure == 0.9101
    assert source == (
        "measured on the exported SavedModel through `pixels` (training measured 91.04%)"
    )
    figure, source = served_figure(meta, 1, None)
    assert figure == 0.9104 and "the export did not measure the SavedModel" in source
    meta["data"] = "cifar10-jpeg.tar.gz"
    for data, images in (("cifar10-jpeg.tar.gz", 500), ("my-photos", 10000)):
        other = {"savedmodel": {"pixels_accuracy": 0.5, "test_images": images, "data": data}}
        figure, source = served_figure(meta, 1, other)
        assert (figure, source) == (
            0.9104,
            "as training measured the same weights (the export measured the SavedModel on "
            "other test images)",
        )
    report["savedmodel"]["data"] = "cifar10-jpeg.tar.gz"
    assert served_figure(meta, 1, report)[0] == 0.9101


def test_model_card_refuses_a_run_that_does_not_record_a_figure(exported, tiny_run_dir, tmp_path):
    """A figure missing from meta.json is named, not printed as 0."""
    import shutil

    run, base = tmp_path / "run", tmp_path / "cifar10"
    shutil.copytree(tiny_run_dir, run)
    shutil.copytree(exported, base)
    meta = json.loads((run / "meta.json").read_text())
    del meta["train_seconds"]
    (run / "meta.json").write_text(json.dumps(meta))
    done = run_cli("-m", "export.model_card", "--run-dir", str(run), "--base-path", str(base))
    assert done.returncode == 1
    missing = "model_card: the run or the version does not record 'train_seconds'"
    assert done.stderr.strip().splitlines()[-1] == missing
    assert not (base / "MODEL_CARD.md").exists()


def test_model_card_draws_the_confusion_matrix_of_the_served_tta(exported, tiny_run_dir, tmp_path):
    """`make evaluate` draws the matrix of --headline (default none) into the run folder; the
    card showed that picture under a per-class table of the served flip TTA."""
    import shutil

    from export.model_card import write_card
    from training.plots import plot_confusion

    base, run = tmp_path / "cifar10", tmp_path / "run"
    shutil.copytree(exported, base)
    shutil.copytree(tiny_run_dir, run)
    info_file = base / "1" / "assets" / "model_info.json"
    info_file.write_text(json.dumps({**json.loads(info_file.read_text()), "tta": 1}))
    names = ["a", "b"]

    def level(matrix):
        per_class = {n: {"recall": 0.5, "precision": 0.5, "support": 2} for n in names}
        return {"accuracy": 0.5, "per_class": per_class, "confusion_matrix": matrix}

    served = [[2, 0], [1, 1]]
    meta = json.loads((run / "meta.json").read_text())
    evaluation = {"tta_none": level([[1, 1], [1, 1]]), "tta_flip": level(served),
                  "data": meta["data"], "test_images": meta["test_images"]}  # fmt: skip
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    plot_confusion(np.array([[1, 1], [1, 1]]), names, run / "confusion.png", "as evaluated")

    text = write_card(run, base).read_text()
    expected = plot_confusion(
        np.array(served),
        names,
        tmp_path / "expected.png",
        "confusion matrix (TTA flip), accuracy 50.00%",
    )
    assert (base / "confusion.png").read_bytes() == expected.read_bytes()
    assert "## Per class (flip)" in text and "![confusion](confusion.png)" in text


def test_model_card_leaves_out_an_evaluation_of_other_test_images(
    exported, tiny_run_dir, tmp_path, capsys
):
    """`evaluate --test-subset 50` (or --data my_photos) into the run folder once put its
    per-class table and confusion matrix under the card's heading of the run's test images."""
    import shutil

    from export.model_card import write_card

    base, run = tmp_path / "cifar10", tmp_path / "run"
    shutil.copytree(exported, base)
    shutil.copytree(tiny_run_dir, run)
    meta = json.loads((run / "meta.json").read_text())
    level = {"accuracy": 0.5, "confusion_matrix": [[1]], "per_class": {"a": {}}}
    other = {"tta_none": level, "data": meta["data"], "test_images": meta["test_images"] - 1}
    (run / "evaluation.json").write_text(json.dumps(other))
    text = write_card(run, base).read_text()
    why = f"evaluation.json is of other test images ({meta['test_images'] - 1} of"
    assert why in text and why in capsys.readouterr().err
    assert "(confusion.png)" not in text and not (base / "confusion.png").exists()
    assert "accuracy (recall)" not in text


def test_model_card_keeps_the_card_of_the_version_before(exported, tiny_run_dir, tmp_path):
    """A rollback to the version before wants its card back: it is kept with its pictures."""
    import shutil

    from export.model_card import write_card

    base = tmp_path / "cifar10"
    shutil.copytree(exported, base)
    first = write_card(tiny_run_dir, base).read_text()
    curves = (base / "curves.png").read_bytes()
    shutil.copytree(base / "1", base / "2")  # the same weights published again
    assert (
        write_card(tiny_run_dir, base).read_text().startswith("# Model card: `cifar10` version 2")
    )
    kept = (base / "MODEL_CARD-v1.md").read_text()
    assert kept == first.replace("](curves.png)", "](curves-v1.png)")
    assert (base / "curves-v1.png").read_bytes() == curves
    write_card(tiny_run_dir, base)  # the same version again: nothing more is archived
    assert sorted(p.name for p in base.glob("MODEL_CARD*")) == ["MODEL_CARD-v1.md", "MODEL_CARD.md"]


def test_a_card_that_cannot_be_rendered_changes_nothing(exported, tiny_run_dir, tmp_path, capsys):
    """The old card was archived and the pictures replaced before the text was rendered; a
    figure missing from meta.json then left the old card beside the new pictures."""
    import shutil

    from export.model_card import main, write_card

    base, run = tmp_path / "cifar10", tmp_path / "run"
    shutil.copytree(exported, base)
    shutil.copytree(tiny_run_dir, run)
    write_card(run, base)
    before = {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()}
    shutil.copytree(base / "1", base / "2")  # a new version: this card would archive v1's
    meta = json.loads((run / "meta.json").read_text())
    del meta["mean"]
    (run / "meta.json").write_text(json.dumps(meta))
    assert main(["--run-dir", str(run), "--base-path", str(base)]) == 1
    assert "does not record 'mean'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()} == before


def test_model_card_refuses_a_version_exported_from_other_weights(exported, tiny_run_dir, tmp_path):
    """The card puts the run's accuracy on the version: a version exported from another run
    (its recorded weights digest differs) once got a card claiming the other run's figures."""
    import shutil

    from export.model_card import write_card

    base = tmp_path / "cifar10"
    shutil.copytree(exported, base)
    info_file = base / "1" / "assets" / "model_info.json"
    info = json.loads(info_file.read_text())
    info_file.write_text(json.dumps({**info, "source_weights_sha256": "0" * 64,
                                     "source_run": "runs/other"}))  # fmt: skip
    with pytest.raises(ValueError, match=r"version 1 was not exported from .*runs/other"):
        write_card(tiny_run_dir, base)
    assert not (base / "MODEL_CARD.md").exists()
    # The same weights published again as version 2: the message names it.
    shutil.copytree(exported / "1", base / "2")
    with pytest.raises(ValueError, match="pass --version 2"):
        write_card(tiny_run_dir, base, version=1)


def test_export_agreement_refuses_a_version_of_other_weights_before_reading_the_data(
    exported, tiny_run_dir, tmp_path, capsys
):
    """It compared the run with whatever version was newest: after a `make train` without an
    export, the shipped model, and printed a meaningless FAIL."""
    import shutil

    from bench.export_agreement import main

    base = tmp_path / "cifar10"
    shutil.copytree(exported, base)
    info_file = base / "1" / "assets" / "model_info.json"
    info_file.write_text(json.dumps({**json.loads(info_file.read_text()),
                                     "source_weights_sha256": "0" * 64}))  # fmt: skip
    nowhere = str(tmp_path / "no-data")  # reading it would fail: the refusal comes first
    common = ["--model", str(base), "--data", nowhere]
    assert main(["--run-dir", str(tiny_run_dir), *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith("export_agreement: version 1 was not exported from"), err
    assert main(["--run-dir", str(tmp_path), *common]) == 2
    assert "holds no finished run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-dir", "{tmp}/nothing"], "holds no finished training run"),
        (["--version", "7"], "no version 7 in"),
        (["--base-path", "{tmp}/empty"], "not found"),
    ],
)
def test_model_card_cli_answers_ordinary_mistakes_in_one_line(
    exported, tiny_run_dir, tmp_path, capsys, args, message
):
    import shutil

    from export.model_card import main

    base = tmp_path / "cifar10"
    shutil.copytree(exported, base)
    given = ["--run-dir", str(tiny_run_dir), "--base-path", str(base)]
    given += [a.format(tmp=tmp_path) for a in args]
    assert main(given) == 1
    err = capsys.readouterr().err
    assert err.startswith("model_card: ") and message in err and "Traceback" not in err


def wait_for_library(pid: int, name: str) -> None:
    """Until process `pid` has mapped a shared library whose path holds `name`."""
    maps = Path(f"/proc/{pid}/maps")
    eventually(lambda: name in maps.read_text(), what=f"{name} mapped")


@pytest.mark.parametrize(
    ("command", "outcome"),
    [
        (["-m", "export", "--base-path", "{tmp}/cifar10", "--run-dir"], "a version is published"),
        (["-m", "training.evaluate", "--out", "{tmp}/report"], "no new evaluation.json"),
    ],
)
def test_ctrl_c_in_export_or_evaluate_is_a_line_not_a_traceback(
    tiny_run_dir, tmp_path, command, outcome
):
    """SIGINT while TensorFlow loads (held until the import ends): a line and exit code 130;
    both printed a 35-line traceback. Nothing half-made is left."""
    import signal

    from export.publish import LOCK_NAME

    args = [a.format(tmp=tmp_path) for a in command] + [str(tiny_run_dir)]
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    # Past the argument checks: TensorFlow is imported after them, inside the Ctrl-C handling,
    # and takes seconds more once its library is mapped. (A fixed 3 s wait was a race: on a
    # fast machine the tiny run's whole evaluation ended before it.)
    wait_for_library(proc.pid, "libtensorflow")
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert f"interrupted; {outcome}" in err and "Traceback" not in err, err[-2000:]
    left = {p.name for p in [*tmp_path.glob("cifar10/*"), *tmp_path.glob("report/*")]}
    assert left <= {LOCK_NAME}  # the publishers' lock, kept on purpose: no folder half-made


def test_the_card_says_how_far_a_resumed_run_had_got() -> None:
    """A run re-run only for its final outputs (Ctrl-C during the final evaluation) resumed
    at its last step: the card gives the total so a reader sees nothing was retrained."""
    from export.model_card import _training

    meta = {"resumed_at_steps": [120, 256], "total_steps": 256, "mean": [1] * 3, "std": [1] * 3}
    meta |= {"train_seconds": 300.0, "images_per_second": 1500.0, "last_invocation_wall_seconds": 9}
    text = _training(meta)
    assert "- resumed after interruptions at steps [120, 256] of 256" in text
    assert "its last sitting" in text


def test_the_model_card_names_the_data_set_the_run_trained_on():
    """The card said "CIFAR-10 (JPEG q75 mirror)" whatever --data was, and a run on the
    official archive (no image files to send to serving_default) crashed it."""
    from export.model_card import _export, data_name

    assert data_name("../shared/data/cifar10-jpeg.tar.gz") == "CIFAR-10 (JPEG q75 mirror)"
    assert data_name("keras") == "CIFAR-10 (the Keras download)"
    assert data_name("/data/cifar-10-python.tar.gz") == "CIFAR-10 (the official python archive)"
    assert data_name("/photos/pets") == "the image set `pets`"
    tflite = {kind: {"bytes": 8e6, "test_accuracy": 0.9} for kind in ("float32", "int8")}
    saved = {"bytes": 8e6, "pixels_accuracy": 0.9101, "serving_default_accuracy": None}
    table = _export({"savedmodel": saved, "tflite": tflite}, {"tta_name": "flip"})
    assert "| 91.01% |" in table
    assert (
        "`serving_default` on the JPEG files | | n/a (the data set has no image files) |" in table
    )
    assert "Measured by" not in table  # a report from before the export recorded its CPU
    cpu = "Some CPU, 2 cores, flags: avx2 fma, no AMX"
    table = _export({"savedmodel": saved, "tflite": tflite, "measured_on": cpu}, {"tta_name": ""})
    assert table.endswith(f"\n\nMeasured by the export on {cpu}.")
