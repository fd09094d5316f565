"""Typed, validated recipes: the settings of one workflow, recorded in every output.

A recipe is a dataclass whose fields carry their type (from the annotation) and,
where it matters, a range or a set of choices (:func:`setting`). Construction and
:meth:`Recipe.validate` raise :class:`atomlens.errors.SettingsError` naming the section
and field, e.g. ``"[latent] epochs must be an integer >= 1, got 0"``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from atomlens.errors import SettingsError

R = TypeVar("R", bound="Recipe")


def setting(
    default: Any = dataclasses.MISSING,
    *,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    choices: tuple | None = None,
    above: float | None = None,
    doc: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A recipe field with its range (``min``/``max`` inclusive, ``above`` exclusive),
    its allowed values (``choices``) and a one-line ``doc`` (units)."""
    meta = {"min": min, "max": max, "choices": choices, "above": above, "doc": doc}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "unset (None)"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a text"}.get(
        getattr(tp, "__name__", ""), getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, value converted to ``tp``) -- ints are accepted for floats, lists for tuples."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is Any:
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok and hasattr(value, "is_integer") and not isinstance(value, bool):
            ok = bool(value.is_integer())
            value = int(value) if ok else value
        return ok, int(value) if ok else value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = []
        for v in value:
            ok, cv = _coerce(v, item)
            if not ok:
                return False, value
            out.append(cv)
        return True, tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        kt, vt = typing.get_args(tp) or (Any, Any)
        out_d = {}
        for k, v in value.items():
            ok_k, ck = _coerce(k, kt)
            ok_v, cv = _coerce(v, vt)
            if not (ok_k and ok_v):
                return False, value
            out_d[ck] = cv
        return True, out_d
    return isinstance(value, tp), value


@dataclass
class Recipe:
    """Base of every workflow recipe: validated on construction and on :meth:`validate`.

    Subclasses set ``section`` (the name in the pipeline config and in error messages).
    """

    section: ClassVar[str] = "recipe"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self: R) -> R:
        """Check every field's type and range (converting ints to floats, lists to tuples);
        returns ``self``; raises :class:`SettingsError` naming the field."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            where = f"[{self.section}] {f.name}"
            ok, value = _coerce(value, hints.get(f.name, Any))
            if not ok:
                raise SettingsError(f"{where} must be {_type_name(hints[f.name])}, got {value!r}")
            object.__setattr__(self, f.name, value)
            m = f.metadata
            if value is None or isinstance(value, bool):
                continue
            if m.get("choices") is not None and value not in m["choices"]:
                choices = ", ".join(repr(c) for c in m["choices"])
                raise SettingsError(f"{where} must be one of {choices}, got {value!r}")
            if isinstance(value, int | float):
                lo, hi, above = m.get("min"), m.get("max"), m.get("above")
                if (
                    (lo is not None and value < lo)
                    or (hi is not None and value > hi)
                    or (above is not None and value <= above)
                ):
                    rng = []
                    if above is not None:
                        rng.append(f"> {above:g}")
                    if lo is not None:
                        rng.append(f">= {lo:g}")
                    if hi is not None:
                        rng.append(f"<= {hi:g}")
                    raise SettingsError(
                        f"{where} must be {_type_name(hints[f.name])} {' and '.join(rng)}, got {value!r}"
                    )
        self._check()
        return self

    def _check(self) -> None:
        """Cross-field rules of a subclass (raise :class:`SettingsError`)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON/TOML-able), for run.json, model cards and projects."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any] | None) -> R:
        """Build from a mapping; unknown keys raise (a typo must not be ignored)."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        bad = sorted(set(data) - known)
        if bad:
            names = ", ".join(f"'{b}'" for b in bad)
            raise SettingsError(
                f"unknown setting {names} in [{cls.section}]; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def replace(self: R, **changes: Any) -> R:
        """A validated copy with some fields changed (unknown names raise)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def docs(cls) -> dict[str, str]:
        """``{field: one-line doc}`` (units), for CLI help and GUI tooltips."""
        return {f.name: f.metadata.get("doc", "") for f in fields(cls)}


__all__ = ["Recipe", "setting"]
