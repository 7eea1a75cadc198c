"""Acoustic and language models as plain nn.Modules."""
from esgd_asr.models.blstm import BiLSTM, BLSTMConfig
from esgd_asr.models.config import build_model, load_model_config, model_config_from_dict
from esgd_asr.models.dnn import DNNConfig, FeedForwardDNN

__all__ = ["BiLSTM", "BLSTMConfig", "DNNConfig", "FeedForwardDNN", "build_model", "load_model_config",
           "model_config_from_dict"]
