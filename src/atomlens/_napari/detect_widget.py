"""The "Detect atoms" dock: U-Net probability maps and atoms from an image layer.

Thin shell: gathers parameters, runs :func:`atomlens.atoms.detect`'s generator form on
a napari worker thread, and turns its result into layers: a Points layer whose features
are the atom table, coloured by species, and (with "show probability maps", off by
default) one probability map per class. The maps are a view, not part of the result:
they change no atom, so the choice is not recorded in the recipe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    ProgressBar,
    PushButton,
)
from napari.utils.notifications import show_info, show_warning

from atomlens._napari._base import ViewerWidget, note_label, set_note, status_label
from atomlens._napari._layers import (
    atomlens_kind,
    atomlens_meta,
    current_frame,
    layer_pixel_size,
    layer_stack,
    pixel_size_of,
    record_pixel_size,
)
from atomlens._napari._workers import add_layers_in_turns, notify_error, start_generator
from atomlens._napari.key_dock import ensure_key_dock
from atomlens.viz.layers import atoms_layer_tuple, probability_layer_tuples


def detection_events(
    stack: Any,
    model_path: str | None,
    frames: list[int] | None,
    threshold: float,
    stop: threading.Event | None = None,
    pixel_size: float | None = None,
    species: str = "model",
    contrast_classes: str = "auto",
    class_names: str = "",
    place: LayerPlace | None = None,
    maps: bool = True,
    spot_scale: str = "auto",
    refine: str = "gaussian",
    tta: int = 1,
) -> Generator:
    """The headless detect workflow (:func:`atomlens.workflows.detect.run`, maps kept),
    yielding its :class:`~atomlens.workflows.Progress` per frame; returns the
    :class:`~atomlens.workflows.detect.DetectResult`, the list of frames done and (with
    ``place``) the result's layers, made here on the worker (:func:`result_layer_tuples`,
    :func:`~atomlens._napari._workers.make_layers`) so the main thread only adds them. When
    ``stop`` is set, detection ends after the current frame and the frames done are kept.
    ``species='contrast'``: atoms are named by their integrated intensity
    (``contrast_classes``: a number or 'auto'; ``class_names``: 'S2,Mo', dimmest first).
    ``maps``: keep the probability maps (``(T, C, Y, X)`` float32) and make their layers.
    ``spot_scale``: ``"auto"`` or ``"off"`` (spot-width resampling for models that ask for
    it, :mod:`atomlens.atoms.spot_scale`). ``refine``: sub-pixel position refinement
    (gaussian, com, none); ``tta``: probability maps averaged over this many orientations
    (1 or 8)."""
    from atomlens.workflows import detect

    recipe = detect.DetectRecipe(
        model=model_path,
        threshold=float(threshold),
        species=species,
        contrast_classes=str(contrast_classes),
        class_names=str(class_names or ""),
        spot_scale=str(spot_scale),
        refine=str(refine),
        tta=int(tta),
    )
    result = yield from detect.run(
        stack, recipe, frames, pixel_size=pixel_size, stop=stop, maps=bool(maps)
    )
    done = list(result.frames)
    if place is None:
        return result, done, []
    from atomlens._napari._workers import make_layers

    return result, done, make_layers(result_layer_tuples(result, done, place))


@dataclass(frozen=True)
class LayerPlace:
    """Where the result layers of an image layer go, read on the main thread when Run is
    pressed: its ``name``, pixel size (Å/px, None = pixels), ``translate`` (t, y, x) and
    time ``t_step``, and whether the pixel size was ``typed`` into the dock."""

    name: str
    pixel_size: float | None
    translate: tuple[float, float, float]
    t_step: float = 1.0
    typed: bool = False

    @classmethod
    def of(cls, layer: Any, typed: bool = False) -> LayerPlace:
        if layer is None:
            return cls("image", None, (0.0, 0.0, 0.0), 1.0, typed)
        # draw in the image layer's own units (Å if it is calibrated, else pixels), so the
        # results lie on the image; the pixel size used goes into the metadata
        px = layer_pixel_size(layer)
        if layer.ndim == 3:
            t_off, y_off, x_off = (float(v) for v in layer.translate)
            return cls(layer.name, px, (t_off, y_off, x_off), float(layer.scale[0]), typed)
        y_off, x_off = (float(v) for v in layer.translate[-2:])
        return cls(layer.name, px, (0.0, y_off, x_off), 1.0, typed)


def stale_maps(viewer: Any, layers: list[Any]) -> list[Any]:
    """Probability maps of an earlier run on the same image that this run does not
    replace (maps not asked for this time, or another model's classes): they no longer
    match the new atoms, so they go."""
    names = {layer.name for layer in layers}
    sources = {atomlens_meta(layer).get("source") for layer in layers} - {None}
    return [
        layer
        for layer in list(viewer.layers)
        if atomlens_kind(layer) == "probability"
        and atomlens_meta(layer).get("source") in sources
        and layer.name not in names
    ]


def result_layer_tuples(result: Any, frames: list[int], place: LayerPlace) -> list[Any]:
    """Layer tuples of a detection: one probability map per class (maps of the current
    frame only sit at that frame in time) and the atoms, at the image layer's place."""
    t_off, y_off, x_off = place.translate
    t0 = float(frames[0]) if frames else 0.0
    tuples = []
    if result.maps is not None:
        classes = tuple(result.classes)
        for tup in probability_layer_tuples(
            result.maps, classes, place.pixel_size, source=place.name
        ):
            tup[1]["translate"] = (t_off + t0 * place.t_step, y_off, x_off)
            tuples.append(tup)
    tup = atoms_layer_tuple(
        result.atoms,
        place.pixel_size,
        f"atoms {place.name}",
        metadata={"atomlens": {"source": place.name}},
    )
    tup[1]["translate"] = (t_off, y_off, x_off)
    fwhm = (getattr(result, "spot_scale", None) or {}).get("fwhm_A")
    if fwhm and result.pixel_size:  # broad spots (3-4 Å single atoms): a marker of half
        # their width, not 0.5 Å (~1 screen pixel on a 512² frame at 0.3 Å/px)
        tup[1]["size"] = max(float(tup[1]["size"]), 0.5 * float(fwhm) / float(result.pixel_size))
    # the pixel size detection used, where every dock's resolver reads it (a typed value
    # is recorded as the user's)
    tup[1]["metadata"]["atomlens"]["pixel_size"] = float(result.pixel_size)
    tup[1]["metadata"]["atomlens"]["pixel_size_source"] = "user" if place.typed else "metadata"
    # the detector that found them: the Correct dock fine-tunes this one, not graphene
    tup[1]["metadata"]["atomlens"]["models"] = {"detector": detector_name(result)}
    tuples.append(tup)
    return tuples


def detector_name(result: Any) -> str:
    """The detector a detection ran: the recipe's shipped name or ``.pt`` path, or for
    'auto' (and None) the shipped model it chose (``graphene``, ``general``)."""
    model = getattr(getattr(result, "recipe", None), "model", None)
    if model not in (None, "", "auto"):
        return str(model)
    name = str(getattr(result, "model_name", "") or "")
    card = getattr(result, "model_card", None) or {}
    return name or str(card.get("registry_name") or "graphene")


def gui_wording(warning: str) -> str:
    """A detection warning in the dock's words: the CLI's ``--model general``,
    ``--pixel-size`` and ``(atomlens finetune)`` become this dock's model box, pixel size
    field and the Correct atoms dock."""
    import re

    text = re.sub(r"--model ([\w.-]+)", r"model '\1' in this dock", warning)
    text = text.replace("--pixel-size", "the pixel size (Å) field")
    return text.replace("(atomlens finetune)", "(Correct atoms dock)")


def calibration_job(stack: Any, lattice: str) -> Generator:
    """:func:`atomlens.chem.calibrate.calibrate_pixel_size` of ``stack`` (the lattice
    calibration on up to 16 frames spread over the movie, as ``atomlens calibrate``), the
    stack's stated pixel size compared; returns the
    :class:`~atomlens.chem.calibrate.Calibration`."""
    from atomlens.chem.calibrate import calibrate_pixel_size

    yield f"calibrating from the {lattice} lattice"
    return calibrate_pixel_size(stack, lattice)


def recipe_field(name: str) -> Any:
    """The :class:`~atomlens.workflows.detect.DetectRecipe` field ``name`` (its default and
    ``metadata["choices"]``), so the dock offers what the recipe accepts."""
    from atomlens.workflows.detect import DetectRecipe

    return next(f for f in fields(DetectRecipe) if f.name == name)


def model_choices() -> list[str]:
    """'auto', the shipped models present (graphene, general), and 'file'."""
    from atomlens.segment.registry import model_names

    return ["auto", *model_names(), "file"]


class DetectWidget(ViewerWidget):
    """Pick an image, a detector (shipped default or a file), frames and a threshold; Run."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.image = self.layer_picker(
            "image", "image", lambda lay: lay.ndim in (2, 3) and not lay.rgb
        )
        self.model = ComboBox(label="model", choices=model_choices(), value="auto")
        self.model.tooltip = (
            "auto: chosen from the image (graphene for HAADF graphene, else "
            "general); graphene: C/Si; general: atom columns in any material, "
            "HAADF and ABF; file: the .pt below"
        )
        self.model_file = FileEdit(label="model (.pt)", filter="*.pt", value="")
        self.model_file.tooltip = "a detector file; used when model is 'file' (or set)"
        self.frames = ComboBox(label="frames", choices=["current", "all"], value="current")
        self.threshold = FloatSpinBox(label="threshold", min=0.05, max=0.95, step=0.05, value=0.5)
        self.pixel_size = FloatSpinBox(
            label="pixel size (Å)", min=0.0, max=10.0, step=0.001, value=0.0
        )
        self.pixel_size.native.setDecimals(4)
        self.pixel_size.tooltip = "0: use the image layer's calibration (its scale in Å)"
        self.lattice = ComboBox(
            label="lattice", choices=["graphene", "mos2", "srtio3"], value="graphene"
        )
        self.lattice.tooltip = (
            "the crystal 'Calibrate pixel size' measures: graphene (a = 2.46 Å), mos2 "
            "(a = 3.16 Å, also WS2, MoSe2 roughly) or srtio3 (square, a = 3.905 Å, along "
            "[001] or [110])"
        )
        self.calibrate_button = PushButton(text="Calibrate pixel size")
        self.calibrate_button.tooltip = (
            "measure Å per pixel from the lattice (atoms in real space, then the FFT spots; "
            "atomlens calibrate) and, when sure, put it in the pixel size field: files "
            "often state it a few % off"
        )
        self._calibrated: float | None = None  # the value the last calibration set
        self.species = ComboBox(
            label="species", choices=["model classes", "from contrast"], value="model classes"
        )
        self.species.tooltip = (
            "model classes: the detector's (e.g. C/Si); from contrast: "
            "each atom's integrated intensity, clustered (any material)"
        )
        self.n_classes = ComboBox(
            label="contrast classes", choices=["auto", "1", "2", "3", "4", "5", "6"], value="auto"
        )
        self.n_classes.tooltip = "how many species; auto: chosen by ICL (atom-counting style)"
        self.class_names = LineEdit(label="class names", value="")
        self.class_names.tooltip = (
            "names from dimmest to brightest, e.g. S2,Mo; used by the next detection (with "
            "contrast classes 'auto': one class per name), or by 'Name classes' on the "
            "atoms already found"
        )
        self.name_button = PushButton(text="Name classes")
        self.name_button.tooltip = (
            "give the contrast classes of the atoms layer these names (no new detection): "
            "the layer's species, colours, colour key and saved tables follow"
        )
        self.spot_scale = ComboBox(label="spot scale", choices=["auto", "off"], value="auto")
        self.spot_scale.tooltip = (
            "auto: for the general model, measure how wide the atoms' spots are and, when "
            "they are much broader than it was trained on (defocus, low resolution), show "
            "it the image at a scale where they are not (said after detection); off: never"
        )
        refine = recipe_field("refine")  # the recipe's choices and default
        self.refine = ComboBox(
            label="position", choices=list(refine.metadata["choices"]), value=refine.default
        )
        self.refine.tooltip = (
            "sub-pixel position of each atom on the raw image: gaussian fit (with a "
            "position uncertainty), centre of mass, or none (the network's peak)"
        )
        self.tta = CheckBox(text="average 8 orientations (8x slower)", value=False)
        self.tta.tooltip = (
            "run the network on the 8 flips/quarter turns of the image and average its "
            "maps: steadier on faint columns; ticking it applies the model card's "
            "cross-validated threshold and position where it has one (general: 0.4, none)"
        )
        self.tta.changed.connect(self._tta_toggled)
        self.show_maps = CheckBox(text="show probability maps", value=False)
        self.show_maps.tooltip = (
            "also add one probability-map image per class (P(C), P(Si), ...); off: only "
            "the atoms (the atoms are the same either way)"
        )
        self.run_button = PushButton(text="Detect atoms")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.stop_button.tooltip = "end after the current frame; the frames done are kept"
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = status_label()
        # the model that ran and why (auto choice, dark atoms inverted), the contrast
        # classes found: several lines, where the one-line status would cut them off
        self.note = note_label()
        self.note.visible = False  # until a run has something to say
        self.extend(
            [
                self.image,
                self.model,
                self.model_file,
                self.frames,
                self.threshold,
                self.spot_scale,
                self.refine,
                self.tta,
                self.pixel_size,
                Container(widgets=[self.lattice, self.calibrate_button], layout="horizontal"),
                self.species,
                self.n_classes,
                self.class_names,
                self.name_button,
                self.show_maps,
                Container(
                    widgets=[self.run_button, self.stop_button], layout="horizontal", labels=False
                ),
                self.progress,
                self.status,
                self.note,
            ]
        )
        self.run_button.changed.connect(self.run)
        self.name_button.changed.connect(lambda: self.name_classes())
        self.calibrate_button.changed.connect(lambda: self.calibrate())
        self.stop_button.changed.connect(self.stop)
        self._stop = threading.Event()
        self._t0 = 0.0
        self.worker: Any = None
        self._source = None
        self._typed_px: float | None = None  # the pixel size typed for the running job
        self.results_shown = False  # the last run's layers are in the viewer
        self.points: Any = None  # the last run's atoms layer
        self._result: Any = None  # the last run's DetectResult
        self._species_model: dict = {}  # its contrast mixture (summary), if any

    def _tta_toggled(self, on: bool) -> None:
        """Ticking 'average 8 orientations' takes the chosen model's cross-validated
        threshold and position refinement from its card (said in the status line)."""
        if not on:
            return
        from atomlens.segment.registry import cross_validated_tta

        # {} for 'auto' and 'file': which model runs is only known then
        setting = cross_validated_tta(str(self.model.value))
        if setting:
            self.threshold.value = float(setting.get("threshold", self.threshold.value))
            self.refine.value = str(setting.get("refine", self.refine.value))
            self.status.value = f"card: threshold {self.threshold.value:g}, {self.refine.value}"
            self.status.tooltip = (
                f"8 orientations: threshold {self.threshold.value:g} and position "
                f"{self.refine.value}, the model card's cross-validated setting"
            )

    def _model_path(self) -> str | None:
        """The model to run: a chosen .pt file, else the registry name ('auto', ...)."""
        value = self.model_file.value
        text = str(value) if value is not None else ""
        path = text if text not in ("", ".") and Path(text).is_file() else None
        choice = str(self.model.value)
        if choice == "file" or (path is not None and choice == "auto"):
            return path or "auto"
        return choice

    def run(self) -> Any:
        """Start detection on a worker thread; returns the worker (None if nothing to do)."""
        layer = self.image.value
        if layer is None:
            notify_error(
                ValueError(
                    "no image layer: open a STEM movie first (File > Open, or "
                    "File > Open Sample > AtomLens)"
                ),
                "Detect atoms",
            )
            return None
        if pixel_size_of(layer) is None and not self.pixel_size.value > 0:
            notify_error(
                ValueError(
                    f"'{layer.name}' has no pixel size: type it into this dock's "
                    "'pixel size (Å)' field"
                ),
                "Detect atoms",
            )
            return None
        try:
            stack = layer_stack(layer)
        except ValueError as exc:
            notify_error(exc, "Detect atoms")
            return None
        user_px = float(self.pixel_size.value) if self.pixel_size.value > 0 else None
        # typed now, or typed before and recorded on the image: the user's either way
        earlier = stack.pixel_size if stack.pixel_size_source == "user" else None
        self._typed_px = user_px if user_px is not None else earlier
        frames = [current_frame(self.viewer, layer)] if self.frames.value == "current" else None
        n = 1 if frames is not None else stack.n_frames
        self.progress.max, self.progress.value = n, 0
        self.status.value = "running..."
        self.run_button.enabled, self.stop_button.enabled = False, True
        self._source = layer
        self.results_shown = False
        place = LayerPlace.of(layer, typed=self._typed_px is not None)
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self.worker = start_generator(
            detection_events,
            stack,
            self._model_path(),
            frames,
            float(self.threshold.value),
            self._stop,
            user_px,
            species="contrast" if self.species.value == "from contrast" else "model",
            contrast_classes=str(self.n_classes.value),
            class_names=str(self.class_names.value or ""),
            place=place,
            maps=bool(self.show_maps.value),
            spot_scale=str(self.spot_scale.value),
            refine=str(self.refine.value),
            tta=8 if self.tta.value else 1,
            on_yield=self._on_progress,
            on_return=self._on_result,
            on_error=lambda exc: setattr(self.status, "value", "failed"),
            on_finish=self._after,
            what="Detect atoms",
        )
        return self.worker

    def stop(self) -> None:
        """End detection after the current frame; the frames done become layers."""
        self._stop.set()
        self.status.value = "stopping after this frame..."

    def _after(self) -> None:
        self.run_button.enabled, self.stop_button.enabled = True, False

    def _on_progress(self, event: Any) -> None:
        done = int(getattr(event, "done", 0))
        total = int(getattr(event, "total", None) or max(done, 1))
        self.progress.max, self.progress.value = total, done
        elapsed = time.perf_counter() - self._t0
        left = elapsed / max(done, 1) * (total - done)
        self.status.value = f"{getattr(event, 'message', '')}; {done}/{total}, ~{left:.0f} s left"
        if done >= total and self.species.value == "from contrast":  # (seconds, no events)
            self.status.value = f"{done}/{total} frames; species from contrast..."

    def _on_result(self, outcome: tuple[Any, list[int], list[Any]]) -> None:
        result, frames, layers = outcome
        layer = self._source
        # a typed pixel size is recorded as the user's on the image too: Defects,
        # Subimages... read it through the docks' one resolver
        if self._typed_px is not None:
            record_pixel_size(layer, result.pixel_size, "user")
        # the layers were made on the worker; one per turn of the event loop: no single
        # long main-thread stall
        add_layers_in_turns(
            self.viewer,
            layers,
            lambda added: self._shown(result, frames, added[-1]),
            stale=stale_maps(self.viewer, layers),
        )

    def _shown(self, result: Any, frames: list[int], points: Any) -> None:
        """The layers are in: status, warnings, select the atoms, the colour key."""
        atoms = result.atoms
        self.progress.value = self.progress.max if not self._stop.is_set() else len(frames)
        stopped = " (stopped: frames done kept)" if self._stop.is_set() else ""
        choice = getattr(result, "model_choice", "")
        # (the model and why: in the note below, where it is not cut off)
        self.status.value = f"{len(atoms)} atoms in {len(frames)} frame(s){stopped}"
        self.points = points
        self._result = result
        self._species_model = dict(getattr(result, "species_model", None) or {})
        set_note(self.note, self._note_text(atoms))
        spot = getattr(result, "spot_scale", None) or {}
        if float(spot.get("factor", 1.0)) != 1.0:  # the image was shown at another scale
            self.status.value += f"; spots resampled x{float(spot['factor']):.2g}"
            show_info(f"Detect atoms: {spot.get('why', '')}")
        self.status.tooltip = choice + (f"\n{spot['why']}" if spot.get("why") else "")
        for warning in getattr(result, "warnings", []):  # the model may not fit this image
            show_warning(f"Detect atoms: {gui_wording(warning)}")
        if points in self.viewer.layers:  # (not replaced or removed meanwhile)
            self.viewer.layers.selection.active = points
        ensure_key_dock(self.viewer)
        self.results_shown = True

    def _note_text(self, atoms: Any) -> str:
        """The note under the status: the model and why, the model-fit warnings, then
        the contrast classes."""
        from atomlens._napari.detect_notes import contrast_note, model_note, pixel_note

        result = getattr(self, "_result", None)
        source = "user" if self._typed_px is not None else "metadata"
        if self._typed_px is not None and self._typed_px == self._calibrated:
            source = "calibration"
        if source == "metadata" and self._source is not None:
            source = str(atomlens_meta(self._source).get("pixel_size_source") or source)
        lines = [model_note(result), pixel_note(getattr(result, "pixel_size", None), source)]
        # the model-fit warnings stay here after their notification has gone
        lines += [f"warning: {gui_wording(w)}" for w in getattr(result, "warnings", None) or []]
        inverted = bool(getattr(result, "inverted", False))
        lines.append(contrast_note(atoms, self._species_model, inverted))
        return "\n".join(line for line in lines if line)

    def calibrate(self) -> Any:
        """Measure the picked image's pixel size from the chosen lattice on a worker
        (:func:`calibration_job`); when sure, the value goes into the pixel size field.
        Returns the worker (None on a one-line error)."""
        layer = self.image.value
        if layer is None:
            notify_error(ValueError("no image layer: open a STEM image first"), "Calibrate")
            return None
        try:
            stack = layer_stack(layer)
        except ValueError as exc:
            notify_error(exc, "Calibrate")
            return None
        lattice = str(self.lattice.value)
        self.calibrate_button.enabled = False
        self.status.value = f"calibrating from the {lattice} lattice..."
        return start_generator(
            calibration_job,
            stack,
            lattice,
            on_return=lambda cal: self._calibrated_to(cal, lattice),
            on_error=lambda exc: setattr(self.status, "value", "calibration failed"),
            on_finish=lambda: setattr(self.calibrate_button, "enabled", True),
            what="Calibrate",
        )

    def _calibrated_to(self, cal: Any, lattice: str) -> None:
        from atomlens._napari.detect_notes import calibration_note

        if cal.sure:
            self.pixel_size.value = round(float(cal.pixel_size), 4)
            self._calibrated = float(self.pixel_size.value)
        self.status.value = (
            f"pixel size {cal.pixel_size:.4g} Å/px" if cal.sure else "calibration unsure"
        )
        set_note(self.note, calibration_note(cal, lattice))

    def _named_layer(self) -> Any:
        """The atoms layer 'Name classes' renames: the last run's (if still in the
        viewer), else the picked image's ``atoms <image>`` layer."""
        from atomlens._napari._layers import layer_named

        if self.points is not None and self.points in self.viewer.layers:
            return self.points
        image = self.image.value
        return layer_named(self.viewer, f"atoms {image.name}") if image is not None else None

    def name_classes(self) -> Any:
        """Give the contrast classes of the atoms layer the names typed in 'class names'
        (dimmest first), without detecting again: its ``cls`` feature, species colours and
        colour key change; returns the layer (None on a one-line error)."""
        from atomlens._napari._layers import apply_colour, layer_atoms, merge_features
        from atomlens.atoms.contrast import ContrastError, name_classes
        from atomlens.viz.colours import colour_spec

        layer = self._named_layer()
        try:
            if layer is None or "contrast_class" not in layer.features:
                raise ContrastError(
                    "no atoms with contrast classes: set species to 'from contrast' and "
                    "press Detect atoms first"
                )
            names = str(self.class_names.value or "").strip()
            if not names:
                raise ContrastError("type the class names first, dimmest first (e.g. S2,Mo)")
            atoms = layer_atoms(layer)
            k = int(self._species_model.get("k") or atoms["contrast_class"].max() + 1)
            named = name_classes(atoms, names, k=k)
        except ContrastError as exc:
            notify_error(exc, "Name classes")
            return None
        from atomlens._napari._reuse import REPLACED, replacing

        # the species are a Correct session's own column: written as a new result of the
        # same detection (REPLACED), so a session editing this layer restarts from the
        # named table instead of drawing its old names back on the next edit
        with replacing(layer):
            merge_features(layer, named[["cls"]])
            apply_colour(layer, colour_spec("cls", layer.features["cls"]))
        REPLACED.replaced.emit(layer)
        self.points = layer
        set_note(self.note, self._note_text(layer_atoms(layer)))
        self.status.value = "named: " + ", ".join(map(str, named["cls"].cat.categories))
        return layer
