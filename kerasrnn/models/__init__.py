"""Sequence-to-sequence models built from kerasrnn cells and layers.

``Seq2Seq`` (encoder, bridge, attention decoder, teacher-forcing and
scheduled-sampling ``train_step``, ``generate`` through
``kerasrnn.decoding``), its parts (``RecurrentDecoder``,
``BahdanauAttention``, ``LuongAttention``), the ``ScheduledSampling``
callback, padding-aware metrics and text utilities (``text``).

Language models: ``LanguageModel``, with ``lm_data`` (vocabularies, stream
batching) and ``lm_training`` (truncated BPTT, stream evaluation).

Image captioning: ``ImageCaptioner`` (a ``Seq2Seq`` with an image encoder:
Show and Tell; Show, Attend and Tell), ``conv_encoder`` and
``caption_data`` (synthetic scenes, COCO loader, BLEU).
"""

from kerasrnn.models import caption_data
from kerasrnn.models import lm_data
from kerasrnn.models import lm_training
from kerasrnn.models import text
from kerasrnn.models.attention import BahdanauAttention
from kerasrnn.models.attention import LuongAttention
from kerasrnn.models.captioning import ImageCaptioner
from kerasrnn.models.captioning import conv_encoder
from kerasrnn.models.decoder import RecurrentDecoder
from kerasrnn.models.language_model import LanguageModel
from kerasrnn.models.metrics import MaskedTokenAccuracy
from kerasrnn.models.metrics import Perplexity
from kerasrnn.models.metrics import SequenceExactMatch
from kerasrnn.models.schedules import ScheduledSampling
from kerasrnn.models.seq2seq import Seq2Seq
from kerasrnn.models.seq2seq import default_optimizer

__all__ = [
    "BahdanauAttention",
    "ImageCaptioner",
    "LanguageModel",
    "LuongAttention",
    "MaskedTokenAccuracy",
    "Perplexity",
    "RecurrentDecoder",
    "ScheduledSampling",
    "Seq2Seq",
    "SequenceExactMatch",
    "caption_data",
    "conv_encoder",
    "default_optimizer",
    "lm_data",
    "lm_training",
    "text",
]
