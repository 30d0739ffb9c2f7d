"""``bench new``: a new submission folder from the template in ``bench/templates/submission``."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from bench.errors import BenchError

TEMPLATE_DIR = Path(__file__).parent / "templates" / "submission"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def class_name_for(name: str) -> str:
    """``my-recipe`` -> ``MyRecipe``."""
    return "".join(part.capitalize() for part in re.split(r"[-._]", name) if part) or "Recipe"


def scaffold_submission(name: str, submissions_dir: Path, author: str) -> Path:
    """Write ``submissions_dir/name`` with a manifest, a working recipe and a README; never overwrite."""
    if not NAME.match(name):
        raise BenchError(f"submission name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
    folder = submissions_dir / name
    if folder.exists():
        raise BenchError(f"{folder} already exists")
    values = {"name": name, "class_name": class_name_for(name), "author": author}
    folder.mkdir(parents=True)
    for template in sorted(TEMPLATE_DIR.glob("*.tmpl")):
        (folder / template.stem).write_text(Template(template.read_text()).substitute(values))
    return folder
