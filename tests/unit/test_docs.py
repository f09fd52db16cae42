"""docs/plugins.md documents every hook with its exact signature, and every hook is tested.

As datasette does it (tests/test_docs.py, tests/test_plugins.py): the hook
specifications are introspected through a pluggy PluginManager, so adding a hook
to edge/plugins/hookspecs.py without a documented heading
``### name(arg1, arg2)`` and a ``test_hook_<name>`` test fails here.
"""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import pluggy
import pytest
from starlette.testclient import TestClient

from edge.auth import TokenAuthority
from edge.config import load_config
from edge.errors import ConfigError
from edge.plugins import hookspecs
from edge.plugins.manager import DEFAULT_BUDGET_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins.md"
HOOK_TESTS = Path(__file__).with_name("test_plugin_hooks.py")
SIGNATURE = re.compile(r"^(edge_\w+)\((.*)\)$")


def _hook_specs() -> dict[str, tuple[str, ...]]:
    pm = pluggy.PluginManager("edge")
    pm.add_hookspecs(hookspecs)
    specs = {
        name: tuple(caller.spec.argnames)
        for name, caller in vars(pm.hook).items()
        if isinstance(caller, pluggy.HookCaller) and caller.spec is not None
    }
    # the introspection must see every spec the module declares
    declared = {name for name, obj in vars(hookspecs).items() if hasattr(obj, "edge_spec")}
    assert set(specs) == declared and declared
    return specs


HOOKS = _hook_specs()


def _signature(hook: str) -> str:
    return f"{hook}({', '.join(HOOKS[hook])})"


def _parse_docs() -> tuple[list[tuple[int, str, int]], list[tuple[str, str]], list[str]]:
    """(level, heading, line index) outside code blocks, (language, code) blocks, and the lines."""
    lines = DOCS.read_text().splitlines()
    headings: list[tuple[int, str, int]] = []
    blocks: list[tuple[str, str]] = []
    fence: str | None = None
    body: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("```"):
            if fence is None:
                fence, body = line[3:].strip(), []
            else:
                blocks.append((fence, "\n".join(body) + "\n"))
                fence = None
            continue
        if fence is not None:
            body.append(line)
            continue
        match = re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if match:
            headings.append((len(match.group(1)), match.group(2), i))
    assert fence is None, "an unclosed code block in docs/plugins.md"
    return headings, blocks, lines


HEADINGS, BLOCKS, LINES = _parse_docs()


def _section(hook: str) -> str:
    """The text under the hook's heading, up to the next heading of level 3 or above."""
    for n, (level, text, start) in enumerate(HEADINGS):
        if text == _signature(hook):
            end = next((i for lvl, _, i in HEADINGS[n + 1 :] if lvl <= level), len(LINES))
            return "\n".join(LINES[start + 1 : end])
    raise AssertionError(f"no heading for {hook}")


def _hook_test_names() -> set[str]:
    tree = ast.parse(HOOK_TESTS.read_text(), filename=str(HOOK_TESTS))
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_hook_")
    }


# (a) every hook is documented with its exact signature ------------------------------------


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_plugin_hooks_are_documented(hook: str) -> None:
    level3 = [text for level, text, _ in HEADINGS if level == 3]
    assert _signature(hook) in level3, f"docs/plugins.md needs a heading '### {_signature(hook)}'"


# (b) no heading documents a hook that does not exist ------------------------------------------


def test_documented_hooks_exist() -> None:
    documented = []
    for level, text, _ in HEADINGS:
        match = SIGNATURE.match(text.strip("`"))
        if match is None:
            assert not text.strip("`").startswith("edge_"), f"heading {text!r} looks like a hook but is not a signature"
            continue
        name = match.group(1)
        assert name in HOOKS, f"docs/plugins.md documents {name}, which is not in edge/plugins/hookspecs.py"
        assert text == _signature(name), f"heading {text!r}: the signature is {_signature(name)}"
        assert level == 3, f"heading {text!r} should be a ### heading"
        documented.append(name)
    assert len(documented) == len(set(documented)), "a hook is documented twice"
    assert sorted(documented) == sorted(HOOKS)


