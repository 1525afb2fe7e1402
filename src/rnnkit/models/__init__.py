"""Models for the applications: a recurrent body and a task-specific head."""
from .classifier import ClassifierConfig, SequenceClassifier
from .crf import CRF, ViterbiPath
from .ctc import CTCConfig, CTCModel, ctc_greedy_decode, ctc_prefix_beam_search, edit_distance, error_counts
from .forecaster import Forecaster, ForecasterConfig, ForecasterStream
from .language_model import LanguageModel, LanguageModelConfig, LanguageModelStream, sample
from .recurrent import CELLS, final_hidden, make_recurrent
from .seq2seq import Seq2Seq, Seq2SeqConfig, beam_search, greedy_decode
from .tagger import SequenceTagger, TaggerConfig

__all__ = ["CELLS", "make_recurrent", "final_hidden", "ClassifierConfig", "SequenceClassifier",
           "LanguageModel", "LanguageModelConfig", "LanguageModelStream", "sample",
           "Forecaster", "ForecasterConfig", "ForecasterStream",
           "SequenceTagger", "TaggerConfig", "CRF", "ViterbiPath",
           "Seq2Seq", "Seq2SeqConfig", "beam_search", "greedy_decode",
           "CTCConfig", "CTCModel", "ctc_greedy_decode", "ctc_prefix_beam_search", "edit_distance", "error_counts"]
