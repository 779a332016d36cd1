"""Classifier zoo: architectures (``classifiers.archs``), training recipes and model-zoo adapters.

Importing the package (Frontline does so through its ``frontline.classifiers`` entry point) registers every
built-in architecture, recipe and model source; the harness only talks to the registries in ``bench.api``.
"""

from classifiers import adapters as adapters
from classifiers import archs as archs
from classifiers import training as training
