"""The secondary recipes' data readers: MNIST / Fashion-MNIST idx files, CIFAR-10 python batches, PTB text and
the task file each stop with one clear line naming the file on a wrong path, a truncated or malformed file, or
images of the wrong size."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from esgd_asr.data.images import load_images, read_cifar_batch, read_idx
from esgd_asr.data.lm_text import PieceVocabulary, WordVocabulary, encode_sets, read_ptb, to_rows
from esgd_asr.errors import EsgdError
from esgd_asr.train.task import Task


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(directory, count=5, side=28, gz=False):
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        files = {f"{prefix}-images-idx3-ubyte": rng.integers(0, 256, (count, side, side), dtype=np.uint8),
                 f"{prefix}-labels-idx1-ubyte": rng.integers(0, 10, count, dtype=np.uint8)}
        for name, array in files.items():
            data = idx_bytes(array)
            (directory / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)


def write_cifar(directory, count=4, width=3072):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (count, width), dtype=np.uint8), b"labels": [1] * count}
        (directory / name).write_bytes(pickle.dumps(batch))


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    (train_x, train_y), (test_x, test_y) = load_images("fashion-mnist", tmp_path)
    assert train_x.shape == (5, 1, 28, 28) and test_y.shape == (5,) and 0 <= float(train_x.min()) <= 1


def test_mnist_wrong_path_truncated_and_wrong_size(tmp_path):
    with pytest.raises(EsgdError) as err:
        load_images("mnist", tmp_path / "missing")
    assert "missing: no such directory" in one_line(err)
    with pytest.raises(EsgdError) as err:
        load_images("mnist", tmp_path)
    assert "train-images-idx3-ubyte: no such file" in one_line(err)
    write_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(EsgdError) as err:
        load_images("mnist", tmp_path)
    assert str(images) in one_line(err) and "truncated" in one_line(err)
    images.write_bytes(b"\x00\x00\x08")
    with pytest.raises(EsgdError) as err:
        read_idx(images)
    assert "not an idx1/idx3 file" in one_line(err)
    write_mnist(tmp_path, side=32)
    with pytest.raises(EsgdError) as err:
        load_images("mnist", tmp_path)
    assert "images are 32x32, expected 28x28" in one_line(err) and str(images) in one_line(err)


def test_cifar_reads_batches_and_refuses_bad_ones(tmp_path):
    with pytest.raises(EsgdError) as err:
        load_images("cifar10", tmp_path)
    assert "data_batch_1: no such file" in one_line(err)
    write_cifar(tmp_path)
    (train_x, train_y), (test_x, _) = load_images("cifar10", tmp_path)
    assert train_x.shape == (20, 3, 32, 32) and test_x.shape == (4, 3, 32, 32) and train_y.dtype == torch.long
    batch = tmp_path / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(EsgdError) as err:
        read_cifar_batch(batch)
    assert f"{batch}: not a CIFAR-10 python batch" in one_line(err)
    write_cifar(tmp_path, width=28 * 28)
    with pytest.raises(EsgdError) as err:
        load_images("cifar10", tmp_path)
    assert "expected rows of 3072 bytes (3x32x32)" in one_line(err) and "data_batch_1" in one_line(err)


def test_ptb_and_task_file(tmp_path):
    with pytest.raises(EsgdError) as err:
        read_ptb(tmp_path)
    assert "ptb.train.txt: no such file" in one_line(err)
    (tmp_path / "ptb.train.txt").write_text(" the cat sat \n the dog <unk> \n")
    (tmp_path / "ptb.valid.txt").write_text(" the cat \n")
    (tmp_path / "ptb.test.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(EsgdError) as err:
        read_ptb(tmp_path)
    assert "ptb.test.txt: not UTF-8 text" in one_line(err)
    (tmp_path / "ptb.test.txt").write_text("\n\n")
    with pytest.raises(EsgdError) as err:
        read_ptb(tmp_path)
    assert "ptb.test.txt: no sentences" in one_line(err)
    (tmp_path / "ptb.test.txt").write_text("the bird\n")
    sentences = read_ptb(tmp_path)
    vocabulary = WordVocabulary(sentences["train"])
    assert vocabulary.tokens[:2] == ["</s>", "<unk>"] and vocabulary.encode(["bird"]) == [1, 0]
    sets = encode_sets(sentences, vocabulary, length=4)
    inputs, targets = sets["train"]
    assert inputs.shape == (2, 4) and targets[0].tolist() == [vocabulary.index[w] for w in ("the", "cat", "sat",
                                                                                          "</s>")]
    assert to_rows([0, 5, 6], 4)[1].tolist() == [[5, 6, -100, -100]]
    pieces = PieceVocabulary([s.split() for s in ["the cat sat on the mat"] * 20 + ["a dog ran"] * 20], 20)
    assert pieces.encode(["the", "cat"])[-1] == 0
    task = tmp_path / "task.pt"
    task.write_bytes(b"not a torch file")
    with pytest.raises(EsgdError) as err:
        Task.load(task)
    assert f"{task}: unreadable task file" in one_line(err)
