"""Moved to toolkit/torchvision_compat.py (knowledge and agents need it without fusion_models).

Re-exported here only while branches written against the old path (agents/llm) merge; import the toolkit one.
"""

from toolkit.torchvision_compat import ensure_torchvision

__all__ = ["ensure_torchvision"]
