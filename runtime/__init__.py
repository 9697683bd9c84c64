"""Streaming inference runtime: tile planner, backends, pipeline, ``Enhancer``, ``resin-run``.

Never imports torch at module import.
"""
