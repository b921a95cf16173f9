"""Print `name==version` for every `name>=version` requirement in pyproject.toml (dependencies and extras).

CI installs the package a second time under these constraints and runs the default suite there, so each
declared lower bound is one the suite really passed on: pyproject.toml stays the one place they live.
"""

import re
import sys
from pathlib import Path

import tomllib

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"])
for extra in project.get("optional-dependencies", {}).values():
    requirements += extra
pins = {}
for requirement in requirements:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([^,;\s]+)\s*(,.*)?", requirement)
    if match and match.group(1) != project["name"]:
        pins[match.group(1).lower()] = match.group(2)
if not pins:
    sys.exit("no lower bounds found in pyproject.toml")
print("\n".join(f"{name}=={version}" for name, version in sorted(pins.items())))
