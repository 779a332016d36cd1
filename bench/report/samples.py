"""What each front-end does to an image: a few test images, the front-end's output and their absolute
difference, the way Cann et al. (2022), Fig. 4 show it.

The front-ends are rebuilt from their stored artifacts (their weights) and run on the first few images of
the test split, on the CPU, without gradients: a few forward passes, so the report stays quick. A report
rendered where the artifact folder or the data is not (another machine, a copied ``results.db``) says so
per front-end instead of drawing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.api import DATASETS, DEFENSES, FrontEnd, ImageData, load_plugins
from bench.artifacts import ArtifactStore
from bench.errors import BenchError
from bench.report.data import RunView
from bench.report.format import row_label
from bench.report.plots import Plot, inline_svg, panels, style
from bench.storage import Store

#: Test images shown per front-end.
SAMPLES = 3
_NOT_AVAILABLE = "artifacts not available"


@dataclass
class Samples:
    plots: list[Plot] = field(default_factory=list)
    #: (front-end, why it has no pictures).
    missing: list[tuple[str, str]] = field(default_factory=list)


class _Unavailable(Exception):
    """Why one front-end cannot be shown; the others still are."""


def _dataset(view: RunView, label: str, config: dict[str, object]) -> str:
    """The data the front-end was trained on, else the guides' data of the cells it was evaluated in."""
    name = config.get("dataset")
    if isinstance(name, str):
        return name
    for c in view.cells:
        if c.defense == label:
            return c.train_dataset
    raise _Unavailable("no dataset recorded for it")


def _front_end(
    store: Store, artifacts: ArtifactStore | None, key: str, config: dict[str, object]
) -> FrontEnd:
    """The front-end a job trained (every front-end job stores one, trained or not), rebuilt from its config
    and weights. What is missing is found out before the plug-ins are imported, which costs seconds that a
    report without artifacts should not spend."""
    stored = {a.name: a for a in store.completed_artifacts(key) or []}
    weights = stored.get("frontend")
    if weights is None:
        raise _Unavailable(_NOT_AVAILABLE)
    if artifacts is None or not artifacts.intact(weights):
        raise _Unavailable(f"{_NOT_AVAILABLE} ({weights.path} is not in the artifact folder)")
    shape = config.get("input_shape")
    if not isinstance(shape, list | tuple) or len(shape) != 3:
        raise _Unavailable("no input shape recorded for it")
    load_plugins()
    kind = str(config.get("kind", ""))
    if kind not in DEFENSES:
        raise _Unavailable(f"defense kind {kind!r} is not installed here")
    cls = DEFENSES.get(kind)
    params = cls.Params.model_validate(config.get("params", {}))
    fe = cls().build(params, (int(shape[0]), int(shape[1]), int(shape[2])))
    fe.load_state_dict(artifacts.read_tensors(weights))
    fe.eval()
    fe.reseed(0)
    return fe


def sample_plot(label: str, name: str, x: torch.Tensor, y: torch.Tensor, anchor: str) -> Plot:
    """Input, output and |difference| of each image of ``x`` (NCHW in [0, 1]) and its output ``y``."""
    diff = (y - x).abs().mean(dim=1)
    shown = y.clamp(0, 1)
    top = float(diff.max()) or 1.0
    with style():
        fig, axes = panels(3 * len(x), cols=3)
        fig.set_size_inches(4.2, 1.45 * len(x))
        for i in range(len(x)):
            cells = [(x[i], "input"), (shown[i], "front-end output")]
            for ax, (image, title) in zip(axes[3 * i : 3 * i + 2], cells, strict=True):
                if image.shape[0] == 1:
                    ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                else:
                    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_title(title if i == 0 else "", fontsize=8)
            heat = axes[3 * i + 2].imshow(
                diff[i].numpy(), cmap="magma", vmin=0, vmax=top, interpolation="nearest"
            )
            axes[3 * i + 2].set_title("|difference|" if i == 0 else "", fontsize=8)
            for ax in axes[3 * i : 3 * i + 3]:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
        fig.colorbar(heat, ax=axes, shrink=0.6, label="|output - input|")
        title = f"{label}: what the front-end does to {name} test images"
        return Plot(
            anchor,
            title,
            f"The first {len(x)} {name} test images, the front-end's output (shown clipped to [0, 1]) "
            "and the absolute difference per pixel, averaged over channels, on one colour scale up to its "
            f"largest value ({top:.3g}). As in Cann et al. (2022), Fig. 4.",
            inline_svg(fig, anchor, title),
        )


def front_end_samples(
    store: Store, view: RunView, artifacts: ArtifactStore | None, data_root: Path | None, start: int
) -> Samples:
    """One picture per front-end job of the run (the undefended ``none`` has nothing to show), numbered from
    plot ``start`` on."""
    out = Samples()
    jobs = {str(f["key"]): f for f in view.frontends if f["config"].get("kind") != "none"}
    loaded: dict[str, ImageData] = {}

    def images(name: str) -> ImageData:
        if name not in loaded:
            if data_root is None or name not in DATASETS:
                raise _Unavailable(f"the {name} test images are not available here")
            try:
                loaded[name] = DATASETS.get(name).load(data_root, "test", False)
            except (BenchError, OSError) as exc:
                raise _Unavailable(f"the {name} test images are not available here ({exc})") from exc
        return loaded[name]

    for key, f in jobs.items():
        label = row_label(str(f["label"]), [str(g) for g in f["guides"]])
        try:
            config = dict(f["config"])
            name = _dataset(view, str(f["label"]), config)
            fe = _front_end(store, artifacts, key, config)
            data = images(name)
            x = data.images[:SAMPLES].float().div(255.0)
            with torch.no_grad():
                y = fe(x)
            out.plots.append(sample_plot(label, name, x, y, f"plot-{start + len(out.plots)}"))
        except _Unavailable as why:
            out.missing.append((label, str(why)))
        except (BenchError, RuntimeError, ValueError) as exc:
            # A stale or foreign artifact (another version's layers, say): the rest of the report renders.
            out.missing.append((label, f"could not be run here: {exc}"))
    return out
