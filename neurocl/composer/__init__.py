"""The answer composer: between a memory and the metrics, it turns memory activity into answers that carry
their evidence, and abstains where the evidence is weak (conf/composer/)."""

from neurocl.composer.answers import (Answer, Composer, Evidence, KeepMemoryAnswers, LabelSpikes, Margin,
                                      ScoreThreshold, TargetCoverage, Unknown, answer_metrics)

__all__ = ["Answer", "Composer", "Evidence", "KeepMemoryAnswers", "LabelSpikes", "Margin", "ScoreThreshold",
           "TargetCoverage", "Unknown", "answer_metrics"]
