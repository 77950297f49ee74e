"""The README and docs/ keep their promises, cheaply (no training): every command in their ```bash blocks
names a module, console script or make target that exists; every `key=value` of a `logitlab.train` line
composes against the package's own conf/ (Hydra's compose API, each swept value in turn); every key given
to predict, evaluate and export is one they take; every linked file exists; the README stays under 300
lines, says how to get a shell where its commands run before it shows one, and its contents list is its
headings.

What this cannot see: whether a command succeeds when run (values are not built, nothing trains). Those
were run by hand in a new shell; a value the components refuse is caught by the command-line check."""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONF = ROOT / "src" / "logitlab" / "conf"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Options that take the next word as their value, and what a compose check cannot follow.
VALUED = {"--cfg", "-c", "--package", "-p", "--nproc-per-node", "--nproc_per_node", "--nnodes"}
OWN_CONFIG_DIR = {"-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name"}


def bash_commands(page: Path) -> list[str]:
    """The command lines of a page's ```bash blocks, continuation lines joined, comments dropped."""
    lines, inside = [], False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash"
            continue
        if inside:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + line
            else:
                lines.append(line)
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        segment: list[str] = []
        for word in words + [";"]:
            if word in ("&&", "||", "|", ";"):
                if segment:
                    commands.append(segment)
                segment = []
            else:
                segment.append(os.path.expandvars(word))
    return commands


def all_commands() -> list[tuple[str, list[str]]]:
    return [(page.relative_to(ROOT).as_posix(), words) for page in PAGES for words in bash_commands(page)]


def module_of(words: list[str]) -> tuple[str, list[str]] | None:
    """`python -m X args` or `torchrun ... -m X args` -> (X, args)."""
    name = Path(words[0]).name
    if name in ("python", "python3") and words[1:2] == ["-m"] or name == "torchrun" and "-m" in words:
        at = words.index("-m")
        return words[at + 1], words[at + 2:]
    return None  # `python my_app.py -m ...`: -m is the app's (Hydra's multirun)


def console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts] (read by hand: tomllib is Python 3.11+, the package 3.10+)."""
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w.-]+)\s*=\s*"([^"]+)"', section, re.M))


def make_targets() -> set[str]:
    return {m.group(1) for line in (ROOT / "Makefile").read_text().splitlines()
            if (m := re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line))}


COMMANDS = all_commands()


def test_every_command_names_something_that_exists():
    scripts, targets, missing = console_scripts(), make_targets(), []
    for page, words in COMMANDS:
        name = Path(words[0]).name
        found = module_of(words)
        if found:
            if importlib.util.find_spec(found[0]) is None:
                missing.append(f"{page}: no module {found[0]}")
        elif name.startswith("logitlab-") and name not in scripts:
            missing.append(f"{page}: no console script {name}")
        elif name == "make":
            missing += [f"{page}: no make target {t}" for t in words[1:] if "=" not in t and t not in targets]
    assert not missing, "\n".join(missing)
    assert any(module_of(w) for _, w in COMMANDS), "no python -m line found: is the parser broken?"


def _variants(args: list[str]) -> list[list[str]]:
    """The command line's overrides with one value for each swept key: the first values, then each other
    value of each key in turn (an interval by its ends), as the command-line check does."""
    overrides = OverridesParser.create().parse_overrides(args)
    first, others = [], []
    for i, o in enumerate(overrides):
        key = o.get_key_element()
        if not o.is_sweep_override():
            first.append(o.input_line)
            continue
        if o.is_discrete_sweep():
            values = list(o.sweep_string_iterator())
        else:  # interval(a, b), tag(log, interval(a, b))
            values = [str(o.value().start), str(o.value().end)]
        first.append(f"{key}={values[0]}")
        others += [(i, f"{key}={v}") for v in values[1:]]
    variants = [first]
    for i, replacement in others:
        variants.append(first[:i] + [replacement] + first[i + 1:])
    return variants


def _train_lines() -> list[tuple[str, list[str]]]:
    lines = []
    for page, words in COMMANDS:
        found = module_of(words)
        if found and found[0] == "logitlab.train" or Path(words[0]).name == "logitlab-train":
            args = found[1] if found else words[1:]
            if OWN_CONFIG_DIR & set(args) or any(a.startswith("hydra.searchpath=") for a in args):
                continue  # a config directory of the reader's own (e.g. made from best.yaml): not here
            kept, skip = [], False
            for a in args:
                if skip:
                    skip = False
                elif a in VALUED:
                    skip = True
                elif not a.startswith("-"):
                    kept.append(a)
            lines.append((page, kept))
    return lines


def test_every_training_override_composes():
    """Hydra composes each line (config groups, keys, types, the hparams_search and launcher presets), so a
    renamed key or option breaks this test rather than a reader's first command."""
    failures = []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            seen = set()
            for page, args in _train_lines():
                for overrides in _variants(args):
                    if tuple(overrides) in seen:
                        continue
                    seen.add(tuple(overrides))
                    try:
                        compose("config", overrides=overrides, return_hydra_config=True)
                    except Exception as e:  # noqa: BLE001 - every failure is reported with its line
                        failures.append(f"{page}: {' '.join(args)}\n    {' '.join(overrides)}: {e}")
    finally:
        GlobalHydra.instance().clear()
    assert not failures, "\n".join(failures)
    assert len(seen) >= 10, f"only {len(seen)} compositions: is the parser broken?"


