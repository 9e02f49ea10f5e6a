"""Registered head types; importing the package registers classification, ordinal and survival."""

from fusion_models.task_heads.base import (
    TaskCalibration,
    TaskHead,
    TaskSpec,
    list_task_heads,
    register_task_head,
    task_head,
)
from fusion_models.task_heads import classification, ordinal, survival  # noqa: F401,E402  (register)

__all__ = ["TaskCalibration", "TaskHead", "TaskSpec", "list_task_heads", "register_task_head", "task_head"]
