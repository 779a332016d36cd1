"""The built-in attacks; importing this package (Frontline does so through its ``frontline.attacks`` entry
point) registers them with :data:`bench.api.ATTACKS`."""

from bench.attacks import autoattack as autoattack
from bench.attacks import cw as cw
from bench.attacks import pgd as pgd
from bench.attacks import smoothed_pgd as smoothed_pgd
from bench.attacks import square as square
from bench.attacks import transfer as transfer
