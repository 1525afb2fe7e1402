"""Models for the applications: a recurrent body and a task-specific head."""
from .classifier import ClassifierConfig, SequenceClassifier
from .forecaster import Forecaster, ForecasterConfig
from .language_model import LanguageModel, LanguageModelConfig, sample
from .recurrent import CELLS, final_hidden, make_recurrent

__all__ = ["CELLS", "make_recurrent", "final_hidden", "ClassifierConfig", "SequenceClassifier",
           "LanguageModel", "LanguageModelConfig", "sample",
           "Forecaster", "ForecasterConfig"]
