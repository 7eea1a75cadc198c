"""Tiny end-to-end runs of the secondary recipes' stages, in-process with tiny models and budgets: the vision
recipe (every row, the table, the ES-vs-SGD correlation plot) and the LM recipe (single, ESGD with the baseline
inserted, the perplexity table); and that the recipes' shell scripts parse."""
import struct
import subprocess
from pathlib import Path

import pytest
import torch

from esgd_asr.cli import es_correlation, prepare_images, prepare_lm_text, task_table, train_task
from esgd_asr.errors import EsgdError
from esgd_asr.train.task import Task
from test_task_readers import write_cifar

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = "train:\n  default: {lr: 0.3, batch_size: 32, max_epochs: 1, epoch_frames: 64}\n"
TINY_ESGD = ["--esgd-opt", "mu=2", "--esgd-opt", "offspring=2", "--esgd-opt", "generations=1", "--esgd-opt",
             "sgd_epochs=1",
             "--esgd-opt", "epoch_frames=64", "--esgd-opt", "finetune.max_epochs=0"]


def write_mnist(directory: Path, count: int = 80) -> None:
    """Random 28x28 images whose class is the brightest of ten horizontal bands (learnable), in idx files."""
    generator = torch.Generator().manual_seed(0)
    directory.mkdir()
    for prefix in ("train", "t10k"):
        labels = torch.randint(10, (count,), generator=generator)
        images = torch.randint(0, 100, (count, 28, 28), generator=generator)
        for row, label in enumerate(labels.tolist()):
            images[row, 2 * label:2 * label + 3] += 150
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            header = struct.pack(">BBBB", 0, 0, 8, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
            (directory / name).write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def test_vision_recipe_end_to_end(tmp_path, capsys):
    cnn = tmp_path / "cnn.yaml"
    cnn.write_text("type: cnn\ndefault: {conv: [4], hidden: 8}\n" + TINY_TRAIN)
    resnet = tmp_path / "resnet.yaml"
    resnet.write_text("type: resnet\ndefault: {width: 4, blocks: 1}\n" + TINY_TRAIN)
    esgd = ROOT / "egs" / "vision" / "conf" / "esgd.yaml"
    task, exp = tmp_path / "task.pt", tmp_path / "exp"
    write_mnist(tmp_path / "mnist")   # a tiny MNIST in its idx files (the digits default needs scikit-learn's import)
    prepare_images.main(["--dataset", "mnist", "--data-dir", str(tmp_path / "mnist"), "--valid", "16", str(task)])

    def train(name, *options, config=cnn):
        train_task.main(["--model-config", str(config), *options, str(task), str(exp / name)])

    train("single", "--algorithm", "single")
    train("resnet", "--algorithm", "single", config=resnet)
    for algorithm in ("population", "esgd"):
        train(algorithm, "--algorithm", algorithm, "--esgd-config", str(esgd), *TINY_ESGD)
    train("anchored", "--algorithm", "anchored", "--esgd-config", str(esgd), *TINY_ESGD, "--esgd-opt", "mu=3",
          "--anchor", str(exp / "single" / "final.pt"))
    train("popdescent", "--algorithm", "popdescent", "--esgd-config", str(esgd), "--esgd-opt", "mu=2",
          "--esgd-opt", "elite=1", "--esgd-opt", "generations=1", "--esgd-opt", "local_steps=2")
    train("openai_es", "--algorithm", "openai-es", "--esgd-config", str(esgd), "--esgd-opt", "pairs=4",
          "--esgd-opt", "generations=1", "--esgd-opt", "updates_per_generation=2")
    rows = ["single", "resnet", "population", "esgd", "anchored", "popdescent", "openai_es"]
    capsys.readouterr()
    task_table.main(["--out", str(exp / "results.txt"), *[f"{r}={exp / r}" for r in rows]])
    printed = capsys.readouterr().out
    assert printed == (exp / "results.txt").read_text()
    assert "valid err%" in printed and all(f"{r} " in printed for r in rows)
    assert "openai_es (8 x 2 updates x 50) " in printed        # pseudo-offspring x updates x samples an update
    info = train_task.load_task_model(exp / "esgd" / "final.pt")[2]
    assert info["dataset"] == "mnist" and info["member_samples"] == 64 and info["total_samples"] == 128 and 0 <= info["test_error"] <= 100
    es_correlation.main(["--model-config", str(cnn), "--model", str(exp / "single" / "final.pt"), "--batch-sizes",
                         "1,8", "--pairs", "4", "--repeats", "1", str(task), str(exp / "es_sgd")])
    lines = (exp / "es_sgd" / "correlation.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["batch_size", "1", "8"]
    assert (exp / "es_sgd" / "correlation.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):   # an anchor of another architecture: one line, exit 1
        train("bad", "--algorithm", "anchored", "--esgd-config", str(esgd), "--anchor",
              str(exp / "resnet" / "final.pt"))
    assert "differs from the population's" in capsys.readouterr().err


def test_resnet20_config_trains_on_a_tiny_cifar10_dir(tmp_path):
    """The recipe's `--dataset cifar10 --model-config conf/resnet20.yaml` path: the real ResNet-20 (width 16, 3
    blocks a stage) through stages 1-3 of one row (data, single model for one epoch, ESGD) on 30 CIFAR-format
    images."""
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    write_cifar(cifar, count=6)                      # 5 batches of 6 -> 30 training images, 6 test images
    task, exp = tmp_path / "task.pt", tmp_path / "exp"
    resnet20 = tmp_path / "resnet20.yaml"
    resnet20.write_text((ROOT / "egs" / "vision" / "conf" / "resnet20.yaml").read_text()
                        .replace("max_epochs: 20", "max_epochs: 1"))
    prepare_images.main(["--dataset", "cifar10", "--data-dir", str(cifar), "--valid", "6", str(task)])
    train_task.main(["--algorithm", "single", "--model-config", str(resnet20), str(task), str(exp / "single")])
    train_task.main(["--algorithm", "esgd", "--model-config", str(resnet20), "--esgd-config",
                     str(ROOT / "egs" / "vision" / "conf" / "esgd.yaml"), *TINY_ESGD, str(task), str(exp / "esgd")])
    for row in ("single", "esgd"):
        config, state, info = train_task.load_task_model(exp / row / "final.pt")
        assert (config.width, config.blocks, config.channels, config.image_size) == (16, 3, 3, 32)
        assert sum(v.numel() for k, v in state.items() if "conv" in k) > 0.25e6     # ResNet-20's 0.27 M weights
        assert info["dataset"] == "cifar10" and 0 <= info["test_error"] <= 100
    assert train_task.load_task_model(exp / "single" / "final.pt")[2]["member_samples"] == 24   # one epoch


def test_lm_recipe_end_to_end(tmp_path, capsys):
    data = tmp_path / "data"
    for split, text in (("train", "the cat sat on the mat\na dog ran\nthe dog sat\n" * 4),
                        ("dev", "the cat ran\n"), ("test", "a dog sat on the mat\n")):
        (data / split).mkdir(parents=True)
        (data / split / "text").write_text("".join(f"u{i} {line}\n" for i, line in enumerate(text.splitlines())))
    lstm = tmp_path / "lstm.yaml"
    lstm.write_text("type: lstm_lm\ndefault: {embedding: 8, cells: 8}\n" + TINY_TRAIN)
    task, exp = tmp_path / "task.pt", tmp_path / "exp"
    prepare_lm_text.main(["--data-root", str(data), "--bptt", "5", str(task)])
    train_task.main(["--algorithm", "single", "--model-config", str(lstm), str(task), str(exp / "single")])
    train_task.main(["--algorithm", "inserted", "--model-config", str(lstm), "--esgd-config",
                     str(ROOT / "egs" / "lm" / "conf" / "esgd.yaml"), *TINY_ESGD, "--anchor",
                     str(exp / "single" / "final.pt"), str(task), str(exp / "inserted")])
    single = train_task.load_task_model(exp / "single" / "final.pt")[2]
    inserted = train_task.load_task_model(exp / "inserted" / "final.pt")[2]
    assert inserted["valid_ce"] <= single["valid_ce"] + 1e-5   # the baseline is always a candidate
    assert abs(single["valid_ppl"] - torch.tensor(single["valid_ce"]).exp().item()) < 1e-3
    capsys.readouterr()
    task_table.main([f"single={exp / 'single'}", f"inserted={exp / 'inserted'}"])
    assert "valid ppl" in capsys.readouterr().out
    with pytest.raises(EsgdError, match="cannot learn a lm task"):
        from esgd_asr.models.cnn import CNNConfig
        Task.load(task).fit_config(CNNConfig())


@pytest.mark.parametrize("recipe", ["vision", "lm"])
def test_recipe_scripts_parse_and_print_help(recipe):
    script = ROOT / "egs" / recipe / "run.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, check=True)
    assert "Stages:" in result.stdout
