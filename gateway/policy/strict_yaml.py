"""YAML for signed documents, read strictly: a duplicated key (PyYAML keeps the last one) or a
merge key (``<<``, which pulls in values from elsewhere in the file) makes what a signer reads
differ from what the gateway applies, so both are refused rather than resolved."""

from __future__ import annotations

from typing import Any

import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictYamlError(ValueError):
    pass


class _StrictLoader(yaml.SafeLoader):
    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                raise StrictYamlError(f"line {key_node.start_mark.line + 1}: merge keys (<<) are not allowed")
        super().flatten_mapping(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base constructor reports it
                break
            if duplicate:
                raise StrictYamlError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)




def load_strict(data: bytes | str) -> Any:
    """``yaml.safe_load`` that refuses duplicate and merge keys (StrictYamlError) and reports other
    syntax errors as yaml.YAMLError."""
    return yaml.load(data, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
