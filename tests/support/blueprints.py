"""Reading Authentik blueprints in tests: its YAML tags become ``infra.sso.Tag`` values."""

from __future__ import annotations

from typing import Any

import yaml

from infra.sso import Tag

# every tag Authentik's BlueprintLoader knows (contracts/authentik.yaml blueprint_tags lists
# the ones we may write; reading all of them lets a test say which one was used)
AUTHENTIK_TAGS = ("!KeyOf", "!Find", "!FindObject", "!Context", "!Format", "!Condition", "!If",
                  "!Env", "!File", "!Enumerate", "!Value", "!Index", "!AtIndex", "!ParseJSON")


class BlueprintLoader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tag:
    if isinstance(node, yaml.SequenceNode):
        return Tag(node.tag, loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return Tag(node.tag, loader.construct_mapping(node, deep=True))
    return Tag(node.tag, loader.construct_scalar(node))  # type: ignore[arg-type]


BlueprintLoader.add_multi_constructor("!", _construct)


def load_blueprint(text: str) -> Any:
    return yaml.load(text, Loader=BlueprintLoader)
