"""Prepare an image classification task (train / valid / test tensors) for esgd-train-task.

Usage: esgd-prepare-images [--dataset digits|mnist|fashion-mnist|cifar10] [--data-dir DIR] [--valid N]
                           [--seed N] <task.pt>

digits (default) is scikit-learn's 8x8 digits set (no download; a seeded fifth is the test set); mnist and
fashion-mnist read the idx files, cifar10 the python batches from --data-dir (esgd_asr.data.images). --valid
images are held out of the training set by a seeded draw for the fitness / validation.
"""
import logging

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.images import DATASETS, load_images
from esgd_asr.errors import cli_main
from esgd_asr.train.task import Task, split_off

log = logging.getLogger("esgd-prepare-images")


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-prepare-images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--data-dir", help="directory of the dataset's files (all but digits)")
    parser.add_argument("--valid", type=int, default=300, help="training images held out for validation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("task")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    train, test = load_images(args.dataset, args.data_dir, args.seed)
    train, valid = split_off(train, args.valid, args.seed + 1)
    images = train[0]
    info = {"dataset": args.dataset, "channels": images.shape[1], "image_size": images.shape[2],
            "num_classes": 10}
    Task("vision", train, valid, test, info).save(args.task)
    log.info("wrote %s: %s, %d train / %d valid / %d test images of %dx%dx%d", args.task, args.dataset,
             len(train[1]), len(valid[1]), len(test[1]), *images.shape[1:])


if __name__ == "__main__":
    main()