# (c) every hook has a test -------------------------------------------------------------------------


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_plugin_hooks_have_tests(hook: str) -> None:
    assert f"test_hook_{hook}" in _hook_test_names(), (
        f"tests/unit/test_plugin_hooks.py needs a test function test_hook_{hook}"
    )


def test_hook_tests_are_for_real_hooks() -> None:
    stray = {name for name in _hook_test_names() if name.removeprefix("test_hook_") not in HOOKS}
    assert not stray, f"test_hook_* functions for hooks that do not exist: {sorted(stray)}"


# each section is complete -------------------------------------------------------------------------


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_sections_explain_arguments_and_show_an_example(hook: str) -> None:
    section = _section(hook)
    for arg in HOOKS[hook]:
        assert re.search(rf"^- `{arg}` \(`[^`]+`\): \S", section, re.M), (
            f"the {hook} section should explain `{arg}` as '- `{arg}` (`Type`): ...'"
        )
    assert re.search(r"\breturn", section, re.I), f"the {hook} section should say what the return value means"
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example, f"the {hook} section needs a ```python example"
    assert "@hookimpl" in example.group(1) and re.search(rf"def {hook}\(", example.group(1))


# the examples are plugins that load ----------------------------------------------------------------


def _python_blocks() -> list[str]:
    return [code for lang, code in BLOCKS if lang == "python"]


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_examples_are_valid_plugins(index: int) -> None:
    code = _python_blocks()[index]
    module = types.ModuleType(f"docs_example_{index}")
    exec(compile(code, f"docs/plugins.md example {index}", "exec"), module.__dict__)
    pm = pluggy.PluginManager("edge")
    pm.add_hookspecs(hookspecs)
    # validates every @hookimpl against its spec (names and arguments)
    pm.register(module, name=module.__name__)
    for value in list(vars(module).values()):
        if type(value).__module__ == module.__name__:
            pm.register(value)  # an instance-based plugin (class with @hookimpl methods)
    pm.check_pending()  # a misspelled hook name would be left pending


def test_quick_start_example_works(tmp_path: Path) -> None:
    code = _python_blocks()[0]
    greeter = types.ModuleType("greeter")
    exec(compile(code, "docs/plugins.md quick start", "exec"), greeter.__dict__)
    from edge.app import create_app

    secret = "docs-example-secret-0123456789abc"
    config = load_config(env={"EDGE_NODE_DATA_DIR": str(tmp_path), "EDGE_AUTH_SECRET": secret})
    config.plugins = {"greeter": {"text": "Hi there"}}
    app = create_app(config, load_entrypoints=False, plugins=[("greeter", greeter)])
    token = TokenAuthority(secret).issue(room="shop1", identity="fan", role="viewer")
    with TestClient(app) as client:
        with client.websocket_connect(f"/v1/rooms/shop1/ws?token={token}") as ws:
            got = ws.receive_json()
    assert (got["type"], got["room"]) == ("welcome", "shop1")
    assert got["data"] == {"text": "Hi there", "room": "shop1", "viewers": 1}
    config.plugins = {"greeter": {"text": ""}}
    with pytest.raises(ConfigError, match=r"^\[plugins\.greeter\]: text must be"):
        create_app(config, load_entrypoints=False, plugins=[("greeter", greeter)])


# the guide names the controls the code has -------------------------------------------------------


def test_guide_covers_loading_and_calling_rules() -> None:
    text = DOCS.read_text()
    for needle in (
        "[project.entry-points.edge]",
        "from edge.plugins import hookimpl",
        "[plugins.",
        "load = [",
        "EDGE_LOAD_PLUGINS",
        "EDGE_TRACE_PLUGINS",
        "edge --config conf/edge.toml plugins",
        "tryfirst",
        "trylast",
        "edge_plugin_errors_total{plugin,hook}",
        "edge_plugin_timeouts_total{plugin,hook}",
        "MessageType",
        "message.reject(",
        "message.reply(",
        "message.broadcast",
    ):
        assert needle in text, f"docs/plugins.md should mention {needle}"
    assert f"timeout_ms = {int(DEFAULT_BUDGET_SECONDS * 1000)}" in text
    assert f"(default {int(DEFAULT_BUDGET_SECONDS * 1000)} ms)" in text
