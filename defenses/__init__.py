"""Front-end defenses; importing the package (Frontline does so through its ``frontline.defenses`` entry
point) registers the built-in ones."""

from defenses import aaa as aaa
from defenses import bit_depth as bit_depth
from defenses import denoised_smoothing as denoised_smoothing
from defenses import irs as irs
from defenses import jat as jat
from defenses import jpeg as jpeg
from defenses import none as none
from defenses import robustifier as robustifier
from defenses import rtfe as rtfe
from defenses import smoothing as smoothing
from defenses import static_denoiser as static_denoiser
