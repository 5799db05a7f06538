"""A mixin for the dataclasses that are saved as JSON/YAML (architecture, training options)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from vitkit.errors import VitkitError

T = TypeVar("T", bound="DictConfig")


class DictConfig:
    """``from_dict`` that names unknown keys in one line, and ``replace`` for dataclasses."""

    #: What the keys are called in the error message, e.g. "ViTConfig fields".
    _keys_are: ClassVar[str] = "fields"

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        cls.check_mapping(data)
        return cls(**data)

    @classmethod
    def check_mapping(cls, data: dict[str, Any]) -> None:
        """Refuse unknown keys, and values their field's option definition does not allow."""
        from vitkit.options import field_options

        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VitkitError(f"unknown {cls._keys_are}: {', '.join(map(str, unknown))}")
        for name, option in field_options(cls).items():
            if name in data:
                option.check(data[name], name)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)
