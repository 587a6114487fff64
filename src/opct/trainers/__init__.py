"""Trainers, one config + trainer pair per method (TRL style)."""

from opct.trainers.act import ACTConfig, ACTTrainer
from opct.trainers.bct import BCTConfig, BCTTrainer
from opct.trainers.opct import OPCTConfig, OPCTTrainer
from opct.trainers.selftrain import SelfTrainConfig, SelfTrainTrainer

TRAINERS = {"opct": (OPCTConfig, OPCTTrainer), "sft": (BCTConfig, BCTTrainer), "act": (ACTConfig, ACTTrainer),
            "selftrain": (SelfTrainConfig, SelfTrainTrainer)}

__all__ = ["ACTConfig", "ACTTrainer", "BCTConfig", "BCTTrainer", "OPCTConfig", "OPCTTrainer", "SelfTrainConfig",
           "SelfTrainTrainer", "TRAINERS"]
