"""Randomized-smoothing certification (Cohen et al. 2019): the smoothed classifier of a pipeline whose
front-end declares :class:`~bench.api.GaussianSmoothing`, its PREDICT and CERTIFY, and certified accuracy
per radius."""

from bench.certify.curve import RadiusRow, Rate, certified_accuracy, check_radii
from bench.certify.noise import GaussianNoise, noise_for
from bench.certify.params import DEFAULT_NOISE_BATCH, PRESETS, CertifyParams, CertifyPreset, check_alpha
from bench.certify.smoothed import (
    ABSTAIN,
    BasePredictor,
    Certificate,
    SmoothedClassifier,
    certify_each,
    example_generator,
    smoothed_pipeline,
)

__all__ = [
    "ABSTAIN",
    "DEFAULT_NOISE_BATCH",
    "PRESETS",
    "BasePredictor",
    "Certificate",
    "CertifyParams",
    "CertifyPreset",
    "GaussianNoise",
    "RadiusRow",
    "Rate",
    "SmoothedClassifier",
    "certified_accuracy",
    "certify_each",
    "check_alpha",
    "check_radii",
    "example_generator",
    "noise_for",
    "smoothed_pipeline",
]
