"""What the harness may use of the classifier package: the registry, the model wrapper and the loaders.

``bench`` imports only this module and the registry, never a concrete architecture module, so the zoo can be
reorganised freely behind it.
"""

from classifiers.adapters import SOURCES, check_external, load_external
from classifiers.base import Classifier, Recipe, build_classifier, count_correct, freeze
from classifiers.registry import CLASSIFIERS, RECIPES, ArchSpec
from classifiers.weights import load_classifier_weights, load_into, load_state_dict_file

__all__ = [
    "CLASSIFIERS",
    "RECIPES",
    "SOURCES",
    "ArchSpec",
    "Classifier",
    "Recipe",
    "build_classifier",
    "check_external",
    "count_correct",
    "freeze",
    "load_classifier_weights",
    "load_external",
    "load_into",
    "load_state_dict_file",
]
