"""Moderation backends: adapters that score an image (``port.Moderator``).

Each adapter maps its own labels to the categories of ``domain.moderation``; the
verdict (thresholds) is the domain's, the job around it is ``services.moderation``'s.
The container picks one by ``MODERATION``.
"""
