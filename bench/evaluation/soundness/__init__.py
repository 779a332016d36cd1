"""Soundness checks; importing the package registers the built-in ones.

``basic`` holds the checks that read only the cell's stored evidence, ``carlini`` the ones that run extra
attacks (Carlini et al. 2019); the evidence they read and their registries are part of :mod:`bench.api`.
"""

from bench.evaluation.soundness import basic as basic
from bench.evaluation.soundness import carlini as carlini