def _options(module: str) -> dict:
    """The entry point's `OPTIONS = {...}`, read from its source (importing it would import torch)."""
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["OPTIONS"]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{module} has no OPTIONS = {{...}} to check the README's keys against")


@pytest.mark.parametrize("module", ["logitlab.predict", "logitlab.evaluate", "logitlab.export"])
def test_every_key_given_to_an_entry_point_is_one_it_takes(module):
    options = _options(module)
    script = next(s for s, target in console_scripts().items() if target.startswith(f"{module}:"))
    bad, seen = [], 0
    for page, words in COMMANDS:
        found = module_of(words)
        args = found[1] if found and found[0] == module else words[1:] if Path(words[0]).name == script else None
        if args is None:
            continue
        seen += 1
        given = [a.split("=", 1)[0] for a in args if not a.startswith("-")]
        bad += [f"{page}: {' '.join(words)}: {key}= (takes {', '.join(options)})"
                for key in given if key not in options]
        bad += [f"{page}: {' '.join(words)}: no {key}=" for key, default in options.items()
                if default is None and key not in given and "--help" not in args]
    assert not bad, "\n".join(bad)
    assert seen, f"the README shows no {module} line"


def test_every_linked_file_exists():
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if not path or re.match(r"[a-z]+:", path):
                continue  # an anchor on the same page, or a URL
            resolved = (page.parent / path).resolve()
            relative = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved)
            if not resolved.exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, "\n".join(missing)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_short_and_its_contents_are_its_headings():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) < 300, f"README.md is {len(lines)} lines; reference material belongs in docs/"
    assert re.search(r"make train\b.*\n.*make test\b", "\n".join(lines[:20])), "the README opens with the two commands"

    headings, in_code = [], False
    for line in lines:
        in_code ^= line.startswith("```")
        if not in_code and (m := re.match(r"(##+) (.+)", line)):
            headings.append(m.group(2).strip())
    assert "Contents" in headings, "the README has a contents list"
    after = headings[headings.index("Contents") + 1:]
    section = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"\[([^\]]+)\]\(#([^)]+)\)", section)
    assert [name for name, _ in listed] == after, "the contents list names the headings after it, in order"
    assert [anchor for _, anchor in listed] == [_slug(h) for h in after], "each contents link is its heading's anchor"


def test_readme_says_how_to_get_a_shell_before_its_first_python_command():
    """After `make train` a new shell has no logitlab on its PATH: the README says to activate .venv first."""
    text = README.read_text()
    activate = text.find("source .venv/bin/activate")
    first_python = min(text.find(f"\n{cmd}") for cmd in ("python -m", "python -c") if f"\n{cmd}" in text)
    assert activate != -1 and activate < first_python, \
        "the README shows `python ...` before it says `source .venv/bin/activate`"
