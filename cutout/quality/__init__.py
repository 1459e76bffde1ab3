"""Masks beyond one look at 320 px: the ``quality`` settings (mirrored looks, model fusion, a zoom
pass on each subject) and the confidence score each frame's mask carries."""

from .passes import Deferred
from .settings import (AUTO, CHOICES, DEFAULT_QUALITY, PARTNERS, QUALITIES, FrameResult, Plan, auto_quality,
                       auto_summary, partner_session, plan_for, predict_frame_quality)

__all__ = ["AUTO", "CHOICES", "DEFAULT_QUALITY", "Deferred", "PARTNERS", "QUALITIES", "FrameResult", "Plan",
           "auto_quality", "auto_summary", "partner_session", "plan_for", "predict_frame_quality"]
