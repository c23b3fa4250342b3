"""Authentik configured from the catalogue: the blueprint held to Authentik's contract.

Authentik cannot run here. What its importer would do with our file is checked against what
contracts/authentik.yaml records from its source at the pin: the models and their fields, what
each needs on create, the enums, the tags and what !Find may look up, and the order !KeyOf
needs. What only a real Authentik can prove is listed in the README (Single sign-on).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import catalogue as cat
from infra import sso
from infra.contracts import load_contracts
from infra.errors import ConfigError
from infra.render import render_stacks
from tests.conftest import PROJECT_ROOT
from tests.support.blueprints import load_blueprint
from tests.support.rendering import PROFILES, load

pytestmark = pytest.mark.unit

CONTRACT = load_contracts(PROJECT_ROOT / "contracts")["AUTHENTIK_IMAGE"]
FACT = {name: fact.value for name, fact in CONTRACT.facts.items()}
MODELS: dict[str, Any] = FACT["blueprint_models"]
OBJECTS: dict[str, Any] = FACT["blueprint_objects"]


@pytest.fixture(scope="module", params=PROFILES)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Any, dict[str, Any]]:
    project = load(tmp_path_factory.mktemp("sso"), request.param)
    results = render_stacks(project)
    return project, results


def _blueprint(results: dict[str, Any]) -> dict[str, Any]:
    return load_blueprint(results["auth"].files[sso.BLUEPRINT_FILE])  # type: ignore[no-any-return]


def _tags(value: Any) -> list[sso.Tag]:
    if isinstance(value, sso.Tag):
        return [value, *_tags(value.value)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tags(v)]
    if isinstance(value, list):
        return [t for v in value for t in _tags(v)]
    return []


def test_every_entry_is_one_authentiks_importer_accepts(rendered: Any) -> None:
    project, results = rendered
    document = _blueprint(results)
    assert document["version"] == 1 and document["metadata"]["name"]
    seen_ids: set[str] = set()
    worker = project.catalogue["auth"].service("authentik-worker")
    secret_paths = set(sso.secret_files(project.catalogue, worker))
    for index, entry in enumerate(document["entries"]):
        where = f"entry {index} ({entry['model']})"
        model = MODELS.get(entry["model"])
        assert model is not None, f"{where}: not a model of the contract"
        assert entry.get("state", "present") in FACT["blueprint_states"], where
        given = {**entry.get("identifiers", {}), **entry.get("attrs", {})}
        assert set(given) <= set(model["fields"]), (where, set(given) - set(model["fields"]))
        managed = entry.get("identifiers", {}).get("managed")
        if entry.get("state") != "absent" and not managed:
            missing = set(model["required"]) - set(given)
            assert not missing, f"{where}: needs {missing} on create"
        for field, allowed in (model.get("enums") or {}).items():
            if field in given:
                assert given[field] in allowed, (where, field, given[field])
        for tag in _tags(entry):
            assert tag.name in FACT["blueprint_tags"], (where, tag.name)
            if tag.name == "!KeyOf":
                assert tag.value in seen_ids, f"{where}: !KeyOf {tag.value} before its entry"
            elif tag.name == "!Find":
                found_model, *lookups = tag.value
                assert found_model in MODELS, (where, found_model)
                for field, _ in lookups:
                    assert field in MODELS[found_model]["fields"], (where, found_model, field)
            elif tag.name == "!File":
                assert tag.value in secret_paths, f"{where}: the worker has no file {tag.value}"
        if "id" in entry:
            assert entry["id"] not in seen_ids
            seen_ids.add(entry["id"])


def test_what_the_blueprint_finds_by_name_is_what_the_image_makes(rendered: Any) -> None:
    _, results = rendered
    found: dict[str, set[str]] = {}
    for tag in _tags(_blueprint(results)["entries"]):
        if tag.name == "!Find":
            model, *lookups = tag.value
            for _, value in lookups:
                found.setdefault(model, set()).add(value)
    assert found["authentik_flows.flow"] <= set(OBJECTS["flows"])
    assert found["authentik_core.user"] == {OBJECTS["bootstrap_admin"]}
    assert found["authentik_providers_oauth2.scopemapping"] <= set(OBJECTS["scope_mappings"])
    assert found["authentik_crypto.certificatekeypair"] == {OBJECTS["signing_key"]}
    applied = [e["attrs"]["identifiers"]["name"] for e in _blueprint(results)["entries"]
               if e["model"] == "authentik_blueprints.metaapplyblueprint"]
    assert applied == OBJECTS["flow_blueprints"]


def test_every_sso_route_has_a_forward_auth_app_bound_to_the_groups(rendered: Any) -> None:
    project, results = rendered
    entries = _blueprint(results)["entries"]
    domain = project.config["DOMAIN"]
    providers = {e["id"]: e for e in entries
                 if e["model"] == "authentik_providers_proxy.proxyprovider"}
    apps = {e["id"]: e for e in entries if e["model"] == "authentik_core.application"}
    bindings = [e["identifiers"] for e in entries
                if e["model"] == "authentik_policies.policybinding"]
    sso_hosts = {r.host for _, _, r in cat.all_routes(project.catalogue) if r.auth == "sso"}
    assert {p["attrs"]["external_host"] for p in providers.values()} == {
        f"https://{h}" for h in sso_hosts}
    for provider_id, provider in providers.items():
        assert provider["attrs"]["mode"] == "forward_single"
        [app_id] = [i for i, a in apps.items() if a["attrs"]["provider"].value == provider_id]
        bound = {b["group"].value for b in bindings if b["target"].value == app_id}
        assert bound == {"group-0"}  # SSO_GROUPS=admins: one group
    outpost = next(e for e in entries if e["model"] == "authentik_outposts.outpost")
    assert outpost["identifiers"] == {"managed": OBJECTS["embedded_outpost"]}
    assert {t.value for t in outpost["attrs"]["providers"]} == set(providers)
    assert outpost["attrs"]["config"] == {"authentik_host": f"https://auth.{domain}"}
    group = next(e for e in entries if e["model"] == "authentik_core.group")
    assert group["state"] == "created"  # later members, added in Authentik, are kept


def test_grafana_is_an_oidc_client_with_its_secret_as_a_file(rendered: Any) -> None:
    project, results = rendered
    entries = _blueprint(results)["entries"]
    client = next(e for e in entries if e["model"] == "authentik_providers_oauth2.oauth2provider")
    domain = project.config["DOMAIN"]
    assert client["attrs"]["client_id"] == "grafana"
    assert client["attrs"]["redirect_uris"] == [
        {"matching_mode": "strict", "url": f"https://grafana.{domain}/login/generic_oauth"}]
    secret = client["attrs"]["client_secret"]
    assert secret.name == "!File"
    # the worker reads the same value Grafana does: the same secret, as two files
    compose = yaml.safe_load(results["auth"].files["compose.yaml"])
    mounts = compose["services"]["authentik-worker"]["volumes"]
    assert any(m.endswith(f":{secret.value}:ro") for m in mounts)
    worker_file = results["auth"].files["secrets/files/authentik-worker/GRAFANA_OIDC_SECRET"]
    assert worker_file == project.config.secrets["GRAFANA_OIDC_SECRET"]
    text = results["auth"].files[sso.BLUEPRINT_FILE]
    for value in project.config.secrets.values():
        assert value not in text
    grafana = yaml.safe_load(results["monitoring"].files["compose.yaml"])["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_ID"] == client["attrs"]["client_id"]
    assert env["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    assert env["GF_AUTH_BASIC_ENABLED"] == "false"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_AUTH_GENERIC_OAUTH_AUTH_URL"].startswith(f"https://auth.{domain}/")
    assert "'admins'" in env["GF_AUTH_GENERIC_OAUTH_ROLE_ATTRIBUTE_PATH"]


def test_the_worker_mounts_the_blueprint_where_it_discovers_files(rendered: Any) -> None:
    _, results = rendered
    compose = yaml.safe_load(results["auth"].files["compose.yaml"])
    mounts = compose["services"]["authentik-worker"]["volumes"]
    discovery = FACT["blueprint_discovery"]
    assert f"./{sso.BLUEPRINT_FILE}:{sso.MOUNTED_AT}:ro" in mounts
    assert sso.MOUNTED_AT.startswith(discovery["directory"] + "/")
    assert sso.MOUNTED_AT.endswith(discovery["suffix"])


def _apps(text: str) -> dict[str, str]:
    return {e["identifiers"]["slug"]: e.get("state", "present")
            for e in load_blueprint(text)["entries"]
            if e["model"] == "authentik_core.application"}


def test_a_removed_route_is_deleted_and_stays_deleted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(PROJECT_ROOT / "stacks", root / "stacks")
    shutil.copytree(PROJECT_ROOT / "templates", root / "templates")
    shutil.copytree(PROJECT_ROOT / "contracts", root / "contracts")
    first = render_stacks(load(tmp_path, root=root), ["auth"])["auth"].files[sso.BLUEPRINT_FILE]
    assert _apps(first)["dozzle"] == "present"
    stack = root / "stacks" / "monitoring" / "stack.yaml"
    doc = yaml.safe_load(stack.read_text())
    del doc["services"]["dozzle"]
    stack.write_text(yaml.safe_dump(doc))
    second = render_stacks(load(tmp_path, root=root), ["auth"])["auth"].files[sso.BLUEPRINT_FILE]
    assert _apps(second)["dozzle"] == "absent"
    absent = [e for e in load_blueprint(second)["entries"] if e.get("state") == "absent"]
    assert [e["model"] for e in absent] == ["authentik_core.application",
                                            "authentik_providers_proxy.proxyprovider"]
    third = render_stacks(load(tmp_path, root=root), ["auth"])["auth"].files[sso.BLUEPRINT_FILE]
    assert third == second  # carried forward: a fresh Authentik deletes it too


@pytest.mark.parametrize("value", ["", "admins,", "adm;ins", "-admins"])
def test_a_bad_group_list_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        sso.access_groups(value)
    assert "SSO_GROUPS" in str(error.value)


def test_several_groups_each_bind_every_app() -> None:
    apps = [sso.ForwardAuthApp("wiki", "Wiki", "wiki.example.org", "Docs")]
    document = sso.blueprint(apps, [], ["admins", "family"], "auth.example.org")
    bindings = [e["identifiers"] for e in document["entries"]
                if e["model"] == "authentik_policies.policybinding"]
    assert [(b["group"].value, b["order"]) for b in bindings] == [("group-0", 0), ("group-1", 1)]
    groups = [e for e in document["entries"] if e["model"] == "authentik_core.group"]
    assert "attrs" in groups[0] and "attrs" not in groups[1]  # akadmin only in the first


def test_an_sso_route_without_the_auth_stack_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(PROJECT_ROOT / "stacks", root / "stacks")
    shutil.rmtree(root / "stacks" / "auth")
    with pytest.raises(ConfigError) as error:
        cat.resolve(cat.load_raw(root / "stacks"), {**_defaults()}, root)
    assert "no auth stack" in str(error.value)


def _defaults() -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(PROJECT_ROOT / "env" / "defaults.env").items()}
